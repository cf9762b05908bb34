"""Spectrogram images of a finished job: the input and the separated vocals, side by side on
the page, with one colour scale so that what the mask removed shows as darkness.

Only the first :data:`SECONDS` seconds are drawn (read block by block, so a long song costs no
more than a short one). The magnitudes come from :func:`vocalsep.plots.log_spectrogram`
(``log1p |STFT|``, shown in dB); the figures use matplotlib's object API under a lock, since pyplot's
global state is not meant for several threads.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

SECONDS = 30.0
_LOCK = threading.Lock()


def head_mono(path: str | os.PathLike, seconds: float = SECONDS) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of an audio file mixed down to mono: float32 ``(samples,)`` and
    the rate in Hz."""
    from ..audio import AudioSource

    source = AudioSource(path)
    want = int(seconds * source.rate)
    blocks, have = [], 0
    for block in source.blocks():
        blocks.append(block.mean(axis=0))
        have += block.shape[1]
        if have >= want:
            break
    return np.concatenate(blocks)[:want], source.rate


def render_spectrograms(input_path: str | os.PathLike, vocals_path: str | os.PathLike,
                        out: dict[str, Path], seconds: float = SECONDS) -> dict[str, Path]:
    """Write ``out["input"]`` and ``out["vocals"]`` (PNG, written atomically): ``|STFT|`` in
    dB of the first ``seconds`` of each file (a window of about 46 ms, hop a quarter of it),
    time in s, frequency in kHz, one shared colour scale spanning 80 dB."""
    from matplotlib.figure import Figure

    from ..plots import _save, log_spectrogram

    signals = {"input": head_mono(input_path, seconds), "vocals": head_mono(vocals_path, seconds)}
    rate = signals["input"][1]
    n_fft = 1 << max(8, round(np.log2(0.046 * rate)))  # 1024 at 16-22 kHz, 2048 at 44.1-48 kHz
    hop = n_fft // 4
    # magnitude in dB (from log1p |X|), 80 dB shown below the louder image's peak
    specs = {name: 20 * np.log10(np.expm1(log_spectrogram(x, n_fft, hop)) + 1e-6)
             for name, (x, _) in signals.items()}
    vmax = max(float(s.max()) for s in specs.values())
    titles = {"input": "input", "vocals": "separated vocals"}
    with _LOCK:
        for name, spec in specs.items():
            frames = spec.shape[1]
            extent = (0.0, frames * hop / rate, 0.0, rate / 2000)
            fig = Figure(figsize=(6.4, 2.6))
            ax = fig.add_subplot()
            ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                      vmin=vmax - 80, vmax=vmax)
            ax.set_title(f"{titles[name]}: |STFT| in dB", fontsize=10)
            ax.set_xlabel("time (s)", fontsize=9)
            ax.set_ylabel("kHz", fontsize=9)
            ax.tick_params(labelsize=8)
            _save(fig, out[name])
    return out
