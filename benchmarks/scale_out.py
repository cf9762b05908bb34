"""Scale-out on this machine (docs/scale-out.md): a batch of songs separated with ``-j N`` (a
process pool) and with ``--cluster local:N`` (a Dask LocalCluster), and training with one
process against ``torchrun`` with N, side by side.

    python benchmarks/scale_out.py [--songs 20] [--seconds 60] [--workers 2] [--repeat 2]
                                   [--steps 20] [--skip-separate] [--skip-train]

Songs: MUSDB18-7 mixtures (the test split, then the train subset if it has too few), each
repeated to ``--seconds`` (stereo 44.1 kHz wav). Each run is a ``vocalsep separate`` command
into a fresh folder; wall time is the command's, peak memory per worker is the largest
resident size of each process under the command that loaded a model (the tree is sampled every
0.1 s). Training: ``vocalsep train stemunet --init default --stereo`` on MIR-1K train clips,
batch 4, ``--steps`` steps; one process with N CPU threads against ``torchrun
--nproc-per-node N`` with one thread each (the same global batch: the same steps, see
tests/test_distributed.py); steps per second from the run's own epoch time (which excludes
start-up; validation is one clip). The runs alternate, ``--repeat`` times each; the table gives
medians.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL_RSS = 150e6  # a process this large has loaded a model (the CLI's parent stays below)


def make_songs(folder: Path, count: int, seconds: float) -> float:
    """``count`` stereo songs of ``seconds`` from MUSDB18-7 mixtures; returns hours of audio."""
    import musdb

    tracks = list(musdb.DB(root=str(SHARED / "musdb18-7"), subsets="test").tracks)
    tracks += list(musdb.DB(root=str(SHARED / "musdb18-7"), subsets="train").tracks)
    for i, track in enumerate(tracks[:count]):
        mix = track.audio.astype(np.float32)
        n = int(seconds * track.rate)
        song = np.tile(mix, (int(np.ceil(n / len(mix))), 1))[:n]
        sf.write(folder / f"{i:02d}.wav", song, track.rate, subtype="PCM_16")
    return min(count, len(tracks)) * seconds / 3600


def watched(cmd: list[str], env: dict | None = None) -> tuple[float, list[float], subprocess.CompletedProcess]:
    """Run ``cmd``; (wall seconds, peak resident bytes of each process under it that loaded a
    model, the command's own process left out: it checks the model before starting workers)."""
    peaks: dict[int, float] = {}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in root.children(recursive=True):
                try:
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), p.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.monotonic() - started
    out, err = proc.communicate()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return wall, sorted((v for v in peaks.values() if v > MODEL_RSS), reverse=True), done


def separate_rows(args, tmp: Path) -> list[str]:
    songs = tmp / "songs"
    songs.mkdir()
    hours = make_songs(songs, args.songs, args.seconds)
    n = args.workers
    ways = {f"-j {n}": ["-j", str(n)], f"--cluster local:{n}": ["--cluster", f"local:{n}"]}
    results: dict[str, list] = {k: [] for k in ways}
    for r in range(args.repeat):
        for name, flags in ways.items():
            out = tmp / f"out-{r}-{flags[0].strip('-')}"
            wall, peaks, _ = watched([sys.executable, "-m", "vocalsep.cli", "separate", str(songs),
                                      "-o", str(out), "-q", *flags])
            results[name].append((wall, peaks))
    rows = [f"{len(list(songs.iterdir()))} songs of {args.seconds:.0f} s ({hours:.2f} h), "
            f"{n} workers, median of {args.repeat} runs each:", "",
            "| run | wall | × real time | worker processes | peak memory per worker |",
            "|---|---:|---:|---:|---:|"]
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        peak = statistics.median(max(p) for _, p in runs if p) if any(p for _, p in runs) else float("nan")
        count = statistics.median(len(p) for _, p in runs)
        rows.append(f"| `{name}` | {wall:.1f} s | {hours * 3600 / wall:.1f} | {count:.0f} | {peak / 1e6:.0f} MB |")
    return rows


def train_rows(args, tmp: Path) -> list[str]:
    data, valid = tmp / "train", tmp / "valid"
    data.mkdir()
    valid.mkdir()
    for f in sorted((SHARED / "mir1k" / "train").glob("*.flac"))[:20]:
        (data / f.name).symlink_to(f)
    first = sorted((SHARED / "mir1k" / "valid").glob("*.flac"))[0]
    (valid / first.name).symlink_to(first)
    n = args.workers
    common = ["train", "stemunet", "--init", "default", "--stereo", "--data", str(data), "--valid", str(valid),
              "--batch-size", "4", "--steps-per-epoch", str(args.steps), "--epochs", "1", "--lr", "1e-5",
              "-q", "--restart"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ways = {f"1 process, {n} threads": [sys.executable, "-m", "vocalsep.cli", *common, "--threads", str(n)],
            f"torchrun, {n} processes × 1 thread": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   "--nproc-per-node", str(n), "-m", "vocalsep.cli", *common,
                                                   "--threads", "1"]}
    results: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.repeat):
        for i, (name, cmd) in enumerate(ways.items()):
            out = tmp / f"run-{r}-{i}"
            watched([*cmd, "--out", str(out)], env=env)
            with open(out / "history.csv") as f:
                seconds = float(list(csv.DictReader(f))[-1]["seconds"])
            results[name].append(args.steps / seconds)
    rows = [f"Training: `stemunet --init default --stereo`, batch 4, {args.steps} steps, median of "
            f"{args.repeat} runs each:", "", "| run | steps/s | relative |", "|---|---:|---:|"]
    base = statistics.median(next(iter(results.values())))
    for name, rates in results.items():
        rate = statistics.median(rates)
        rows.append(f"| {name} | {rate:.3f} | {rate / base:.2f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--songs", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--skip-separate", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_separate:
            print("\n".join(separate_rows(args, Path(tmp))), flush=True)
            print()
        if not args.skip_train:
            print("\n".join(train_rows(args, Path(tmp))))


if __name__ == "__main__":
    main()
