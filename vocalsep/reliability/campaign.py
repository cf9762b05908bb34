"""The reliability campaign: what must happen to each bad input, and to a run that is killed.

Every check returns :class:`Result` rows: what was tried, what was expected, what happened and
the problems seen (none = passed). The checks:

* :func:`run_api` — every corpus file through :meth:`vocalsep.separate.Separator.separate_file`
  in this process (one model load);
* :func:`run_cli_batch` — the whole corpus given to one ``vocalsep separate`` (each bad file
  gets its own one-line error, the others are separated, exit code 1);
* :func:`run_cli_each` — one ``vocalsep separate`` process per file (exit code per file);
* :func:`output_faults` — outputs that cannot be written (below a file, read-only, full disk,
  a file size limit, a stem path that is a folder) or already exist;
* :func:`kill_batch`, :func:`kill_train` — ``kill -9`` at random moments of a batch and of a
  training run, the state left behind checked, then a rerun that must finish the work.

What "handled" means for every case: either a correct result (stems with the input's rate,
channels and length, finite, adding up to the input; silence for silence) or exactly one line
``vocalsep: error: <file>: <reason>`` and exit code 1 — never a traceback, a hang, a NaN in an
output, or a partial file.
"""
from __future__ import annotations

import contextlib
import csv
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .corpus import Case, Signals, synthetic_seed

ERROR_PREFIX = "vocalsep: error: "
WARNING_PREFIX = "vocalsep: warning: "
STEMS = ("vocals", "accompaniment")


@dataclass
class Result:
    """One case tried one way."""

    mode: str  # api | cli batch | cli | output fault | kill -9
    case: str
    category: str
    expect: str
    happened: str = ""
    problems: list[str] = field(default_factory=list)
    skipped: str = ""  # why the case could not be tried here (e.g. needs root)

    @property
    def passed(self) -> bool:
        return not self.problems


# --- helpers -----------------------------------------------------------------------------------

#: control characters as vocalsep's error lines show them (so that each stays one line)
ESCAPES = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


def display(path: str | os.PathLike) -> str:
    """How a path appears in vocalsep's error lines: bytes that are not UTF-8 as ``\\udcxx``
    (Python's stderr), control characters escaped."""
    return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8").translate(ESCAPES)


def vocalsep(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, timeout: float = 300,
             limit_file_size: int | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m vocalsep.cli ARGS`` as a user runs it (one thread, no debug tracebacks,
    ``env`` added); a run past ``timeout`` seconds is killed and returned with
    ``returncode = None``."""
    env = {**{k: v for k, v in os.environ.items() if k != "VOCALSEP_DEBUG"}, **(env or {})}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def limit() -> None:
        if limit_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    cmd = [sys.executable, "-m", "vocalsep.cli", *map(os.fspath, args)]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout,
                              encoding="utf-8", errors="replace", preexec_fn=limit)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(cmd, None, _text(err.stdout), _text(err.stderr))


def _text(x: bytes | str | None) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else (x or "")


def stem_folder(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The folder ``vocalsep separate`` writes the stems of ``path`` into."""
    from ..separate import output_paths

    return output_paths(path, out)["vocals"].parent


def _reads(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
    return x.T, rate


def check_error_message(case: Case, path: str | os.PathLike, line: str) -> list[str]:
    """Problems with the one-line error ``line`` about ``path``."""
    problems = []
    if "\n" in line.strip():
        problems.append("more than one line")
    if display(path) not in line and os.fspath(path) not in line:  # as printed, or as a Python str
        problems.append("the message does not name the file")
    wanted = [m for m in case.message.split("|") if m]
    if wanted and not any(m.lower() in line.lower() for m in wanted):
        problems.append(f"the message does not say {' or '.join(repr(m) for m in wanted)}")
    return problems


def check_outputs(path: Path, folder: Path, silent: bool = False, float_output: bool = False) -> list[str]:
    """Problems with the stems of ``path`` in ``folder``: both present and nothing else; the
    input's rate, channels and length; finite; adding up to the input (unless a stem was
    rescaled for being louder than full scale); zeros for silence."""
    from ..audio import read_audio

    if not folder.is_dir():
        return ["no output folder"]
    names = sorted(os.fsdecode(p.name) for p in folder.iterdir())
    if names != sorted(f"{s}.wav" for s in STEMS):
        return [f"output folder holds {names}"]
    try:
        source = read_audio(path)
    except ValueError as err:
        return [f"separated, but the input does not read on its own: {err}"]
    x = source.samples
    stems = {}
    for s in STEMS:
        y, rate = _reads(folder / f"{s}.wav")
        if rate != source.rate:
            return [f"{s}: {rate} Hz, the input {source.rate} Hz"]
        if y.shape != x.shape:
            return [f"{s}: shape {y.shape}, the input {x.shape}"]
        if not np.isfinite(y).all():
            return [f"{s}: NaN or infinite samples"]
        stems[s] = y
    if silent:
        loud = max(float(np.abs(y).max(initial=0)) for y in stems.values())
        return [f"silence in, {loud:.2g} out"] if loud > 1e-6 else []
    peaks = [float(np.abs(y).max(initial=0)) for y in stems.values()]
    if max(peaks) >= 0.9999:  # a stem above full scale is rescaled by its peak: no sum to check
        return [f"a stem peaks at {max(peaks)}"] if max(peaks) > 1.0 + 1e-6 else []
    tolerance = 1e-5 * max(1.0, float(np.abs(x).max())) if float_output else 1e-4
    error = float(np.abs(stems["vocals"] + stems["accompaniment"] - x).max(initial=0))
    return [f"stems differ from the input by {error:.2g}"] if error > tolerance else []


def no_temporaries(out: Path) -> list[str]:
    """Hidden temporaries left anywhere under ``out``."""
    left = [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")] if out.exists() else []
    return [f"temporary files left: {', '.join(display(p.name) for p in left[:3])}"] if left else []


def judge(case: Case, path: Path, out: Path, status: str, message: str, float_output: bool = False,
          named: str | os.PathLike | None = None) -> list[str]:
    """Problems with one outcome: ``status`` ok / error / crash / hang, ``message`` the error
    line, which must name the file as ``named`` (default: ``path``)."""
    if status in ("crash", "hang"):
        return [f"{status}: {message}"]
    if case.expect != "any" and status != case.expect:
        return [f"expected {case.expect}, got {status}" + (f": {message}" if message else "")]
    if status == "error":
        problems = check_error_message(case if case.expect == "error" else Case("", "", "any"),
                                       path if named is None else named, message)
        folder = stem_folder(path, out)
        if folder.exists():
            problems.append(f"an output folder was left for a failed file: {display(folder.name)}")
        return problems
    return check_outputs(path, stem_folder(path, out), case.silent, float_output)


def _happened(status: str, message: str, path: str | os.PathLike) -> str:
    """``ok``, ``hang``, ``crash: ...`` or ``error: <reason>`` (the message without the
    ``vocalsep: error:`` prefix and the file's name)."""
    if status != "error":
        return status if status != "crash" else f"crash: {message}"
    text = message.splitlines()[0] if message else ""
    text = text[len(ERROR_PREFIX):] if text.startswith(ERROR_PREFIX) else text
    for name in (display(path), display(Path(path).name)):
        if name in text:
            text = text.split(name + ": ", 1)[-1]
            break
    return f"error: {text}"


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeoutError` in this (main) thread after ``seconds``."""
    def expire(*_):
        raise TimeoutError(f"no result after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- the corpus through the API and the command line -------------------------------------------

def run_api(cases: list[Case], root: Path, out: Path, model: str = "small",
            timeout: float = 120) -> list[Result]:
    """Every case through ``Separator(model).separate_file(path, out)`` in this process."""
    from ..separate import Separator

    separator = Separator(model)
    results = []
    for case in cases:
        path = case.path(root)
        status, message = "ok", ""
        try:
            with _deadline(timeout):
                separator.separate_file(path, out)
        except TimeoutError as err:
            status, message = "hang", str(err)
        except (ValueError, OSError) as err:  # AudioError, ModelError are ValueErrors
            status, message = "error", str(err)
        except Exception as err:  # noqa: BLE001 - anything else is a crash to report
            status, message = "crash", f"{type(err).__name__}: {err}"
        problems = judge(case, path, out, status, message)
        if status == "error" and not isinstance(message, str):
            problems.append("the error is not text")
        results.append(Result("api", case.name, case.category, case.expect, _happened(status, message, path),
                              problems))
    stray = no_temporaries(out)
    if stray:
        results.append(Result("api", "(whole corpus)", "temporaries", "none", "left", stray))
    return results


def run_cli_batch(cases: list[Case], root: Path, out: Path, model: str = "small", jobs: int = 1,
                  timeout: float = 1800) -> list[Result]:
    """The whole corpus given to one ``vocalsep separate`` (absolute paths, float output)."""
    paths = [case.path(root).absolute() for case in cases]
    r = vocalsep("separate", "-m", model, "-o", out, "--bits", "float", "-j", str(jobs), "--", *paths,
                 timeout=timeout, env={"PYTHONIOENCODING": "utf-8:strict"})  # as in a strict locale
    mode = "cli batch" if jobs == 1 else f"cli batch -j {jobs}"
    whole = []
    if r.returncode is None:
        whole.append(f"no result after {timeout:.0f} s")
    elif r.returncode != 1:
        whole.append(f"exit code {r.returncode}, expected 1 (some files are bad)")
    if "Traceback" in r.stderr + r.stdout:
        whole.append("a traceback was printed")
    lines = [line for line in r.stderr.splitlines() if not line.startswith(WARNING_PREFIX)]
    stray = [line for line in lines if not line.startswith(ERROR_PREFIX)]
    if stray:
        whole.append(f"stderr lines that are not errors: {stray[:2]}")
    by_path: dict[str, list[str]] = {display(p): [] for p in paths}
    keys = sorted(by_path, key=len, reverse=True)  # the longest name that fits
    for line in lines:
        body = line[len(ERROR_PREFIX):]
        owner = next((k for k in keys if body.startswith(k + ": ")), None)
        if owner is None:
            whole.append(f"an error line that names no input: {line[:100]}")
        else:
            by_path[owner].append(line)
    results = []
    for case, path in zip(cases, paths):
        mine = by_path[display(path)]
        if len(mine) > 1:
            status, message = "error", "\n".join(mine)
        else:
            status, message = ("error", mine[0]) if mine else ("ok", "")
        problems = judge(case, path, out, status, message, float_output=True)
        if len(mine) > 1:
            problems.append(f"{len(mine)} error lines for one file")
        results.append(Result(mode, case.name, case.category, case.expect, _happened(status, message, path),
                              problems))
    failed = sum(1 for res in results if res.happened.startswith("error"))
    summary = f"{len(cases)} files: {len(cases) - failed} separated, 0 skipped, {failed} failed"
    if r.returncode is not None and summary not in r.stdout:
        whole.append(f"the summary line does not say {summary!r}")
    whole += no_temporaries(out)
    results.append(Result(mode, f"(one process, {len(cases)} files)", "whole batch", "exit 1",
                          f"exit {r.returncode}", whole))
    return results


def run_cli_each(cases: list[Case], root: Path, out: Path, model: str = "small", workers: int = 2,
                 timeout: float = 180) -> list[Result]:
    """One ``vocalsep separate -o OUT -- NAME`` per case, run in the corpus folder (so names
    with a leading dash are given as they are, after ``--``)."""
    def one(case: Case) -> Result:
        path = case.path(root)
        target = out / display(case.name).replace("/", "_")  # each case its own output folder
        r = vocalsep("separate", "-m", model, "-o", target.absolute(), "--", case.name, cwd=root,
                     timeout=timeout)
        lines = r.stderr.strip().splitlines()
        warned = [line for line in lines if line.startswith(WARNING_PREFIX)]  # e.g. truncated
        lines = [line for line in lines if not line.startswith(WARNING_PREFIX)]
        problems = []
        if r.returncode is None:
            status, message = "hang", f"no result after {timeout:.0f} s"
        elif "Traceback" in r.stderr + r.stdout:
            status, message = "crash", "a traceback was printed"
        elif r.returncode == 0:
            status, message = "ok", (warned[0] if warned else "")
            if lines:
                problems.append(f"exit 0 but stderr says {lines[0][:100]!r}")
        else:
            status, message = "error", (lines[0] if len(lines) == 1 else r.stderr.strip())
            if r.returncode != 1:
                problems.append(f"exit code {r.returncode}, expected 1")
            if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
                problems.append(f"{len(lines)} stderr lines, expected one 'vocalsep: error: ...'")
        problems += judge(case, path, target, status, message, named=case.name)
        problems += no_temporaries(target)
        return Result("cli", case.name, case.category, case.expect, _happened(status, message, case.name),
                      problems)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, cases))


#: the cases one process each in the quick campaign: a few of each kind of outcome, and the
#: names that need care on a command line
QUICK_EACH = ("-leading-dash.wav", "new\nline.wav", "silence_44k_stereo.flac", "len1_stereo.flac",
              "empty_mp3.mp3", "text_as_wav.wav", "folder_mp3.mp3", "missing.wav", "fifo.wav",
              "nan_block2_float_1ch.wav", "cut_data_wav24_at50pct.wav", "bad_rate3999.wav",
              "float_max.wav", "bad\nnewline.wav", "-bad-dash.wav")


def sample(cases: list[Case], names: tuple[str, ...] | None = None) -> list[Case]:
    """The cases named ``names``, or the first of each (category, expected outcome)."""
    if names is not None:
        return [case for case in cases if case.name in names]
    seen: set[tuple[str, str]] = set()
    picked = []
    for case in cases:
        if (case.category, case.expect) not in seen:
            seen.add((case.category, case.expect))
            picked.append(case)
    return picked


# --- outputs that cannot be written --------------------------------------------------------------

def _song(path: Path, seconds: float = 3.0, rate: int = 44100) -> Path:
    x = Signals(synthetic_seed(), 16000)(rate, 2, seconds=seconds)
    sf.write(path, x.T, rate, subtype="PCM_16")
    return path


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs on ``folder`` (root only); False where that is not possible."""
    if os.geteuid() != 0:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


def output_faults(work: Path, model: str = "small", quick: bool = False) -> list[Result]:
    """``vocalsep separate`` into outputs that cannot be written, or already exist (``quick``:
    without the cases tests/test_cli.py already covers: /dev/full, existing outputs)."""
    work.mkdir(parents=True, exist_ok=True)
    song = _song(work / "fault song.wav")
    results = []

    def expect_error(name: str, out: Path, *extra: str, must_say: str = "", limit: int | None = None,
                     left_alone: Path | None = None) -> None:
        before = _snapshot(left_alone) if left_alone else None
        r = vocalsep("separate", "-m", model, "-o", out, *extra, "--", song, limit_file_size=limit)
        lines = r.stderr.strip().splitlines()
        problems = []
        if r.returncode != 1:
            problems.append(f"exit code {r.returncode}, expected 1")
        if "Traceback" in r.stderr + r.stdout:
            problems.append("a traceback was printed")
        if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
            problems.append(f"stderr has {len(lines)} lines, expected one error line")
        line = lines[0] if lines else ""
        if str(song) not in line:
            problems.append("the message does not name the input")
        if must_say and must_say.lower() not in line.lower():
            problems.append(f"the message does not say {must_say!r}")
        if left_alone is not None and _snapshot(left_alone) != before:
            problems.append(f"{left_alone} was changed")
        elif left_alone is None and out.exists() and any(out.rglob("*")):
            problems.append(f"something was written under {out}")
        results.append(Result("output fault", name, "outputs", "error",
                              f"error: {line[len(ERROR_PREFIX):].replace(f'{work}/', '')}" if line
                              else f"exit {r.returncode}", problems))

    blocker = work / "a file"
    blocker.write_text("not a folder\n")
    expect_error("output folder below a regular file", blocker / "out", must_say="Not a directory",
                 left_alone=blocker)
    if not quick:
        expect_error("/dev/full as the output folder", Path("/dev/full"), must_say="Not a directory",
                     left_alone=Path("/dev/full"))
    expect_error("file size limit (RLIMIT_FSIZE 100 kB; a full disk without root)", work / "limited",
                 must_say="File too large", limit=100_000)
    full = work / "full disk"
    if _mount_tmpfs(full, "size=200k"):
        try:
            expect_error("full disk (a 200 kB tmpfs)", full / "out", must_say="No space left on device")
        finally:
            _umount(full)
    else:
        results.append(Result("output fault", "full disk (a 200 kB tmpfs)", "outputs", "error",
                              skipped="needs root to mount a tmpfs"))
    read_only = work / "read-only"
    if _mount_tmpfs(read_only, "ro,size=1m"):
        try:
            expect_error("read-only output folder (read-only tmpfs)", read_only / "out",
                         must_say="Read-only file system")
        finally:
            _umount(read_only)
    elif os.geteuid() != 0:
        read_only.mkdir()
        read_only.chmod(0o555)
        try:
            expect_error("read-only output folder (chmod 555)", read_only / "out", must_say="Permission denied")
        finally:
            read_only.chmod(0o755)
    else:
        results.append(Result("output fault", "read-only output folder", "outputs", "error",
                              skipped="root ignores chmod and cannot mount here"))
    # a stem path taken by a folder: refused before the other stem is replaced
    taken = work / "taken"
    folder = stem_folder(song, taken)
    (folder / "accompaniment.wav").mkdir(parents=True)
    (folder / "vocals.wav").write_bytes(b"old vocals")
    expect_error("a stem path is a folder (--force)", taken, "--force", must_say="is a directory",
                 left_alone=folder)
    if not quick:
        results += _existing_outputs(work, song, model)
    return results


def _snapshot(path: Path) -> dict:
    """Names, sizes and contents of ``path`` and what lies under it (to see that nothing changed)."""
    if not path.exists():
        return {}
    if not path.is_dir():
        return {"": (path.stat().st_mode, path.read_bytes() if path.is_file() else b"")}
    return {os.fsdecode(p.relative_to(path)): p.read_bytes() if p.is_file() else b"/" for p in path.rglob("*")}


def _existing_outputs(work: Path, song: Path, model: str) -> list[Result]:
    """Outputs that exist: skipped (unchanged) without ``--force``, replaced whole with it."""
    out = work / "existing"
    first = vocalsep("separate", "-m", model, "-o", out, "-q", "--", song)
    folder = stem_folder(song, out)
    problems = [] if first.returncode == 0 else [f"first run failed: {first.stderr.strip()[:100]}"]
    before = _snapshot(folder)
    again = vocalsep("separate", "-m", model, "-o", out, "--", song)
    lines = again.stderr.strip().splitlines()
    if again.returncode != 0 or len(lines) != 1 or "skipped" not in lines[0]:
        problems.append(f"rerun: exit {again.returncode}, stderr {lines}")
    if _snapshot(folder) != before:
        problems.append("a rerun without --force changed the outputs")
    results = [Result("output fault", "outputs exist, no --force", "outputs", "skipped, unchanged",
                      "skipped" if not problems else "see problems", problems)]
    forced = vocalsep("separate", "-m", model, "-o", out, "-q", "--force", "--", song)
    problems = [] if forced.returncode == 0 else [f"exit {forced.returncode}: {forced.stderr.strip()[:100]}"]
    problems += check_outputs(song, folder) + no_temporaries(out)
    results.append(Result("output fault", "outputs exist, --force", "outputs", "replaced whole",
                          "replaced" if not problems else "see problems", problems))
    return results


# --- kill -9 ------------------------------------------------------------------------------------

def _popen(args: list[str | os.PathLike], cwd: Path | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "VOCALSEP_DEBUG"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "vocalsep.cli", *map(os.fspath, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_and_kill(args: list, at: float | Callable[[], bool], timeout: float = 600) -> tuple[bool, str]:
    """Run ``vocalsep ARGS``; ``kill -9`` it after ``at`` seconds or once ``at()`` is true.
    Returns (killed, stderr); not killed means it finished first."""
    proc = _popen(args)
    started = time.monotonic()
    while proc.poll() is None:
        now = time.monotonic() - started
        if (at() if callable(at) else now >= at) or now > timeout:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True, ""
        time.sleep(0.01)
    return False, proc.communicate()[1]


def _timed(args: list, out: Path, timeout: float = 900,
           ready: Callable[[Path], bool] = lambda out: out.exists() and any(out.rglob("*.part")),
           ) -> tuple[int | None, str, float, float]:
    """Run ``vocalsep ARGS``: (exit code, stderr, seconds until ``ready(out)`` (default: a
    temporary file appeared under ``out``), seconds in all)."""
    proc = _popen(args)
    started = time.monotonic()
    first = None
    while proc.poll() is None and time.monotonic() - started < timeout:
        if first is None and ready(out):
            first = time.monotonic() - started
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
    stderr = proc.communicate()[1]
    total = time.monotonic() - started
    return proc.returncode, stderr, first if first is not None else 0.0, total


def kill_batch(work: Path, kills: int = 3, seed: int = 0, songs: int = 4, seconds: float = 20.0,
               model: str = "small") -> list[Result]:
    """``kill -9`` a batch at random moments while it writes, check what it left, rerun until
    it finishes.

    Every stem file in place must equal the uninterrupted run's byte for byte, the stems of a
    song appear together, and the final rerun must finish every song and leave no temporaries.
    """
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "songs"
    folder.mkdir()
    for i in range(songs):
        _song(folder / f"song {i}.wav", seconds=seconds * (1 + i % 2))
    ref, out = work / "reference", work / "out"
    code, stderr, first, total = _timed(["separate", "-m", model, "-o", ref, "-q", folder], ref)
    if code != 0:
        return [Result("kill -9", "batch", "faults", "resumes", "reference run failed", [stderr.strip()[:200]])]
    reference = {os.fsdecode(p.relative_to(ref)): p.read_bytes() for p in ref.rglob("*.wav")}
    per_song = (total - first) / songs
    results = []
    for k in range(kills):
        left = songs - _songs_done(out)
        if not left:
            break
        # a random moment once this run writes: within the time its remaining songs take
        delay = rng.uniform(0, per_song * left)
        killed, stderr = _run_and_kill(["separate", "-m", model, "-o", out, "-q", folder],
                                       _writing_for(out, delay))
        bad = [line for line in stderr.splitlines() if "error" in line or "Traceback" in line]
        problems = [f"stderr: {bad[0][:100]}"] if bad else []
        done = pending = 0
        for song in sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []:
            visible = sorted(p.name for p in song.iterdir() if not p.name.startswith("."))
            if visible and visible != ["accompaniment.wav", "vocals.wav"]:
                problems.append(f"{song.name}: only {visible} in place")
            for name in visible:
                if (song / name).read_bytes() != reference.get(f"{song.name}/{name}"):
                    problems.append(f"{song.name}/{name}: differs from the uninterrupted run (partial?)")
            done += bool(visible)
            pending += not visible
        results.append(Result("kill -9", f"batch, kill {k + 1}, {delay:.1f} s into writing", "faults",
                              "no partial output",
                              f"{done} of {songs} songs in place, {pending} begun"
                              + ("" if killed else " (finished before the kill)"), problems))
    final = vocalsep("separate", "-m", model, "-o", out, folder)
    problems = [] if final.returncode == 0 else [f"rerun: exit {final.returncode}: {final.stderr.strip()[:150]}"]
    got = {os.fsdecode(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.wav")}
    if got != reference:
        problems.append(f"after the rerun {len(got)} stems, {sum(got.get(k) == v for k, v in reference.items())} "
                        f"equal to the {len(reference)} of the uninterrupted run")
    problems += no_temporaries(out)
    summary = next((line for line in final.stdout.splitlines() if " files: " in line), "")
    summary = summary.split(";")[0].strip()
    results.append(Result("kill -9", "batch, rerun", "faults", "finishes the rest, same bytes",
                          (summary + ", stems equal to an uninterrupted run") if not problems else summary,
                          problems))
    return results


def _songs_done(out: Path) -> int:
    """Song folders under ``out`` whose stems are in place."""
    return sum(1 for p in out.iterdir() if (p / "vocals.wav").exists()) if out.exists() else 0


def _writing_for(out: Path, seconds: float) -> Callable[[], bool]:
    """True ``seconds`` after a temporary file first appeared under ``out``."""
    began: list[float] = []

    def due() -> bool:
        if not began and out.exists() and any(out.rglob("*.part")):
            began.append(time.monotonic())
        return bool(began) and time.monotonic() - began[0] >= seconds
    return due


def _training_data(work: Path, tracks: int, seconds: float) -> tuple[Path, Path]:
    """Folders of ``<track>/{vocals,accompaniment}.wav`` at 16 kHz: synthetic voices and chords."""
    rng = np.random.default_rng(0)
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    folders = (work / "train", work / "valid")
    for folder, count in zip(folders, (tracks, 1)):
        for i in range(count):
            f0 = rng.uniform(150, 400) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(4, 6) * t))
            phase = 2 * np.pi * np.cumsum(f0) / rate
            gate = (np.sin(2 * np.pi * 0.7 * t + i) > -0.3).astype(float)
            voice = gate * sum(np.sin(k * phase) / k for k in range(1, 10)) * 0.2
            chord = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 600, 3)) * 0.1
            chord += 0.02 * rng.standard_normal(t.size)
            (folder / f"track{i}").mkdir(parents=True)
            sf.write(folder / f"track{i}" / "vocals.wav", voice.astype(np.float32), rate)
            sf.write(folder / f"track{i}" / "accompaniment.wav", chord.astype(np.float32), rate)
    return folders


def check_run_folder(run: Path) -> list[str]:
    """Problems with a training run folder left at any moment: every file in place loads."""
    import torch

    from ..models import load

    problems = []
    epoch = 0
    if (run / "last.pt").exists():
        try:
            state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
            epoch = state["epoch"]
            assert len(state["history"]) == epoch
        except Exception as err:  # noqa: BLE001
            problems.append(f"last.pt does not load: {type(err).__name__}: {str(err)[:80]}")
    if (run / "best.pt").exists():
        try:
            load(run / "best.pt")
        except ValueError as err:
            problems.append(f"best.pt does not load: {err}")
    if (run / "history.csv").exists():
        with open(run / "history.csv") as f:
            rows = list(csv.DictReader(f))
        epochs = [int(r["epoch"]) for r in rows]
        if epochs != list(range(1, len(epochs) + 1)):
            problems.append(f"history.csv epochs {epochs}")
        elif not epoch <= len(epochs) <= epoch + 1:
            problems.append(f"history.csv has {len(epochs)} epochs, last.pt {epoch}")
    if (run / "loss.png").exists() and (run / "loss.png").read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        problems.append("loss.png is not a PNG")
    return problems


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return [{k: r[k] for k in ("epoch", "train_loss", "valid_loss")} for r in csv.DictReader(f)]


def kill_train(work: Path, kills: int = 2, seed: int = 0, epochs: int = 4, steps: int = 3,
               reference: bool = True) -> list[Result]:
    """``kill -9`` a training run (``vocalsep train unet``) at random moments; after each kill
    every file of the run folder must load; the rerun resumes from the last checkpoint (the
    epochs it had finished are kept as they were) and, with ``reference``, ends with the same
    losses as a run that was never interrupted."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    train_dir, valid_dir = _training_data(work, tracks=3, seconds=4.0)
    args = ["train", "unet", "--data", train_dir, "--valid", valid_dir, "--epochs", str(epochs),
            "--steps-per-epoch", str(steps), "--batch-size", "4", "--threads", "1", "-q"]
    results = []
    startup = per_epoch = 0.0
    if reference:
        code, stderr, first, total = _timed([*args, "--out", work / "reference"], work / "reference",
                                            ready=lambda out: (out / "history.csv").exists())
        if code != 0:
            return [Result("kill -9", "training", "faults", "resumes", "reference run failed",
                           [stderr.strip()[-200:]])]
        per_epoch = (total - first) / max(1, epochs - 1)
        startup = max(0.0, first - per_epoch)
    run = work / "run"
    for k in range(kills):
        done = len(_history(run)) if (run / "history.csv").exists() else 0
        if done == epochs:
            break
        if reference:  # a random moment of what is left: start-up and the remaining epochs
            when: float | Callable[[], bool] = rng.uniform(0, 0.9 * (startup + (epochs - done) * per_epoch))
            label = f"at {when:.1f} s"
        else:
            before = _history(run) if (run / "history.csv").exists() else []
            when = _after_new_checkpoint(run, len(before))
            label = "just after a checkpoint"
        kept = _history(run) if (run / "history.csv").exists() else []
        killed, stderr = _run_and_kill([*args, "--out", run], when, timeout=900)
        problems = check_run_folder(run) if run.exists() else []
        now = _history(run) if (run / "history.csv").exists() else []
        if now[:len(kept)] != kept:
            problems.append("epochs finished before this run were changed (it started over)")
        results.append(Result("kill -9", f"training, kill {k + 1} {label}", "faults",
                              "checkpoint loads", f"{len(now)} of {epochs} epochs kept"
                              + ("" if killed else " (finished before the kill)"), problems))
    kept = _history(run) if (run / "history.csv").exists() else []
    final = vocalsep(*args, "--out", run, timeout=900)
    problems = [] if final.returncode == 0 else [f"rerun: exit {final.returncode}: {final.stderr.strip()[-150:]}"]
    problems += check_run_folder(run)
    history = _history(run) if (run / "history.csv").exists() else []
    if [int(h["epoch"]) for h in history] != list(range(1, epochs + 1)):
        problems.append(f"history has epochs {[h['epoch'] for h in history]}")
    if history[:len(kept)] != kept:
        problems.append("the rerun changed epochs that were already finished (it started over)")
    if reference and history != _history(work / "reference"):
        problems.append("losses differ from the uninterrupted run")
    problems += [f"left in the run folder: {p.name}" for p in run.glob(".*")]
    results.append(Result("kill -9", "training, rerun", "faults", "resumes from the checkpoint",
                          (f"resumed at epoch {len(kept) + 1}, finished {len(history)} epochs" if len(kept) < epochs
                           else f"nothing left to do, {len(history)} epochs")
                          + (", losses equal to the uninterrupted run" if reference and not problems else ""),
                          problems))
    return results


def _after_new_checkpoint(run: Path, epochs_before: int) -> Callable[[], bool]:
    """True once ``run/last.pt`` holds more epochs than ``epochs_before`` (its history.csv says so)."""
    def ready() -> bool:
        try:
            return len(_history(run)) > epochs_before and (run / "last.pt").exists()
        except (OSError, KeyError, ValueError):
            return False
    return ready


# --- the table -----------------------------------------------------------------------------------

CORPUS_MODES = ("api", "cli batch", "cli batch -j 2", "cli")
MODE_TITLES = {"api": "Python API", "cli batch": "CLI, all in one process", "cli batch -j 2": "CLI, -j 2",
               "cli": "CLI, a process each"}


def report(results: list[Result]) -> str:
    """Markdown: the corpus (a row per kind of file, a column per way it was run) and the
    faults (a row each)."""
    modes = [m for m in CORPUS_MODES if any(r.mode == m for r in results)]
    groups: dict[tuple[str, str], dict[str, list[Result]]] = {}
    for r in results:
        if r.mode in modes and not r.case.startswith("("):
            groups.setdefault((r.category, r.expect), {}).setdefault(r.mode, []).append(r)
    head = "| case | files | expected | " + " | ".join(MODE_TITLES[m] for m in modes) + " | what happened |"
    lines = [head, "|---|---:|---|" + "---:|" * len(modes) + "---|"]
    for (category, expect), by_mode in groups.items():
        files = max(len(rows) for rows in by_mode.values())
        cells = []
        for m in modes:
            rows = by_mode.get(m, [])
            good = sum(r.passed for r in rows)
            cells.append("—" if not rows else f"{good}/{len(rows)}" + ("" if good == len(rows) else " **FAILED**"))
        lines.append(f"| {_cell(category)} | {files} | {expect} | " + " | ".join(cells)
                     + f" | {_cell(_what(by_mode))} |")
    whole = [r for r in results if r.mode in modes and r.case.startswith("(")]
    for r in whole:
        lines.append(f"| {MODE_TITLES[r.mode]} {r.case} | | {r.expect} | " + " | ".join(
            ("yes" if r.passed else "**NO**") if m == r.mode else "" for m in modes) + f" | {_cell(r.happened)} |")
    lines += ["", "| fault | expected | what happened | passed |", "|---|---|---|---|"]
    for r in results:
        if r.mode not in modes:
            what = f"not run: {r.skipped}" if r.skipped else r.happened
            passed = "—" if r.skipped else ("yes" if r.passed else "**NO**")
            lines.append(f"| {r.mode}: {_cell(r.case)} | {r.expect} | {_cell(what)} | {passed} |")
    return "\n".join(lines)


def _what(by_mode: dict[str, list[Result]]) -> str:
    """The outcomes of a group (the CLI's when it ran): counts, and the commonest message."""
    rows = next((by_mode[m] for m in ("cli batch", "cli", "api") if m in by_mode), [])
    kinds: dict[str, int] = {}
    messages: dict[str, int] = {}
    for r in rows:
        kind = "error" if r.happened.startswith("error") else r.happened
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "error":
            reason = r.happened[len("error: "):]
            messages[reason] = messages.get(reason, 0) + 1
    text = ", ".join(f"{k} {n}" for k, n in kinds.items()) if len(kinds) > 1 else next(iter(kinds), "")
    if "ok" in kinds and "error" not in kinds:
        text += ": stems checked"
    if messages:
        common = max(messages, key=messages.get)
        text += f" — e.g. “{common}”" + (f" (+{len(messages) - 1} other reasons)" if len(messages) > 1 else "")
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:160]


def failures(results: list[Result]) -> str:
    """One line per failed case: how, which, what went wrong."""
    return "\n".join(f"{r.mode}: {display(r.case)}: {'; '.join(r.problems)}" for r in results if r.problems)


def write_csv(results: list[Result], path: Path) -> None:
    """Every row (case by case) as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", errors="backslashreplace") as f:
        w = csv.writer(f)
        w.writerow(["how", "case", "category", "expected", "happened", "passed", "problems"])
        for r in results:
            w.writerow([r.mode, display(r.case), r.category, r.expect, r.happened or r.skipped,
                        "skipped" if r.skipped else ("yes" if r.passed else "no"), "; ".join(r.problems)])


def scratch(prefix: str = "vocalsep-reliability-") -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
