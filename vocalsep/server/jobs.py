"""Separation jobs: one folder per job under the data directory, and the pool that runs them.

Layout (every name chosen here, none taken from a request)::

    <data_dir>/.lock                        held by the one server using this folder
    <data_dir>/jobs/<id>/job.json           status, progress, error, metadata (atomic writes)
    <data_dir>/jobs/<id>/input[.ext]        the upload as received (.ext from an allow-list)
    <data_dir>/jobs/<id>/vocals.wav         the stems, once done (16-bit wav at the input's
    <data_dir>/jobs/<id>/accompaniment.wav  rate, channels and length)
    <data_dir>/jobs/<id>/input.png          spectrograms of the first seconds of the input
    <data_dir>/jobs/<id>/vocals.png         and of the vocals
    <data_dir>/jobs/<id>/live.pcm           the accompaniment so far, while running (listen.py)

A job goes ``queued → running → done | failed``. ``<id>`` is ``secrets.token_urlsafe(16)``
(128 random bits); a request's id reaches the file system only after it matched :data:`ID_RE`
*and* named a job this store knows. A folder without ``job.json`` is an upload that never
completed and is removed at start; jobs found ``queued`` or ``running`` at start (the server
stopped or was killed before they finished) are queued again, oldest first; ``done`` and
``failed`` jobs stay as they are.

:class:`JobRunner` runs jobs on ``workers`` threads sharing one loaded
:class:`~vocalsep.separate.Separator` (the model is loaded once; inference only reads it), each
thread with ``threads`` CPU threads (torch's, or ONNX Runtime's or OpenVINO's (a stream per
worker) through the separator; by
default :func:`threads_per_worker`), so at most ``workers`` songs are separated at a time
whatever the number of uploads waiting.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import re
import secrets
import shutil
import sys
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..audio import AudioError
from ..batch import AUDIO_SUFFIXES
from ..batch import Job as BatchJob
from ..cluster import ClusterError
from ..separate import STEMS, Separator
from .listen import LIVE_FILE, LiveTap

log = logging.getLogger("vocalsep.server")

#: what a job id looks like (``secrets.token_urlsafe(16)``)
ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
STATUSES = ("queued", "running", "done", "failed")
#: spectrogram images of a done job: name in the URL → file in its folder
SPECTROGRAMS = {"input": "input.png", "vocals": "vocals.png"}
#: progress reached when the stems are written (the spectrograms take the rest)
_SEPARATED = 0.95
#: seconds between two writes of ``job.json`` for progress alone
_PERSIST_EVERY = 1.0
#: the decoded-size limit is counted in minutes of this rate and channel count
REFERENCE_RATE, REFERENCE_CHANNELS = 48_000, 2
DEFAULT_MAX_MINUTES = 60.0


def max_samples(minutes: float) -> int:
    """The most samples (rate × seconds × channels, all channels together) a song may hold
    under a limit of ``minutes`` of 48 kHz stereo."""
    return int(minutes * 60 * REFERENCE_RATE * REFERENCE_CHANNELS)


def too_long(minutes: float, rate: int | None = None, channels: int | None = None,
             seconds: float | None = None) -> str:
    """Why a song is refused under a limit of ``minutes`` (48 kHz stereo), one line; without
    ``seconds`` its length is only known to be over the limit."""
    if seconds is None:
        return f"too long: more than the limit of {minutes:g} min of 48 kHz stereo audio"
    same = seconds * rate * channels / (REFERENCE_RATE * REFERENCE_CHANNELS) / 60
    return (f"too long: {seconds / 60:.1f} min at {rate} Hz, {channels} channel(s) is as much as "
            f"{same:.1f} min of 48 kHz stereo; the limit is {minutes:g} min")


class UnknownJob(KeyError):
    """No job has this id (or the id is not one this store could have made)."""


@dataclass
class Job:
    """One job as stored in ``job.json``; times are Unix seconds, ``duration`` in seconds."""

    id: str
    status: str = "queued"
    progress: float = 0.0  # 0..1
    error: str | None = None
    filename: str = "upload"  # the upload's name, sanitised (only for display and downloads)
    input: str = "input"  # the upload's file name in the job's folder
    rate: int | None = None  # Hz
    channels: int | None = None
    duration: float | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_job_id() -> str:
    """An unguessable job id (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def sanitize_filename(name: str | None, limit: int = 120) -> str:
    """A display/download name from a client's file name: its last path component, letters,
    digits and ``space . _ - ( ) [ ] + , &`` kept, anything else ``_``, no leading dots,
    at most ``limit`` characters; ``"upload"`` if nothing is left."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = re.sub(r"[^\w .()\[\]+,&-]", "_", name).strip().lstrip(".")
    if len(name) > limit:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: limit - len(ext) - 1] + "." + ext) if dot and len(ext) < 10 else name[:limit]
    return name or "upload"


def input_name(filename: str) -> str:
    """The stored upload's name: ``input`` plus the client's suffix when it is a known audio
    suffix (it tells the reader which decoder to try first), else ``input`` alone."""
    suffix = Path(filename).suffix.lower()
    return "input" + suffix if suffix in AUDIO_SUFFIXES else "input"


class JobStore:
    """The jobs of one data directory, all kept in memory and each written to its
    ``job.json`` on every change (progress at most every second).

    Holds an exclusive lock on ``<data_dir>/.lock`` until :meth:`close`, so two servers never
    run the same jobs. The jobs in memory are guarded by one mutex, held only while they are
    read or changed, never during disk I/O (``/api/health`` reads them): ``job.json`` is written
    after it is released, each write numbered so that an older state never replaces a newer
    one on disk.
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise RuntimeError(f"{self.data_dir}: another vocalsep server uses this data directory") from None
        self._jobs: dict[str, Job] = {}
        self._saved: dict[str, float] = {}  # id -> when job.json was last asked to be written
        self._versions: dict[str, int] = {}  # id -> number of the latest state to be written
        self._written: dict[str, int] = {}  # id -> number of the state in job.json
        self._mutex = threading.Lock()  # the jobs in memory
        self._disk = threading.Lock()  # writes of job.json, in order
        self._load()

    def close(self) -> None:
        """Release the data directory."""
        if not self._lock_file.closed:
            self._lock_file.close()

    def _load(self) -> None:
        for folder in self.root.iterdir():
            if not (folder.is_dir() and ID_RE.fullmatch(folder.name)):
                continue
            try:
                job = Job.from_dict(json.loads((folder / "job.json").read_text()))
            except FileNotFoundError:  # an upload that never completed
                shutil.rmtree(folder, ignore_errors=True)
                continue
            except (ValueError, TypeError) as err:
                log.warning("%s: unreadable job.json, job skipped (%s)", folder, err)
                continue
            if job.id == folder.name and job.status in STATUSES:
                self._jobs[job.id] = job

    # ------------------------------------------------------------ folders
    def new_folder(self) -> tuple[str, Path]:
        """A fresh id and its (new, empty) folder; the job exists once :meth:`add` is called."""
        while True:
            job_id = new_job_id()
            folder = self.root / job_id
            try:
                folder.mkdir()
                return job_id, folder
            except FileExistsError:  # 2^-128: never, but cheap to handle
                continue

    def folder(self, job_id: str) -> Path:
        """The folder of a known job; :class:`UnknownJob` for anything else."""
        self.get(job_id)
        return self.root / job_id

    # ------------------------------------------------------------ jobs
    def add(self, job: Job) -> None:
        """A new job, written to its folder's ``job.json`` (disk I/O: not on an event loop)."""
        with self._mutex:
            self._jobs[job.id] = job
            state = self._snapshot(job)
        self._write(*state)

    def get(self, job_id: str) -> Job:
        """A copy of the job ``job_id``; :class:`UnknownJob` if there is none."""
        if not isinstance(job_id, str) or not ID_RE.fullmatch(job_id):
            raise UnknownJob(job_id)
        with self._mutex:
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJob(job_id)
            return Job(**asdict(job))

    def update(self, job_id: str, **changes) -> Job:
        """Change fields of a job; written to disk at once, except progress alone (at most
        every :data:`_PERSIST_EVERY` seconds)."""
        state = None
        with self._mutex:
            job = self._jobs[job_id]
            for key, value in changes.items():
                setattr(job, key, value)
            if set(changes) != {"progress"} or time.monotonic() - self._saved.get(job_id, 0) > _PERSIST_EVERY:
                state = self._snapshot(job)
            copy = Job(**asdict(job))
        if state is not None:
            self._write(*state)
        return copy

    def jobs(self, *statuses: str) -> list[Job]:
        """Copies of the jobs in ``statuses`` (all if none), oldest first."""
        with self._mutex:
            found = [Job(**asdict(j)) for j in self._jobs.values() if not statuses or j.status in statuses]
        return sorted(found, key=lambda j: j.created)

    def counts(self) -> dict[str, int]:
        """Number of jobs in each status."""
        found = {s: 0 for s in STATUSES}
        with self._mutex:
            for job in self._jobs.values():
                found[job.status] += 1
        return found

    def _snapshot(self, job: Job) -> tuple[int, dict]:
        """The job's state to write, numbered (called with the mutex held)."""
        self._saved[job.id] = time.monotonic()
        self._versions[job.id] = version = self._versions.get(job.id, 0) + 1
        return version, asdict(job)

    def _write(self, version: int, state: dict) -> None:
        """``job.json`` atomically (a temporary file in the same folder, then a rename), unless
        a newer state of the job was written meanwhile."""
        job_id = state["id"]
        folder = self.root / job_id
        with self._disk:
            if version <= self._written.get(job_id, 0):
                return
            tmp = folder / f".job.json.{secrets.token_hex(4)}.part"
            try:
                tmp.write_text(json.dumps(state, indent=1))
                os.replace(tmp, folder / "job.json")
            finally:
                tmp.unlink(missing_ok=True)
            self._written[job_id] = version


class _Stopping(Exception):
    """Raised inside a running separation when the server shuts down."""



def threads_per_worker(workers: int) -> int:
    """CPU threads for each of ``workers`` separating at once: the cores shared among them."""
    return max(1, (os.cpu_count() or 1) // workers)

class JobRunner:
    """``workers`` threads separating queued jobs with one shared ``separator``, or, given a
    Dask ``client``, sending each job to the cluster as a task (:func:`cluster_job`; the jobs'
    folder must then be one the cluster's workers see). ``model``/``device``: what the
    cluster's workers load (once each)."""

    def __init__(self, store: JobStore, separator: Separator, workers: int = 1,
                 threads: int | None = None, max_minutes: float | None = DEFAULT_MAX_MINUTES,
                 client=None, model: str | None = None, device: str = "cpu"):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.store, self.separator, self.workers = store, separator, workers
        self.client, self.model, self.device = client, model, device
        self.threads = threads
        #: a job whose stems pass this many samples (a header that understated the length)
        #: fails while it is decoded; None: no limit
        self.max_minutes = max_minutes
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Queue the jobs left queued or running by a previous server, start the workers."""
        if self.threads is None:
            self.threads = threads_per_worker(self.workers)
        for job in self.store.jobs("queued", "running"):
            self.store.update(job.id, status="queued", progress=0.0, started=None)
            self.submit(job.id)
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"vocalsep-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; a separation under way is abandoned (its job stays ``running``
        on disk and runs again at the next start)."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        torch = sys.modules.get("torch")  # imported only for a torch model (not for ONNX Runtime)
        if torch is not None:
            torch.set_num_threads(self.threads)
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except Exception as err:  # never lose a worker, never leave a job running
                log.exception("job %s: unexpected error", job_id)
                self._fail(job_id, internal_error(err))

    def _fail(self, job_id: str, error: str) -> None:
        """Mark a job ``failed`` with the one line ``error`` (it will not run again)."""
        try:
            self.store.update(job_id, status="failed", error=error, finished=time.time())
        except Exception:  # the disk itself fails: logged, the worker carries on
            log.exception("job %s: could not be marked failed", job_id)

    def _run(self, job_id: str) -> None:
        store = self.store
        job = store.update(job_id, status="running", progress=0.0, error=None, started=time.time())
        folder = store.folder(job_id)
        source = folder / job.input
        # on a cluster, a cancelled task may still be writing: each attempt its own folder
        work = folder / (".work" if self.client is None else f".work-{secrets.token_hex(4)}")

        def progress(fraction: float) -> None:
            if self._stopping.is_set():
                raise _Stopping
            check_length(source, work, self.max_minutes)
            store.update(job_id, progress=round(_SEPARATED * fraction, 4))

        try:
            try:  # the temporaries go before the job is marked done or failed
                written = self._separate(source, work, folder / LIVE_FILE, progress)
                for stem, path in written.items():
                    os.replace(path, folder / f"{stem}.wav")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            store.update(job_id, progress=_SEPARATED)
            from .spectrograms import render_spectrograms

            render_spectrograms(source, folder / "vocals.wav",
                                {name: folder / file for name, file in SPECTROGRAMS.items()})
        except _Stopping:
            return
        except ClusterError as err:  # not the song's fault: it runs again at the next start
            log.error("job %s: %s", job_id, err)
            store.update(job_id, status="queued", progress=0.0, started=None)
            return
        except (ValueError, OSError) as err:  # AudioError, ModelError, disk full ...
            self._fail(job_id, client_message(err, source, job.filename))
            log.info("job %s failed: %s", job_id, err)
            return
        except Exception as err:  # a bug, torch's RuntimeError, MemoryError, matplotlib ...
            log.exception("job %s: unexpected error", job_id)
            self._fail(job_id, internal_error(err))
            return
        store.update(job_id, status="done", progress=1.0, finished=time.time())

    def _separate(self, source: Path, work: Path, live: Path, progress) -> dict[str, Path]:
        """The song's stems under ``work``; here (not on a cluster) the accompaniment also goes
        to ``live`` as it is written, removed again at the end (:mod:`.listen`)."""
        if self.client is not None:
            return self._on_cluster(source, work)
        tap = LiveTap(live)
        try:
            return self.separator.separate_file(source, work, force=True, progress=progress, tap=tap)
        finally:
            tap.close()

    def _on_cluster(self, source: Path, work: Path) -> dict[str, Path]:
        """The job's stems, separated by a task on the cluster (no progress until it ends)."""
        from ..cluster import wait

        future = self.client.submit(cluster_job, str(source), str(work), self.model, self.device,
                                    self.max_minutes, pure=False)
        written = wait(future, self._stopping)
        if written is None:
            raise _Stopping
        return {stem: Path(path) for stem, path in written.items()}


def cluster_job(source: str, work: str, model: str | None, device: str,
                max_minutes: float | None) -> dict[str, str]:
    """On a cluster's worker: one job's stems into ``work`` (its model loaded once per worker),
    with the server's length check; stem → path of the written file."""
    from ..cluster import worker_separator

    separator = worker_separator(BatchJob(model=model, options={}, out=work, stems=STEMS, device=device))
    written = separator.separate_file(source, work, force=True,
                                      progress=lambda fraction: check_length(Path(source), Path(work), max_minutes))
    return {stem: str(path) for stem, path in written.items()}


def check_length(source: Path, work: Path, max_minutes: float | None) -> None:
    """AudioError if the stems written under ``work`` pass ``max_minutes``: the upload was
    checked by its header's length, and a file that holds more than its header says (an mp3
    whose length is estimated from its first frames) is stopped here, while it is decoded."""
    if max_minutes is not None and written_samples(work) > max_samples(max_minutes):
        raise AudioError(source, too_long(max_minutes) + " (it holds more than its header "
                         "says; stopped while decoding)")


def written_samples(work: Path) -> int:
    """Samples (all channels together) written so far to each stem under ``work`` by
    :class:`vocalsep.audio.StemWriter`: its 16-bit wav temporaries (2 bytes a sample) and its
    float ones (``*.raw.part``, 4 bytes), headers counted as samples (a few dozen)."""
    total = 0
    for folder, _, names in os.walk(work):
        for name in names:
            try:
                size = os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
            total += size // (4 if name.endswith(".raw.part") else 2)
    return total // len(STEMS)


def internal_error(err: BaseException) -> str:
    """What the client is told of an unexpected error: its type only (the message may hold
    server paths or several lines; it goes to the server's log)."""
    return f"internal error: {type(err).__name__}"


def client_message(err: Exception, source: Path, filename: str) -> str:
    """One line for the client about the upload stored at ``source``: the upload's own name
    ``filename`` instead of any server path."""
    if isinstance(err, AudioError):
        text = f"{filename}: {err.problem}"
    else:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.replace(str(source), filename).replace(str(source.parent), "")
