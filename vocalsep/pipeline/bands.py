"""Bands and segments: how a model's frames and bins relate to the song's.

* A model's mask mapped onto the STFT at the input's rate that matches the model's
  (:func:`~vocalsep.pipeline.plan.full_band_stft`), up to the input's Nyquist (:func:`full_band_mask`).
* How a song's frames reach a segment network (the ``stemunet`` U-Net), in torch and in ONNX
  Runtime alike: the segments it is cut into (:func:`segment_spans`), and the mask above the
  band the network sees (:func:`network_band`).

numpy only, shared by the signal path (:mod:`vocalsep.pipeline.stream`),
:class:`vocalsep.models.stemunet.StemUNetModel` (torch) and
:class:`vocalsep.backends.onnx.OnnxModel`, so that all cut, map and extend identically.
"""
from __future__ import annotations

import numpy as np

from ..config import StemUNetParams

#: the band a stemunet network sees unless its configuration says otherwise: Spleeter's 1024
#: bins (0–11 kHz at 44.1 kHz, n_fft 4096), the mask above it from 7–11 kHz
DEFAULT_BINS, DEFAULT_EXTENSION_HZ = StemUNetParams.bins, StemUNetParams.extension_hz

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


def segment_batches(songs: int, frames: int, segment: int,
                    per_batch: int) -> list[list[tuple[int, int, int, int]]]:
    """How ``songs`` songs of ``frames`` frames go through a segment network: groups of
    ``(song, start, stop, padded)`` pieces run as one batch, each piece zero-padded to
    ``padded`` frames: every song's whole segments (song by song), ``per_batch`` at a time,
    then the rests (:func:`segment_spans`), all songs' at once. The torch model and ONNX
    Runtime both follow it."""
    spans = segment_spans(frames, segment)
    whole = [(song, *span) for song in range(songs) for span in spans if span[1] - span[0] == segment]
    rests = [(song, *span) for span in spans if span[1] - span[0] < segment for song in range(songs)]
    return [whole[i:i + per_batch] for i in range(0, len(whole), per_batch)] + ([rests] if rests else [])


def network_band(params: StemUNetParams, sample_rate: int, n_fft: int) -> tuple[int, np.ndarray]:
    """A stemunet configuration → (the number of bins its network sees, the
    :func:`extension_bins` whose mean mask goes above them)."""
    return params.bins, extension_bins(sample_rate, n_fft, params.bins, params.extension_hz)


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


#: the model's top band whose mean mask is carried above its Nyquist, in fractions of that
#: Nyquist (5 to 7.5 kHz for a 16 kHz model; the resampler's anti-alias roll-off starts near 7.3)
TOP_BAND = (0.625, 0.9375)


def full_band_mask(mask: np.ndarray, model_rate: int, model_n_fft: int, model_hop: int,
                   rate: int, n_fft: int, hop: int, frames: int,
                   band: tuple[float, float] = TOP_BAND, rolloff_db: float = 0.0,
                   first_frame: int = 0, first_model_frame: int = 0,
                   model_frames: int | None = None) -> np.ndarray:
    """A model's mask ``(..., model_n_fft//2+1, K)`` (STFT ``model_n_fft``/``model_hop`` at
    ``model_rate``) mapped onto a finer STFT at ``rate`` (``n_fft``/``hop``, ``frames`` frames):
    ``(..., n_fft//2+1, frames)``.

    * Time: frame ``j`` (centred at ``j·hop/rate`` s) takes the model's mask at the same time,
      linearly interpolated between the model's two nearest frames (1:1 when ``hop/rate ==
      model_hop/model_rate``; a rounded hop drifts by a fraction of a frame per minute otherwise,
      which this absorbs). Frames past the model's last one repeat it.
    * Frequency, up to the top of ``band`` (``band[1]`` × the model's Nyquist): linear
      interpolation over Hz between the model's bins.
    * Above that, up to ``rate/2``: per frame, the mean of the model's mask over ``band``
      (5 to 7.5 kHz for a 16 kHz model), i.e. the vocal share of the highest band the model
      sees reliably is assumed for the air band too (sibilants and breath follow the voiced
      parts, cymbals the rest), attenuated by ``rolloff_db`` per octave above the band's top
      (0 = carried flat up to Nyquist).

    For a piece of a stream: ``mask`` holds the model's frames from ``first_model_frame`` on,
    the output starts at frame ``first_frame``, and the song has ``model_frames`` model frames in
    all (default: the end of ``mask``); the piece must hold every model frame its output needs.
    """
    bins = n_fft // 2 + 1
    model_bins = mask.shape[-2]
    if model_frames is None:
        model_frames = first_model_frame + mask.shape[-1]
    dtype = mask.dtype
    # time: fractional model-frame position of every output frame
    pos = np.arange(first_frame, first_frame + frames, dtype=np.float64) * (
        hop * model_rate / (rate * model_hop))
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, model_frames - 1)
    i1 = np.minimum(i0 + 1, model_frames - 1)
    w = np.clip(pos - i0, 0, 1).astype(dtype)
    i0, i1 = i0 - first_model_frame, i1 - first_model_frame
    in_time = mask[..., i0] * (1 - w) + mask[..., i1] * w  # (..., model_bins, frames)
    # frequency
    nyquist = model_rate / 2
    top = band[1] * nyquist
    freqs = np.arange(bins, dtype=np.float64) * (rate / n_fft)
    below = freqs <= top
    fpos = np.minimum(freqs[below] * (model_n_fft / model_rate), model_bins - 1)
    f0 = np.clip(np.floor(fpos).astype(np.int64), 0, model_bins - 1)
    f1 = np.minimum(f0 + 1, model_bins - 1)
    fw = (fpos - f0).astype(dtype)[:, None]
    low = in_time[..., f0, :] * (1 - fw) + in_time[..., f1, :] * fw
    n_high = bins - int(below.sum())
    if n_high == 0:
        return low
    model_freqs = np.arange(model_bins, dtype=np.float64) * (model_rate / model_n_fft)
    in_band = (model_freqs >= band[0] * nyquist) & (model_freqs <= top)
    band_mean = in_time[..., in_band, :].mean(axis=-2, keepdims=True)  # (..., 1, frames)
    gain = np.ones(n_high)
    if rolloff_db:
        gain = 10 ** (-rolloff_db * np.log2(freqs[~below] / top) / 20)
    high = band_mean * gain.astype(dtype)[:, None]
    return np.concatenate([low, np.broadcast_to(high, (*low.shape[:-2], n_high, frames))], axis=-2)
