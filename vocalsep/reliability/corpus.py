"""A generated corpus of bad and odd inputs, with the outcome each one must have.

:func:`make_corpus` writes every file into one folder and returns its :class:`Case` list (also
saved as ``manifest.json`` there). Everything is derived from one short seed signal (a MIR-1K
clip, or a synthetic voice over chords when none is given) with fixed random seeds, and the
compressed formats are encoded by ffmpeg with ``-bitexact``, so the same call writes the same
bytes on the same machine.

Expected outcomes:

* ``error``: separating the file must fail with one line that names it and contains
  ``Case.message`` (alternatives separated by ``|``), exit code 1, nothing written;
* ``ok``: the stems must appear with the input's rate, channels and length, finite, adding up
  to the input (silence in gives silence out);
* ``any``: damage that may or may not be detectable (flipped bits): either outcome above, but
  nothing else (no traceback, no hang, no NaN, no partial file).

Each file's output folder (its name without the suffix) is unique within the corpus, so the
whole corpus can be separated into one output folder.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

EXPECTATIONS = ("error", "ok", "any")

# messages the reader gives (vocalsep.audio); a case lists the ones that fit it
EMPTY = "empty (0 bytes)"
NOT_AUDIO = "not a readable audio file"
NO_SAMPLES = "contains no audio samples"
NON_FINITE = "NaN or infinite"
TRUNCATED = "truncated"
UNDECODABLE = "could not be decoded"
NO_FILE = "no such file"
DIRECTORY = "is a directory"
NOT_REGULAR = "not a regular file"
RATE = "unsupported sample rate"
CHANNELS = "too many channels"


@dataclass
class Case:
    """One input of the corpus: ``name`` (relative to the corpus folder), what it is, what
    must happen (see the module docstring)."""

    name: str
    category: str
    expect: str
    message: str = ""  # error: substrings of the one-line message, "a|b" = either
    silent: bool = False  # ok: the input is digital silence, so must be the stems
    note: str = ""

    def path(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.name


# --- the seed signal --------------------------------------------------------------------------

def synthetic_seed(rate: int = 16000, seconds: float = 0.5) -> np.ndarray:
    """A voice-like tone (220 Hz with vibrato and 8 harmonics) over two chord tones and a little
    noise: float32 ``(rate·seconds,)``, peak 0.5."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 220 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 9))
    chords = 0.6 * (np.sin(2 * np.pi * 130.8 * t) + np.sin(2 * np.pi * 196.0 * t))
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    x = voice + chords + noise
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def load_seed(path: str | os.PathLike | None, seconds: float = 0.5) -> tuple[np.ndarray, int]:
    """The mono mixdown of ``seconds`` from the middle of ``path`` (or :func:`synthetic_seed`),
    peak 0.5: ``(samples, rate)``."""
    if path is None:
        return synthetic_seed(16000, seconds), 16000
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    n = int(rate * seconds)
    start = max(0, (x.size - n) // 2)
    x = x[start:start + n]
    peak = float(np.abs(x).max()) or 1.0
    return (0.5 * x / peak).astype(np.float32), rate


class Signals:
    """The seed at any rate, length and channel count (channels are delayed copies)."""

    def __init__(self, seed: np.ndarray, rate: int):
        self.seed, self.rate = seed, rate

    def __call__(self, rate: int | None = None, channels: int = 1, seconds: float | None = None,
                 samples: int | None = None) -> np.ndarray:
        """float32 ``(channels, n)``, the seed resampled to ``rate`` and looped to length."""
        import soxr

        rate = rate or self.rate
        x = self.seed if rate == self.rate else soxr.resample(self.seed, self.rate, rate, "HQ")
        n = samples if samples is not None else int(round((seconds or self.seed.size / self.rate) * rate))
        x = np.resize(np.asarray(x, np.float32), n) if n > x.size else x[:n]
        return np.stack([np.roll(x, 37 * c) * (1 - 0.1 * c / 8) for c in range(channels)]).astype(np.float32)


# --- writers ------------------------------------------------------------------------------------

def _sf(path: Path, x: np.ndarray, rate: int, subtype: str | None = None, fmt: str | None = None) -> None:
    """libsndfile's writer, reproducibly: the timestamp of a float file's PEAK chunk is zeroed."""
    sf.write(os.fsencode(path), np.ascontiguousarray(x.T), rate, subtype=subtype, format=fmt)
    with open(path, "r+b") as f:
        head = f.read(256)
        at = head.find(b"PEAK")
        if at >= 0:  # "PEAK", size, version, timestamp (seconds since 1970) ...
            f.seek(at + 12)
            f.write(bytes(4))


def _ffmpeg(path: Path, x: np.ndarray, rate: int, *codec: str, fmt: str | None = None) -> None:
    """Encode ``(channels, n)`` through ffmpeg, reproducibly (no version strings, fixed serials)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate),
           "-ac", str(x.shape[0]), "-i", "-", *codec, "-map_metadata", "-1",
           "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    cmd += ["-f", fmt] if fmt else []
    subprocess.run([*cmd, str(path)], input=np.ascontiguousarray(x.T, "<f4").tobytes(), check=True,
                   capture_output=True, timeout=120)


ENCODERS = {"mp3": ("-c:a", "libmp3lame", "-b:a", "96k"), "ogg": ("-c:a", "libvorbis", "-q:a", "3"),
            "m4a": ("-c:a", "aac", "-b:a", "96k"), "opus": ("-c:a", "libopus", "-b:a", "64k")}


def _encoded(path: Path, x: np.ndarray, rate: int) -> None:
    """A file of the format its suffix names: wav/flac/aiff (16-bit) or an ffmpeg codec."""
    ext = path.suffix.lstrip(".")
    if ext in ("wav", "flac", "aiff"):
        _sf(path, x, rate, "PCM_16")
    else:
        _ffmpeg(path, x, rate, *ENCODERS[ext])


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, *, tag: int = 1, bits: int = 16,
              block_align: int | None = None, data_size: int | None = None) -> bytes:
    """A canonical 44-byte-header PCM WAV of int16 ``samples`` (interleaved) with any header
    field overridden (to make files whose header lies)."""
    data = np.asarray(samples, "<i2").tobytes()
    align = block_align if block_align is not None else channels * bits // 8
    size = len(data) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * max(align, 1), align, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", size) + data)


def _data_offset(blob: bytes) -> int:
    """Where the sample data of a RIFF/AIFF file starts (after the 'data'/'SSND' chunk header)."""
    for tag, extra in ((b"data", 8), (b"SSND", 16)):
        i = blob.find(tag)
        if i >= 0:
            return i + extra
    raise ValueError("no data chunk")


def _flip_bits(blob: bytes, seed: int, count: int, start: int, end: int | None = None) -> bytes:
    """``blob`` with ``count`` random bits flipped in bytes ``start..end``."""
    rng = np.random.default_rng(seed)
    b = bytearray(blob)
    end = len(b) if end is None else end
    for pos in rng.integers(start, end, count):
        b[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


# --- the corpus ---------------------------------------------------------------------------------

class _Builder:
    def __init__(self, root: Path, signals: Signals):
        self.root, self.s = root, signals
        self.cases: list[Case] = []
        self._stems: set[str] = set()

    def add(self, name: str, category: str, expect: str, message: str = "", **kw) -> Path:
        stem = Path(name).stem
        if stem in self._stems:
            raise ValueError(f"corpus: two files would share the output folder {stem!r}")
        self._stems.add(stem)
        self.cases.append(Case(name, category, expect, message, **kw))
        return self.root / name

    def write(self, name: str, blob: bytes, category: str, expect: str, message: str = "", **kw) -> None:
        self.add(name, category, expect, message, **kw).write_bytes(blob)


def _valid_files(b: _Builder) -> None:
    """Valid inputs at the edges of what is supported: expected ``ok``."""
    s = b.s
    for ch in range(1, 9):
        _sf(b.add(f"ch{ch}_16k.wav", "channels 1-8", "ok"), s(16000, ch), 16000, "PCM_16")
    for ch in (3, 6):
        _sf(b.add(f"ch{ch}_44k.flac", "channels 1-8", "ok"), s(44100, ch), 44100, "PCM_24")
    for rate in (4000, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 384000):
        ch = 2 if rate >= 44100 else 1
        _sf(b.add(f"rate{rate}.wav", "rates 4-384 kHz", "ok"), s(rate, ch), rate, "PCM_16")
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW",
                    "IMA_ADPCM", "MS_ADPCM"):
        _sf(b.add(f"wav_{subtype.lower()}.wav", "bit depths and codecs", "ok"), s(16000, 2), 16000, subtype)
    _sf(b.add("wav_gsm610.wav", "bit depths and codecs", "ok"), s(8000, 1), 8000, "GSM610")
    for subtype in ("PCM_S8", "PCM_16", "PCM_24"):
        _sf(b.add(f"flac_{subtype.lower()}.flac", "bit depths and codecs", "ok"), s(44100, 2), 44100, subtype)
    for subtype in ("PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"):
        _sf(b.add(f"aiff_{subtype.lower()}.aiff", "bit depths and codecs", "ok"), s(22050, 1), 22050, subtype)
    for ext, rate, ch in (("mp3", 44100, 2), ("mp3", 8000, 1), ("ogg", 48000, 2), ("m4a", 44100, 2),
                          ("opus", 48000, 1)):
        _encoded(b.add(f"codec_{ext}_{rate}_{ch}ch.{ext}", "bit depths and codecs", "ok"), s(rate, ch), rate)
    # silence: digital zeros in every container; the stems must be zeros too
    for name, rate, ch in (("silence_16k.wav", 16000, 1), ("silence_44k_stereo.flac", 44100, 2),
                           ("silence_6ch.wav", 48000, 6), ("silence_192k.wav", 192000, 2),
                           ("silence_mp3.mp3", 44100, 2), ("silence_ogg.ogg", 44100, 1),
                           ("silence_m4a.m4a", 44100, 2)):
        _encoded(b.add(name, "silence", "ok", silent=True), np.zeros((ch, rate // 2), np.float32), rate)
    _sf(b.add("silence_float.wav", "silence", "ok", silent=True), np.zeros((2, 8000), np.float32), 16000, "FLOAT")
    _sf(b.add("silence_long_3s.wav", "silence", "ok", silent=True), np.zeros((2, 3 * 44100), np.float32),
        44100, "PCM_16")
    # constant DC, full-scale clipping, levels far above and below full scale (float)
    for name, value, subtype in (("dc_half.wav", 0.5, "PCM_16"), ("dc_minus_full.wav", -1.0, "PCM_16"),
                                 ("dc_plus_full_float.wav", 1.0, "FLOAT"), ("dc_tiny_float.wav", 1e-30, "FLOAT")):
        _sf(b.add(name, "DC and clipping", "ok"), np.full((1, 8000), value, np.float32), 16000, subtype)
    square = np.sign(s(44100, 2))
    square[square == 0] = 1
    _sf(b.add("clip_square_full.wav", "DC and clipping", "ok"), square, 44100, "PCM_16")
    _sf(b.add("clip_sine_x8.wav", "DC and clipping", "ok"), np.clip(8 * s(16000, 1), -1, 1), 16000, "PCM_24")
    for name, gain in (("float_loud_x4.wav", 4.0), ("float_int_scale.wav", 32767.0), ("float_huge_1e9.wav", 1e9),
                       ("float_quiet_1e-6.wav", 1e-6), ("float_denormal.wav", 1e-40)):
        _sf(b.add(name, "levels (float)", "ok"), s(16000, 2) * np.float32(gain), 16000, "FLOAT")
    # lengths around the edges of the signal path (one sample, one STFT window, one block)
    for n in (1, 2, 3, 10, 511, 1023, 1024, 1025, 4097, 65535, 65536, 65537):
        _sf(b.add(f"len{n}.wav", "lengths", "ok"), s(16000, 1, samples=n), 16000, "PCM_16")
    _sf(b.add("len1_192k_8ch.wav", "lengths", "ok"), s(192000, 8, samples=1), 192000, "FLOAT")
    _sf(b.add("len1_stereo.flac", "lengths", "ok"), s(44100, 2, samples=1), 44100, "PCM_16")
    # odd names
    for name in ("name with spaces.wav", "chanson é à ü.wav", "日本語の歌.flac", "emoji 🎵 song.wav",
                 "-leading-dash.wav", "--help.wav", "-o.wav", "[glob] *chars?.wav", "it's \"quoted\".wav",
                 "a.b.c.d.wav", "UPPER.WAV", "x" * 200 + ".wav", " leading space.wav", "back\\slash.wav"):
        _sf(b.add(name, "odd names", "ok"), s(16000, 1), 16000, "PCM_16")
    for name in ("new\nline.wav", "tab\tand\rreturn.wav", "bell\x07.wav"):  # one-line messages need escapes
        _sf(b.add(name, "odd names", "ok", note="control characters"), s(16000, 1), 16000, "PCM_16")
    latin1 = os.fsdecode("café latin-1 ".encode("latin-1") + b".wav")  # not valid UTF-8
    _sf(b.add(latin1, "odd names", "ok", note="a file name that is not valid UTF-8"), s(16000, 1), 16000, "PCM_16")
    # containers that lie harmlessly, or files under another format's suffix
    x = (s(16000, 1)[0] * 32767).astype(np.int16)
    b.write("hdr_streaming_sizes.wav", wav_bytes(x, 16000, data_size=0xFFFFFFFF), "header oddities", "ok",
            note="data size 0xFFFFFFFF, as ffmpeg writes to a pipe")
    b.write("hdr_trailing_junk.wav", wav_bytes(x, 16000) + b"junk" * 100, "header oddities", "ok")
    b.write("hdr_block_align0.wav", wav_bytes(x, 16000, block_align=0), "header oddities", "ok",
            note="libsndfile recomputes the block size")
    _sf(b.add("flac_named.wav", "wrong suffix", "ok"), s(16000, 1), 16000, "PCM_16", "FLAC")
    _sf(b.add("wav_named_flac.flac", "wrong suffix", "ok"), s(16000, 1), 16000, "PCM_16", "WAV")
    _ffmpeg(b.add("mp3_named.wav", "wrong suffix", "ok"), s(44100, 2), 44100, *ENCODERS["mp3"], fmt="mp3")
    _sf(b.add("wav_named_mp3.mp3", "wrong suffix", "ok"), s(16000, 1), 16000, "PCM_16", "WAV")
    _sf(b.add("wav_no_suffix", "wrong suffix", "ok"), s(16000, 1), 16000, "PCM_16", "WAV")


def _not_audio(b: _Builder) -> None:
    """Files with an audio name and no audio in them: expected ``error``."""
    for ext in ("wav", "flac", "mp3", "ogg", "m4a", "aiff", "opus", "aac"):
        b.write(f"empty_{ext}.{ext}", b"", "empty file", "error", EMPTY)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    png += struct.pack(">I", zlib.crc32(png[12:29]))
    contents = {
        "text": b"this is a text file, not audio\n" * 20,
        "html": b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n" * 5,
        "json": json.dumps({"song": "not here", "samples": list(range(200))}).encode(),
        "csv": b"time,amplitude\n" + b"".join(b"%d,%f\n" % (i, np.sin(i)) for i in range(200)),
        "script": b"#!/bin/sh\necho 'not audio'\n" * 30,
        "png": png + bytes(200),
        "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" * 10 + b"%%EOF\n",
        "gzip": zlib.compress(b"no audio here " * 100),
        "nul": bytes(4096),
        "one_byte": b"\x00",
    }
    for kind, blob in contents.items():
        for ext in ("wav", "flac", "mp3", "ogg", "m4a"):
            b.write(f"{kind}_as_{ext}.{ext}", blob, "not audio", "error", NOT_AUDIO)
    zip_path = b.add("zip_as.flac", "not audio", "error", NOT_AUDIO)
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr(zipfile.ZipInfo("readme.txt", date_time=(2000, 1, 1, 0, 0, 0)), "not audio " * 100)
    for seed in range(5):  # random bytes: libsndfile formats are recognised by their header
        blob = np.random.default_rng(100 + seed).integers(0, 256, 3000 + 500 * seed, dtype=np.uint8).tobytes()
        for ext in ("wav", "flac", "ogg", "aiff"):
            b.write(f"random{seed}_{ext}.{ext}", blob, "not audio", "error", NOT_AUDIO)
        for ext in ("mp3", "m4a"):  # ffmpeg may find an MPEG frame sync in noise: either outcome
            b.write(f"random{seed}_{ext}.{ext}", blob, "random bytes (ffmpeg)", "any")
    for ext in ("wav", "flac", "mp3", "ogg", "m4a"):
        b.add(f"folder_{ext}.{ext}", "directory", "error", DIRECTORY).mkdir()
    sub = b.add("folder_with_notes.mp3", "directory", "error", DIRECTORY)
    sub.mkdir()
    (sub / "notes.txt").write_text("not audio\n")
    for name in ("missing.wav", "missing_mp3.mp3", "missing file.flac"):
        b.add(name, "missing", "error", NO_FILE)
    os.symlink("nowhere/missing.wav", b.add("dangling_link.wav", "missing", "error", NO_FILE))
    loop = b.add("link_loop.wav", "missing", "error", NO_FILE)
    os.symlink(loop.name, loop)
    os.mkfifo(b.add("fifo.wav", "special files", "error", NOT_REGULAR, note="reading it would block"))
    for dev, name in (("/dev/null", "devnull.wav"), ("/dev/zero", "devzero.flac"),
                      ("/dev/urandom", "devurandom.mp3")):
        os.symlink(dev, b.add(name, "special files", "error", NOT_REGULAR, note=f"a link to {dev}"))
    # video without audio
    for ext in ("mp4", "m4a"):
        path = b.add(f"video_only_{ext}.{ext}", "no audio stream", "error", NOT_AUDIO)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=32x32:rate=5:duration=1", "-c:v", "mpeg4", "-fflags", "+bitexact",
                        "-flags", "+bitexact", "-map_metadata", "-1", "-f", "mp4", str(path)],
                       check=True, capture_output=True, timeout=120)


def _odd_named_errors(b: _Builder) -> None:
    """Bad files with names that are hard to print on one line: expected ``error``."""
    blob = b"not audio\n" * 20
    for name in ("bad\nnewline.wav", "bad\ttab.flac", "-bad-dash.wav", "bad ünïcödé 🎵.mp3", "bad spaces .wav",
                 os.fsdecode(b"bad latin-1 \xe9.wav")):
        b.write(name, blob, "bad file, odd name", "error", NOT_AUDIO)


def _out_of_range(b: _Builder) -> None:
    """Float samples so large the file must be corrupt (the transforms would overflow)."""
    for name, value, where in (("float_1e12.wav", 1e12, 100), ("float_1e30.wav", 1e30, 0),
                               ("float_max.wav", 3.4e38, 7999), ("float_neg_1e20.wav", -1e20, 4000)):
        x = b.s(16000, 2)
        x[1, where] = value
        _sf(b.add(name, "float samples out of range", "error", "200 dB"), x, 16000, "FLOAT")
    x = b.s(16000, 1)
    x[:] = 1e15
    _sf(b.add("float_all_1e15.wav", "float samples out of range", "error", "200 dB"), x, 16000, "FLOAT")


def _empty_audio(b: _Builder) -> None:
    """Valid headers, no samples: expected ``error``."""
    nothing = np.zeros((2, 0), np.float32)
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        _sf(b.add(f"zero_len_wav_{subtype.lower()}.wav", "zero-length audio", "error", NO_SAMPLES),
            nothing, 16000, subtype)
    for subtype in ("PCM_16", "PCM_24"):  # libsndfile writes nothing at all for these
        _sf(b.add(f"zero_len_flac_{subtype.lower()}.flac", "zero-length audio", "error", f"{NO_SAMPLES}|{EMPTY}"),
            nothing, 44100, subtype)
    _sf(b.add("zero_len.aiff", "zero-length audio", "error", NO_SAMPLES), nothing, 44100, "PCM_16")
    for ext in ("mp3", "ogg", "m4a"):
        _encoded(b.add(f"zero_len_{ext}.{ext}", "zero-length audio", "error", f"{NO_SAMPLES}|{NOT_AUDIO}"),
                 nothing, 44100)


def _unsupported(b: _Builder) -> None:
    """Rates and channel counts outside what vocalsep separates: expected ``error``."""
    for rate in (1, 100, 1000, 2000, 3999, 384001, 400000, 768000):
        _sf(b.add(f"bad_rate{rate}.wav", "unsupported rate", "error", RATE), np.zeros((1, 50), np.float32) + 0.1,
            rate, "PCM_16")
    _sf(b.add("bad_rate1000_flac.flac", "unsupported rate", "error", RATE), np.zeros((1, 50), np.float32) + 0.1,
        1000, "PCM_16")
    for ch in (33, 64, 255):
        _sf(b.add(f"bad_ch{ch}.wav", "too many channels", "error", CHANNELS),
            np.zeros((ch, 20), np.float32) + 0.1, 16000, "PCM_16")
    x = (b.s(16000, 1)[0] * 32767).astype(np.int16)
    for name, kw in (("hdr_rate0.wav", dict(rate=0)), ("hdr_channels0.wav", dict(channels=0)),
                     ("hdr_unknown_codec.wav", dict(tag=0x1234)), ("hdr_bits0.wav", dict(bits=0))):
        rate = kw.pop("rate", 16000)
        b.write(name, wav_bytes(x, rate, **{"channels": 1, **kw}), "header lies", "error",
                f"{NOT_AUDIO}|{RATE}")


def _non_finite(b: _Builder) -> None:
    """Float files with NaN or ±Inf samples at various places: expected ``error``."""
    positions = {"first": 0, "middle": 4000, "last": -1, "block2": 70_000}  # block2: past the 1st read
    i = 0
    for subtype in ("FLOAT", "DOUBLE"):
        for label, value in (("nan", np.nan), ("posinf", np.inf), ("neginf", -np.inf)):
            for where, index in positions.items():
                ch = (1, 2, 6)[i % 3]
                i += 1
                x = b.s(44100 if where == "block2" else 16000, ch, seconds=2.0 if where == "block2" else 0.5)
                x[ch - 1, index] = value
                _sf(b.add(f"{label}_{where}_{subtype.lower()}_{ch}ch.wav", "NaN/Inf samples", "error", NON_FINITE),
                    x, 44100 if where == "block2" else 16000, subtype)
    _sf(b.add("all_nan.wav", "NaN/Inf samples", "error", NON_FINITE), np.full((2, 1000), np.nan, np.float32),
        16000, "FLOAT")
    _sf(b.add("nan_float.aiff", "NaN/Inf samples", "error", NON_FINITE),
        np.r_[np.zeros(100), np.nan, np.zeros(100)][None].astype(np.float32), 16000, "FLOAT")


def _damaged(b: _Builder, tmp: Path) -> None:
    """Valid files cut short or with flipped bits."""
    s = b.s
    sources = {}
    for key, ext, subtype, rate, ch in (("wav16", "wav", "PCM_16", 16000, 1), ("wav24", "wav", "PCM_24", 44100, 2),
                                        ("wavf32", "wav", "FLOAT", 16000, 2), ("wavu8", "wav", "PCM_U8", 8000, 1),
                                        ("aiff16", "aiff", "PCM_16", 22050, 2), ("flac16", "flac", "PCM_16", 16000, 1),
                                        ("flac24", "flac", "PCM_24", 44100, 2)):
        path = tmp / f"{key}.{ext}"
        _sf(path, s(rate, ch, seconds=1.0), rate, subtype)
        sources[key] = path
    for key, ext, rate, ch in (("mp3", "mp3", 44100, 2), ("ogg", "ogg", 44100, 2), ("m4a", "m4a", 44100, 2)):
        path = tmp / f"{key}.{ext}"
        _encoded(path, s(rate, ch, seconds=1.0), rate)
        sources[key] = path
    # cut inside the header: nothing usable
    for key in ("wav16", "wav24", "wavf32", "wavu8", "aiff16"):
        blob = sources[key].read_bytes()
        start = _data_offset(blob)
        cuts = sorted({1, 2, 4, 8, 11, 12, 16, 20, 24, 30, 36, start - 8, start - 1})
        for cut in cuts:
            b.write(f"cut_header_{key}_at{cut}.{sources[key].suffix[1:]}", blob[:cut], "truncated in the header",
                    "error", f"{NOT_AUDIO}|{NO_SAMPLES}|{TRUNCATED}")
        b.write(f"cut_header_{key}_header_only.{sources[key].suffix[1:]}", blob[:start], "truncated in the header",
                "error", f"{TRUNCATED}|{NO_SAMPLES}")
    for key in ("flac16", "flac24"):
        blob = sources[key].read_bytes()
        for cut in (1, 3, 4, 8, 20, 41, 42):
            b.write(f"cut_header_{key}_at{cut}.flac", blob[:cut], "truncated in the header", "error",
                    f"{NOT_AUDIO}|{NO_SAMPLES}|{UNDECODABLE}|{TRUNCATED}")
    for key, cuts in (("mp3", (1, 3, 10, 50)), ("ogg", (1, 4, 27, 58, 200)), ("m4a", (1, 8, 32, 100))):
        blob = sources[key].read_bytes()
        for cut in cuts:
            b.write(f"cut_header_{key}_at{cut}.{key}", blob[:cut], "truncated in the header", "error",
                    f"{NOT_AUDIO}|{NO_SAMPLES}|{UNDECODABLE}|{TRUNCATED}")
    # cut inside the sample data: the header promises more than there is
    for key in ("wav16", "wav24", "wavf32", "wavu8", "aiff16", "flac16", "flac24"):
        blob = sources[key].read_bytes()
        start = _data_offset(blob) if key[:4] != "flac" else 0
        for frac in (0.1, 0.3, 0.5, 0.7, 0.95):
            cut = start + int((len(blob) - start) * frac) + 1  # +1: also mid-sample
            b.write(f"cut_data_{key}_at{int(frac * 100)}pct.{sources[key].suffix[1:]}", blob[:cut],
                    "truncated in the data", "error", f"{TRUNCATED}|{UNDECODABLE}")
    for key in ("ogg", "m4a"):
        blob = sources[key].read_bytes()
        for frac in (0.3, 0.6, 0.9):
            b.write(f"cut_data_{key}_at{int(frac * 100)}pct.{key}", blob[:int(len(blob) * frac)],
                    "truncated in the data", "any", note="either decoded up to the cut or refused")
    blob = sources["mp3"].read_bytes()
    for frac in (0.3, 0.6, 0.9):
        b.write(f"cut_data_mp3_at{int(frac * 100)}pct.mp3", blob[:int(len(blob) * frac)], "truncated in the data",
                "ok", note="MP3 has no reliable length: what is there is separated")
    # broken magic numbers
    for key, magic in (("wav16", b"RIFF"), ("wav16", b"WAVE"), ("wav16", b"fmt "), ("wav24", b"RIFF"),
                       ("aiff16", b"FORM"), ("aiff16", b"AIFF"), ("flac16", b"fLaC"), ("flac24", b"fLaC"),
                       ("ogg", b"OggS")):
        blob = sources[key].read_bytes()
        i = blob.find(magic)
        bad = blob[:i] + magic[:3] + bytes([magic[3] ^ 0x20]) + blob[i + 4:]
        label = magic.decode().strip().lower()
        b.write(f"bad_magic_{key}_{label}.{sources[key].suffix[1:]}", bad, "corrupt magic number", "error",
                f"{NOT_AUDIO}|{UNDECODABLE}")
    # flipped bits: in PCM data any bits are samples (ok); elsewhere either outcome
    for seed in range(5):
        for key in ("wav16", "wav24", "aiff16"):
            blob = sources[key].read_bytes()
            b.write(f"flip_data_{key}_s{seed}.{sources[key].suffix[1:]}",
                    _flip_bits(blob, seed, 50, _data_offset(blob)), "bit flips in PCM data", "ok")
        for key in ("wavf32", "flac16", "flac24", "mp3", "ogg", "m4a"):
            blob = sources[key].read_bytes()
            start = _data_offset(blob) if key == "wavf32" else len(blob) // 4
            b.write(f"flip_data_{key}_s{seed}.{sources[key].suffix[1:]}",
                    _flip_bits(blob, seed, 20, start), "bit flips in coded data", "any")
        for key in ("wav16", "flac16", "mp3"):
            blob = sources[key].read_bytes()
            end = _data_offset(blob) if key == "wav16" else 64
            b.write(f"flip_header_{key}_s{seed}.{sources[key].suffix[1:]}",
                    _flip_bits(blob, 1000 + seed, 1, 0, end), "bit flips in the header", "any")


def _unreadable(b: _Builder) -> None:
    """A file without read permission (root reads it anyway)."""
    root = os.geteuid() == 0
    path = b.add("no_permission.wav", "unreadable file", "ok" if root else "error",
                 "" if root else "permission denied",
                 note="running as root: readable anyway" if root else "")
    _sf(path, b.s(16000, 1), 16000, "PCM_16")
    path.chmod(0)


def make_corpus(root: str | os.PathLike, seed_audio: str | os.PathLike | None = None) -> list[Case]:
    """Write the corpus into ``root`` (created; must be empty) and ``root/manifest.json``;
    return its cases."""
    import tempfile

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty (the corpus needs an empty folder)")
    seed, rate = load_seed(seed_audio)
    b = _Builder(root, Signals(seed, rate))
    _valid_files(b)
    _not_audio(b)
    _empty_audio(b)
    _unsupported(b)
    _non_finite(b)
    _out_of_range(b)
    _odd_named_errors(b)
    with tempfile.TemporaryDirectory() as tmp:
        _damaged(b, Path(tmp))
    _unreadable(b)
    manifest = {"seed_audio": str(seed_audio) if seed_audio else "synthetic",
                "cases": [asdict(c) for c in b.cases]}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return b.cases


def read_manifest(root: str | os.PathLike) -> list[Case]:
    """The cases of a corpus written by :func:`make_corpus`."""
    return [Case(**c) for c in json.loads((Path(root) / "manifest.json").read_text())["cases"]]


def summary(cases: list[Case]) -> Iterator[tuple[str, str, int]]:
    """``(category, expect, count)`` in corpus order."""
    counts: dict[tuple[str, str], int] = {}
    for c in cases:
        counts[c.category, c.expect] = counts.get((c.category, c.expect), 0) + 1
    for (category, expect), n in counts.items():
        yield category, expect, n
