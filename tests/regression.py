"""Regression fixture: what every shipped model and option gave on a real song before the
signal-path redesign (issue #16), kept as random projections of the stems, not as audio.

The song is the stempeg example (a MUSDB18 test track inside the ``stempeg`` wheel), played
twice (13.5 s: a whole 512-frame segment of the default and a rest). MUSDB audio is never
committed, so each output is stored as, per channel and per second of audio, ``PROJECTIONS``
projections onto fixed random ±1/√n sign vectors (unit length): for a difference ``d`` of
noise-like rounding each projection is about the RMS of ``d`` in that second, and any change
of the signal path (another mask, another frame grid, a shifted sample) moves them by far more.

Written by ``python tests/regression.py --write`` at a6cf6b2 (d47abcf's two signal paths plus
issue #16's first part, which changed no output), through the whole-song path
(``Separator.separate``); read by tests/test_regression.py. One case differs: with binary masks
the whole-song path and the file path (block by block, as the CLI ran it) already disagreed
where a mask lies within float rounding of the threshold (the two STFTs round differently:
3.4e-5 in these projections, 1.5e-4 at the worst sample), so ``default-binary`` holds the file
path's stems, which the one signal path now gives everywhere.

The ``default-*`` cases were written again by ``python tests/regression.py --write default``
when the default's weights changed (2026-12-03, sha256 ``005cfb78…``); the others are still
a6cf6b2's. The spatial step (:mod:`vocalsep.pipeline.spatial`) came later the same day: the
stereo ``default-*`` cases turn it off (their stems did not change), and the ``spatial-*``
cases, written by ``python tests/regression.py --write spatial``, hold its stems. When the
default became Spleeter's two U-Nets fine-tuned (2026-12-03, session 15: P epoch 3, then its
mean with ``hq``, sha256 ``6da9e43b…``), ``python tests/regression.py --write default
spatial-default`` wrote the default's cases again, each time.
Models with an ONNX export run in ONNX Runtime here (:func:`case_options`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "data" / "regression.npz"
PROJECTIONS = 8
SEED = 16

#: name → (model, options, rate, channels, seconds or None for the whole 13.5 s)
CASES: dict[str, tuple[str, dict, int, int, float | None]] = {
    "default-44k-stereo": ("default", {"spatial": False}, 44_100, 2, None),
    "default-48k-stereo-fullband": ("default", {"spatial": False}, 48_000, 2, None),
    "default-48k-no-full-band": ("default", {"full_band": False, "spatial": False}, 48_000, 2, 8.0),
    "default-16k-mono": ("default", {}, 16_000, 1, None),
    "default-binary": ("default", {"mask": "binary"}, 44_100, 2, 8.0),
    "default-torch-float32": ("default", {"runtime": "torch", "precision": "float32", "spatial": False},
                              44_100, 2, None),
    "default-wiener": ("default", {"wiener": 1}, 44_100, 2, 5.0),
    "default-griffinlim": ("default", {"reconstruct": "griffinlim"}, 44_100, 2, 3.0),
    "default-short": ("default", {"spatial": False}, 44_100, 2, 0.05),
    "small-44k-stereo-fullband": ("small", {}, 44_100, 2, 8.0),
    "small-16k-mono": ("small", {}, 16_000, 1, None),
    "paper-16k-mono-binary": ("paper", {"mask": "binary"}, 16_000, 1, 4.0),
    # the spatial step, on by default for stereo songs since 2026-12-03 (the cases above keep it off)
    "spatial-default-44k-stereo": ("default", {}, 44_100, 2, None),
    "spatial-default-48k-stereo-fullband": ("default", {}, 48_000, 2, None),
    "spatial-default-48k-no-full-band": ("default", {"full_band": False}, 48_000, 2, 8.0),
    "spatial-small-44k-stereo": ("small", {"spatial": True}, 44_100, 2, 8.0),
}


def song() -> tuple[np.ndarray, int]:
    """The stempeg example song twice, ``(2, n)`` float32, and its rate."""
    import stempeg

    stems, rate = stempeg.read_stems(str(stempeg.example_stem_path()), stem_id=[0])
    mixture = np.ascontiguousarray(np.asarray(stems).T, dtype=np.float32)
    return np.tile(mixture, (1, 2)), int(rate)


def case_input(name: str, mixture: np.ndarray, native: int) -> tuple[np.ndarray, int]:
    """The input of case ``name``: the song at the case's rate, channels and length."""
    from vocalsep import audio as audio_io

    _, _, rate, channels, seconds = CASES[name]
    x = audio_io.resample(mixture, native, rate)
    x = x if channels == 2 else x.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(x if seconds is None else x[:, : int(seconds * rate)]), rate


def summary(x: np.ndarray, rate: int) -> np.ndarray:
    """``(channels, n)`` → ``(channels, seconds, PROJECTIONS)`` projections onto unit-length
    random sign vectors, one set per second (the last, shorter second too)."""
    rng = np.random.default_rng(SEED)
    channels, n = x.shape
    starts = range(0, n, rate)
    out = np.zeros((channels, len(starts), PROJECTIONS))
    for b, start in enumerate(starts):
        block = x[:, start:start + rate].astype(np.float64)
        signs = rng.choice([-1.0, 1.0], size=(PROJECTIONS, block.shape[1])) / np.sqrt(block.shape[1])
        out[:, b] = block @ signs.T
    return out


def case_options(name: str) -> dict:
    """Case ``name``'s separator options; a model with an ONNX export runs in ONNX Runtime
    unless the case says otherwise (as the fixture was written: OpenVINO's bfloat16, which
    ``auto`` takes where it is installed and native, is another rounding)."""
    from vocalsep.backends.onnx import onnx_twin

    model, options, _, _, _ = CASES[name]
    return {"runtime": "onnx", **options} if onnx_twin(model) is not None else options


def outputs(name: str, separator=None) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Case ``name`` separated through the API: its input, the stems, the rate."""
    from vocalsep.separate import Separator, SeparatorOptions

    x, rate = case_input(name, *song())
    sep = separator or Separator(CASES[name][0], SeparatorOptions(**case_options(name)))
    return x, sep.separate(x, rate), rate


def write(prefixes: list[str]) -> None:
    """Separate the cases whose names start with one of ``prefixes`` (every case if none) with
    the code and models at hand and store their summaries in :data:`FIXTURE`, keeping the
    other cases' (e.g. ``default``: a shipped model's new weights, the rest unchanged)."""
    unknown = [p for p in prefixes if not any(name.startswith(p) for name in CASES)]
    if unknown or (prefixes and not FIXTURE.exists()):
        sys.exit(f"no case starts with {', '.join(unknown)}" if unknown
                 else f"{FIXTURE} is missing: write every case (no prefix)")
    stored = dict(np.load(FIXTURE)) if prefixes else {}
    for name in CASES:
        if prefixes and not name.startswith(tuple(prefixes)):
            continue
        _, stems, rate = outputs(name)
        stored[name] = summary(stems["vocals"], rate)
        print(name, stored[name].shape, file=sys.stderr)
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **stored)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        sys.exit("usage: python tests/regression.py --write [CASE-PREFIX ...]")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write(sys.argv[2:])
