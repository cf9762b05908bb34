"""Many songs: expand folders and globs, skip what is done, separate in parallel, summarise.

:func:`expand_inputs` turns command-line items into files; :func:`run_batch` separates them
with one :class:`~vocalsep.separate.Separator` per worker process (``jobs`` of them; each gets
its share of the CPU threads), reporting progress per file as ``(index, fraction)`` and each
finished file as a :class:`FileResult`. Songs whose outputs all exist are skipped unless
``force``; since every output appears only when complete, a batch that was killed resumes by
running it again.
"""
from __future__ import annotations

import glob
import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .audio import TruncatedAudioWarning
from .timing import stage

#: file name endings taken from folders (a named file is always tried, whatever its name)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".m4a", ".aac", ".mp4", ".opus")


@dataclass
class Job:
    """What every file of a batch is separated with."""

    model: str | None
    options: dict
    out: str
    stems: tuple[str, ...]
    ext: str = "wav"
    bits: str = "16"
    force: bool = False
    device: str = "cpu"
    threads: int | None = None
    verbose: bool = False  # each process says on stderr what separates (Separator.describe)
    template: str = "{track}/{stem}.{ext}"  # output names below ``out`` (separate.TEMPLATE)
    bitrate: int | None = None  # kbit/s of mp3/m4a outputs


@dataclass
class FileResult:
    """One input's outcome: ``written`` paths, or ``skipped``, or an ``error`` line."""

    index: int
    path: str
    written: list[str] = field(default_factory=list)
    seconds: float = 0.0  # audio duration
    skipped: bool = False
    error: str | None = None
    warning: str | None = None  # e.g. a file that decoded far shorter than its header says


def expand_inputs(items: list[str]) -> list[str]:
    """Files named by ``items``: a folder gives its audio files (recursively, sorted), a glob
    pattern its matches; anything else (and a folder or pattern that gives nothing) is kept as
    given, to fail with its own one-line error."""
    files: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():  # its audio files; a folder without any stays, to fail by name
            found = sorted(str(f) for f in p.rglob("*")
                           if f.is_file() and f.name.lower().endswith(AUDIO_SUFFIXES)
                           and not f.name.startswith("."))
            files += found or [item]
        elif not p.exists() and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files += [m for m in matches if Path(m).is_file()] or [item]
        else:
            files.append(item)
    return list(dict.fromkeys(files))  # each file once


# --- in a worker ----------------------------------------------------------------------------

_SEPARATOR = None
_PROGRESS = None


def _init(job: Job, progress_queue=None, callback: Callable[[int, float], None] | None = None) -> None:
    """Load the separator of this process; progress goes to ``progress_queue`` (a worker) or
    to ``callback`` (in process)."""
    global _SEPARATOR, _PROGRESS
    from .separate import Separator, SeparatorOptions
    from .pipeline.stft import preload_fft

    preload_fft()  # while the model loads
    with stage("load"):
        _SEPARATOR = Separator(job.model, SeparatorOptions(**job.options), device=job.device,
                               threads=job.threads)
    if job.verbose:
        print(f"vocalsep: {job.model or 'default'}: {_SEPARATOR.describe()}", file=sys.stderr, flush=True)
    if progress_queue is not None:
        _PROGRESS = lambda index, fraction: progress_queue.put((index, fraction))  # noqa: E731
    else:
        _PROGRESS = callback or (lambda index, fraction: None)


def settled_without_model(index: int, path: str, job: Job) -> FileResult | None:
    """The outcome of a file that needs no model: skipped (its outputs all exist, no
    ``force``) or failed before decoding (missing, a folder, unreadable, empty); None for a
    file to separate. Checked before any model is loaded, so a rerun that skips everything, or
    a typo, costs no model loading."""
    from .audio import AudioError, check_readable
    from .separate import output_paths

    result = FileResult(index, path)
    targets = output_paths(path, job.out, job.stems, job.ext, job.template)
    if not job.force and all(t.exists() for t in targets.values()):
        result.skipped = True
        return result
    try:
        check_readable(Path(path))
    except AudioError as err:
        result.error = str(err)
        return result
    return None


def settle(files: list[str], job: Job) -> tuple[list[FileResult], list[tuple[int, str]]]:
    """The outcomes of the files settled without a model (:func:`settled_without_model`), and
    ``(index, path)`` of the others, left to separate."""
    settled, todo = [], []
    for i, path in enumerate(files):
        result = settled_without_model(i, path, job)
        if result is None:
            todo.append((i, path))
        else:
            settled.append(result)
    return settled, todo


def check_job(job: Job) -> None:
    """Load ``job``'s separator here once and drop it, before workers elsewhere load theirs:
    a bad model or option fails in one line rather than in every worker."""
    from .separate import Separator, SeparatorOptions

    Separator(job.model, SeparatorOptions(**job.options), device=job.device, threads=1)


def _separate_one(index: int, path: str, job: Job) -> FileResult:
    """Separate one file with this process's separator (:func:`_init`)."""
    return separate_with(_SEPARATOR, index, path, job, lambda fraction: _PROGRESS(index, fraction))


def separate_with(separator, index: int, path: str, job: Job,
                  progress: Callable[[float], None]) -> FileResult:
    """Separate one file with ``separator`` (a :class:`~vocalsep.separate.Separator`), unless
    :func:`settled_without_model`; every expected failure becomes ``error``."""
    result = settled_without_model(index, path, job)
    if result is not None:
        return result
    result = FileResult(index, path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncatedAudioWarning)
            written = separator.separate_file(path, job.out, job.stems, job.ext, job.bits, force=True,
                                              progress=progress, template=job.template,
                                              bitrate=job.bitrate)
        result.warning = next((str(w.message) for w in caught
                               if issubclass(w.category, TruncatedAudioWarning)), None)
    except (ValueError, OSError) as err:  # AudioError and ModelError are ValueErrors
        text = str(err)
        named = path in text or Path(getattr(err, "path", "") or ".") == Path(path)  # escaped names
        result.error = text if named else f"{path}: {text}"
        return result
    import soundfile as sf

    result.written = [str(p) for p in written.values()]
    first = next(iter(written.values()))
    if first.suffix in (".wav", ".flac"):
        result.seconds = sf.info(os.fsencode(first)).duration  # bytes: names need not be UTF-8
    return result


# --- the batch ------------------------------------------------------------------------------

def run_batch(files: list[str], job: Job, jobs: int = 1,
              on_progress: Callable[[int, float], None] | None = None) -> Iterator[FileResult]:
    """Separate ``files``; yield each :class:`FileResult` as it finishes. ``jobs`` > 1 runs
    that many worker processes; ``on_progress(index, fraction)`` is called in this thread.
    Files settled without a model (:func:`settled_without_model`) come first, and the model
    is loaded only if any file is left."""
    settled, todo = settle(files, job)
    yield from settled
    if not todo:
        return
    if jobs <= 1:
        _init(job, callback=on_progress)
        for i, path in todo:
            yield _separate_one(i, path, job)
        return
    check_job(job)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    updates = manager.Queue()
    cores = os.cpu_count() or 1
    worker_job = Job(**{**job.__dict__, "threads": job.threads or max(1, cores // jobs)})
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set():
            try:
                index, fraction = updates.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            if on_progress:
                on_progress(index, fraction)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=ctx, initializer=_init,
                                 initargs=(worker_job, updates)) as pool:
            futures = [pool.submit(_separate_one, i, f, worker_job) for i, f in todo]
            for fut in as_completed(futures):
                yield fut.result()
    finally:
        stop.set()
        thread.join()
        manager.shutdown()
