"""The default model's fast inference path: transposed convolutions as four-phase ordinary
convolutions (exact), bfloat16 arithmetic (close to float32 on a real song), the precision
option (auto, float32, bfloat16) in the API and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_cli, snr_db
from vocalsep.models import build, load
from vocalsep.models.stemunet import phase_conv
from vocalsep.models.stemunet.inference import inference_copy
from vocalsep.backends import choose_precision
from vocalsep.separate import Separator, SeparatorOptions
from vocalsep.spectral import stft


@pytest.mark.parametrize("channels_in,channels_out,height,width",
                         [(3, 2, 1, 1), (8, 5, 4, 7), (16, 1, 9, 6), (32, 16, 12, 17)])
def test_phase_conv_equals_the_cropped_transposed_conv(channels_in, channels_out, height, width):
    torch.manual_seed(channels_in + height)
    deconv = torch.nn.ConvTranspose2d(channels_in, channels_out, 5, stride=2)
    x = torch.randn(2, channels_in, height, width)
    with torch.no_grad():
        expected = deconv(x)[:, :, 1:-2, 1:-2]
        weight, bias = phase_conv(deconv)
        got = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, weight, bias, padding=1), 2)
    assert got.shape == expected.shape == (2, channels_out, 2 * height, 2 * width)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def default_model():
    return load("default").eval()


@pytest.fixture(scope="module")
def song_magnitude(example_song):
    """Two channels of a real song's magnitude at 44.1 kHz, 256 frames (6 s)."""
    mixture, _, rate = example_song
    assert rate == 44_100
    spec = stft(torch.from_numpy(mixture), 4096, 1024).abs()
    assert spec.shape[-1] >= 256
    return spec[..., :256]


def test_float32_inference_is_the_trained_network(default_model, song_magnitude):
    x = song_magnitude[:, :1024].transpose(1, 2).unsqueeze(0)
    with torch.no_grad():
        expected = default_model.net(x)
        got = inference_copy(default_model.net, torch.float32)(x)  # two networks and their ratio
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_bfloat16_masks_stay_close_to_float32(default_model, song_magnitude):
    default_model.set_precision("float32")
    exact = default_model.mask(song_magnitude)
    default_model.set_precision("bfloat16")
    try:
        fast = default_model.mask(song_magnitude)
    finally:
        default_model.set_precision("float32")
    diff = (fast - exact).abs().flatten()
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    # measured on this song: mean 0.0023, 99th percentile 0.010 (max 0.24, in a quiet bin)
    assert 0 < float(diff.mean()) < 5e-3
    assert float(diff.kthvalue(int(0.99 * len(diff))).values) < 0.03


def test_bfloat16_vocals_of_a_real_song_match_float32(example_song):
    mixture, vocals_true, rate = example_song
    stems = {p: Separator("default", SeparatorOptions(precision=p)).separate(mixture, rate)
             for p in ("float32", "bfloat16")}
    # the two precisions agree far more closely than either agrees with the truth
    assert snr_db(stems["float32"]["vocals"], stems["bfloat16"]["vocals"]) > 30
    quality = {p: snr_db(vocals_true, s["vocals"]) for p, s in stems.items()}
    assert abs(quality["float32"] - quality["bfloat16"]) < 0.1


def test_inference_network_follows_weight_changes():
    """The inference copy is rebuilt after an in-place weight change (as an optimizer step makes),
    a norm statistic change, loading, and a cast; it is neither a submodule nor saved."""
    model = build("stemunet", params={"stereo": True}).eval()
    mag = torch.rand(2, 2049, 64) * 4

    def fresh_mask() -> torch.Tensor:
        other = build("stemunet", params={"stereo": True}).eval()
        other.load_state_dict(model.state_dict())
        return other.mask(mag)

    masks = [model.mask(mag)]
    with torch.no_grad():
        model.net.head.bias += 1.0
    masks.append(model.mask(mag))
    with torch.no_grad():
        model.net.encoder_norms[2].running_mean += 5.0
    masks.append(model.mask(mag))
    for before, after in zip(masks, masks[1:]):
        assert float((after - before).abs().max()) > 1e-3
    torch.testing.assert_close(masks[-1], fresh_mask())
    model.double().float()  # a round trip through float64 (tensors replaced, not changed)
    torch.testing.assert_close(model.mask(mag), fresh_mask())
    assert not any(k.startswith("_inference") for k in model.state_dict())


def test_auto_precision(monkeypatch):
    import vocalsep.backends.precision as backends

    default, small = load("default"), load("small")
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(backends, "native_bfloat16", lambda native=native: native)
        assert choose_precision("auto", default.precisions) == expected
        assert choose_precision("auto", small.precisions) == "float32"  # small has no bfloat16 path
        assert choose_precision("auto", default.precisions, device="cuda") == "float32"
        assert choose_precision("float32", default.precisions) == "float32"
        assert Separator(default).model.precision == expected
    with pytest.raises(ValueError, match="half"):
        choose_precision("half", default.precisions)


def test_a_precision_the_model_lacks_is_one_clear_error(tmp_path, mir1k_test_clip):
    with pytest.raises(ValueError, match="bfloat16"):
        Separator("small", SeparatorOptions(precision="bfloat16"))
    result = run_cli("separate", mir1k_test_clip, "-m", "small", "--precision", "bfloat16",
                     "-o", tmp_path / "out")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bfloat16" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_precisions_give_nearly_the_same_stems(tmp_path, mir1k_test_clip):
    import soundfile as sf

    outs = {}
    for p in ("float32", "bfloat16"):
        result = run_cli("separate", mir1k_test_clip, "--precision", p, "-o", tmp_path / p)
        assert result.returncode == 0, result.stderr
        outs[p], _ = sf.read(tmp_path / p / mir1k_test_clip.stem / "vocals.wav")
    assert outs["float32"].shape == outs["bfloat16"].shape
    assert not np.array_equal(outs["float32"], outs["bfloat16"])
    assert snr_db(outs["float32"], outs["bfloat16"]) > 25
