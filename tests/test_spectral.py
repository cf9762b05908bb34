"""STFT/iSTFT, log1p magnitude, Griffin-Lim, and cutting spectrograms into 100-frame windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocalsep import spectral


@pytest.mark.parametrize("n", [1, 2, 511, 512, 513, 1000, 2048, 4097])
@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (1024, 256)])
def test_stft_istft_round_trip_random(n, n_fft, hop):
    gen = torch.Generator().manual_seed(n)
    x = torch.rand(2, n, generator=gen) * 2 - 1
    spec = spectral.stft(x, n_fft, hop)
    assert spec.is_complex()
    assert spec.shape == (2, n_fft // 2 + 1, n // hop + 1)
    y = spectral.istft(spec, n, n_fft, hop)
    assert y.shape == x.shape
    assert (y - x).abs().max().item() < 1e-5


def test_stft_istft_round_trip_real_audio(mir1k_stems):
    vocals, accompaniment, _ = mir1k_stems
    x = torch.from_numpy(np.stack([accompaniment, vocals]))
    spec = spectral.stft(x)
    assert spec.shape == (2, 1025, x.shape[1] // 512 + 1)
    y = spectral.istft(spec, x.shape[1])
    assert (y - x).abs().max().item() < 1e-5


def test_stft_float64_round_trip():
    x = torch.randn(3, 3000, dtype=torch.float64)
    y = spectral.istft(spectral.stft(x), 3000)
    assert y.dtype == torch.float64
    assert (y - x).abs().max().item() < 1e-10


@pytest.mark.parametrize("n", [1, 511, 512, 513, 1023, 1024, 1025, 16000])
@pytest.mark.parametrize("hop", [256, 512])
def test_frame_count(n, hop):
    spec = spectral.stft(torch.zeros(n), 4 * hop, hop)
    assert spec.shape[-1] == n // hop + 1


def test_stft_keeps_leading_dimensions():
    x = torch.randn(2, 3, 1500)
    spec = spectral.stft(x, 512, 128)
    assert spec.shape == (2, 3, 257, 1500 // 128 + 1)
    # each channel is transformed on its own
    assert torch.allclose(spec[1, 2], spectral.stft(x[1, 2], 512, 128))
    assert spectral.istft(spec, 1500, 512, 128).shape == (2, 3, 1500)


def test_frame_k_is_centred_on_sample_k_times_hop():
    n, hop = 8192, 512
    x = torch.zeros(n)
    x[5 * hop] = 1.0  # an impulse: the frame centred on it sees the window's peak
    mag = spectral.stft(x, 2048, hop).abs()
    assert int(mag[0].argmax()) == 5


def test_log_magnitude_is_log1p_of_abs():
    spec = spectral.stft(torch.randn(1, 4000) * 10)
    feat = spectral.log_magnitude(spec)
    assert feat.shape == spec.shape
    assert not feat.is_complex()
    expected = np.log1p(np.abs(spec.numpy()))
    np.testing.assert_allclose(feat.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert feat.min().item() >= 0.0
    assert spectral.log_magnitude(torch.zeros(3, dtype=torch.complex64)).abs().max().item() == 0.0


def _spectral_convergence(y: torch.Tensor, magnitude: torch.Tensor) -> float:
    return ((spectral.stft(y).abs() - magnitude).norm() / magnitude.norm()).item()


def test_griffin_lim_improves_on_its_first_iteration(mir1k_stems):
    vocals, _, rate = mir1k_stems
    x = torch.from_numpy(vocals[:rate])  # one second of real singing
    magnitude = spectral.stft(x).abs()
    first = spectral.griffin_lim(magnitude, len(x), iterations=1)
    many = spectral.griffin_lim(magnitude, len(x), iterations=24)
    assert first.shape == many.shape == x.shape
    assert torch.isfinite(many).all()
    err_first = _spectral_convergence(first, magnitude)
    err_many = _spectral_convergence(many, magnitude)
    assert err_many < 0.5 * err_first


def test_griffin_lim_with_true_phase_is_exact():
    x = torch.randn(2, 6000)
    spec = spectral.stft(x)
    y = spectral.griffin_lim(spec.abs(), 6000, iterations=0, init_phase=torch.angle(spec))
    assert (y - x).abs().max().item() < 1e-4


def test_griffin_lim_float64():
    magnitude = spectral.stft(torch.randn(3000, dtype=torch.float64)).abs()
    y = spectral.griffin_lim(magnitude, 3000, iterations=2)
    assert y.dtype == torch.float64 and y.shape == (3000,)


@pytest.mark.parametrize("frames", [1, 37, 99, 100, 101, 200, 250])
def test_cut_and_join_windows_round_trip(frames):
    spec = torch.randn(1025, frames)
    windows = spectral.cut_windows(spec)
    n = -(-frames // 100)
    assert windows.shape == (n, 1025, 100)
    # padded to a multiple of 100 frames with zeros, windows in order
    flat = torch.cat(list(windows), dim=1)
    assert flat.shape == (1025, n * 100)
    assert torch.equal(flat[:, :frames], spec)
    assert flat[:, frames:].abs().sum().item() == 0.0
    assert torch.equal(spectral.join_windows(windows, frames), spec)


def test_cut_windows_other_width():
    spec = torch.arange(3 * 10, dtype=torch.float32).reshape(3, 10)
    windows = spectral.cut_windows(spec, width=4)
    assert windows.shape == (3, 3, 4)
    assert torch.equal(windows[1], spec[:, 4:8])
    assert torch.equal(windows[2, :, :2], spec[:, 8:])
    assert torch.equal(spectral.join_windows(windows, 10), spec)
