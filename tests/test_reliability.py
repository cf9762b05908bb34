"""Reliability (issue #6), the quick part of the campaign: the generated bad-input corpus
through the Python API and the command line, outputs that cannot be written, kill -9 in a
batch and in training. ``python -m vocalsep.reliability run --full`` runs all of it at full
size (every file in its own process, more kills); docs/reliability.md has the table.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from vocalsep import audio
from vocalsep.reliability import campaign
from vocalsep.reliability.corpus import make_corpus, read_manifest
from vocalsep.separate import Separator

#: the kinds of input issue #6 names; every one must be in the corpus
ISSUE_CATEGORIES = {
    "empty file", "zero-length audio", "silence", "DC and clipping", "NaN/Inf samples",
    "truncated in the header", "truncated in the data", "bit flips in PCM data", "bit flips in coded data",
    "not audio", "directory", "channels 1-8", "rates 4-384 kHz", "bit depths and codecs", "unreadable file",
    "odd names", "missing", "special files",
}


def _passed(results: list[campaign.Result]) -> None:
    assert results
    bad = campaign.failures(results)
    assert not bad, "\n" + bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, mir1k_test_clip):
    root = tmp_path_factory.mktemp("corpus") / "files"
    cases = make_corpus(root, mir1k_test_clip)
    return root, cases


def _digest(root: Path) -> dict[str, str]:
    return {os.fsdecode(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)
            and p.name != "manifest.json" and not p.is_fifo()}


def test_corpus_is_large_deterministic_and_described(corpus, tmp_path, mir1k_test_clip):
    root, cases = corpus
    errors = [c for c in cases if c.expect == "error"]
    assert len(errors) >= 200
    assert ISSUE_CATEGORIES <= {c.category for c in cases}
    assert all(c.expect in ("error", "ok", "any") for c in cases)
    assert all(c.message for c in errors), "every error case says what the message must contain"
    assert len({campaign.stem_folder(c.path(root), "out") for c in cases}) == len(cases)
    assert read_manifest(root) == cases
    json.loads((root / "manifest.json").read_text())
    channels = {int(c.name[2]) for c in cases if c.category == "channels 1-8"}
    assert channels == set(range(1, 9))
    again = make_corpus(tmp_path / "again", mir1k_test_clip)
    assert again == cases
    assert _digest(tmp_path / "again") == _digest(root)  # byte for byte


def test_python_api_on_every_file(corpus, tmp_path):
    root, cases = corpus
    results = campaign.run_api(cases, root, tmp_path / "out")
    _passed(results)
    assert sum(r.happened.startswith("error") for r in results) >= 200


def test_cli_one_process_for_the_whole_corpus(corpus, tmp_path):
    """Each bad file gets its own one-line error and the batch goes on; exit code 1."""
    root, cases = corpus
    results = campaign.run_cli_batch(cases, root, tmp_path / "out")
    _passed(results)
    assert sum(r.happened.startswith("error") for r in results) >= 200


def test_cli_one_process_per_file(corpus, tmp_path):
    """A sample of the corpus one process each (the full run does every file): exit code 1 and
    one line for a bad file, 0 for a good one, names with dashes and newlines given after --."""
    root, cases = corpus
    picked = campaign.sample(cases, campaign.QUICK_EACH)
    assert len(picked) == len(campaign.QUICK_EACH)
    _passed(campaign.run_cli_each(picked, root, tmp_path / "out"))


def test_cli_outputs_that_cannot_be_written(tmp_path):
    results = campaign.output_faults(tmp_path, quick=True)
    _passed(results)
    tried = [r for r in results if not r.skipped]
    assert len(tried) >= 4  # below a file, size limit, read-only, a stem path that is a folder


def test_kill_batch_at_a_random_moment_then_resume(tmp_path):
    results = campaign.kill_batch(tmp_path, kills=1, seed=1, songs=3, seconds=15)
    _passed(results)
    assert "finished before the kill" not in results[0].happened, "the kill came too late to test anything"


def test_kill_training_after_a_checkpoint_then_resume(tmp_path):
    results = campaign.kill_train(tmp_path, kills=1, epochs=3, steps=2, reference=False)
    _passed(results)
    assert "finished before the kill" not in results[0].happened
    assert "resumed at epoch 2" in results[-1].happened


# --- faults simulated in the Python API (they need no root and run everywhere) ----------------

@pytest.fixture(scope="module")
def small():
    return Separator("small")


@pytest.fixture()
def song(tmp_path):
    return campaign._song(tmp_path / "song.wav", seconds=4.0)


@pytest.mark.parametrize("when", ["while separating", "while encoding"])
def test_api_disk_full_leaves_nothing(small, song, tmp_path, monkeypatch, when):
    """ENOSPC from the first write, or only in the final encoding (after the whole song was
    separated into temporaries): one AudioError naming the stem, nothing in the output folder."""
    real_write = audio.sf.SoundFile.write

    def full(self, data):
        if when == "while separating" or ".raw.part" not in os.fsdecode(self.name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(audio.sf.SoundFile, "write", full)
    out = tmp_path / "out"
    with pytest.raises(audio.AudioError) as info:
        small.separate_file(song, out)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert "vocals.wav" in str(info.value) or "accompaniment.wav" in str(info.value)
    assert not out.exists() or not any(out.rglob("*"))


def test_batch_redoes_a_song_killed_between_its_renames(small, song, tmp_path):
    """The stems are renamed into place one after the other: a kill -9 between the two renames
    leaves one of them. The song does not count as done, so the next run separates it again."""
    out = tmp_path / "out"
    written = small.separate_file(song, out)
    expected = {k: p.read_bytes() for k, p in written.items()}
    written["accompaniment"].unlink()  # the state such a kill leaves
    r = campaign.vocalsep("separate", "-m", "small", "-o", out, song)
    assert r.returncode == 0, r.stderr
    assert "1 separated" in r.stdout or not r.stderr.strip()
    assert {k: p.read_bytes() for k, p in written.items()} == expected
    assert campaign.no_temporaries(out) == []


def test_corrupt_checkpoint_is_one_line_naming_it(tmp_path):
    train_dir, valid_dir = campaign._training_data(tmp_path, tracks=2, seconds=2.0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"\x00garbage")
    r = campaign.vocalsep("train", "unet", "--data", train_dir, "--valid", valid_dir, "--out", run,
                          "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(lines) == 1 and "last.pt" in lines[0] and "--restart" in lines[0], r.stderr


def test_resume_removes_temporaries_of_a_killed_save(tmp_path):
    from vocalsep.data import load_stem_folder
    from vocalsep.models import build
    from vocalsep.train import TrainConfig, train

    train_dir, valid_dir = campaign._training_data(tmp_path, tracks=2, seconds=2.0)
    run = tmp_path / "run"
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=1, seed=0, valid_stride=256)
    train(build("unet"), load_stem_folder(train_dir), load_stem_folder(valid_dir), run, cfg)
    for name in (".best.pt.part", ".last.pt.part", ".loss.part.png"):  # killed mid-save
        (run / name).write_bytes(b"half")
    cfg.epochs = 2
    history = train(build("unet"), load_stem_folder(train_dir), load_stem_folder(valid_dir), run, cfg)
    assert [h["epoch"] for h in history] == [1, 2]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "history.csv", "last.pt", "loss.png"]
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 2
