"""The shipped default model on real songs: the stempeg example (a MUSDB18 test track, with its
true stems) at 44.1 and 48 kHz, and a MIR-1K karaoke clip at 16 kHz mono."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import check_stems, snr_db
from vocalsep import audio as audio_io
from vocalsep.data import read_mir1k_clip
from vocalsep.models import load
from vocalsep.separate import Separator
from vocalsep.spectral import stft


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator("default")


def energy_above(x: np.ndarray, rate: int, hz: float = 11_000) -> float:
    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 4096, 1024).abs() ** 2
    freqs = torch.arange(spec.shape[-2]) * rate / 4096
    return float(spec[..., freqs >= hz, :].sum())


def test_default_is_spleeters_two_unets_fine_tuned():
    """The default (since 2026-12-03, issue #15) is Spleeter's 2stems: its vocal and its
    accompaniment U-Net, a mask per channel, separating by the ratio of their masks, both
    fine-tuned here (through ``hq``): each near Spleeter's weights (a network of fresh weights
    is at about 1.0), but moved."""
    from vocalsep.models.stemunet.spleeter import load_spleeter_stem

    model = load("default")
    assert model.config.arch == "stemunet" and model.config.sample_rate == 44_100
    assert model.stereo  # a mask per channel of a stereo song
    assert model.meta.get("init") == "hq" and model.config.params["bins"] == 640
    for stem, net in (("vocals", model.net.vocals), ("accompaniment", model.net.accompaniment)):
        spleeter = list(load_spleeter_stem(stem).parameters())
        moved = sum(((p.detach().float() - q.detach()) ** 2).sum()
                    for p, q in zip(net.parameters(), spleeter, strict=True))
        relative = float((moved / sum((q.detach() ** 2).sum() for q in spleeter)).sqrt())
        assert 0.001 < relative < 0.2, (stem, relative)


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_studio_song_full_band_stereo(example_song, separator, rate):
    """A 44.1 or 48 kHz stereo song comes back at its rate, stereo, same length; the vocals are
    far closer to the true vocals than the mixture is, and keep the voice above 11 kHz."""
    mixture, vocals, native = example_song
    if rate != native:
        mixture = audio_io.resample(mixture, native, rate)
        vocals = audio_io.resample(vocals, native, rate)
    stems = separator.separate(mixture, rate)
    check_stems(stems, mixture, dtype=np.float32)
    gain = snr_db(vocals, stems["vocals"]) - snr_db(vocals, mixture)
    assert gain > 10, f"vocal SNR only {gain:.1f} dB above the mixture's"
    level = 10 * np.log10(energy_above(stems["vocals"], rate) / energy_above(vocals, rate))
    assert -12 < level < 6, f"vocals above 11 kHz at {level:.1f} dB re the true vocals"


def test_karaoke_clip_16k_mono(mir1k_test_clip, separator):
    """A 16 kHz mono MIR-1K mixture (a singer never trained on): 16 kHz mono stems whose vocals
    are much closer to the truth than the mixture."""
    track = read_mir1k_clip(mir1k_test_clip)
    mix = track.mixture
    stems = separator.separate(mix, track.rate)
    check_stems(stems, mix, dtype=np.float32)
    assert snr_db(track.vocals, stems["vocals"]) - snr_db(track.vocals, mix) > 6


def test_hq_hears_the_full_band_of_a_studio_song(example_song):
    """``-m hq`` (the default's two networks on the full 0-11 kHz band rather than 0-6.9 kHz;
    docs/bench/studio-songs): on the stempeg example, a MUSDB18 test track that no model here
    trained or was chosen on, its vocals are far closer to the truth than the mixture and keep
    the voice above 11 kHz; ONNX Runtime gives torch's stems."""
    from vocalsep.separate import SeparatorOptions

    mixture, vocals, rate = example_song
    # the networks' masks, without the spatial step, in ONNX Runtime (float32, as torch)
    masks_alone = SeparatorOptions(spatial=False, runtime="onnx")
    separator = Separator("hq", masks_alone)
    assert "ONNX Runtime" in separator.describe()
    hq = separator.separate(mixture, rate)
    check_stems(hq, mixture, dtype=np.float32)
    assert snr_db(vocals, hq["vocals"]) - snr_db(vocals, mixture) > 10
    level = 10 * np.log10(energy_above(hq["vocals"], rate) / energy_above(vocals, rate))
    assert -12 < level < 6, f"vocals above 11 kHz at {level:.1f} dB re the true vocals"
    model = load("hq")
    assert model.net.accompaniment is not None and model.config.params["bins"] == 1024
    in_torch = Separator("hq", SeparatorOptions(runtime="torch", precision="float32", spatial=False))
    in_torch = in_torch.separate(mixture, rate)
    np.testing.assert_allclose(in_torch["vocals"], hq["vocals"], atol=1e-5)
