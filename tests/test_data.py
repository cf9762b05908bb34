"""Datasets: MIR-1K clips, folders of stems, MUSDB18 (stems and HQ wav layout), the sampler."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli
from vocalsep.data import (RemixSampler, Track, is_musdb_root, load_any, load_mir1k, load_musdb,
                           load_stem_folder, magnitudes)
from vocalsep.models import load
from vocalsep.spectral import stft


def test_mir1k_channels_are_accompaniment_left_vocals_right(mir1k_dir):
    tracks = load_mir1k(mir1k_dir / "valid")
    files = sorted((mir1k_dir / "valid").glob("*.flac"))
    assert [t.name for t in tracks] == [f.stem for f in files]
    raw, rate = sf.read(files[0], dtype="float32")
    t = tracks[0]
    assert t.rate == rate == 16000
    np.testing.assert_array_equal(t.accompaniment[0], raw[:, 0])
    np.testing.assert_array_equal(t.vocals[0], raw[:, 1])
    np.testing.assert_allclose(t.mixture[0], raw.sum(axis=1), atol=1e-7)


def _stem_folder(root, tracks, rate=16000):
    for t in tracks:
        d = root / t.name
        d.mkdir(parents=True)
        sf.write(d / "vocals.wav", t.vocals.T, rate, subtype="FLOAT")
        sf.write(d / "accompaniment.wav", t.accompaniment.T, rate, subtype="FLOAT")
        sf.write(d / "mixture.wav", t.mixture.T, rate, subtype="FLOAT")
    return root


def test_stem_folder_round_trip(tmp_path, mir1k_dir):
    tracks = load_mir1k(mir1k_dir / "valid")[:2]
    root = _stem_folder(tmp_path / "stems", tracks)
    loaded = load_stem_folder(root)
    assert [t.name for t in loaded] == [t.name for t in tracks]
    for a, b in zip(loaded, tracks):
        np.testing.assert_array_equal(a.vocals, b.vocals)
        np.testing.assert_array_equal(a.accompaniment, b.accompaniment)
    assert not is_musdb_root(root)
    assert [t.name for t in load_any(root)] == [t.name for t in tracks]


def test_stem_folder_without_stems_is_an_error(tmp_path):
    (tmp_path / "song").mkdir()
    (tmp_path / "song" / "mixture.wav").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no <track>/vocals"):
        load_stem_folder(tmp_path)


def test_musdb_stems_through_musdb(tmp_path, musdb_root):
    files = sorted((musdb_root / "train").glob("*.stem.mp4"))[:2]
    (tmp_path / "train").mkdir()
    for f in files:
        (tmp_path / "train" / f.name).symlink_to(f)
    assert is_musdb_root(tmp_path)
    tracks = load_musdb(tmp_path, "train")
    assert len(tracks) == 2
    for t in tracks:
        assert t.rate == 44100 and t.vocals.shape[0] == 2 and t.vocals.shape == t.accompaniment.shape
        assert np.abs(t.vocals).max() > 0.01 and np.abs(t.accompaniment).max() > 0.01
    assert [t.name for t in load_any(tmp_path)] == [t.name for t in tracks]


def test_musdb_hq_wav_layout(tmp_path, mir1k_dir):
    """The MUSDB18-HQ layout: <root>/train/<track>/{mixture,drums,bass,other,vocals}.wav."""
    clip = load_mir1k(mir1k_dir / "valid")[0]
    v = np.repeat(clip.vocals, 2, axis=0)[:, :16000]
    a = np.repeat(clip.accompaniment, 2, axis=0)[:, :16000]
    d = tmp_path / "train" / "Some Artist - Song"
    d.mkdir(parents=True)
    parts = {"vocals": v, "drums": 0.5 * a, "bass": 0.3 * a, "other": 0.2 * a, "mixture": v + a}
    for name, x in parts.items():
        sf.write(d / f"{name}.wav", x.T, 44100, subtype="FLOAT")
    assert is_musdb_root(tmp_path)
    tracks = load_any(tmp_path)
    assert len(tracks) == 1 and tracks[0].rate == 44100
    # musdb decodes the wav stems at 16-bit precision: a few quantisation steps apart
    np.testing.assert_allclose(tracks[0].vocals, v, atol=1e-4)
    np.testing.assert_allclose(tracks[0].accompaniment, a, atol=1e-4)


def test_sampler_without_remix_gives_the_tracks_own_mixture(mir1k_dir):
    tracks = load_mir1k(mir1k_dir / "valid")
    s = RemixSampler(tracks, 1024, 256, frames=64, remix=False, seed=3)
    mix, voc, acc = s.batch(4)
    assert mix.shape == voc.shape == acc.shape == (4, 513, 64)
    # the mixture's magnitude is |STFT(v + a)|, not |V| + |A|
    s2 = RemixSampler(tracks, 1024, 256, frames=64, remix=False, seed=3)
    v, a = s2.example()
    expected = stft(torch.from_numpy(v + a), 1024, 256).abs()
    torch.testing.assert_close(mix[0], expected, atol=1e-4, rtol=1e-4)


def _locate(x: np.ndarray, signals: list[np.ndarray]) -> tuple[int, int, float]:
    """(track, offset, gain) such that ``x == gain * signals[track][offset:offset+len(x)]``."""
    k = int(np.argmax(np.abs(x)))
    for i, s in enumerate(signals):
        for off in range(0, len(s) - len(x) + 1):
            ref = s[off:off + len(x)]
            if ref[k] == 0:
                continue
            g = x[k] / ref[k]
            if np.allclose(x, g * ref, atol=1e-6):
                return i, off, float(g)
    raise AssertionError("not an excerpt of any track")


def test_sampler_own_and_remixed_examples(mir1k_dir):
    tracks = load_mir1k(mir1k_dir / "valid")[:2]
    for t in tracks:  # keep the exhaustive search below small
        t.vocals, t.accompaniment = t.vocals[:, :12000], t.accompaniment[:, :12000]
    own = RemixSampler(tracks, 512, 128, frames=16, remix=False, seed=1)
    for _ in range(3):
        v, a = own.example()
        iv, ov, gv = _locate(v, own.vocals)
        ia, oa, ga = _locate(a, own.accompaniment)
        assert (iv, ov) == (ia, oa) and gv == pytest.approx(1) and ga == pytest.approx(1)
    mixed = RemixSampler(tracks, 512, 128, frames=16, remix=True, gain_db=6, seed=1)
    aligned = 0
    for _ in range(6):
        v, a = mixed.example()
        iv, ov, gv = _locate(v, mixed.vocals)
        ia, oa, ga = _locate(a, mixed.accompaniment)
        assert 10 ** (-6 / 20) - 1e-6 <= gv <= 10 ** (6 / 20) + 1e-6
        assert 10 ** (-6 / 20) - 1e-6 <= ga <= 10 ** (6 / 20) + 1e-6
        aligned += (iv, ov) == (ia, oa)
    assert aligned < 6  # vocals are paired with accompaniment from elsewhere


def test_sampler_remixes_only_within_a_group(mir1k_dir):
    """With groups (e.g. the tracks' original rates), a voice is only ever laid over an
    accompaniment of its own group; a group of one track always gives its own pairing."""
    tracks = load_mir1k(mir1k_dir / "valid")[:3]
    for t in tracks:
        t.vocals, t.accompaniment = t.vocals[:, :4000], t.accompaniment[:, :4000]
    s = RemixSampler(tracks, 512, 128, frames=16, remix=True, seed=2, groups=[16000, 16000, 44100])
    pairs = set()
    for _ in range(16):
        v, a = s.example()
        iv, _, _ = _locate(v, s.vocals)
        ia, _, _ = _locate(a, s.accompaniment)
        pairs.add((iv, ia))
    assert all((iv == 2) == (ia == 2) for iv, ia in pairs), pairs
    assert (2, 2) in pairs and {(0, 1), (1, 0)} & pairs
    # cross_groups=1: the backing's group is drawn apart from the voice's, two groups equally
    # often, so about half the voices land over the other group's backing
    s = RemixSampler(tracks, 512, 128, frames=16, remix=True, seed=2, groups=[16000, 16000, 44100],
                     balance_groups=True, cross_groups=1.0)
    pairs = [(_locate(v, s.vocals)[0], _locate(a, s.accompaniment)[0])
             for v, a in (s.example() for _ in range(60))]
    crossed = sum((iv == 2) != (ia == 2) for iv, ia in pairs) / len(pairs)
    assert 0.3 < crossed < 0.7, crossed


def test_cross_groups_refused_for_a_model_hearing_above_the_narrowest_band(tmp_path, mir1k_dir):
    """A 16 kHz voice over a 44.1 kHz backing would teach a full-band network that voices stop
    at 8 kHz: refused before anything is written; the default's 6.9 kHz band takes it."""
    from vocalsep.models.stemunet import StemUNetModel
    from vocalsep.train import TrainConfig, train

    clips = load_mir1k(mir1k_dir / "valid")[:2]
    wide = Track("wide", clips[0].vocals, clips[0].accompaniment, 44100)
    config = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, cross_groups=0.5, threads=1)
    full = StemUNetModel.from_spleeter()  # 1024 bins: up to 11 kHz
    with pytest.raises(ValueError, match="11014 Hz, above the 8000 Hz band"):
        train(full, [clips[0], wide], clips[1:], tmp_path / "run", config)
    assert not (tmp_path / "run").exists()
    default = load("default")  # 640 bins: up to 6.9 kHz, so it trains
    history = train(default, [clips[0], wide], clips[1:], tmp_path / "run", config)
    assert len(history) == 1 and (tmp_path / "run" / "best.pt").exists()


def test_magnitudes_shapes():
    v = torch.zeros(3, 4000)
    a = torch.ones(3, 4000) * 0.1
    mix, mv, ma = magnitudes(v, a, 512, 128)
    assert mix.shape == mv.shape == ma.shape == (3, 257, 4000 // 128 + 1)
    torch.testing.assert_close(mix, ma)


def test_phase_sensitive_targets_are_what_a_real_mask_can_give_back(mir1k_dir):
    """On a real clip: the stems' parts along the mixture's phase sum to its magnitude and are
    at most the stems' own; the mask fitting them exactly gives waveforms nearer the true
    vocals than the mask fitting the magnitudes (what the phase-sensitive loss is for)."""
    from vocalsep.spectral import istft

    clip = load_mir1k(mir1k_dir / "valid")[0]
    v, a = (torch.from_numpy(x[0]) for x in (clip.vocals, clip.accompaniment))
    mix, mv, ma = magnitudes(v, a, 1024, 256)
    mix, pv, pa = magnitudes(v, a, 1024, 256, phase_sensitive=True)
    torch.testing.assert_close(pv + pa, mix, atol=1e-4, rtol=1e-4)
    assert (pv <= mv + 1e-4).all() and (pa <= ma + 1e-4).all() and (pv < 0).any()
    X = stft(v + a, 1024, 256)

    def sdr(target_mag: torch.Tensor) -> float:
        mask = (target_mag / mix.clamp_min(1e-8)).clamp(0, 1)
        est = istft(mask * X, v.shape[-1], 1024, 256)
        return float(10 * torch.log10((v ** 2).sum() / ((v - est) ** 2).sum()))

    assert sdr(pv) > sdr(mv) + 1.0, (sdr(pv), sdr(mv))


def test_cli_train_on_a_stem_folder(tmp_path, mir1k_dir):
    tracks = load_mir1k(mir1k_dir / "valid")
    train_root = _stem_folder(tmp_path / "train", tracks[:3])
    valid_root = _stem_folder(tmp_path / "valid", tracks[3:])
    out = tmp_path / "run"
    r = run_cli("train", "unet", "--data", str(train_root), "--valid", str(valid_root), "--out", str(out),
                "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--speed", "0.05",
                "--phase-sensitive", "-q")
    assert r.returncode == 0, r.stderr
    assert (out / "best.pt").exists() and (out / "history.csv").exists()
    config = load(out / "best.pt").meta["train_config"]
    assert config["speed"] == 0.05 and config["phase_sensitive"] is True
    r = run_cli("train", "unet", "--data", str(train_root), "--out", str(tmp_path / "run2"))
    assert r.returncode == 1 and "--valid" in r.stderr and "Traceback" not in r.stderr
    for bad, words in ((["--group-weight", "16000=many", "--balance-groups"], "RATE=WEIGHT"),
                       (["--group-weight", "16000=2"], "--balance-groups"),
                       (["--group-weight", "16000=nan", "--balance-groups"], "finite"),
                       (["--speed", "0.1", "--no-remix"], "--no-remix"),
                       (["--cross-groups", "1.5"], "--cross-groups"),
                       (["--cross-groups", "nan"], "--cross-groups"),
                       (["--cross-groups", "0.5", "--no-remix"], "--no-remix"),
                       (["--group-weight", "44100=2", "--balance-groups"], "no training data at that rate"),
                       (["--group-weight", "16000=0", "--balance-groups"], "weighs 0")):
        r = run_cli("train", "unet", "--data", str(train_root), "--valid", str(valid_root),
                    "--out", str(tmp_path / "run3"), "--epochs", "1", "--steps-per-epoch", "1", *bad)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "run3").exists()  # refused before anything is written


def test_stereo_sampler_keeps_channels_and_balances_groups(mir1k_dir):
    """Stereo examples: a stereo track keeps its two channels (possibly swapped), a mono track
    is on both; batches are ``(size, 2, bins, frames)``; balanced groups are drawn equally."""
    mono = load_mir1k(mir1k_dir / "valid")[:3]
    left, right = mono[0].vocals[:, :8000], 0.5 * mono[1].vocals[:, :8000]
    stereo = Track("stereo", np.concatenate([left, right]),
                   np.concatenate([mono[2].accompaniment[:, :8000]] * 2), 16000)
    tracks = mono + [stereo]
    s = RemixSampler(tracks, 512, 128, frames=16, remix=True, seed=0, groups=[1, 1, 1, 2],
                     channels=2, swap_channels=True, balance_groups=True)
    assert s.vocals[0].shape[0] == 2 and np.array_equal(s.vocals[0][0], s.vocals[0][1])
    firsts = [s._first_track(s.rng) for _ in range(400)]
    assert 0.4 < np.mean([i == 3 for i in firsts]) < 0.6  # 1 track of 4, drawn half the time
    swapped = same = 0
    for _ in range(40):
        v, a = s.example()
        assert v.shape == a.shape == (2, s.length)
        if np.abs(v).max() == 0 or np.array_equal(v[0], v[1]):
            continue  # a mono voice (or silence)
        ratio = np.abs(v[1]).max() / np.abs(v[0]).max()
        swapped += ratio > 1.5
        same += ratio < 0.75
    assert swapped and same
    mix, voc, acc = s.batch(3)
    assert mix.shape == voc.shape == acc.shape == (3, 2, 257, 16)
    with pytest.raises(ValueError):
        RemixSampler([stereo], 512, 128, frames=16, channels=3)
    # weighted groups (train --group-weight 2=3): the one track of group 2 three times in four
    weighted = RemixSampler(tracks, 512, 128, frames=16, seed=0, groups=[1, 1, 1, 2],
                            balance_groups=True, group_weights={2: 3}, channels=2)
    firsts = [weighted._first_track(weighted.rng) for _ in range(800)]
    assert 0.7 < np.mean([i == 3 for i in firsts]) < 0.8
    with pytest.raises(ValueError, match="group weights"):
        RemixSampler(tracks, 512, 128, frames=16, groups=[1, 1, 1, 2], group_weights={3: 1})


def test_a_batch_is_the_same_however_it_is_shared(mir1k_dir):
    """``batch_at``: example i of a step comes from its own seed, so two processes taking
    halves of a batch draw exactly the single process's batch; another step, epoch or seed
    draws other examples."""
    tracks = load_mir1k(mir1k_dir / "valid")[:3]
    s = RemixSampler(tracks, 512, 128, frames=16, remix=True, seed=5, groups=[1, 1, 2],
                     channels=2, swap_channels=True)
    whole = s.batch_at(3, 7, range(4))
    halves = [s.batch_at(3, 7, range(0, 2)), s.batch_at(3, 7, range(2, 4))]
    for w, a, b in zip(whole, *halves):
        assert torch.equal(w, torch.cat([a, b]))
    assert len(s.drawn) == 2  # the groups of the last call's examples
    other = RemixSampler(tracks, 512, 128, frames=16, remix=True, seed=6, groups=[1, 1, 2],
                         channels=2, swap_channels=True)
    for changed in (s.batch_at(3, 8, range(4)), s.batch_at(4, 7, range(4)), other.batch_at(3, 7, range(4))):
        assert not torch.equal(changed[0], whole[0])


def test_speed_plays_each_stem_at_its_own_speed():
    """``speed``: a 440 Hz vocal tone and a 220 Hz backing tone come out at frequencies scaled
    by independent factors within ``1 ± speed``, spread over that range, examples as long as
    ever; the stems are not shortened by the resampling's edges."""
    rate, speed = 16000, 0.1
    t = np.arange(rate * 4) / rate
    track = Track("tones", np.sin(2 * np.pi * 440 * t)[None].astype(np.float32),
                  np.sin(2 * np.pi * 220 * t)[None].astype(np.float32), rate)
    sampler = RemixSampler([track], 1024, 256, frames=128, gain_db=0, speed=speed, seed=3)

    def factor(x: np.ndarray, tone: float) -> float:
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 16 * len(x)))
        return np.argmax(spectrum) * rate / (16 * len(x)) / tone

    vocal_factors, backing_factors = [], []
    for _ in range(20):
        v, a = sampler.example()
        assert v.shape == a.shape == (sampler.length,)
        assert np.abs(v[-256:]).max() > 0.9 and np.abs(a[-256:]).max() > 0.9
        vocal_factors.append(factor(v, 440))
        backing_factors.append(factor(a, 220))
    for f in (vocal_factors, backing_factors):
        assert 1 - speed - 0.005 <= min(f) and max(f) <= 1 + speed + 0.005
        assert max(f) - min(f) > speed  # not one speed for all
    assert not np.allclose(vocal_factors, backing_factors, atol=0.005)
    with pytest.raises(ValueError, match="speed"):
        RemixSampler([track], 1024, 256, frames=128, speed=0.5)
