"""Training on real MIR-1K clips with tiny step counts: learning, run folder, resuming."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vocalsep.audio import read_audio
from vocalsep.data import Track, load_mir1k
from vocalsep.models import build, load
from vocalsep.train import TrainConfig, train, validation_batches, validation_loss


def _mir1k_tracks(files: list[Path]) -> list[Track]:
    tracks = []
    for f in files:
        a = read_audio(f)
        tracks.append(Track(f.stem, a.samples[1:2].copy(), a.samples[0:1].copy(), a.rate))
    return tracks


@pytest.fixture(scope="module")
def train_tracks(mir1k_train_files) -> list[Track]:
    return _mir1k_tracks(mir1k_train_files[:6])


@pytest.fixture(scope="module")
def valid_tracks(mir1k_valid_dir) -> list[Track]:
    return load_mir1k(mir1k_valid_dir)[:1]


def test_load_mir1k_channels(mir1k_valid_dir):
    tracks = load_mir1k(mir1k_valid_dir)
    assert tracks
    f = sorted(mir1k_valid_dir.glob("*.flac"))[0]
    raw = read_audio(f).samples
    t = next(t for t in tracks if t.name == f.stem)
    assert t.rate == 16000
    np.testing.assert_array_equal(t.accompaniment, raw[0:1])  # left
    np.testing.assert_array_equal(t.vocals, raw[1:2])  # right
    np.testing.assert_allclose(t.mixture, raw[0:1] + raw[1:2])


def test_short_unet_run_learns_and_writes_its_folder(tmp_path, train_tracks, valid_tracks):
    torch.manual_seed(0)
    model = build("unet")
    # the loss on fixed examples of the training clips, before and after ~15 steps
    fixed = validation_batches(model, train_tracks, stride=128)
    before = validation_loss(model, fixed)
    seen = []
    cfg = TrainConfig(epochs=3, batch_size=4, steps_per_epoch=5, seed=0, remix=False, valid_stride=256)
    history = train(model, train_tracks, valid_tracks, tmp_path / "run", cfg,
                    progress=lambda step, steps, loss: seen.append((step, steps, loss)))
    after = validation_loss(model, fixed)
    assert after < 0.95 * before, f"training loss on the training clips {before:.4f} -> {after:.4f}"

    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["frames"] for h in history] == [20 * 128, 40 * 128, 60 * 128]
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["valid_loss"]) for h in history)
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert len(seen) == 15 and {s[1] for s in seen} == {5}
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5] * 3

    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "history.csv", "loss.png"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.glob("*.part")) and not list(run.glob(".*"))
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["valid_loss"]) for r in rows] == [h["valid_loss"] for h in history]

    best = load(run / "best.pt")
    best_epoch = min(history, key=lambda h: h["valid_loss"])
    assert best.config == model.config
    assert best.meta["epoch"] == best_epoch["epoch"]
    assert best.meta["valid_loss"] == pytest.approx(best_epoch["valid_loss"], abs=1e-5)
    assert validation_loss(best, validation_batches(best, [t.converted(16000) for t in valid_tracks],
                                                    stride=256)) == pytest.approx(best_epoch["valid_loss"], abs=1e-4)


def _run(out, epochs, train_tracks, valid_tracks, resume=True):
    torch.manual_seed(0)
    model = build("unet")
    cfg = TrainConfig(epochs=epochs, batch_size=4, steps_per_epoch=3, seed=0, valid_stride=256)
    calls = []
    history = train(model, train_tracks, valid_tracks, out, cfg, resume=resume,
                    progress=lambda step, steps, loss: calls.append(step))
    return model, history, calls


def test_resume_continues_where_it_stopped(tmp_path, train_tracks, valid_tracks):
    out = tmp_path / "run"
    _, first, calls1 = _run(out, 1, train_tracks, valid_tracks)
    assert len(first) == 1 and len(calls1) == 3
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1

    # a fresh model and a second call with epochs=2: loads the checkpoint, runs only epoch 2
    model, second, calls2 = _run(out, 2, train_tracks, valid_tracks)
    assert len(calls2) == 3, "resume restarted from epoch 1"
    assert [h["epoch"] for h in second] == [1, 2]
    assert second[0] == first[0]
    assert second[1]["frames"] == 24 * 128

    # the same as training 2 epochs without interruption
    straight_model, straight, _ = _run(tmp_path / "straight", 2, train_tracks, valid_tracks)
    assert [h["train_loss"] for h in straight] == [h["train_loss"] for h in second]
    assert [h["valid_loss"] for h in straight] == [h["valid_loss"] for h in second]
    for key, value in straight_model.state_dict().items():
        assert torch.allclose(model.state_dict()[key].float(), value.float(), atol=1e-6), key

    # nothing left to do: the weights come from the checkpoint, no step is taken
    done_model, done, calls3 = _run(out, 2, train_tracks, valid_tracks)
    assert calls3 == [] and done == second
    for key, value in done_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_restart_ignores_checkpoint(tmp_path, train_tracks, valid_tracks):
    out = tmp_path / "run"
    _run(out, 1, train_tracks, valid_tracks)
    _, history, calls = _run(out, 2, train_tracks, valid_tracks, resume=False)
    assert len(calls) == 6 and [h["epoch"] for h in history] == [1, 2]


def test_paper_model_trains_two_steps(tmp_path, train_tracks, valid_tracks):
    torch.manual_seed(0)
    model = build("paper")
    losses = []
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=2, seed=0, valid_stride=1000)
    history = train(model, train_tracks[:2], valid_tracks, tmp_path / "paper", cfg,
                    progress=lambda step, steps, loss: losses.append(loss))
    assert len(losses) == 2
    assert len(history) == 1
    h = history[0]
    assert math.isfinite(h["train_loss"]) and math.isfinite(h["valid_loss"])
    # binary cross-entropy: positive; a (nearly) untrained net is not far from log 2
    assert 0 < h["train_loss"] < 5 and 0 < h["valid_loss"] < 5
    best = load(tmp_path / "paper" / "best.pt")
    assert best.config.arch == "paper" and best.parameter_count() == 5_378_465


@pytest.mark.parametrize("options, arch, flag", [
    ({"sdr_weight": 0.5}, "unet", "--sdr-weight"),
    ({"sdr_weight": math.nan}, "stemunet", "--sdr-weight"),
    ({"sdr_weight": 0.5, "teacher": "default"}, "stemunet", "--sdr-weight"),
    ({"cross_groups": 0.5, "remix": False}, "stemunet", "--cross-groups"),
    ({"cross_groups": 0.5, "teacher_rate": 44100}, "stemunet", "--cross-groups"),
    ({"cross_groups": 1.5}, "stemunet", "--cross-groups"),
    ({"speed": 0.1, "remix": False}, "stemunet", "--speed"),
    ({"past_frames": 16}, "unet", "--past-frames"),
    ({"example_frames": 0}, "stemunet", "--example-frames"),
    ({"group_weights": {44100: 3.0}}, "stemunet", "--balance-groups"),
    ({"group_weights": {44100: -1.0}, "balance_groups": True}, "stemunet", "not negative"),
])
def test_a_config_that_does_not_go_together_is_refused_before_training(
        tmp_path, options, arch, flag, train_tracks, valid_tracks):
    """The library's ``train`` refuses what the ``train`` command refuses, with the same line
    (one check: ``TrainConfig.check``), before it writes anything; a good config passes."""
    cfg = TrainConfig(epochs=1, batch_size=1, steps_per_epoch=1, **options)
    with pytest.raises(ValueError, match=flag):
        cfg.check(arch)
    with pytest.raises(ValueError, match=flag):
        train(build(arch), train_tracks[:1], valid_tracks, tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()
    TrainConfig(epochs=1, batch_size=1).check(arch)
