"""The paper CNN, the U-Net, and saving/loading models with their configuration."""
from __future__ import annotations

import pytest
import torch

from vocalsep import models
from vocalsep.models import ModelConfig, ModelError, build, load, save
from vocalsep.models.registry import PRETRAINED_DIR, SHIPPED


def test_paper_parameter_count_is_the_papers():
    assert build("paper").parameter_count() == 5_378_465


def test_paper_forward_shape():
    model = build("paper").eval()
    out = model(torch.rand(3, 1025, 100))
    assert out.shape == (3, 1025)
    assert torch.isfinite(out).all()


def test_paper_mask_shape_and_range():
    torch.manual_seed(0)
    model = build("paper").eval()
    mix = torch.rand(1, 1025, 30) * 5
    mask = model.mask(mix)
    assert mask.shape == mix.shape
    assert mask.min().item() >= 0.0 and mask.max().item() <= 1.0
    # each frame gets its own prediction: the mask is not one frame repeated
    assert (mask[0, :, 0] - mask[0, :, 15]).abs().max().item() > 0


def test_paper_training_loss_is_bce_of_each_windows_centre_frame():
    """An example of 115 frames holds 16 consecutive windows; the loss is the BCE of each
    window's centre-frame logits (computed window by window here) against the IBM."""
    torch.manual_seed(0)
    model = build("paper").eval()
    k = model.target_frames
    v = torch.rand(2, 1025, model.example_frames)
    a = torch.rand(2, 1025, model.example_frames)
    loss = model.training_loss(v + a, v, a)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    feats = torch.log1p(v + a)
    windows = torch.cat([feats[b:b + 1, :, s:s + 100] for b in range(2) for s in range(k)])
    logits = model(windows)
    target = torch.cat([(v[b, :, 50 + s] > a[b, :, 50 + s]).float()[None] for b in range(2) for s in range(k)])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 33, 200])
def test_unet_mask_shape_for_any_frame_count(frames):
    torch.manual_seed(frames)
    model = build("unet").eval()
    bins = model.config.bins
    mix = torch.rand(2, bins, frames) * 3
    mask = model.mask(mix)
    assert mask.shape == (2, bins, frames)
    assert torch.isfinite(mask).all()
    assert mask.min().item() >= 0.0 and mask.max().item() <= 1.0
    # the Nyquist bin copies the one below
    assert torch.equal(mask[:, -1], mask[:, -2])


def test_unet_mask_is_its_forward_in_eval_mode():
    torch.manual_seed(0)
    model = build("unet").eval()
    mix = torch.rand(1, model.config.bins, 64) * 3
    assert torch.allclose(model.mask(mix), model(mix))


def test_unet_training_loss_backpropagates():
    torch.manual_seed(0)
    model = build("unet", params={"channels": [4, 8, 16]})
    v = torch.rand(2, 513, 32)
    a = torch.rand(2, 513, 32)
    loss = model.training_loss(v + a, v, a)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_build_unknown_architecture():
    with pytest.raises(ModelError, match="unknown architecture"):
        build("transformer")


def test_build_with_config_overrides():
    model = build("unet", params={"channels": [8, 16, 32]}, n_fft=512, hop=128)
    assert model.config.n_fft == 512 and model.config.hop == 128
    assert model.config.params["channels"] == [8, 16, 32]
    assert model.config.params["dropout"] == 0.3  # defaults kept
    assert model.mask(torch.rand(1, 257, 10)).shape == (1, 257, 10)


@pytest.mark.parametrize("arch,params,frames", [
    ("unet", {"channels": [8, 16, 32], "dropout": 0.1}, 45),
    ("unet", None, 20),
    ("paper", None, 5),
])
def test_save_load_round_trip(tmp_path, arch, params, frames):
    torch.manual_seed(0)
    model = build(arch, params=params)
    bins = model.config.bins
    # one training-mode pass so that batch-norm statistics differ from their defaults
    model.train()
    model.training_loss(*(torch.rand(2, bins, model.example_frames) for _ in range(3)))
    model.eval()
    path = save(model, tmp_path / "sub" / "m.pt", meta={"note": "hello"})
    assert path.exists()
    assert not list(path.parent.glob("*.part"))
    loaded = load(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.config.to_dict() == model.config.to_dict()
    assert loaded.meta == {"note": "hello"}
    assert not loaded.training
    x = torch.rand(1, bins, frames) * 2
    assert torch.equal(loaded.mask(x), model.mask(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_save_half_stores_float16_and_loads_float32(tmp_path):
    torch.manual_seed(0)
    model = build("unet", params={"channels": [8, 16, 32]}).eval()
    full = save(model, tmp_path / "full.pt")
    half = save(model, tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    blob = torch.load(half, weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in blob["state"].values())
    loaded = load(half)
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == value.dtype, key
        torch.testing.assert_close(got, value, atol=1e-3, rtol=1e-3)
    x = torch.rand(1, model.config.bins, 32) * 2
    assert (loaded.mask(x) - model.mask(x)).abs().max() < 1e-2


def _one_line_model_error(path):
    with pytest.raises(ModelError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_load_missing_file(tmp_path):
    _one_line_model_error(tmp_path / "nothing.pt")


def test_load_unknown_name():
    with pytest.raises(ModelError) as info:
        load("no-such-model-name")
    assert "\n" not in str(info.value)


def _write_garbage(path):
    path.write_bytes(b"this is not a model at all\n" * 20)


def _write_empty(path):
    path.write_bytes(b"")


def _write_bad_zip(path):
    path.write_bytes(b"PK\x03\x04" + b"\x00garbage" * 50)


def _write_list(path):
    torch.save([1, 2, 3], path)


def _write_unknown_arch(path):
    torch.save({"config": {"arch": "nope"}, "state": {}}, path)


def _write_wrong_weights(path):
    model = build("unet", params={"channels": [4, 8]})
    blob = {"config": build("unet").config.to_dict(), "state": model.state_dict(), "meta": {}}
    torch.save(blob, path)


_BUG = ("library bug (models/registry.py, load): only KeyError/RuntimeError/TypeError/ValueError/EOFError "
        "are caught, so a non-zip file escapes as a multi-line pickle.UnpicklingError and a folder as "
        "IsADirectoryError; and an empty file's EOFError has an empty message, so "
        "str(err).splitlines()[0] raises IndexError")


@pytest.mark.parametrize("write", [
    _write_garbage,
    _write_empty,
    _write_bad_zip, _write_list, _write_unknown_arch, _write_wrong_weights,
], ids=["text-garbage", "empty", "bad-zip", "list", "unknown-arch", "wrong-weights"])
def test_load_unusable_file_raises_one_line_model_error(tmp_path, write):
    path = tmp_path / "bad.pt"
    write(path)
    _one_line_model_error(path)


def test_load_directory_raises_model_error(tmp_path):
    folder = tmp_path / "model.pt"
    folder.mkdir()
    _one_line_model_error(folder)


def test_shipped_default_model_loads():
    model = load("default")
    assert isinstance(model, models.SeparationModel)
    assert model.config.arch in models.ARCHITECTURES
    assert not model.training
    from vocalsep.catalog import available

    infos = {m.name: m for m in available()}
    assert "default" in infos
    assert infos["default"].parameters == model.parameter_count()
    assert infos["default"].sample_rate == model.config.sample_rate


def test_shipped_paper_model_if_present():
    if not (PRETRAINED_DIR / SHIPPED["paper"]).exists():
        pytest.skip("paper.pt is not shipped (yet)")
    model = load("paper")
    assert model.config.arch == "paper"
    assert model.parameter_count() == 5_378_465


def test_model_config_bins():
    assert ModelConfig("unet", n_fft=1024).bins == 513
    assert ModelConfig("paper").bins == 1025
