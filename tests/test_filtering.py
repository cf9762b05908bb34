"""Multichannel Wiener filtering (vocalsep.filtering) and its use in the Separator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import check_stems
from vocalsep import audio as audio_io
from vocalsep.audio import read_audio
from vocalsep.filtering import _solve, wiener, wiener_from_mask
from vocalsep.separate import STEMS, Separator, SeparatorOptions
from vocalsep.spectral import stft


@pytest.fixture(scope="module")
def mono_clip(mir1k_stems):
    """Mixture STFT ``(1, bins, frames)`` of 2 s of a real MIR-1K clip, and a mask from its
    true stems (the ratio mask) - a realistic soft mask on real audio."""
    vocals, accompaniment, rate = mir1k_stems
    v = torch.from_numpy(vocals[None, : 2 * rate])
    a = torch.from_numpy(accompaniment[None, : 2 * rate])
    V, A = stft(v, 1024, 256), stft(a, 1024, 256)
    mask = V.abs() / (V.abs() + A.abs() + 1e-10)
    return V + A, mask


@pytest.fixture(scope="module")
def stereo_clip(musdb_track):
    """STFT ``(2, bins, frames)`` of 1.5 s of a real 44.1 kHz stereo MUSDB mixture, and a
    smooth pseudo-mask (a real mask needs a model; any [0, 1] mask will do here)."""
    a = read_audio(musdb_track)
    x = torch.from_numpy(np.ascontiguousarray(a.samples[:, a.rate: a.rate * 5 // 2]))
    spec = stft(x, 2048, 512)
    mag = spec.abs().mean(0, keepdim=True)
    mask = mag / (mag + mag.mean())
    return spec, mask


def test_mono_one_iteration_is_the_power_ratio_mask(mono_clip):
    spec, mask = mono_clip
    y = wiener_from_mask(mask, spec, iterations=1)
    V, A = spec.abs() * mask, spec.abs() * (1 - mask)
    ratio = V ** 2 / (V ** 2 + A ** 2)
    peak = spec.abs().max()
    assert (y[0] - ratio * spec).abs().max() < 1e-5 * peak
    assert (y[1] - (1 - ratio) * spec).abs().max() < 1e-5 * peak
    # the same through the general API, with explicit magnitudes
    y2 = wiener(torch.stack([V, A]), spec, iterations=1)
    assert (y2 - y).abs().max() < 1e-6 * peak


def test_mono_more_iterations_repeat_the_power_ratio(mono_clip):
    spec, mask = mono_clip
    y = wiener_from_mask(mask, spec, iterations=2)
    g = mask ** 2 / (mask ** 2 + (1 - mask) ** 2)
    g2 = g ** 2 / (g ** 2 + (1 - g) ** 2)
    assert (y[0] - g2 * spec).abs().max() < 1e-5 * spec.abs().max()


def test_zero_iterations_leaves_the_estimate_unchanged(mono_clip, stereo_clip):
    for spec, mask in (mono_clip, stereo_clip):
        y = wiener_from_mask(mask, spec, iterations=0)
        assert (y[0] - mask * spec).abs().max() < 1e-6 * spec.abs().max()
        assert (y[1] - (1 - mask) * spec).abs().max() < 1e-6 * spec.abs().max()
        mags = torch.stack([spec.abs() * mask, spec.abs() * 0.3])
        y = wiener(mags, spec, iterations=0)
        torch.testing.assert_close(y.abs(), mags.to(torch.float32), atol=1e-5, rtol=1e-5)


def test_stereo_shapes_and_sum(stereo_clip):
    spec, mask = stereo_clip
    y = wiener_from_mask(mask, spec, iterations=2)
    assert y.shape == (2, *spec.shape) and y.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(y)).all()
    # the filters of the two sources add up to the identity (up to the tiny regularisation)
    assert (y.sum(0) - spec).abs().max() < 1e-4 * spec.abs().max()
    only_vocals = wiener_from_mask(mask, spec, iterations=2, sources=(0,))
    assert only_vocals.shape == (1, *spec.shape)
    torch.testing.assert_close(only_vocals[0], y[0])
    # stereo is not per-channel masking: the channels share spatial models
    per_channel = mask ** 2 / (mask ** 2 + (1 - mask) ** 2) * spec
    assert (wiener_from_mask(mask, spec, 1)[0] - per_channel).abs().max() > 1e-3 * spec.abs().max()


def test_chunking_does_not_change_the_result(stereo_clip):
    spec, mask = stereo_clip
    a = wiener_from_mask(mask, spec, iterations=2, chunk_frames=7)
    b = wiener_from_mask(mask, spec, iterations=2, chunk_frames=10_000)
    assert (a - b).abs().max() < 1e-6 * spec.abs().max()


def test_scale_invariance(stereo_clip):
    spec, mask = stereo_clip
    a = wiener_from_mask(mask, spec, iterations=1)
    b = wiener_from_mask(mask, spec * 1000, iterations=1)
    assert (b / 1000 - a).abs().max() < 1e-5 * spec.abs().max()


def test_closed_form_solves_match_lapack():
    torch.manual_seed(0)
    for c in (1, 2, 3):
        m = torch.randn(50, c, c, dtype=torch.complex128)
        a = m @ m.conj().transpose(-1, -2) + 0.1 * torch.eye(c, dtype=torch.complex128)
        b = torch.randn(50, c, dtype=torch.complex128)
        expected = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(_solve(a, b), expected)


def test_three_channels(stereo_clip):
    spec, mask = stereo_clip
    spec3 = torch.cat([spec, spec[:1] * 0.5 + spec[1:] * 0.5])
    y = wiener_from_mask(mask, spec3, iterations=1)
    assert y.shape == (2, *spec3.shape)
    assert (y.sum(0) - spec3).abs().max() < 1e-4 * spec3.abs().max()


def test_silence_and_empty():
    spec = torch.zeros(2, 513, 5, dtype=torch.complex64)
    y = wiener_from_mask(torch.rand(1, 513, 5), spec, iterations=3)
    assert torch.all(y == 0)
    y = wiener_from_mask(torch.rand(1, 513, 0), torch.zeros(2, 513, 0, dtype=torch.complex64), 2)
    assert y.shape == (2, 2, 513, 0)


def test_bad_arguments(stereo_clip):
    spec, mask = stereo_clip
    with pytest.raises(ValueError):
        wiener_from_mask(mask, spec, iterations=-1)
    with pytest.raises(ValueError):
        wiener_from_mask(mask, spec.abs(), iterations=1)
    with pytest.raises(ValueError):
        Separator("small", SeparatorOptions(wiener=-1))


# --- through the Separator ------------------------------------------------------------------

def test_separator_wiener_zero_is_plain_masking(mir1k_stems):
    vocals, accompaniment, rate = mir1k_stems
    x = (vocals + accompaniment)[None, :rate].copy()
    a = Separator("small").separate(x, rate)
    b = Separator("small", SeparatorOptions(wiener=0)).separate(x, rate)
    np.testing.assert_array_equal(a["vocals"], b["vocals"])


def test_separator_wiener_mono_real_clip(mir1k_stems):
    vocals, accompaniment, rate = mir1k_stems
    x = (vocals + accompaniment)[None, : 2 * rate].copy()
    plain = Separator("small").separate(x, rate)
    filtered = Separator("small", SeparatorOptions(wiener=1)).separate(x, rate)
    check_stems(filtered, x)
    assert np.abs(filtered["vocals"] - plain["vocals"]).max() > 1e-4


def test_separator_wiener_stereo_44k(musdb_track):
    a = read_audio(musdb_track)
    x = np.ascontiguousarray(a.samples[:, : 2 * a.rate])
    for full_band in (True, False):
        stems = Separator("small", SeparatorOptions(wiener=2, full_band=full_band)).separate(x, a.rate)
        check_stems(stems, x)
        assert np.abs(stems["vocals"][0] - stems["vocals"][1]).max() > 1e-4


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("n", [1, 2, 300])
def test_separator_wiener_tiny_inputs_finite(rate, n):
    samples = np.full((2, n), 0.3, np.float32)
    stems = Separator("small", SeparatorOptions(wiener=2)).separate(samples, rate)
    check_stems(stems, samples)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_separator_wiener_silence(rate):
    samples = np.zeros((2, rate // 4), np.float32)
    stems = Separator("small", SeparatorOptions(wiener=1)).separate(samples, rate)
    for s in STEMS:
        assert np.all(stems[s] == 0)


def test_separator_wiener_8k_real(mir1k_stems):
    vocals, accompaniment, rate = mir1k_stems
    x = audio_io.resample((vocals + accompaniment)[None, : 2 * rate], rate, 8000)
    stems = Separator("small", SeparatorOptions(wiener=1)).separate(x, 8000)
    check_stems(stems, x)
    assert np.abs(stems["vocals"]).max() > 1e-4
