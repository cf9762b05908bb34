"""The spatial step: one step of the multichannel Wiener filter on the masked frames, window by
window, in numpy (no torch), as the stream's last stage before the iSTFT.

A vocal mask ``m`` per channel of a stereo song gives two source estimates per time-frequency
bin, the vocals ``m·x`` and the accompaniment ``(1−m)·x``. The step models each source ``j`` in
a window of frames as ``v_j(f, t)·R_j(f)``: a level ``v_j`` and a spatial covariance ``R_j``
(2 × 2 per frequency, from the window's estimates), and gives the vocals as

    ŷ_V = v_V R_V (v_V R_V + v_A R_A + λ I)⁻¹ x.

With ``power = 1`` the level is the channels' RMS magnitude ``v_j = (mean_c |y_jc|²)^½``, so the
levels weigh the sources as the mask does (on one channel, or two identical ones, the step
gives back ``m·x``), and what the step adds is where each source lies between the channels: a
voice panned apart from its band is taken more from its side (each channel's output may then
be louder or quieter than ``m·x``). ``power = 2`` is the usual Gaussian model
(:mod:`vocalsep.filtering`, whose EM sharpens the mask and loses studio-song SDR on the
default: docs/bench/studio-songs/results.md, session 13).

Windows lie on the song's own frame grid, ``window`` frames each, the last one ``window/2`` to
``1.5·window`` long (a short end has too few frames for a covariance), so the output does not
depend on how the song arrives in blocks; memory holds up to 1.5 windows of frames besides the
block coming in.
"""
from __future__ import annotations

import numpy as np

from ..timing import stage
from .stft import StreamingISTFT

#: the regularisation λ relative to the window's peak bin power, and to its peak level (for
#: ``power = 1``, the magnitude: −200 dB); it only keeps silence at 0 rather than 0/0
EPS = 1e-10
#: the length of a window: covariances from this much of the song. On MUSDB18's 7-s previews
#: a whole preview scored a little above two halves (docs/bench/studio-songs/results.md); on
#: whole songs a window follows the mix as it changes (the length there is not measured)
WINDOW_SECONDS = 10.0
#: bins filtered at a time (each bin's covariances are its own; float64 temporaries stay small)
BIN_CHUNK = 64


def spatial_filter(frames: np.ndarray, masks: np.ndarray, power: float = 1.0,
                   eps: float = EPS, peak: float | None = None) -> np.ndarray:
    """The vocal frames of one window after a Wiener step: ``frames`` complex ``(C, k, bins)``
    (frames first, ``C`` = 1 or 2), ``masks`` ``(1 or C, k, bins)`` vocal masks in [0, 1].
    Returns complex64 ``(C, k, bins)``; for ``C = 1`` the ratio of the two levels times ``x``
    (``power = 1``: ``m·x`` itself). λ is ``eps`` times ``peak`` (a power; default: the
    frames' largest bin power). Arithmetic in float64."""
    if not power > 0:
        raise ValueError("power must be > 0")
    x = np.asarray(frames, dtype=np.complex128)
    m = np.broadcast_to(np.asarray(masks, dtype=np.float64), x.shape)
    channels = x.shape[0]
    if channels > 2:
        raise ValueError(f"the spatial step takes 1 or 2 channels, not {channels}")
    energy = x.real ** 2 + x.imag ** 2  # (C, k, bins)
    if peak is None:
        peak = float(energy.max(initial=0.0))
    lam = eps * peak + 1e-30  # in the covariances' units (power)
    lam_level = eps * peak ** (power / 2) + 1e-30  # in the levels' units
    n = 1 - m
    pv, pa = m * m * energy, n * n * energy  # the estimates' powers per channel
    v, a = _level(pv.mean(axis=0), power), _level(pa.mean(axis=0), power)  # (k, bins)
    if channels == 1:
        return (v / (v + a + lam_level) * x).astype(np.complex64)
    return _two_channels(x, m, n, pv, pa, v, a, lam, lam_level)


def _level(p: np.ndarray, power: float) -> np.ndarray:
    """A source's level from its channel-mean power ``p``: ``p^(power/2)``."""
    return p if power == 2 else np.sqrt(p, out=p) if power == 1 else p ** (power / 2)


def _two_channels(x: np.ndarray, m: np.ndarray, n: np.ndarray, pv: np.ndarray, pa: np.ndarray,
                  v: np.ndarray, a: np.ndarray, lam: float, lam_level: float) -> np.ndarray:
    """The step for two channels in closed form (the 2 × 2 inverse), elementwise over
    ``(k, bins)``: ``x`` ``(2, k, bins)``; ``m``, ``n`` = 1 − ``m`` the two sources' masks and
    ``pv``, ``pa`` their powers ``(2, k, bins)``; ``v``, ``a`` their levels ``(k, bins)``."""
    cross = x[0] * x[1].conj()  # x0 x1*: (k, bins)
    # R = [[r00, r01], [r01*, r11]] per bin: Σ_t y yᴴ / Σ_t mean_c |y|²
    def cov(mask: np.ndarray, p: np.ndarray):
        s0, s1 = p[0].sum(axis=0), p[1].sum(axis=0)
        norm = 2 / (s0 + s1 + 2 * lam)
        return s0 * norm, (mask[0] * mask[1] * cross).sum(axis=0) * norm, s1 * norm

    (v00, v01, v11), (a00, a01, a11) = cov(m, pv), cov(n, pa)
    m00 = v * v00 + a * a00 + lam_level
    m11 = v * v11 + a * a11 + lam_level
    m01 = v * v01 + a * a01
    det = m00 * m11 - (m01.real ** 2 + m01.imag ** 2)
    v = v / det  # folds 1/det into the vocals' level
    z0 = m11 * x[0] - m01 * x[1]
    z1 = m00 * x[1] - m01.conj() * x[0]
    out = np.empty(x.shape, np.complex64)
    np.multiply(v, v00 * z0 + v01 * z1, out=out[0])
    np.multiply(v, v01.conj() * z0 + v11 * z1, out=out[1])
    return out


def window_frames(frame_rate: float, seconds: float = WINDOW_SECONDS) -> int:
    """Frames in a window of ``seconds`` at ``frame_rate`` frames per second (at least 2)."""
    return max(2, round(seconds * frame_rate))


class SpatialISTFT:
    """A :class:`~vocalsep.pipeline.stream.Reconstruction`: the masked frames through
    :func:`spatial_filter` below ``bins`` (above it, the mask alone), ``window`` frames at a time
    on the song's frame grid, then the streaming iSTFT."""

    def __init__(self, n_fft: int, hop: int, channels: int, window: int, bins: int | None = None,
                 power: float = 1.0):
        if window < 2:
            raise ValueError("window must be at least 2 frames")
        self.istft = StreamingISTFT(n_fft, hop, channels)
        self.window, self.power, self.channels = window, power, channels
        self.bins = n_fft // 2 + 1 if bins is None else bins
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.held = 0

    @property
    def emitted(self) -> int:
        return self.istft.emitted

    def feed(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self.frames.append(frames)
        self.masks.append(np.asarray(masks, dtype=np.float32))
        self.held += frames.shape[1]
        out = []
        while self.held >= self.window + self.window // 2:  # what stays is a window's half at least
            out.append(self._window(self.window))
        return np.concatenate(out, axis=1) if out else np.zeros((self.channels, 0), np.float32)

    def finish(self, length: int) -> np.ndarray:
        rest = self._window(self.held) if self.held else np.zeros((self.channels, 0), np.float32)
        with stage("istft"):
            return np.concatenate([rest, self.istft.finish(length)], axis=1)

    def _window(self, k: int) -> np.ndarray:
        """Filter and invert the first ``k`` held frames."""
        frames = np.concatenate(self.frames, axis=1) if len(self.frames) > 1 else self.frames[0]
        masks = np.concatenate(self.masks, axis=1) if len(self.masks) > 1 else self.masks[0]
        self.frames, self.masks = [frames[:, k:]], [masks[:, k:]]
        self.held -= k
        with stage("spatial"):
            vocals = np.empty((self.channels, k, frames.shape[2]), np.complex64)
            vocals[..., self.bins:] = masks[:, :k, self.bins:] * frames[:, :k, self.bins:]  # the mask alone
            heard = frames[:, :k, : self.bins]
            peak = float((heard.real ** 2 + heard.imag ** 2).max(initial=0.0))  # one λ per window
            for b0 in range(0, self.bins, BIN_CHUNK):  # bins are independent: bounded temporaries
                b1 = min(self.bins, b0 + BIN_CHUNK)
                vocals[..., b0:b1] = spatial_filter(frames[:, :k, b0:b1], masks[:, :k, b0:b1], self.power,
                                                    peak=peak)
        with stage("istft"):
            return self.istft.feed(vocals)
