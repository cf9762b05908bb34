"""How a song's frames reach a segment network (the ``stemunet`` U-Net), in torch and in ONNX
Runtime alike: the segments it is cut into, and the mask above the band the network sees.

numpy only, shared by :class:`vocalsep.models.stemunet.StemUNetModel` (torch) and
:class:`vocalsep.runtime.OnnxModel`, so that both cut and extend identically.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: the band a stemunet network sees unless its configuration says otherwise: Spleeter's 1024
#: bins (0–11 kHz at 44.1 kHz, n_fft 4096), the mask above it from 7–11 kHz
DEFAULT_BINS, DEFAULT_EXTENSION_HZ = 1024, (7000.0, 11000.0)

#: a segment's frames and the network's bins must be multiples of this (six stride-2 layers)
FRAME_MULTIPLE = 64


def segment_spans(frames: int, segment: int) -> list[tuple[int, int, int]]:
    """``(start, stop, padded)`` frame spans a song of ``frames`` frames is cut into: whole
    ``segment``-frame pieces, then the rest, zero-padded only to ``padded`` frames (the next
    multiple of :data:`FRAME_MULTIPLE`, not a whole segment: a 3-minute song's last piece is
    72 frames, padded to 128 rather than 512). Each piece is separated on its own."""
    spans = []
    for start in range(0, frames, segment):
        stop = min(start + segment, frames)
        spans.append((start, stop, -(-(stop - start) // FRAME_MULTIPLE) * FRAME_MULTIPLE))
    return spans


def network_band(params: dict[str, Any], sample_rate: int, n_fft: int) -> tuple[int, np.ndarray]:
    """A stemunet configuration's ``params`` → (the number of bins its network sees, the
    :func:`extension_bins` whose mean mask goes above them)."""
    net_bins = int(params.get("bins", DEFAULT_BINS))
    return net_bins, extension_bins(sample_rate, n_fft, net_bins,
                                    params.get("extension_hz", DEFAULT_EXTENSION_HZ))


def extension_bins(sample_rate: int, n_fft: int, net_bins: int,
                   extension_hz: tuple[float, float]) -> np.ndarray:
    """Indices of the network's bins within ``extension_hz``: their mean mask, per frame, is
    the mask of every bin above the network's band."""
    hz = np.arange(net_bins) * sample_rate / n_fft
    lo, hi = extension_hz
    band = np.flatnonzero((hz >= lo) & (hz <= hi))
    if not len(band):
        raise ValueError(f"extension_hz {lo:g}-{hi:g} Hz holds none of the network's "
                         f"{net_bins} bins (0-{hz[-1]:.0f} Hz)")
    return band
