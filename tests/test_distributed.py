"""Training on two CPU processes with torchrun (gloo) on real MIR-1K clips: the same steps as
one process with the same global batch; a killed process fails the run in one line; resuming
with another number of processes finishes it as an uninterrupted run would have."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vocalsep.distributed import Ranks

#: a narrow, low-band stemunet (frozen norms: no batch statistics, so ranks are exact)
MODEL = ["stemunet", "--width", "0.25", "--params", '{"bins": 256, "extension_hz": [2000, 2700]}']


@pytest.fixture(scope="module")
def clips(tmp_path_factory, mir1k_train_files, mir1k_valid_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clips")
    (root / "train").mkdir()
    (root / "valid").mkdir()
    for f in mir1k_train_files[:4]:
        (root / "train" / f.name).symlink_to(f)
    first = sorted(mir1k_valid_dir.glob("*.flac"))[0]
    (root / "valid" / first.name).symlink_to(first)
    return root / "train", root / "valid"


def _train_args(clips, out: Path, epochs: int) -> list[str]:
    return ["train", *MODEL, "--data", str(clips[0]), "--valid", str(clips[1]), "--batch-size", "4",
            "--steps-per-epoch", "2", "--epochs", str(epochs), "--threads", "1", "--lr", "1e-3",
            "-q", "--out", str(out)]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VOCALSEP_DEBUG"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _torchrun(n: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
            "-m", "vocalsep.cli", *args]


def _one(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocalsep.cli", *args], env=_env(),
                          capture_output=True, text=True, timeout=300)


def _history(out: Path) -> list[dict]:
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


def _weights(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"]


def test_ranks_share_a_batch_and_the_validation():
    shares = [Ranks(r, 4).share(8) for r in range(4)]
    assert [list(s) for s in shares] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert sorted(i for r in range(3) for i in Ranks(r, 3).every(10)) == list(range(10))
    assert Ranks().main and not Ranks(1, 2).main and list(Ranks().share(4)) == [0, 1, 2, 3]


def test_two_processes_take_the_steps_of_one(tmp_path, clips):
    one = _one(_train_args(clips, tmp_path / "one", 2))
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(_torchrun(2, _train_args(clips, tmp_path / "two", 2)), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    for a, b in zip(_history(tmp_path / "one"), _history(tmp_path / "two"), strict=True):
        for key in ("train_loss", "valid_loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in w1:
        assert torch.allclose(w1[key].float(), w2[key].float(), atol=1e-5), key
    # rank 0 alone wrote the run folder, and only the finished files
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == ["best.pt", "history.csv", "last.pt", "loss.png"]
    assert two.stdout.count("best epoch") == 1


def test_a_sigterm_is_reported_as_such_even_if_code_it_interrupted_raised_another_error(monkeypatch):
    import signal

    from vocalsep import distributed

    monkeypatch.setattr(distributed, "_terminated", None)
    before = signal.getsignal(signal.SIGTERM)
    try:
        distributed.fail_on_sigterm()
        assert distributed.lost_rank(ValueError("a failure of this process")) is None
        with pytest.raises(ValueError) as caught:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except RuntimeError:  # as library code may do with what the handler raises
                raise ValueError("too many values to unpack (expected 2)") from None
    finally:
        signal.signal(signal.SIGTERM, before)
    lost = distributed.lost_rank(caught.value)
    assert isinstance(lost, distributed.LostRankError)
    assert "SIGTERM" in str(lost) and "resume" in str(lost)


def _descendant_with_rank(parent: int, rank: int) -> int | None:
    import psutil

    for child in psutil.Process(parent).children(recursive=True):
        try:
            env = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"LOCAL_RANK=%d" % rank in env:
            return child.pid
    return None


def test_a_killed_process_fails_the_run_and_a_resume_finishes_it(tmp_path, clips):
    epochs = 5
    out = tmp_path / "run"
    launch = subprocess.Popen(_torchrun(2, _train_args(clips, out, epochs)), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "history.csv").exists() and time.monotonic() < deadline:
            assert launch.poll() is None, launch.communicate()[1][-2000:]
            time.sleep(0.2)
        victim = _descendant_with_rank(launch.pid, 1)
        assert victim is not None
        os.kill(victim, 9)
        _, err = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("vocalsep: ")]
    assert len(ours) == 1 and "rank 0 of 2" in ours[0] and "resume" in ours[0], err[-2000:]
    done = len(_history(out))
    assert 1 <= done < epochs

    # resumed by one process: the history and weights of an uninterrupted run
    resumed = _one(_train_args(clips, out, epochs))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _one(_train_args(clips, tmp_path / "straight", epochs))
    assert straight.returncode == 0
    got, want = _history(out), _history(tmp_path / "straight")
    assert [r["epoch"] for r in got] == [str(e) for e in range(1, epochs + 1)]
    for a, b in zip(got, want):
        assert float(a["valid_loss"]) == pytest.approx(float(b["valid_loss"]), rel=1e-5)
    w1, w2 = _weights(out), _weights(tmp_path / "straight")
    for key in w1:
        assert torch.allclose(w1[key].float(), w2[key].float(), atol=1e-5), key


def test_a_batch_the_processes_cannot_share_is_refused(tmp_path, clips):
    args = _train_args(clips, tmp_path / "odd", 1)
    args[args.index("--batch-size") + 1] = "3"
    r = subprocess.run(_torchrun(2, args), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if line.startswith("vocalsep: ")]
    assert ours and all("not divisible by the 2 training processes" in line for line in ours)
    assert not (tmp_path / "odd" / "last.pt").exists()
