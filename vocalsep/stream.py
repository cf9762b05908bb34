"""STFT and inverse STFT on a stream of samples, equal to :func:`vocalsep.spectral.stft` /
:func:`~vocalsep.spectral.istft` of the whole signal (centred frames, zero padding at both ends).

Frame ``j`` covers samples ``[j·hop − n_fft/2, j·hop + n_fft/2)``; it is complete as soon as
those samples have arrived. The inverse overlap-adds windowed frames and divides by the
overlap-added squared window, as ``torch.istft`` does; output samples are final once no later
frame can reach them. Memory holds about one window of samples, whatever the length.

Shapes: samples ``(channels, m)`` float32 tensors; frames ``(channels, n_fft//2+1, k)`` complex.
"""
from __future__ import annotations

import torch

from .spectral import hann


class StreamingSTFT:
    """Centred STFT of a signal that arrives in blocks."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        self.n_fft, self.hop, self.half = n_fft, hop, n_fft // 2
        self.window = hann(n_fft)
        self.buffer = torch.zeros(channels, self.half)  # starts at sample −n_fft/2
        self.buffer_start = -self.half  # global index of buffer[:, 0]
        self.received = 0  # samples fed so far
        self.next_frame = 0

    def _frames_until(self, last: int) -> torch.Tensor:
        """Frames ``next_frame .. last`` (inclusive) from the buffer; drops what they used up."""
        first = self.next_frame
        if last < first:
            return torch.zeros(self.buffer.shape[0], self.half + 1, 0, dtype=torch.complex64)
        lo = first * self.hop - self.half - self.buffer_start
        hi = last * self.hop + self.half - self.buffer_start
        spec = torch.stft(self.buffer[:, lo:hi], self.n_fft, self.hop, window=self.window,
                          center=False, return_complex=True)
        self.next_frame = last + 1
        keep = self.next_frame * self.hop - self.half - self.buffer_start
        self.buffer = self.buffer[:, keep:]
        self.buffer_start += keep
        return spec

    def feed(self, block: torch.Tensor) -> torch.Tensor:
        """Add ``(channels, m)`` samples; return the frames completed by them."""
        self.buffer = torch.cat([self.buffer, block.to(self.buffer.dtype)], dim=1)
        self.received += block.shape[1]
        return self._frames_until((self.received - self.half) // self.hop)

    def finish(self) -> torch.Tensor:
        """The remaining frames, up to frame ``n // hop`` of an ``n``-sample signal."""
        pad = torch.zeros(self.buffer.shape[0], self.half)
        self.buffer = torch.cat([self.buffer, pad], dim=1)
        return self._frames_until(self.received // self.hop)


class StreamingISTFT:
    """Inverse of :class:`StreamingSTFT`: frames in, final samples out."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        self.n_fft, self.hop, self.half = n_fft, hop, n_fft // 2
        self.window = hann(n_fft)
        self.sum = torch.zeros(channels, 0)  # overlap-added frames, from position `start`
        self.norm = torch.zeros(0)  # overlap-added squared window
        self.start = 0  # padded-signal position of sum[:, 0] (sample = position − n_fft/2)
        self.frames = 0  # frames fed so far
        self.emitted = 0  # samples returned so far

    def feed(self, spec: torch.Tensor) -> torch.Tensor:
        """Add frames ``(channels, bins, k)``; return the samples no later frame can change."""
        k = spec.shape[-1]
        if k:
            chunks = torch.fft.irfft(spec, n=self.n_fft, dim=-2) * self.window[:, None]
            first = self.frames * self.hop - self.start
            end = first + (k - 1) * self.hop + self.n_fft
            if end > self.sum.shape[1]:
                grow = end - self.sum.shape[1]
                self.sum = torch.cat([self.sum, torch.zeros(self.sum.shape[0], grow)], dim=1)
                self.norm = torch.cat([self.norm, torch.zeros(grow)])
            span = (k - 1) * self.hop + self.n_fft
            self.sum[:, first:first + span] += _overlap_add(chunks, self.hop)
            self.norm[first:first + span] += _overlap_add(
                (self.window ** 2)[None, :, None].expand(1, -1, k), self.hop)[0]
            self.frames += k
        return self._release(self.frames * self.hop)

    def _release(self, final_until: int, length: int | None = None) -> torch.Tensor:
        """Samples of positions below ``final_until`` (and below ``length`` samples)."""
        stop = min(final_until - self.start, self.sum.shape[1])
        if length is not None:
            stop = min(stop, length + self.half - self.start)
        skip = max(0, self.half - self.start)  # positions before sample 0
        if stop <= skip:
            return torch.zeros(self.sum.shape[0], 0)
        norm = self.norm[skip:stop]
        out = self.sum[:, skip:stop] / torch.where(norm > 1e-11, norm, torch.ones_like(norm))
        self.sum, self.norm = self.sum[:, stop:], self.norm[stop:]
        self.start += stop
        self.emitted += out.shape[1]
        return out

    def finish(self, length: int) -> torch.Tensor:
        """The remaining samples of a ``length``-sample signal (zeros past the last frame)."""
        out = self._release(self.start + self.sum.shape[1], length)
        missing = length - self.emitted
        if missing > 0:
            out = torch.cat([out, torch.zeros(out.shape[0], missing)], dim=1)
            self.emitted += missing
        return out


def _overlap_add(chunks: torch.Tensor, hop: int) -> torch.Tensor:
    """``(channels, n_fft, k)`` windowed frames → ``(channels, (k-1)·hop + n_fft)`` summed at
    ``hop`` spacing. Each frame is cut into ``ceil(n_fft / hop)`` hop-long pieces (the last one
    zero-padded) and piece ``i`` of every frame is added in one step, ``i`` hops later: a few
    whole-tensor additions instead of a loop over frames (and 8× faster than ``fold`` here)."""
    channels, n_fft, k = chunks.shape
    pieces = -(-n_fft // hop)
    frames = torch.nn.functional.pad(chunks, (0, 0, 0, pieces * hop - n_fft))
    frames = frames.reshape(channels, pieces, hop, k).permute(0, 3, 1, 2)  # (c, k, piece, hop)
    out = chunks.new_zeros(channels, k + pieces - 1, hop)
    for i in range(pieces):
        out[:, i:i + k] += frames[:, :, i]
    return out.reshape(channels, -1)[:, : (k - 1) * hop + n_fft]
