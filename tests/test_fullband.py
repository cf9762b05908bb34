"""Full-band separation: the mask applied at the input rate, so the vocals keep what lies above
the model's Nyquist (8 kHz for the 16 kHz models: the shipped `small`), on real 44.1 kHz (and
48 kHz) music."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import check_silence_stays_silence, check_stems
from vocalsep import audio as audio_io
from vocalsep.cli import build_parser
from vocalsep.pipeline.bands import TOP_BAND, full_band_mask
from vocalsep.pipeline.plan import full_band_stft
from vocalsep.separate import Separator, SeparatorOptions
from vocalsep.spectral import stft


@pytest.fixture(scope="module")
def example_stems(example_song):
    return example_song


@pytest.fixture(scope="module")
def separated(example_stems):
    """Vocals of the example, full band (the default) and ``--no-full-band``, shipped model."""
    mixture, _, rate = example_stems
    full = Separator("small").separate(mixture, rate)
    limited = Separator("small", SeparatorOptions(full_band=False)).separate(mixture, rate)
    return full, limited


def band_energy(x: np.ndarray, rate: int, above_hz: float) -> float:
    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 4096, 1024).abs() ** 2
    freqs = torch.arange(spec.shape[-2]) * rate / 4096
    return float(spec[..., freqs >= above_hz, :].sum())


def _check_stems(stems, samples):
    check_stems(stems, samples, dtype=np.float32)


def test_full_band_is_the_default():
    assert SeparatorOptions().full_band is True


def test_full_band_keeps_vocals_above_11k(example_stems, separated):
    mixture, vocals, rate = example_stems
    full, limited = separated
    truth = band_energy(vocals, rate, 11_000)
    assert truth > 0
    full_db = 10 * np.log10(band_energy(full["vocals"], rate, 11_000) / truth)
    limited_db = 10 * np.log10(max(band_energy(limited["vocals"], rate, 11_000), 1e-30) / truth)
    # vocal air (sibilants, breath) is there, at a level comparable to the true vocals' ...
    assert full_db > -25, f"vocals above 11 kHz: {full_db:.1f} dB re the true vocals"
    # ... where the band-limited path leaves (almost) nothing: it all went to the accompaniment
    assert full_db - limited_db > 40, f"full band {full_db:.1f} dB, --no-full-band {limited_db:.1f} dB"
    # and not everything above 11 kHz is called vocals
    assert band_energy(full["vocals"], rate, 11_000) < 0.9 * band_energy(mixture, rate, 11_000)


def test_full_band_shapes_and_exact_sum(example_stems, separated):
    mixture, _, _ = example_stems
    for stems in separated:
        _check_stems(stems, mixture)
    full, limited = separated
    # each channel gets its own vocals (the mask is shared, the STFTs are not)
    assert np.abs(full["vocals"][0] - full["vocals"][1]).max() > 1e-3
    # below the model's Nyquist both paths apply the same mask: the vocals are alike there
    rate = example_stems[2]
    low = lambda x: x - _highpass(x, rate, 7000)
    a, b = low(full["vocals"]), low(limited["vocals"])
    assert np.sum((a - b) ** 2) < 0.1 * np.sum(b ** 2)


def _highpass(x: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    from vocalsep.spectral import istft

    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 2048, 512)
    freqs = torch.arange(spec.shape[-2]) * rate / 2048
    spec[..., freqs < cutoff, :] = 0
    return istft(spec, x.shape[-1], 2048, 512).numpy()


def test_48k_stereo_in_48k_stereo_out(example_stems):
    mixture, _, rate = example_stems
    x = audio_io.resample(mixture[:, : 2 * rate], rate, 48_000)
    stems = Separator("small").separate(x, 48_000)
    _check_stems(stems, x)
    assert stems["vocals"].shape == (2, x.shape[1])
    assert band_energy(stems["vocals"], 48_000, 11_000) > 1e-4 * band_energy(x, 48_000, 11_000)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_silence_stays_silence(rate, channels):
    check_silence_stays_silence(Separator("small"), channels, rate // 4, rate)


@pytest.mark.parametrize("n", [1, 3, 700])
def test_tiny_inputs_full_band(n, example_stems):
    mixture, _, rate = example_stems
    samples = np.ascontiguousarray(mixture[:, 20_000:20_000 + n])
    stems = Separator("small").separate(samples, rate)
    _check_stems(stems, samples)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_at_or_below_the_model_rate_full_band_changes_nothing(rate, mir1k_stems):
    vocals, accompaniment, clip_rate = mir1k_stems
    x = audio_io.resample((vocals + accompaniment)[None, : 2 * clip_rate], clip_rate, rate)
    a = Separator("small").separate(x, rate)
    b = Separator("small", SeparatorOptions(full_band=False)).separate(x, rate)
    np.testing.assert_array_equal(a["vocals"], b["vocals"])


def test_no_full_band_vocals_stop_at_the_model_nyquist(example_stems, separated):
    _, _, rate = example_stems
    _, limited = separated
    assert band_energy(limited["vocals"], rate, 8_500) < 1e-6 * band_energy(limited["vocals"], rate, 0)


def test_full_band_griffin_lim_and_wiener(example_stems):
    mixture, _, rate = example_stems
    x = np.ascontiguousarray(mixture[:, rate: 2 * rate])
    for opts in (SeparatorOptions(reconstruct="griffinlim", griffin_lim_iterations=3),
                 SeparatorOptions(wiener=1),
                 SeparatorOptions(reconstruct="griffinlim", griffin_lim_iterations=2, wiener=2)):
        stems = Separator("small", opts).separate(x, rate)
        _check_stems(stems, x)
        assert band_energy(stems["vocals"], rate, 11_000) > 0


def test_full_band_stft_sizes():
    assert full_band_stft(1024, 256, 16000, 44100) == (2822, 706)
    assert full_band_stft(1024, 256, 16000, 48000) == (3072, 768)
    assert full_band_stft(2048, 512, 16000, 44100) == (5644, 1411)
    assert full_band_stft(1024, 256, 16000, 16000) == (1024, 256)


def mapped(mask: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """:func:`full_band_mask` (numpy) of a tensor, as a tensor."""
    return torch.from_numpy(np.ascontiguousarray(full_band_mask(mask.numpy(), *args, **kwargs)))


def test_full_band_mask_mapping():
    torch.manual_seed(0)
    mask = torch.rand(1, 513, 40)
    # same rate and STFT: the identity (below the top band)
    same = mapped(mask, 16000, 1024, 256, 16000, 1024, 256, 40, band=(0.625, 1.0))
    torch.testing.assert_close(same, mask)
    # 48 kHz = 3 × 16 kHz, n_fft and hop × 3: frames 1:1 and bins 1:1 (the same Hz per bin)
    fine = mapped(mask, 16000, 1024, 256, 48000, 3072, 768, 40)
    assert fine.shape == (1, 1537, 40)
    top_bin = int(TOP_BAND[1] * 512)  # 7.5 kHz
    torch.testing.assert_close(fine[:, : top_bin + 1], mask[:, : top_bin + 1])
    # above the band: per frame, the mean of the model's mask over the band (5 to 7.5 kHz)
    band = mask[:, int(TOP_BAND[0] * 512): top_bin + 1].mean(dim=1, keepdim=True)
    torch.testing.assert_close(fine[:, top_bin + 1:], band.expand(1, 1537 - top_bin - 1, 40))
    # coarser and finer bins: linear interpolation over Hz
    coarse = mapped(mask, 16000, 1024, 256, 48000, 1024, 768, 40)  # 46.875 Hz = 3 bins
    torch.testing.assert_close(coarse[:, :100], mask[:, 0:300:3])
    finer = mapped(mask, 16000, 1024, 256, 48000, 6144, 768, 40)  # 7.8125 Hz = bin/2
    torch.testing.assert_close(finer[:, 21], (mask[:, 10] + mask[:, 11]) / 2)
    assert fine.min() >= 0 and fine.max() <= 1
    # more fine frames than model frames: the last model frame is repeated
    longer = mapped(mask, 16000, 1024, 256, 48000, 3072, 768, 45)
    torch.testing.assert_close(longer[..., 44], fine[..., 39])
    # a roll-off attenuates only above the band
    rolled = mapped(mask, 16000, 1024, 256, 48000, 3072, 768, 40, rolloff_db=6.0)
    torch.testing.assert_close(rolled[:, : top_bin + 1], fine[:, : top_bin + 1])
    assert (rolled[:, -1] < fine[:, -1]).all()


def test_full_band_mask_time_alignment_at_44k():
    """A hop of 706 samples at 44.1 kHz lasts 16.009 ms, the model's 16 ms: frame j maps to
    model frame j·1.00057, so after 1000 frames the mask is 0.57 of a frame later."""
    frames = torch.arange(2000, dtype=torch.float32)
    mask = (frames / 2000)[None, None, :].expand(1, 513, 2000)  # a ramp over time
    fine = mapped(mask, 16000, 1024, 256, 44100, 2822, 706, 1001)
    pos = 1000 * 706 * 16000 / (44100 * 256)
    torch.testing.assert_close(fine[0, 100, 1000], torch.tensor(pos / 2000), atol=1e-6, rtol=0)


def test_cli_options():
    p = build_parser()
    args = p.parse_args(["separate", "song.wav"])
    assert args.full_band is True and args.wiener == 0
    args = p.parse_args(["separate", "song.wav", "--no-full-band", "--wiener"])
    assert args.full_band is False and args.wiener == 1 and args.inputs == ["song.wav"]
    args = p.parse_args(["separate", "--wiener", "3", "song.wav"])
    assert args.wiener == 3 and args.inputs == ["song.wav"]
    args = p.parse_args(["evaluate", "--data", "d", "--wiener=2", "--no-full-band"])
    assert args.wiener == 2 and args.full_band is False
    with pytest.raises(SystemExit):
        p.parse_args(["separate", "--wiener", "song.wav"])
