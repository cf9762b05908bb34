"""Audio input and output: decode any common format, resample, write atomically.

Signals are float32 NumPy arrays shaped ``(channels, samples)``; rates are in Hz.
wav/flac/ogg/aiff are read with soundfile; anything else (mp3, m4a, aac, mp4 ...) through the
``ffmpeg`` binary. Every problem is raised as :class:`AudioError`, whose message names the file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

MIN_RATE = 4_000
MAX_RATE = 384_000
MAX_CHANNELS = 32
FFMPEG_FORMATS = {"mp3": "mp3", "m4a": "ipod", "aac": "adts", "mp4": "mp4", "opus": "opus"}
SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF"}
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


class AudioError(ValueError):
    """A file could not be read or written; ``str()`` is one line naming the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Audio:
    """Decoded audio: ``samples`` is float32 ``(channels, frames)``, ``rate`` in Hz."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.rate


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied (not readable)")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _read_soundfile(path: Path) -> Audio:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return Audio(np.ascontiguousarray(data.T), int(rate))


def _ffprobe(path: Path) -> tuple[int, int]:
    """(rate, channels) of the first audio stream, via ffprobe."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels", "-of", "json", "--", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    streams = json.loads(out.stdout or "{}").get("streams", []) if out.returncode == 0 else []
    if not streams:
        raise AudioError(path, "not a readable audio file (no audio stream found)")
    return int(streams[0]["sample_rate"]), int(streams[0]["channels"])


def _read_ffmpeg(path: Path) -> Audio:
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, "needs ffmpeg to decode this format, and ffmpeg is not installed")
    rate, channels = _ffprobe(path)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=3600)
    if out.returncode != 0:
        msg = out.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, "could not be decoded" + (f" ({msg[-1][:120]})" if msg else ""))
    data = np.frombuffer(out.stdout, dtype="<f4")
    data = data[: len(data) - len(data) % channels].reshape(-1, channels).T
    return Audio(np.ascontiguousarray(data), rate)


def read_audio(path: str | os.PathLike) -> Audio:
    """Decode ``path`` to float32 ``(channels, samples)``; raise :class:`AudioError` if unusable."""
    path = Path(path)
    _check_readable(path)
    ext = path.suffix.lower().lstrip(".")
    try:
        if ext in SOUNDFILE_FORMATS or ext not in FFMPEG_FORMATS:
            try:
                audio = _read_soundfile(path)
            except (sf.LibsndfileError, RuntimeError, ValueError) as err:
                if ext in SOUNDFILE_FORMATS:
                    raise AudioError(path, f"not a readable audio file ({str(err).splitlines()[0][:120]})")
                audio = _read_ffmpeg(path)
        else:
            audio = _read_ffmpeg(path)
    except subprocess.TimeoutExpired:
        raise AudioError(path, "decoding timed out") from None
    _validate(path, audio)
    return audio


def _validate(path: Path, audio: Audio) -> None:
    if audio.samples.shape[1] == 0:
        raise AudioError(path, "contains no audio samples")
    if not MIN_RATE <= audio.rate <= MAX_RATE:
        raise AudioError(path, f"unsupported sample rate {audio.rate} Hz "
                               f"(supported: {MIN_RATE}..{MAX_RATE} Hz)")
    if audio.channels > MAX_CHANNELS:
        raise AudioError(path, f"too many channels ({audio.channels}; at most {MAX_CHANNELS})")
    if not np.isfinite(audio.samples).all():
        raise AudioError(path, "contains NaN or infinite samples")


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``(channels, samples)`` from ``rate_in`` to ``rate_out`` Hz (soxr, high quality)."""
    if rate_in == rate_out:
        return samples
    import soxr

    out = soxr.resample(np.ascontiguousarray(samples.T), rate_in, rate_out, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, samples.shape[0]).T)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: ``(channels, samples)`` → ``(1, samples)``."""
    return samples.mean(axis=0, keepdims=True)


def prepare_output(samples: np.ndarray, clip: str = "rescale") -> np.ndarray:
    """Make ``samples`` safe to write in [-1, 1].

    ``clip="rescale"`` divides the whole signal by its peak when the peak exceeds 1 (no
    distortion, lower level); ``"clamp"`` clips samples to [-1, 1]; ``"none"`` leaves them
    (only sensible for float output).
    """
    if clip not in ("rescale", "clamp", "none"):
        raise ValueError(f"unknown clip mode {clip!r} (rescale, clamp or none)")
    if clip == "none":
        return samples
    peak = float(np.abs(samples).max(initial=0.0))
    if peak <= 1.0:
        return samples
    if clip == "rescale":
        return samples / peak
    return np.clip(samples, -1.0, 1.0)


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int, bits: str = "16",
                clip: str = "rescale") -> Path:
    """Write ``(channels, samples)`` to ``path`` atomically (temp file in the same folder, rename).

    The format follows the suffix (wav, flac, ogg, or mp3/m4a through ffmpeg). ``bits`` is
    ``"16"``, ``"24"`` or ``"float"`` for wav/flac. A failure leaves no file behind.
    """
    return write_audio_files({path: samples}, rate, bits, clip)[0]


def write_audio_files(outputs: dict, rate: int, bits: str = "16", clip: str = "rescale") -> list[Path]:
    """Write several files all-or-nothing: every one goes to a temp file first, and only when
    all are complete are they renamed into place. ``outputs``: path → ``(channels, samples)``."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, samples in outputs.items():
            path = Path(path)
            temps.append((_write_temp(path, samples, rate, bits, clip), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path in temps]


def _write_temp(path: Path, samples: np.ndarray, rate: int, bits: str, clip: str) -> str:
    """Encode ``samples`` into a new temp file beside ``path``; return the temp file's name."""
    ext = path.suffix.lower().lstrip(".")
    if ext not in SOUNDFILE_FORMATS and ext not in FFMPEG_FORMATS:
        raise AudioError(path, f"unknown output format '.{ext}'")
    if bits not in SUBTYPES:
        raise AudioError(path, f"unsupported bit depth {bits!r} (16, 24 or float)")
    if not np.isfinite(samples).all():
        raise AudioError(path, "refusing to write NaN or infinite samples")
    data = prepare_output(samples, "none" if bits == "float" and clip == "none" else clip)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
        os.close(fd)
    except OSError as err:
        raise AudioError(path, f"cannot write here ({err.strerror or err})") from None
    try:
        if ext in SOUNDFILE_FORMATS:
            subtype = "VORBIS" if ext == "ogg" else SUBTYPES[bits]
            sf.write(tmp, data.T, rate, format=SOUNDFILE_FORMATS[ext], subtype=subtype)
        else:
            _write_ffmpeg(tmp, data, rate, FFMPEG_FORMATS[ext], path)
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise AudioError(path, f"cannot write ({err.strerror or err})") from None
        if isinstance(err, (sf.LibsndfileError, RuntimeError)):
            raise AudioError(path, f"cannot write ({err})") from None
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_ffmpeg(tmp: str, data: np.ndarray, rate: int, fmt: str, path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, "writing this format needs ffmpeg, which is not installed")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate),
           "-ac", str(data.shape[0]), "-i", "-", "-ar", str(rate), "-f", fmt, tmp]
    out = subprocess.run(cmd, input=np.ascontiguousarray(data.T, dtype="<f4").tobytes(),
                         capture_output=True)
    if out.returncode != 0:
        raise AudioError(path, "ffmpeg could not encode: "
                         + out.stderr.decode(errors="replace").strip()[-120:])
