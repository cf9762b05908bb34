"""Ideal binary and ratio masks: definitions, ranges, and what they do to a real clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import snr_db
from vocalsep import masks, spectral


@pytest.fixture()
def magnitudes():
    gen = torch.Generator().manual_seed(1)
    v = torch.rand(2, 65, 40, generator=gen) ** 3
    a = torch.rand(2, 65, 40, generator=gen) ** 3
    v[:, :5] = 0.0  # silent in both: the masks must stay defined there
    a[:, :5] = 0.0
    a[:, 5:8] = 0.0  # only vocals
    v[:, 8:11] = 0.0  # only accompaniment
    return v, a


def test_ibm_is_binary_and_equals_v_greater_than_a(magnitudes):
    v, a = magnitudes
    ibm = masks.ideal_binary_mask(v, a)
    assert ibm.shape == v.shape and ibm.dtype == v.dtype
    assert set(ibm.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ibm.bool(), v > a)
    assert ibm[:, :5].sum().item() == 0  # ties (silence) are not vocals
    assert ibm[:, 5:8].min().item() == 1.0
    assert ibm[:, 8:11].max().item() == 0.0


def test_irm_range_and_complement(magnitudes):
    v, a = magnitudes
    for power in (1.0, 2.0):
        irm_v = masks.ideal_ratio_mask(v, a, power)
        irm_a = masks.ideal_ratio_mask(a, v, power)
        assert irm_v.shape == v.shape
        assert torch.isfinite(irm_v).all()
        assert irm_v.min().item() >= 0.0 and irm_v.max().item() <= 1.0
        loud = (v.pow(power) + a.pow(power)) > 1e-4
        assert torch.allclose((irm_v + irm_a)[loud], torch.ones(int(loud.sum())), atol=1e-5)
        assert irm_v[:, :5].abs().max().item() == 0.0  # silent everywhere: 0
        only_vocals = irm_v[:, 5:8][v[:, 5:8].pow(power) > 1e-4]
        assert torch.allclose(only_vocals, torch.ones_like(only_vocals))
        # the larger source gets the larger share, and the IBM is the IRM thresholded at 0.5
        assert torch.equal(masks.binarize(irm_v)[loud], masks.ideal_binary_mask(v, a)[loud])


def test_irm_value_and_power():
    v = torch.tensor([3.0])
    a = torch.tensor([1.0])
    assert masks.ideal_ratio_mask(v, a).item() == pytest.approx(0.75, abs=1e-6)
    assert masks.ideal_ratio_mask(v, a, power=2).item() == pytest.approx(0.9, abs=1e-6)


def test_binarize_threshold():
    m = torch.tensor([0.1, 0.5, 0.51, 0.9])
    assert masks.binarize(m).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert masks.binarize(m, 0.2).tolist() == [0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["ibm", "irm"])
def test_oracle_masks_separate_a_real_clip(mir1k_stems, kind):
    vocals, accompaniment, _ = mir1k_stems
    mixture = vocals + accompaniment
    V = spectral.stft(torch.from_numpy(vocals))
    A = spectral.stft(torch.from_numpy(accompaniment))
    X = spectral.stft(torch.from_numpy(mixture))
    make = masks.ideal_binary_mask if kind == "ibm" else masks.ideal_ratio_mask
    mask = make(V.abs(), A.abs())
    estimate = spectral.istft(mask * X, len(mixture)).numpy()
    gain = snr_db(vocals, estimate) - snr_db(vocals, mixture)
    assert gain > 5.0, f"{kind} improves vocals SNR by only {gain:.1f} dB"
    # and the complementary mask recovers the accompaniment just as well
    acc_estimate = spectral.istft((1 - mask) * X, len(mixture)).numpy()
    np.testing.assert_allclose(estimate + acc_estimate, mixture, atol=1e-5)
    assert snr_db(accompaniment, acc_estimate) - snr_db(accompaniment, mixture) > 5.0
