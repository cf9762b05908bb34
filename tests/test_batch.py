"""Batches: folders and globs, parallel workers, skipping what is done, resuming after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import run_cli
from vocalsep.batch import expand_inputs


def _clips(folder: Path, mir1k_test_dir: Path, count: int) -> list[Path]:
    """``count`` real MIR-1K test mixtures as 16 kHz mono WAVs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted(mir1k_test_dir.glob("*.flac"))[:count]:
        x, rate = sf.read(f, dtype="float32")
        target = folder / f"{f.stem}.wav"
        sf.write(target, x.sum(axis=1) * 0.5, rate)
        out.append(target)
    return out


def test_expand_inputs(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for name in ("a/x.wav", "a/sub/y.MP3", "a/notes.txt", "a/.hidden.wav", "z.flac"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.flac"), str(tmp_path / "a" / "x.wav"),
                         str(tmp_path / "missing.wav"), str(tmp_path / "none*.wav"), str(tmp_path / "empty")])
    assert got == [str(tmp_path / "a/sub/y.MP3"), str(tmp_path / "a/x.wav"), str(tmp_path / "z.flac"),
                   str(tmp_path / "missing.wav"), str(tmp_path / "none*.wav"), str(tmp_path / "empty")]


def test_folder_in_parallel_then_skipped(tmp_path, mir1k_test_dir):
    songs = _clips(tmp_path / "in", mir1k_test_dir, 3)
    one = run_cli("separate", *songs, "-o", tmp_path / "one", "-m", "small", "-q")
    assert one.returncode == 0, one.stderr
    par = run_cli("separate", tmp_path / "in", "-o", tmp_path / "par", "-m", "small", "-j", "2")
    assert par.returncode == 0, par.stderr
    assert "3 files: 3 separated, 0 skipped, 0 failed" in par.stdout
    for s in songs:
        for stem in ("vocals.wav", "accompaniment.wav"):
            a = sf.read(tmp_path / "one" / s.stem / stem)[0]
            b = sf.read(tmp_path / "par" / s.stem / stem)[0]
            np.testing.assert_array_equal(a, b)  # workers give the same output
    again = run_cli("separate", str(tmp_path / "in" / "*.wav"), "-o", tmp_path / "par", "-m", "small")
    assert again.returncode == 0
    assert "3 files: 0 separated, 3 skipped, 0 failed" in again.stdout
    assert len(again.stderr.strip().splitlines()) == 3 and "skipped" in again.stderr


def test_killed_batch_leaves_no_partial_file_and_resumes(tmp_path, example_song):
    """kill -9 in the middle of a song: nothing of that song is in place (only hidden
    temporaries); running the batch again removes those and finishes every song."""
    mixture, _, rate = example_song
    folder = tmp_path / "in"
    folder.mkdir()
    long = np.tile(mixture, (1, 30)).T  # 3.4 min
    sf.write(folder / "a_short.wav", mixture.T, rate)
    sf.write(folder / "b_long.wav", long, rate)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vocalsep.cli", "separate", str(folder), "-o", str(out),
                             "-m", "small", "-q"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the long song is being written
        if (out / "b_long").is_dir() and list((out / "b_long").glob(".*.part")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "a_short" / "vocals.wav").exists()
    assert not [p for p in (out / "b_long").iterdir() if not p.name.startswith(".")]
    again = run_cli("separate", folder, "-o", out, "-m", "small", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "1 separated, 1 skipped" in again.stdout
    names = sorted(p.name for p in (out / "b_long").iterdir())
    assert names == ["accompaniment.wav", "vocals.wav"]  # and no temporaries left
    assert sf.info(str(out / "b_long" / "vocals.wav")).frames == long.shape[0]
