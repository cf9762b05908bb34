"""Audio input and output: decode any common format, resample, write atomically.

Signals are float32 NumPy arrays shaped ``(channels, samples)``; rates are in Hz.
wav/flac/ogg/aiff are read with soundfile; anything else (mp3, m4a, aac, mp4 ...) through the
``ffmpeg`` binary. Every problem is raised as :class:`AudioError`, whose message names the file.

Files are also streams of blocks (:class:`AudioSource`, :class:`StemWriter`), so that memory
stays at a few blocks whatever a file's length; :func:`read_audio` and
:func:`write_audio_files` are the whole-signal forms of the same code. Writing is
all-or-nothing: each stem goes to a temporary file beside its target while its peak is
tracked. A WAV/FLAC/AIFF stem is written straight into its format while it stays within full
scale; any other stem, or one that goes over full scale (and is to be rescaled by its peak),
continues in a float32 temporary that :meth:`StemWriter.finish` encodes at the end (with the
clip handling: rescale by the peak, or clamp). Only when every stem is complete are they renamed
into place. An error or an interruption removes every temporary file and leaves whatever was
there before untouched.

ffmpeg and ffprobe only open local files (``file:`` paths, no other protocol) with the demuxers
of :data:`FFMPEG_DEMUXERS`, so a playlist or a reference file disguised as audio cannot make
them read other files or URLs.
"""
from __future__ import annotations

import json
import os
import re
from glob import escape as glob_escape
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .timing import stage

MIN_RATE = 4_000
MAX_RATE = 384_000
MAX_CHANNELS = 32
#: the largest sample magnitude accepted (200 dB above full scale): beyond it a float file is
#: corrupt, and the transforms could overflow float32 into infinities
MAX_LEVEL = 1e10
FFMPEG_FORMATS = {"mp3": "mp3", "m4a": "ipod", "aac": "adts", "mp4": "mp4", "opus": "opus"}
SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF"}
#: the only demuxers ffmpeg/ffprobe may use on an input (mov covers mp4/m4a, ogg covers opus)
FFMPEG_DEMUXERS = "mp3,mov,ogg,aac,wav,flac,aiff,matroska,asf,w64"
#: ffmpeg/ffprobe options before an input: local files only, known audio containers only
FFMPEG_INPUT = ["-protocol_whitelist", "file,pipe", "-format_whitelist", FFMPEG_DEMUXERS]
#: lossless formats written straight into their final form while no sample needs rescaling
DIRECT_FORMATS = ("wav", "flac", "aiff", "aif")
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


#: control characters of a file name, escaped in messages (a newline would split the line)
_ESCAPES = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


class AudioError(ValueError):
    """A file could not be read or written; ``str()`` is one line naming the file (``path``
    keeps the name as given; the message escapes its control characters)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path.translate(_ESCAPES)}: {problem}")


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


def check_readable(path: Path) -> None:
    """Raise :class:`AudioError` naming ``path`` if it cannot be an audio file to read: missing,
    a folder, a pipe or device, unreadable, or empty."""
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not path.is_file():  # reading a pipe would wait forever, a device never end
        raise AudioError(path, "not a regular file (a pipe, device or socket)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied (not readable)")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _ffprobe(path: Path) -> tuple[int, int, float | None]:
    """(rate, channels, duration in s or None) of the first audio stream, via ffprobe."""
    cmd = ["ffprobe", "-v", "error", *FFMPEG_INPUT, "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration", "-of", "json", _ffmpeg_url(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AudioError(path, "not a readable audio file (ffprobe gave no answer in 60 s)") from None
    streams = json.loads(out.stdout or "{}").get("streams", []) if out.returncode == 0 else []
    if not streams:
        raise AudioError(path, "not a readable audio file (no audio stream found)")
    try:
        duration = float(streams[0].get("duration"))
    except (TypeError, ValueError):
        duration = None
    return int(streams[0]["sample_rate"]), int(streams[0]["channels"]), duration


def live_source(source: str, rate: int | None = None, channels: int | None = None
                ) -> tuple[list[str], int, int]:
    """What ``vocalsep live`` decodes: ``source`` is a local file, or a URL with a scheme
    (``http://``, ``rtmp://`` ... whatever this ffmpeg reads). Returns ffmpeg's input arguments
    and the rate and channel count to decode to (given, or the source's own); AudioError if no
    audio stream is found."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.I):
        url = ["-i", source]
    else:
        if not Path(source).is_file():
            raise AudioError(Path(source), "no such file")
        url = [*FFMPEG_INPUT, "-i", _ffmpeg_url(Path(source))]
    if rate is None or channels is None:
        probe = subprocess.run(["ffprobe", "-v", "error", *url[:-2], "-select_streams", "a:0",
                                "-show_entries", "stream=sample_rate,channels", "-of", "json", url[-1]],
                               capture_output=True, text=True, timeout=60)
        streams = json.loads(probe.stdout or "{}").get("streams", []) if probe.returncode == 0 else []
        if not streams:
            raise AudioError(Path(source), "not a readable audio stream (no audio found)")
        rate = rate if rate is not None else int(streams[0]["sample_rate"])
        channels = channels if channels is not None else int(streams[0]["channels"])
    return url, rate, channels


def start_live_decoder(url: list[str], rate: int, channels: int, log) -> subprocess.Popen:
    """ffmpeg decoding ``url`` (from :func:`live_source`) as it goes: its first audio stream,
    float32 little-endian samples, interleaved, at ``rate`` Hz with ``channels``, on its stdout;
    its messages go to ``log`` (a file: a pipe nobody reads would fill and stall it)."""
    return subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", *url, "-map", "0:a:0", "-f", "f32le",
                             "-ar", str(rate), "-ac", str(channels), "-"],
                            stdout=subprocess.PIPE, stderr=log)


def _ffmpeg_url(path: Path) -> str:
    """``path`` as an ffmpeg input that is always a local file (never ``http:``, ``pipe:`` ...)."""
    return "file:" + os.path.abspath(path)


#: libsndfile's header log when a WAV 'data' / AIFF 'SSND' chunk is longer than the file
_DECLARED = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


def _truncation(info) -> str | None:
    """How a file is cut short, if its header announces more sample bytes than it holds
    (sizes from 0x7F000000 up are placeholders of writers that stream, e.g. ffmpeg to a pipe)."""
    match = _DECLARED.search(info.extra_info or "")
    if not match:
        return None
    declared, present = int(match[1]), int(match[2])
    if declared >= 0x7F000000 or present >= declared:
        return None
    return f"truncated (its header announces {declared} bytes of samples, the file holds {present})"


def _sf_reason(err: Exception) -> str:
    """libsndfile's reason, without soundfile's "Error opening b'<path>': " prefix."""
    text = getattr(err, "error_string", None) or str(err) or type(err).__name__
    return text.splitlines()[0][:120]


def _write_reason(err: Exception) -> str:
    """The OS's reason for a failed write (libsndfile only says "System error.")."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    code = getattr(getattr(sf, "_ffi", None), "errno", 0)  # errno of libsndfile's last call
    return os.strerror(code) if "System error" in text and code else text


def read_audio(path: str | os.PathLike) -> Audio:
    """Decode ``path`` to float32 ``(channels, samples)``; raise :class:`AudioError` if unusable."""
    source = AudioSource(path)
    blocks = list(source.blocks(1 << 20))
    return Audio(np.concatenate(blocks, axis=1), source.rate)


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
    outputs = {Path(p): np.asarray(x, dtype=np.float32) for p, x in outputs.items()}
    writer = StemWriter({p: p for p in outputs}, rate, {p: x.shape[0] for p, x in outputs.items()},
                        bits, clip)
    with writer:
        for start in range(0, max(x.shape[1] for x in outputs.values()), BLOCK):
            writer.write({p: x[:, start:start + BLOCK] for p, x in outputs.items()})
        return writer.finish()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- files as streams of blocks ----------------------------------------------------------

BLOCK = 1 << 16  # samples per channel per block
#: a file that decodes shorter than the duration its header gives, by more than this share of
#: it and these seconds, is reported (encoders pad and estimate a little)
TRUNCATED_SHARE, TRUNCATED_SECONDS = 0.1, 1.0


class TruncatedAudioWarning(UserWarning):
    """A compressed file decoded far shorter than its header says; ``str()`` is one line."""



class AudioSource:
    """An audio file opened for reading in blocks: ``rate``, ``channels``, ``length`` (samples
    per channel, None if the container does not say), :meth:`blocks`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_readable(self.path)
        ext = self.path.suffix.lower().lstrip(".")
        self._soundfile = None
        if ext in SOUNDFILE_FORMATS or ext not in FFMPEG_FORMATS:
            try:
                info = sf.info(os.fsencode(self.path))  # bytes: names need not be UTF-8
                self.rate, self.channels = int(info.samplerate), int(info.channels)
                self.length = int(info.frames)
                self._soundfile = True
                cut = _truncation(info)
            except (sf.LibsndfileError, RuntimeError, ValueError) as err:
                if ext in SOUNDFILE_FORMATS:
                    raise AudioError(self.path, f"not a readable audio file ({_sf_reason(err)})") from None
            else:
                if cut:
                    raise AudioError(self.path, cut)
        if not self._soundfile:
            if shutil.which("ffmpeg") is None:
                raise AudioError(self.path, "needs ffmpeg to decode this format, and ffmpeg is not installed")
            self.rate, self.channels, seconds = _ffprobe(self.path)
            self.length = int(seconds * self.rate) if seconds else None
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise AudioError(self.path, f"unsupported sample rate {self.rate} Hz "
                                        f"(supported: {MIN_RATE}..{MAX_RATE} Hz)")
        if self.channels > MAX_CHANNELS:
            raise AudioError(self.path, f"too many channels ({self.channels}; at most {MAX_CHANNELS})")
        self.samples = 0  # decoded so far

    def blocks(self, size: int = BLOCK) -> Iterator[np.ndarray]:
        """float32 ``(channels, m)`` blocks, ``m <= size``; raises :class:`AudioError` on a
        decoding problem, NaN/infinite samples, or a file without samples."""
        source = self._soundfile_blocks(size) if self._soundfile else self._ffmpeg_blocks(size)
        while True:
            with stage("decode"):
                block = next(source, None)
            if block is None:
                break
            if not np.isfinite(block).all():
                raise AudioError(self.path, "contains NaN or infinite samples")
            peak = float(np.abs(block).max(initial=0.0))
            if peak > MAX_LEVEL:
                raise AudioError(self.path, f"sample values up to {peak:.3g}, more than 200 dB above "
                                            "full scale (a corrupt float file?)")
            self.samples += block.shape[1]
            yield block
        if self._soundfile and self.samples < self.length:
            raise AudioError(self.path, f"truncated (decoding stopped after {self.samples} of "
                                        f"{self.length} samples)")
        missing = (self.length or 0) - self.samples  # a container's duration, not a decoder's
        if self.length and missing > max(TRUNCATED_SECONDS * self.rate, TRUNCATED_SHARE * self.length):
            warnings.warn(TruncatedAudioWarning(
                f"{self.path}: decoded {self.samples / self.rate:.2f} s of the "
                f"{self.length / self.rate:.2f} s its header gives (a truncated file?)"), stacklevel=2)
        if self.samples == 0:
            raise AudioError(self.path, "contains no audio samples")

    def _soundfile_blocks(self, size: int) -> Iterator[np.ndarray]:
        try:
            with sf.SoundFile(os.fsencode(self.path)) as f:
                while True:
                    data = f.read(size, dtype="float32", always_2d=True)
                    if not len(data):
                        return
                    yield np.ascontiguousarray(data.T)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(self.path, f"could not be decoded ({_sf_reason(err)})") from None

    def _ffmpeg_blocks(self, size: int) -> Iterator[np.ndarray]:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", *FFMPEG_INPUT, "-i", _ffmpeg_url(self.path),
               "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
        # stderr to a file, not a pipe: a corrupt file can make ffmpeg log more than a pipe
        # holds, and it would then wait for us while we wait for its samples
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        try:
            width = 4 * self.channels
            rest = b""
            while True:
                chunk = proc.stdout.read(size * width)
                if not chunk:
                    break
                chunk = rest + chunk
                whole = len(chunk) - len(chunk) % width
                rest = chunk[whole:]
                if whole:
                    yield np.frombuffer(chunk[:whole], dtype="<f4").reshape(-1, self.channels).T.copy()
            if proc.wait() != 0:
                err = _tail(log)
                raise AudioError(self.path, "could not be decoded" + (f" ({err[-1][:120]})" if err else ""))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            log.close()


class StemWriter:
    """Write several stems of one song block by block, all-or-nothing (see the module doc).

    >>> with StemWriter({"vocals": Path("out/vocals.wav"), ...}, 44100, 2) as w:
    ...     w.write({"vocals": v_block, "accompaniment": a_block})     # repeatedly
    ...     w.finish()                                               # encode, then rename
    """

    def __init__(self, targets: dict, rate: int, channels: int | dict, bits: str = "16",
                 clip: str = "rescale", bitrate: int | None = None):
        if bits not in SUBTYPES:
            raise AudioError(next(iter(targets.values())), f"unsupported bit depth {bits!r} (16, 24 or float)")
        if clip not in ("rescale", "clamp", "none"):
            raise ValueError(f"unknown clip mode {clip!r} (rescale, clamp or none)")
        self.targets = {k: Path(p) for k, p in targets.items()}
        for path in self.targets.values():
            ext = path.suffix.lower().lstrip(".")
            if ext not in SOUNDFILE_FORMATS and ext not in FFMPEG_FORMATS:
                raise AudioError(path, f"unknown output format '.{ext}'")
            if path.is_dir():  # found now, not after the other stems were renamed into place
                raise AudioError(path, "is a directory, cannot write a file there")
        if bitrate is not None and not 8 <= bitrate <= 512:
            raise AudioError(next(iter(targets.values())), f"bitrate {bitrate} kbit/s: 8 to 512")
        self.rate, self.bits, self.clip, self.bitrate = rate, bits, clip, bitrate
        self.channels = channels if isinstance(channels, dict) else {k: channels for k in self.targets}
        self.peaks = {k: 0.0 for k in self.targets}
        self.temps: list[str] = []
        self.created: list[Path] = []  # folders made for the targets (removed again on abort)
        self.finished = False
        for path in self.targets.values():  # leftovers of a run that was killed (kill -9)
            if path.parent.is_dir():
                for stale in path.parent.glob(f".{glob_escape(path.name)}.*.part"):
                    stale.unlink(missing_ok=True)
        self.files: dict[str, sf.SoundFile] = {}  # every open file, by its temporary's path
        self.direct: dict[str, str] = {}  # stem → its final-format temporary, written as we go
        self.raw: dict[str, str] = {}  # stem → float temporary, encoded at the end
        for stem, path in self.targets.items():
            try:
                if path.suffix.lower().lstrip(".") in DIRECT_FORMATS:
                    self.direct[stem] = self._open(self._temp(path, ".part"), stem, final=True)
                else:
                    self.raw[stem] = self._open(self._temp(path, ".raw.part"), stem, final=False)
            except BaseException as err:
                self.abort()
                if isinstance(err, AudioError):
                    raise
                if isinstance(err, (sf.LibsndfileError, RuntimeError, ValueError)):
                    raise AudioError(path, f"cannot write ({_write_reason(err)})") from None
                raise

    def _temp(self, path: Path, suffix: str) -> str:
        try:
            missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            self.created += [d for d in missing if d not in self.created]  # deepest first
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            os.close(fd)
        except OSError as err:
            raise AudioError(path, f"cannot write here ({err.strerror or err})") from None
        self.temps.append(tmp)
        return tmp

    def write(self, blocks: dict[str, np.ndarray]) -> None:
        """Append one ``(channels, m)`` block to each stem."""
        with stage("encode"):
            self._write(blocks)

    def _open(self, tmp: str, stem: str, final: bool) -> str:
        """Open ``tmp`` for ``stem``: in the target's own format (``final``) or float WAV."""
        if final:
            ext = self.targets[stem].suffix.lower().lstrip(".")
            fmt, subtype = SOUNDFILE_FORMATS[ext], SUBTYPES[self.bits]
        else:
            fmt, subtype = "WAV", "FLOAT"
        self.files[tmp] = sf.SoundFile(os.fsencode(tmp), "w", self.rate, self.channels[stem],
                                       subtype=subtype, format=fmt)
        return tmp

    def _write(self, blocks: dict[str, np.ndarray]) -> None:
        for stem, block in blocks.items():
            # NaN and infinities show in the extremes (a NaN makes both NaN)
            top, bottom = (float(block.max()), float(block.min())) if block.size else (0.0, 0.0)
            if not (np.isfinite(top) and np.isfinite(bottom)):
                raise AudioError(self.targets[stem], "refusing to write NaN or infinite samples")
            peak = max(top, -bottom, 0.0)
            self.peaks[stem] = max(self.peaks[stem], peak)
            try:
                if stem in self.direct and stem not in self.raw:
                    if self.clip == "rescale" and peak > 1.0:
                        # the song must be scaled down after all: the rest goes to a float file
                        self.raw[stem] = self._open(self._temp(self.targets[stem], ".raw.part"),
                                                    stem, final=False)
                        if not self.files[self.direct[stem]].frames:
                            # nothing in it yet (an empty FLAC could not even be read back)
                            self.files[self.direct.pop(stem)].close()
                    else:
                        self.files[self.direct[stem]].write(file_samples(block, self.bits, self.clip))
                        continue
                self.files[self.raw[stem]].write(np.ascontiguousarray(block.T))
            except (OSError, sf.LibsndfileError, RuntimeError) as err:
                raise AudioError(self.targets[stem], f"cannot write ({_write_reason(err)})") from None

    def finish(self) -> list[Path]:
        """Encode every stem into its format, then rename them all into place."""
        with stage("encode"):
            return self._finish()

    def _finish(self) -> list[Path]:
        for f in self.files.values():
            f.close()
        ready = []
        for stem, path in self.targets.items():
            try:
                tmp = self._encode(stem, path) if stem in self.raw else self.direct[stem]
                os.chmod(tmp, 0o666 & ~_umask())
            except OSError as err:
                raise AudioError(path, f"cannot write ({_write_reason(err)})") from None
            ready.append((tmp, path))
        for tmp, path in ready:
            os.replace(tmp, path)
            self.temps.remove(tmp)
        self.finished = True
        self.abort()  # the raw temporaries
        return [path for _, path in ready]

    def _encode(self, stem: str, path: Path) -> str:
        """A new final temporary for ``stem`` from what it has so far: the part already in its
        format (if it had to switch to a float file) and its float file, scaled and clipped."""
        peak = self.peaks[stem]
        scale = 1.0 / peak if self.clip == "rescale" and peak > 1.0 else 1.0
        ext = path.suffix.lower().lstrip(".")
        sources = [self.direct[stem]] if stem in self.direct else []
        sources.append(self.raw[stem])
        blocks = (block * scale for src in sources
                  for block in sf.blocks(os.fsencode(src), BLOCK, dtype="float32", always_2d=True))
        tmp = self._temp(path, ".part")
        try:
            if ext in SOUNDFILE_FORMATS:
                subtype = "VORBIS" if ext == "ogg" else SUBTYPES[self.bits]
                with sf.SoundFile(os.fsencode(tmp), "w", self.rate, self.channels[stem], subtype=subtype,
                                  format=SOUNDFILE_FORMATS[ext]) as dst:
                    for block in blocks:  # (m, channels)
                        dst.write(file_samples(block.T, self.bits, self.clip) if subtype == "PCM_16"
                                  else _clipped(block, self.clip))
            else:
                self._encode_ffmpeg(blocks, tmp, FFMPEG_FORMATS[ext], path, self.channels[stem])
        except (OSError, sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"cannot write ({_write_reason(err)})") from None
        return tmp

    def _encode_ffmpeg(self, blocks: Iterator[np.ndarray], tmp: str, fmt: str, path: Path,
                       channels: int) -> None:
        if shutil.which("ffmpeg") is None:
            raise AudioError(path, "writing this format needs ffmpeg, which is not installed")
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(self.rate),
               "-ac", str(channels), "-i", "-", "-ar", str(self.rate),
               *(["-b:a", f"{self.bitrate}k"] if self.bitrate else []), "-f", fmt, tmp]
        log = tempfile.TemporaryFile()  # not a pipe: see AudioSource._ffmpeg_blocks
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=log)
        try:
            for block in blocks:
                proc.stdin.write(np.ascontiguousarray(_clipped(block, self.clip), dtype="<f4").tobytes())
            proc.stdin.close()
            if proc.wait() != 0:
                raise AudioError(path, "ffmpeg could not encode: " + " ".join(_tail(log))[-120:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()

    def abort(self) -> None:
        """Remove every temporary file (the targets are untouched)."""
        for f in self.files.values():
            if not f.closed:
                f.close()
        for tmp in self.temps:
            Path(tmp).unlink(missing_ok=True)
        self.temps = []
        if not self.finished:
            for folder in self.created:  # deepest first; only if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break

    def __enter__(self) -> "StemWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def _tail(log, size: int = 4096) -> list[str]:
    """The last lines of a process's log file (at most ``size`` bytes of it)."""
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - size))
    return log.read().decode(errors="replace").strip().splitlines()


def _clipped(block: np.ndarray, clip: str) -> np.ndarray:
    return np.clip(block, -1.0, 1.0) if clip in ("clamp", "rescale") else block


def file_samples(block: np.ndarray, bits: str, clip: str) -> np.ndarray:
    """``(channels, m)`` float samples → ``(m, channels)`` for a soundfile write: for 16-bit
    files already as int16 (× 32768, rounded to the nearest step, held to the int16 range;
    libsndfile itself floors WAV samples), faster than libsndfile's own conversion."""
    if bits != "16":
        return np.ascontiguousarray(_clipped(block.T, clip))
    scaled = np.rint(block.T * np.float32(32768))
    return np.clip(scaled, -32768, 32767, out=scaled).astype(np.int16, order="C")
