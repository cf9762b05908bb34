"""STFT and inverse STFT on a stream of samples, equal to :func:`vocalsep.spectral.stft` /
:func:`~vocalsep.spectral.istft` of the whole signal (centred frames, zero padding at both ends).

Frame ``j`` covers samples ``[j·hop − n_fft/2, j·hop + n_fft/2)``; it is complete as soon as
those samples have arrived. The inverse overlap-adds windowed frames and divides by the
overlap-added squared window, as ``torch.istft`` does; output samples are final once no later
frame can reach them. Memory holds about one window of samples, whatever the length.

numpy and scipy's FFT (no torch), so that separation with an ONNX model starts without
importing torch; scipy's FFT on all cores is 3–5× faster here than numpy's. Importing
``scipy.fft`` takes a third of a second on a 2-core machine (``python -X importtime``):
:func:`preload_fft` starts it on a thread, to overlap with loading the model.
Shapes: samples ``(channels, m)`` float32 arrays; frames ``(channels, k, n_fft//2+1)`` complex64,
frames first (the layout the FFT gives and takes, and the network's: no transposes on the way;
``.swapaxes(-1, -2)`` of :func:`vocalsep.spectral.stft`'s ``(channels, bins, k)``).
"""
from __future__ import annotations

import threading
from types import ModuleType

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: threads of each FFT (-1: all CPUs)
FFT_WORKERS = -1


def _fft() -> ModuleType:
    """``scipy.fft``, imported on first use (the import lock makes a second caller wait)."""
    import scipy.fft

    return scipy.fft


def preload_fft() -> None:
    """Import ``scipy.fft`` on a background thread now (much of the model's loading runs
    without holding the GIL, so the two overlap)."""
    threading.Thread(target=_fft, name="preload-scipy-fft", daemon=True).start()


def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``n_fft`` samples, float32 (as ``torch.hann_window``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _no_frames(channels: int, n_fft: int) -> np.ndarray:
    return np.zeros((channels, 0, n_fft // 2 + 1), dtype=np.complex64)


class StreamingSTFT:
    """Centred STFT of a signal that arrives in blocks."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        self.n_fft, self.hop, self.half = n_fft, hop, n_fft // 2
        self.window = hann(n_fft)
        self.buffer = np.zeros((channels, self.half), dtype=np.float32)  # starts at sample −n_fft/2
        self.buffer_start = -self.half  # global index of buffer[:, 0]
        self.received = 0  # samples fed so far
        self.next_frame = 0

    def _frames_until(self, last: int) -> np.ndarray:
        """Frames ``next_frame .. last`` (inclusive) from the buffer; drops what they used up."""
        first = self.next_frame
        if last < first:
            return _no_frames(self.buffer.shape[0], self.n_fft)
        lo = first * self.hop - self.half - self.buffer_start
        hi = last * self.hop + self.half - self.buffer_start
        windows = sliding_window_view(self.buffer[:, lo:hi], self.n_fft, axis=-1)[:, :: self.hop]
        spec = _fft().rfft(windows * self.window, axis=-1, workers=FFT_WORKERS)  # (channels, k, bins)
        self.next_frame = last + 1
        keep = self.next_frame * self.hop - self.half - self.buffer_start
        self.buffer = self.buffer[:, keep:]
        self.buffer_start += keep
        return spec.astype(np.complex64, copy=False)

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Add ``(channels, m)`` samples; return the frames completed by them."""
        self.buffer = np.concatenate([self.buffer, np.asarray(block, dtype=np.float32)], axis=1)
        self.received += block.shape[1]
        return self._frames_until((self.received - self.half) // self.hop)

    def finish(self) -> np.ndarray:
        """The remaining frames, up to frame ``n // hop`` of an ``n``-sample signal."""
        pad = np.zeros((self.buffer.shape[0], self.half), dtype=np.float32)
        self.buffer = np.concatenate([self.buffer, pad], axis=1)
        return self._frames_until(self.received // self.hop)


class StreamingISTFT:
    """Inverse of :class:`StreamingSTFT`: frames in, final samples out."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        self.n_fft, self.hop, self.half = n_fft, hop, n_fft // 2
        self.window = hann(n_fft)
        self.sum = np.zeros((channels, 0), dtype=np.float32)  # overlap-added frames, from `start`
        self.norm = np.zeros(0, dtype=np.float32)  # overlap-added squared window
        self.start = 0  # padded-signal position of sum[:, 0] (sample = position − n_fft/2)
        self.frames = 0  # frames fed so far
        self.emitted = 0  # samples returned so far

    def feed(self, spec: np.ndarray) -> np.ndarray:
        """Add frames ``(channels, k, bins)``; return the samples no later frame can change."""
        k = spec.shape[1]
        if k:
            frames = _fft().irfft(spec, n=self.n_fft, axis=-1, workers=FFT_WORKERS)
            frames = frames.astype(np.float32, copy=False) * self.window  # (channels, k, n_fft)
            first = self.frames * self.hop - self.start
            span = (k - 1) * self.hop + self.n_fft
            grow = first + span - self.sum.shape[1]
            if grow > 0:
                self.sum = np.pad(self.sum, ((0, 0), (0, grow)))
                self.norm = np.pad(self.norm, (0, grow))
            self.sum[:, first:first + span] += _overlap_add(frames, self.hop)
            squares = np.broadcast_to(self.window ** 2, (1, k, self.n_fft))
            self.norm[first:first + span] += _overlap_add(squares, self.hop)[0]
            self.frames += k
        return self._release(self.frames * self.hop)

    def _release(self, final_until: int, length: int | None = None) -> np.ndarray:
        """Samples of positions below ``final_until`` (and below ``length`` samples)."""
        stop = min(final_until - self.start, self.sum.shape[1])
        if length is not None:
            stop = min(stop, length + self.half - self.start)
        skip = max(0, self.half - self.start)  # positions before sample 0
        if stop <= skip:
            return np.zeros((self.sum.shape[0], 0), dtype=np.float32)
        norm = self.norm[skip:stop]
        out = self.sum[:, skip:stop] / np.where(norm > 1e-11, norm, np.float32(1))
        self.sum, self.norm = self.sum[:, stop:], self.norm[stop:]
        self.start += stop
        self.emitted += out.shape[1]
        return out

    def finish(self, length: int) -> np.ndarray:
        """The remaining samples of a ``length``-sample signal (zeros past the last frame)."""
        out = self._release(self.start + self.sum.shape[1], length)
        missing = length - self.emitted
        if missing > 0:
            out = np.pad(out, ((0, 0), (0, missing)))
            self.emitted += missing
        return out


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """``(channels, k, n_fft)`` windowed frames → ``(channels, (k-1)·hop + n_fft)`` summed at
    ``hop`` spacing. Each frame is cut into ``ceil(n_fft / hop)`` hop-long pieces (the last one
    zero-padded) and piece ``i`` of every frame is added in one step, ``i`` hops later: a few
    whole-array additions instead of a loop over frames."""
    channels, k, n_fft = frames.shape
    pieces = -(-n_fft // hop)
    if pieces * hop != n_fft:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, pieces * hop - n_fft)))
    frames = frames.reshape(channels, k, pieces, hop)
    out = np.zeros((channels, k + pieces - 1, hop), dtype=frames.dtype)
    for i in range(pieces):
        out[:, i:i + k] += frames[:, :, i]
    return out.reshape(channels, -1)[:, : (k - 1) * hop + n_fft]
