"""The waveform loss (vocalsep.losses) on real MIR-1K clips, and ``train --sdr-weight``."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import run_cli

from vocalsep.data import load_mir1k, magnitudes
from vocalsep.losses import masked_waveform_loss, negative_sdr
from vocalsep.spectral import stft

N_FFT, HOP = 1024, 256


@pytest.fixture(scope="module")
def clip(mir1k_dir):
    """A real clip's (vocals, accompaniment), ``(samples,)`` each, 16 kHz."""
    c = load_mir1k(mir1k_dir / "valid")[0]
    return torch.from_numpy(c.vocals[0]), torch.from_numpy(c.accompaniment[0])


def test_negative_sdr_is_the_decibels_of_the_error(clip):
    vocals, accompaniment = clip
    # half the signal: an error of a quarter of its power, 6.02 dB
    assert float(negative_sdr(vocals / 2, vocals)) == pytest.approx(-10 * math.log10(4), abs=0.05)
    # the mixture as the vocals' estimate: the error is the accompaniment
    expected = 10 * math.log10(float((accompaniment ** 2).sum() / (vocals ** 2).sum()))
    assert float(negative_sdr(vocals + accompaniment, vocals)) == pytest.approx(expected, abs=0.05)
    # a silent stem is scored on what leaks into it, not divided by zero
    silent = torch.zeros_like(vocals)
    assert float(negative_sdr(silent, silent)) == 0
    assert 0 < float(negative_sdr(accompaniment, silent)) < 100
    pair = torch.stack([vocals, vocals / 2])
    assert negative_sdr(pair, torch.stack([vocals, vocals])).shape == (2,)


def test_the_loss_of_a_whole_mask_is_the_mixture_given_to_the_vocals(clip):
    """Mask 1: the vocals' estimate is the mixture again (the iSTFT inverts the STFT) and the
    accompaniment's is silence."""
    vocals, accompaniment = clip
    ones = torch.ones(N_FFT // 2 + 1, vocals.shape[-1] // HOP + 1)
    loss = masked_waveform_loss(ones, vocals, accompaniment, N_FFT, HOP)
    expected = (negative_sdr(vocals + accompaniment, vocals)
                + negative_sdr(torch.zeros_like(accompaniment), accompaniment)) / 2
    assert float(loss) == pytest.approx(float(expected), abs=0.01)


def test_descending_the_loss_beats_the_magnitude_ratio_mask(clip):
    """A free mask fitted to the waveform loss for a few steps, from the mask of the stems'
    magnitude ratio, separates the real clip better than that mask: the loss sees the phase."""
    vocals, accompaniment = clip
    mix, mv, _ = magnitudes(vocals, accompaniment, N_FFT, HOP)
    start = (mv / mix.clamp_min(1e-8)).clamp(1e-4, 1 - 1e-4)
    logits = torch.logit(start).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    first = float(masked_waveform_loss(start, vocals, accompaniment, N_FFT, HOP))
    for _ in range(30):
        loss = masked_waveform_loss(torch.sigmoid(logits), vocals, accompaniment, N_FFT, HOP)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = float(masked_waveform_loss(torch.sigmoid(logits).detach(), vocals, accompaniment, N_FFT, HOP))
    assert last < first - 1.0, (first, last)


def test_stemunet_adds_the_weighted_waveform_loss(mir1k_dir):
    """A stereo default-sized network: with ``sdr_weight`` its training loss is the spectral
    one plus the weight times the waveform loss of its own whole-band mask."""
    from vocalsep.models import load

    model = load("default")
    model.train()
    c = load_mir1k(mir1k_dir / "valid")[1].converted(44_100, mono=False)
    n = (64 - 1) * 1024
    v = torch.from_numpy(c.vocals[..., :n]).expand(2, n).unsqueeze(0).contiguous()
    a = torch.from_numpy(c.accompaniment[..., :n]).expand(2, n).unsqueeze(0).contiguous()
    mags = magnitudes(v, a, 4096, 1024)
    model.target_frames = model.example_frames = mags[0].shape[-1]
    with torch.no_grad():
        plain = model.training_loss(*mags)
        both = model.training_loss(*mags, v, a, sdr_weight=0.5)
        mask = model.channel_masks(mags[0])
        expected = plain + 0.5 * masked_waveform_loss(mask, v, a, 4096, 1024)
    assert float(both) == pytest.approx(float(expected), abs=1e-4)
    with pytest.raises(ValueError, match="samples"):  # the weight without the waveforms
        model.training_loss(*mags, sdr_weight=0.5)
    with pytest.raises(ValueError, match="bins, frames"):  # the network's band only
        masked_waveform_loss(mask[..., : model.net_bins, :], v, a, 4096, 1024)


def test_examples_carry_the_stems_samples(mir1k_dir):
    """The sampler's and the validation's batches end with the stems' samples, mono or stereo,
    whose STFT is the batch's mixture magnitude."""
    from vocalsep.data import RemixSampler
    from vocalsep.models import load
    from vocalsep.train import validation_batches

    tracks = load_mir1k(mir1k_dir / "valid")
    for channels in (1, 2):
        sampler = RemixSampler(tracks, N_FFT, HOP, 32, channels=channels, waveforms=True)
        mix, _, _, v, a = sampler.batch(3)
        assert v.shape == a.shape == (3, *[channels] * (channels > 1), 31 * HOP)
        torch.testing.assert_close(stft(v + a, N_FFT, HOP).abs(), mix, atol=1e-3, rtol=1e-3)
    model = load("small")
    batch = validation_batches(model, tracks[:1], waveforms=True)[0]
    assert len(batch) == 5 and batch[3].shape[-1] == (model.example_frames - 1) * model.config.hop


def test_train_cli_with_the_waveform_loss(tmp_path, mir1k_valid_dir):
    """``--sdr-weight`` trains a stemunet (its validation loss carries the waveform term, in
    dB, so it is below the spectral one alone); refused for another model or with a past."""
    from vocalsep.models import load

    out = tmp_path / "run"
    common = ("--data", str(mir1k_valid_dir), "--valid", str(mir1k_valid_dir), "--epochs", "1",
              "--steps-per-epoch", "1", "--batch-size", "1", "--example-frames", "64", "-q")
    # (live: a shipped one-network stemunet, whose spectral loss the waveform term outweighs)
    r = run_cli("train", "stemunet", "--init", "live", "--stereo", "--sdr-weight", "0.5",
                "--out", str(out), *common)
    assert r.returncode == 0, r.stderr
    model = load(out / "best.pt")
    assert model.meta["train_config"]["sdr_weight"] == 0.5
    assert model.meta["valid_loss"] < 0  # −SDR of good separations dominates
    # resuming with another loss would compare losses in other measures: refused
    r = run_cli("train", "stemunet", "--init", "live", "--stereo", "--out", str(out),
                *common, "--epochs", "2")
    assert r.returncode == 1 and "sdr_weight" in r.stderr and "--restart" in r.stderr, r.stderr
    for bad in (("unet", "--sdr-weight", "0.5"), ("stemunet", "--sdr-weight", "-1"),
                ("stemunet", "--sdr-weight", "nan"), ("stemunet", "--sdr-weight", "inf"),
                ("stemunet", "--sdr-weight", "0.5", "--teacher", "default"),
                ("stemunet", "--sdr-weight", "0.5", "--past-frames", "16")):
        r = run_cli("train", *bad, "--out", str(tmp_path / "bad"), *common)
        assert r.returncode == 1 and "--sdr-weight" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()
