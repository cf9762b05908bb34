"""Shared fixtures: where the real data lives, small synthetic signals, running the CLI.

Real data is read in place from ``<repo>/../shared`` (never copied into the repo), or from
``$VOCALSEP_SHARED``. Outside CI a fixture that needs missing data skips its test; in CI
(``CI=true``) missing data fails the test, so real-data tests can never silently vanish.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOCALSEP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MIR1K = SHARED / "data" / "mir1k"
MUSDB = SHARED / "data" / "musdb18-7"

#: MIR-1K test clips used for quality checks (any that exist are used)
QUALITY_CLIPS = ("Ani_1_01", "bobon_1_01", "tammy_1_01")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine is shared with training runs: keep torch on one core."""
    torch.set_num_threads(1)
    yield


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        (pytest.fail if IN_CI else pytest.skip)(f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED, "shared data folder")


@pytest.fixture(scope="session")
def mir1k_dir(shared_dir) -> Path:
    return _need(MIR1K, "MIR-1K")


@pytest.fixture(scope="session")
def mir1k_train_dir(mir1k_dir) -> Path:
    return _need(mir1k_dir / "train", "MIR-1K train clips")


@pytest.fixture(scope="session")
def mir1k_valid_dir(mir1k_dir) -> Path:
    return _need(mir1k_dir / "valid", "MIR-1K valid clips")


@pytest.fixture(scope="session")
def mir1k_test_dir(mir1k_dir) -> Path:
    return _need(mir1k_dir / "test", "MIR-1K test clips")


@pytest.fixture(scope="session")
def mir1k_train_files(mir1k_train_dir) -> list[Path]:
    files = sorted(mir1k_train_dir.glob("*.flac"))
    if len(files) < 6:
        pytest.skip("fewer than 6 MIR-1K training clips")
    return files


@pytest.fixture(scope="session")
def mir1k_test_clip(mir1k_test_dir) -> Path:
    """One real MIR-1K test clip (16 kHz stereo FLAC: left accompaniment, right vocals)."""
    preferred = mir1k_test_dir / f"{QUALITY_CLIPS[0]}.flac"
    if preferred.exists():
        return preferred
    files = sorted(mir1k_test_dir.glob("*.flac"))
    if not files:
        pytest.skip("no MIR-1K test clips")
    return files[0]


@pytest.fixture(scope="session")
def mir1k_quality_clips(mir1k_test_dir) -> list[Path]:
    files = [mir1k_test_dir / f"{n}.flac" for n in QUALITY_CLIPS]
    files = [f for f in files if f.exists()] or sorted(mir1k_test_dir.glob("*.flac"))[:3]
    if not files:
        pytest.skip("no MIR-1K test clips")
    return files


@pytest.fixture(scope="session")
def mir1k_stems(mir1k_test_clip):
    """(vocals, accompaniment, rate) of the test clip, float32 1-D arrays."""
    from vocalsep.audio import read_audio

    a = read_audio(mir1k_test_clip)
    return a.samples[1].copy(), a.samples[0].copy(), a.rate


@pytest.fixture(scope="session")
def musdb_root(shared_dir) -> Path:
    root = _need(MUSDB, "MUSDB18 (7 s excerpts)")
    if not any((root / "train").glob("*.stem.mp4")):
        pytest.skip("no MUSDB18 .stem.mp4 files")
    return root


@pytest.fixture(scope="session")
def musdb_track(musdb_root) -> Path:
    return sorted((musdb_root / "train").glob("*.stem.mp4"))[0]


@pytest.fixture(scope="session")
def stempeg_example() -> Path:
    stempeg = pytest.importorskip("stempeg")
    return _need(Path(stempeg.example_stem_path()), "stempeg example song")


@pytest.fixture(scope="session")
def example_song(stempeg_example):
    """The stempeg example song (MUSDB18 test track, 44.1 kHz stereo, about 6 s): mixture and
    true vocals, float32 ``(2, n)``, and the rate."""
    import stempeg

    stems, rate = stempeg.read_stems(str(stempeg_example), stem_id=[0, 4])
    mixture, vocals = (np.ascontiguousarray(s.T, dtype=np.float32) for s in stems)
    return mixture, vocals, int(rate)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed")
    return exe


def tone(rate: int, channels: int = 1, seconds: float = 0.1, freq: float = 440.0,
         amplitude: float = 0.5) -> np.ndarray:
    """float32 ``(channels, samples)`` sine, each channel with a different phase."""
    t = np.arange(int(round(rate * seconds))) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * freq * t + c) for c in range(channels)]).astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - estimate) ** 2), 1e-20)))


def run_cli(*args: str | os.PathLike, cwd: str | os.PathLike | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m vocalsep.cli ARGS`` in a subprocess (no shell), one torch thread."""
    env = {k: v for k, v in os.environ.items() if k != "VOCALSEP_DEBUG"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "vocalsep.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def check_stems(stems: dict, samples: np.ndarray, dtype=None) -> None:
    """A separation's stems: all of ``vocalsep.separate.STEMS``, each finite and shaped like
    ``samples`` (and of ``dtype`` when given), vocals + accompaniment == the input."""
    from vocalsep.separate import STEMS

    assert set(stems) == set(STEMS)
    for s in STEMS:
        assert stems[s].shape == samples.shape
        if dtype is not None:
            assert stems[s].dtype == dtype
        assert np.isfinite(stems[s]).all()
    assert np.abs(stems["vocals"] + stems["accompaniment"] - samples).max() < 1e-5


def check_silence_stays_silence(separator, channels: int, length: int, rate: int) -> None:
    """``separator`` turns ``length`` zero samples a channel into all-zero stems of that shape."""
    from vocalsep.separate import STEMS

    samples = np.zeros((channels, length), np.float32)
    stems = separator.separate(samples, rate)
    for s in STEMS:
        assert stems[s].shape == samples.shape
        assert np.all(stems[s] == 0)


# ---------------------------------------------------------------- vocalsep serve
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vocalsep serve`` in a subprocess (one torch thread), on a free loopback port;
    ``args``: more ``serve`` options."""

    def __init__(self, data_dir: Path, model: str = "small", workers: int = 1,
                 max_upload_mb: float = 200, timeout: float = 90, args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        env = {k: v for k, v in os.environ.items() if k != "VOCALSEP_DEBUG"}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        for _ in range(3):  # another process may take the port between probe and bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vocalsep.cli", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "-m", model, "--workers", str(workers),
                 "--max-upload-mb", str(max_upload_mb), *args],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if self._wait_ready(timeout):
                return
            output = self.stop()
            if "address already in use" not in output.lower():
                raise RuntimeError(f"vocalsep serve did not start:\n{output}")
        raise RuntimeError("vocalsep serve: no free port")

    def _wait_ready(self, timeout: float) -> bool:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url("/api/health"), timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                time.sleep(0.2)
        return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: Path, name: str | None = None, client=None):
        """Upload ``path`` (as ``name``) to ``/api/jobs``; the ``httpx`` response."""
        import httpx

        client = client or httpx
        with open(path, "rb") as f:
            return client.post(self.url("/api/jobs"), files={"file": (name or path.name, f)}, timeout=30)

    def wait(self, job_id: str, timeout: float = 120, client=None) -> dict:
        """The job once done or failed."""
        import httpx

        client = client or httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(self.url(f"/api/jobs/{job_id}"), timeout=10).json()
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} not finished after {timeout} s: {job}")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server; its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""
