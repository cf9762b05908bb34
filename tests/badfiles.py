"""Inputs that no reader should accept, shared by the audio and command-line tests.

``BAD_FILES`` maps a case name (used as the test ID) to a maker: ``maker(tmp_dir) -> Path``
creates the bad input inside the existing folder ``tmp_dir`` (or, for ``missing``, creates
nothing) and returns its path. Every maker writes a file name of its own, so several makers may
share one folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from conftest import tone

Maker = Callable[[Path], Path]


def _missing(d: Path) -> Path:
    return d / "missing.wav"


def _empty(d: Path) -> Path:
    p = d / "empty.wav"
    p.write_bytes(b"")
    return p


def _directory(name: str) -> Maker:
    """A folder with an audio file's name."""
    def make(d: Path) -> Path:
        p = d / name
        p.mkdir()
        return p
    return make


def _text_wav(d: Path) -> Path:
    p = d / "notes.wav"
    p.write_text("this is a text file, not audio\n" * 10)
    return p


def _wav_prefix(name: str, size: int) -> Maker:
    """The first ``size`` bytes of a valid 16 kHz wav: 30 cuts the header, 44 keeps only it."""
    def make(d: Path) -> Path:
        full = d / "full.wav"
        sf.write(full, tone(16000).T, 16000)
        p = d / name
        p.write_bytes(full.read_bytes()[:size])
        return p
    return make


def _non_finite(name: str, channels: int, index: int, value: float) -> Maker:
    """A float wav with one non-finite sample (``value``) in its last channel."""
    def make(d: Path) -> Path:
        x = tone(16000, channels)
        x[-1, index] = value
        p = d / name
        sf.write(p, x.T, 16000, subtype="FLOAT")
        return p
    return make


def _random_bytes(name: str, seed: int) -> Maker:
    """4000 random bytes under an audio file's name."""
    def make(d: Path) -> Path:
        p = d / name
        p.write_bytes(np.random.default_rng(seed).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        return p
    return make


def _low_rate(d: Path) -> Path:
    p = d / "low.wav"
    sf.write(p, np.zeros(100, np.float32), 1000)
    return p


#: case name -> maker(tmp_dir) -> Path of an unreadable input (see the module docstring)
BAD_FILES: dict[str, Maker] = {
    "missing": _missing,
    "empty": _empty,
    "directory": _directory("folder.wav"),
    "directory_mp3": _directory("folder.mp3"),
    "text_wav": _text_wav,
    "truncated_header": _wav_prefix("truncated.wav", 30),
    "header_only": _wav_prefix("header_only.wav", 44),
    "nan_float": _non_finite("nan.wav", 2, 10, np.nan),
    "inf_float": _non_finite("inf.wav", 1, 3, np.inf),
    "corrupt_mp3": _random_bytes("corrupt.mp3", 0),
    "corrupt_flac": _random_bytes("corrupt.flac", 1),
    "low_rate": _low_rate,
}
