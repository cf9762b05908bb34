"""Time-frequency masks: ideal masks from stems (training targets and oracles), thresholds.

The ideal masks take magnitude spectrograms (torch tensors) of the same shape (any leading
dimensions, ``(..., bins, frames)``) and return a mask of that shape with values in ``[0, 1]``.
:func:`binarize` takes tensors or numpy arrays, :func:`full_band_mask` numpy arrays: both are
part of the streaming path, which runs without torch for ONNX models.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EPS = 1e-10


def ideal_binary_mask(vocals_mag: torch.Tensor, accompaniment_mag: torch.Tensor) -> torch.Tensor:
    """1 where the vocal magnitude exceeds the accompaniment's, else 0 (the paper's target)."""
    return (vocals_mag > accompaniment_mag).to(vocals_mag.dtype)


def ideal_ratio_mask(vocals_mag: torch.Tensor, accompaniment_mag: torch.Tensor,
                     power: float = 1.0) -> torch.Tensor:
    """Soft vocal share ``|V|^p / (|V|^p + |A|^p)`` per bin (0 where both are silent)."""
    v = vocals_mag.pow(power)
    a = accompaniment_mag.pow(power)
    return v / (v + a + EPS)


def binarize(mask: torch.Tensor | np.ndarray, threshold: float = 0.5) -> torch.Tensor | np.ndarray:
    """Hard mask: 1 where ``mask > threshold`` (a tensor or an array, as given)."""
    hard = mask > threshold
    return hard.astype(mask.dtype) if isinstance(mask, np.ndarray) else hard.to(mask.dtype)


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
