"""Distil a two-network stemunet's accompaniment U-Net into a narrower one (issue #15).

    python scripts/distil_accompaniment.py TEACHER.pt --width 0.5 --out runs/narrow \
        --data ../shared/data/mir1k/train --data ../shared/data/musdb18-7 [--minutes 60]

The student is the teacher with its accompaniment network pruned to ``--width`` of Spleeter's
filters (:func:`vocalsep.models.stemunet.net.pruned`); the vocal network is the teacher's and is
not trained here. First the pruned network's batch-norm statistics are measured again on
training examples (pruning leaves them describing the wide network's inputs), then the narrow
network learns to give the teacher's vocal mask: the L1 distance of the two vocal masks (each
the ratio of the teacher's vocal mask and an accompaniment mask), weighted by the mixture's
magnitude, on remixed stereo examples of the training data. That target is dense, and it
weighs an accompaniment mask's errors as the ratio feels them (small ones matter most where the
voice dominates); ``--target mask`` learns the accompaniment mask itself, cheaper but blind to
that (tried first: 5.77 dB on MUSDB valid after 400 steps, below the default alone). Writes ``OUT/last.pt`` (resumable: weights, optimiser, step) and ``OUT/student.pt`` (a
loadable model) every ``--save-every`` steps, and ``OUT/history.csv``. Fine-tune the result
jointly afterwards with ``vocalsep train stemunet --init OUT/student.pt``; ``--vocals-from``
puts another model's vocal network beside the narrow one.
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
from torch import nn

from vocalsep.data import RemixSampler, load_any
from vocalsep.models import build, load, save
from vocalsep.models.stemunet.model import StemUNetModel


def network_input(model: StemUNetModel, mix: torch.Tensor) -> torch.Tensor:
    """``(batch, 2, bins, frames)`` magnitudes → the networks' ``(batch, 2, frames, net_bins)``."""
    return mix[:, :, : model.net_bins].transpose(2, 3).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def recalibrate_norms(net: nn.Module, batches: list[torch.Tensor]) -> None:
    """Replace ``net``'s batch-norm running statistics by their plain average over ``batches``."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for x in batches:
        net(x)
    for m in norms:
        m.momentum = 0.1
        m.eval()


def distance(student: torch.Tensor, teacher: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean ``|student - teacher| * x`` over the mean of ``x``: the masks' L1 distance where the
    mixture has energy (masks and magnitudes of one shape)."""
    return ((student - teacher).abs() * x).mean() / x.mean().clamp_min(1e-8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teacher", help="a two-network stemunet model file")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--valid", action="append", default=None,
                   help="validation data (default: MUSDB's valid split of --data)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--frames", type=int, default=128, help="frames per example (a multiple of 64)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", choices=("ratio", "mask"), default="ratio",
                   help="learn the teacher's vocal mask, the ratio of its two networks' masks with "
                        "the teacher's vocal mask (default), or its accompaniment mask itself")
    p.add_argument("--vocals-from", default=None, metavar="MODEL",
                   help="the student's vocal network from this two-network model, not the teacher's "
                        "(e.g. a later run of the teacher's; with the time spent, only rewrites student.pt)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    teacher = load(args.teacher).requires_grad_(False).eval()
    if not getattr(teacher.params, "accompaniment", False):
        raise SystemExit(f"{args.teacher}: not a two-network stemunet model")
    c = teacher.config
    student = build(c.arch, params={**c.params, "accompaniment_width": args.width},
                    sample_rate=c.sample_rate, n_fft=c.n_fft, hop=c.hop)
    student.load_weights_of(teacher)
    if args.vocals_from:
        student.net.vocals.load_state_dict(load(args.vocals_from).net.vocals.state_dict())
    narrow = student.net.accompaniment
    wide = teacher.net.accompaniment

    tracks = [t for folder in args.data for t in load_any(folder, "train", "train")]
    groups = [t.rate for t in tracks]
    tracks = [t.converted(c.sample_rate, mono=False) for t in tracks]
    sampler = RemixSampler(tracks, c.n_fft, c.hop, args.frames, seed=args.seed, groups=groups,
                           channels=2, swap_channels=True, balance_groups=True)
    valid_tracks = [t.converted(c.sample_rate, mono=False) for folder in (args.valid or args.data)
                    for t in load_any(folder, "train", "valid") if args.valid or t.rate == c.sample_rate]
    valid_sampler = RemixSampler(valid_tracks, c.n_fft, c.hop, args.frames, remix=False, seed=1, channels=2)
    valid = [network_input(teacher, valid_sampler.batch(args.batch_size)[0]) for _ in range(6)]

    args.out.mkdir(parents=True, exist_ok=True)
    last = args.out / "last.pt"
    optimizer = torch.optim.Adam(narrow.parameters(), lr=args.lr)
    step, elapsed, history = 0, 0.0, []
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        narrow.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        sampler.rng = state["rng"]
    else:
        recalibrate_norms(narrow, [network_input(teacher, sampler.batch(args.batch_size)[0]) for _ in range(25)])

    pair = teacher.net

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        """The student's distance to the teacher on a batch of network inputs."""
        with torch.no_grad():
            target = wide(x)
            if args.target == "ratio":
                v = pair.vocals(x)
                target = pair.ratio(v, target)
        if args.target == "ratio":
            return distance(pair.ratio(v, narrow(x)), target, x)
        return distance(narrow(x), target, x)

    def valid_distance() -> float:
        with torch.no_grad():
            return float(sum(loss_of(x) for x in valid) / len(valid))

    def checkpoint() -> None:
        torch.save({"net": narrow.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "elapsed": elapsed + time.monotonic() - started, "history": history,
                    "rng": sampler.rng}, last.with_suffix(".part"))
        last.with_suffix(".part").replace(last)
        save(student, args.out / "student.pt", meta={"teacher": args.teacher, "distil_step": step}, half=True)
        with open(args.out / "history.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", "minutes", "train", "valid", "lr"])
            w.writeheader()
            w.writerows(history)

    started = time.monotonic()
    budget = args.minutes * 60
    if not history:
        history.append({"step": 0, "minutes": 0.0, "train": math.nan, "valid": round(valid_distance(), 5),
                        "lr": args.lr})
        print(history[-1], flush=True)
    student.train()  # freeze_norm: the recalibrated statistics stay
    running = []
    while elapsed + time.monotonic() - started < budget:
        # cosine decay over the run's time budget
        progress = min(1.0, (elapsed + time.monotonic() - started) / budget)
        for g in optimizer.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * progress))
        x = network_input(teacher, sampler.batch(args.batch_size)[0])
        loss = loss_of(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        step += 1
        if step % args.save_every == 0:
            student.eval()
            history.append({"step": step, "minutes": round((elapsed + time.monotonic() - started) / 60, 1),
                            "train": round(sum(running) / len(running), 5), "valid": round(valid_distance(), 5),
                            "lr": optimizer.param_groups[0]["lr"]})
            student.train()
            running = []
            print(history[-1], flush=True)
            checkpoint()
    checkpoint()


if __name__ == "__main__":
    main()
