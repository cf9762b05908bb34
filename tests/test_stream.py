"""Streaming STFT / iSTFT: the same frames and samples as the whole-signal transforms, for any
signal length and block size; buffers stay about one window long. The streaming transforms hold
frames first, ``(channels, frames, bins)``: the whole-signal ones' layout swapped."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocalsep.spectral import istft, stft
from vocalsep.pipeline.stft import StreamingISTFT, StreamingSTFT


def _stream_stft(x: torch.Tensor, n_fft: int, hop: int, block: int) -> torch.Tensor:
    s = StreamingSTFT(n_fft, hop, x.shape[0])
    frames = [s.feed(x[:, i:i + block].numpy()) for i in range(0, x.shape[1], block)]
    frames.append(s.finish())
    assert all(f.ndim == 3 and f.shape[0] == 2 and f.shape[2] == n_fft // 2 + 1 for f in frames)  # frames first
    return torch.from_numpy(np.concatenate(frames, axis=1)).transpose(1, 2)


@pytest.mark.parametrize("n,n_fft,hop,block", [
    (10_000, 1024, 256, 1000), (10_000, 1024, 256, 1), (9_999, 2048, 512, 4096),
    (700, 1024, 256, 333), (1, 1024, 256, 1), (4096, 4096, 1024, 4096), (5_000, 2822, 706, 777)])
def test_stream_stft_equals_stft(n, n_fft, hop, block):
    x = torch.randn(2, n)
    whole = stft(x, n_fft, hop)
    streamed = _stream_stft(x, n_fft, hop, block)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("n,n_fft,hop,frames_per_feed", [
    (10_000, 1024, 256, 7), (10_000, 1024, 256, 1), (9_999, 2048, 512, 100),
    (700, 1024, 256, 3), (1, 1024, 256, 1), (5_000, 2822, 706, 2)])
def test_stream_istft_of_masked_frames_equals_istft(n, n_fft, hop, frames_per_feed):
    torch.manual_seed(n)
    x = torch.randn(2, n)
    spec = stft(x, n_fft, hop) * torch.rand(1, n_fft // 2 + 1, n // hop + 1)
    whole = istft(spec, n, n_fft, hop)
    s = StreamingISTFT(n_fft, hop, 2)
    parts = [s.feed(spec[..., i:i + frames_per_feed].transpose(1, 2).numpy())
             for i in range(0, spec.shape[-1], frames_per_feed)]
    assert s.sum.shape[1] <= n_fft + frames_per_feed * hop  # only the unfinished overlap waits
    parts.append(s.finish(n))
    streamed = torch.from_numpy(np.concatenate(parts, axis=1))
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)


def test_stream_round_trip_and_bounded_buffer():
    x = np.random.default_rng(0).standard_normal((1, 200_000)).astype(np.float32)
    fwd, inv = StreamingSTFT(1024, 256, 1), StreamingISTFT(1024, 256, 1)
    out = []
    for i in range(0, x.shape[1], 4410):
        out.append(inv.feed(fwd.feed(x[:, i:i + 4410])))
        assert fwd.buffer.shape[1] < 1024 + 4410
        assert inv.sum.shape[1] < 1024 + 4410
    out.append(inv.feed(fwd.finish()))
    out.append(inv.finish(x.shape[1]))
    np.testing.assert_allclose(np.concatenate(out, axis=1), x, atol=1e-5, rtol=1e-4)
