"""Separator: shapes, rates, the exact-sum property, edge cases, and a loose quality check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import check_silence_stays_silence, check_stems, snr_db, tone
from vocalsep.audio import read_audio
from vocalsep.models import build
from vocalsep.separate import STEMS, Separator, SeparatorOptions, output_paths, separate


@pytest.fixture(scope="module")
def untrained_unet():
    torch.manual_seed(0)
    return build("unet")


@pytest.fixture(scope="module")
def default_separator():
    return Separator("default")


@pytest.fixture(scope="module")
def mir1k_mixture(mir1k_stems):
    vocals, accompaniment, rate = mir1k_stems
    return (vocals + accompaniment)[None, : 3 * rate].copy(), rate


@pytest.mark.parametrize("which", ["untrained", "default"])
def test_real_mixture_shapes_and_exact_sum(which, untrained_unet, default_separator, mir1k_mixture):
    sep = Separator(untrained_unet) if which == "untrained" else default_separator
    samples, rate = mir1k_mixture
    stems = sep.separate(samples, rate)
    check_stems(stems, samples)
    assert stems["vocals"].dtype == np.float32
    # something was separated: neither stem is the whole mixture nor silence
    for s in STEMS:
        assert 0.02 < np.sqrt(np.mean(stems[s] ** 2)) / np.sqrt(np.mean(samples ** 2)) < 0.98


def test_separator_puts_model_in_eval_mode(untrained_unet, mir1k_mixture):
    untrained_unet.train()
    sep = Separator(untrained_unet)
    assert not sep.model.training
    samples, rate = mir1k_mixture
    a = sep.separate(samples[:, :8000], rate)
    b = sep.separate(samples[:, :8000], rate)
    np.testing.assert_array_equal(a["vocals"], b["vocals"])  # deterministic (no dropout)


@pytest.mark.parametrize("which", ["untrained", "default"])
def test_stereo_44k_in_stereo_44k_out(which, untrained_unet, default_separator, musdb_track):
    sep = Separator(untrained_unet) if which == "untrained" else default_separator
    a = read_audio(musdb_track)
    samples = a.samples[:, : 3 * a.rate]
    stems = sep.separate(samples, a.rate)
    check_stems(stems, samples)
    # each channel gets its own vocals (the mask is shared, the STFTs are not)
    assert np.abs(stems["vocals"][0] - stems["vocals"][1]).max() > 1e-3


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_silence_in_silence_out(default_separator, rate, channels):
    check_silence_stays_silence(default_separator, channels, rate // 2, rate)


@pytest.mark.parametrize("n", [1, 2, 100])
@pytest.mark.parametrize("rate", [8000, 44100])
def test_tiny_inputs(default_separator, n, rate):
    samples = np.full((2, n), 0.3, np.float32)
    stems = default_separator.separate(samples, rate)
    check_stems(stems, samples)


def test_binary_mask_and_griffin_lim(untrained_unet, mir1k_mixture):
    samples, rate = mir1k_mixture
    sep = Separator(untrained_unet, SeparatorOptions(mask="binary", reconstruct="griffinlim",
                                                     griffin_lim_iterations=4))
    stems = sep.separate(samples, rate)
    check_stems(stems, samples)
    assert np.abs(stems["vocals"]).max() > 1e-3
    # a binary mask is a different estimate from the soft one
    soft = Separator(untrained_unet).separate(samples, rate)
    assert np.abs(soft["vocals"] - stems["vocals"]).max() > 1e-3


def test_binary_mask_is_0_or_1(untrained_unet, mir1k_mixture):
    samples, rate = mir1k_mixture
    sep = Separator(untrained_unet, SeparatorOptions(mask="binary", threshold=0.5))
    spec = torch.stft(torch.from_numpy(samples), 1024, 256, window=torch.hann_window(1024),
                      return_complex=True)
    mask = sep.stream(rate, 1).mask_frames(spec.numpy().swapaxes(-1, -2))
    assert mask.shape == (1, spec.shape[-1], spec.shape[-2])
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}


def test_paper_model_separates_a_short_clip(mir1k_mixture):
    torch.manual_seed(0)
    samples, rate = mir1k_mixture
    samples = samples[:, : rate // 4]
    stems = Separator(build("paper")).separate(samples, rate)
    check_stems(stems, samples)


def test_bad_options():
    model = build("unet", params={"channels": [4, 8]})
    with pytest.raises(ValueError):
        Separator(model, SeparatorOptions(reconstruct="magic"))
    with pytest.raises(ValueError):
        Separator(model, SeparatorOptions(mask="fuzzy"))


def test_one_call_api(untrained_unet):
    x = tone(16000, 2, seconds=0.3)
    stems = separate(x, 16000, untrained_unet, mask="binary")
    check_stems(stems, x)


def test_default_model_improves_vocals_on_real_clips(default_separator, mir1k_quality_clips):
    """Loose real-quality check (the shipped model is being retrained: no pinned numbers)."""
    gains = []
    for clip in mir1k_quality_clips:
        a = read_audio(clip)
        accompaniment, vocals = a.samples[0], a.samples[1]
        mixture = accompaniment + vocals
        stems = default_separator.separate(mixture[None], a.rate)
        gains.append(snr_db(vocals, stems["vocals"][0]) - snr_db(vocals, mixture))
    assert np.mean(gains) > 2.0, f"vocals SNR gains {np.round(gains, 2)} dB"


def test_separate_file_and_output_paths(tmp_path, untrained_unet):
    import soundfile as sf

    x = tone(22050, 2, seconds=0.5)
    src = tmp_path / "song.flac"
    sf.write(src, x.T, 22050)
    sep = Separator(untrained_unet)
    written = sep.separate_file(src, tmp_path / "out")
    assert written == output_paths(src, tmp_path / "out")
    assert written["vocals"] == tmp_path / "out" / "song" / "vocals.wav"
    v = read_audio(written["vocals"])
    acc = read_audio(written["accompaniment"])
    assert v.rate == acc.rate == 22050
    assert v.samples.shape == acc.samples.shape == x.shape
    assert np.abs(v.samples + acc.samples - read_audio(src).samples).max() < 1e-3
    with pytest.raises(FileExistsError):
        sep.separate_file(src, tmp_path / "out")
    sep.separate_file(src, tmp_path / "out", force=True)
    assert output_paths("x/Artist - Song.stem.mp4", "o")["vocals"].parent.name == "Artist - Song"


def test_mono_as_1d_and_the_transposed_layout(untrained_unet, mir1k_mixture):
    """A 1-D array is one channel (1-D stems back); soundfile's ``(n, channels)`` is refused at
    once with a hint, before any work (it would be n channels of 2 samples)."""
    samples, rate = mir1k_mixture
    sep = Separator(untrained_unet)
    flat = sep.separate(samples[0], rate)
    assert flat["vocals"].shape == samples[0].shape
    np.testing.assert_array_equal(flat["vocals"], sep.separate(samples[:1], rate)["vocals"][0])
    stereo = np.stack([samples[0], samples[0]])
    with pytest.raises(ValueError, match=r"did you mean x\.T\?"):
        sep.separate(stereo.T, rate)


def test_a_file_to_arrays_with_progress(stempeg_example, tmp_path):
    """``separate_audio_file``: a file path to :class:`Stems` (named, with the rate), the same
    stems as the files ``separate_file`` writes; ``progress`` rises to 1, for arrays too. (In
    ONNX Runtime's float32: the mixture given again is the stems' sum, equal to the file's to
    float32 rounding, which bfloat16 arithmetic would round differently.)"""
    import soundfile as sf

    from vocalsep.separate import Stems

    sep = Separator("default", SeparatorOptions(runtime="onnx"))
    seen: list[float] = []
    stems = sep.separate_audio_file(stempeg_example, progress=seen.append)
    assert isinstance(stems, Stems) and stems.rate == 44_100 and stems.vocals.shape[0] == 2
    assert seen == sorted(seen) and seen[-1] == 1.0
    written = sep.separate_file(stempeg_example, tmp_path, bits="float")
    on_disk, _ = sf.read(written["vocals"], dtype="float32")
    np.testing.assert_array_equal(on_disk.T, stems.vocals)
    mixture = stems.vocals + stems.accompaniment
    seen.clear()
    again = sep.separate(mixture, stems.rate, progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) > 1
    np.testing.assert_allclose(again["vocals"], stems.vocals, atol=1e-5)
