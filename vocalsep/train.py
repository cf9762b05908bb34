"""Training loop: Adam, per-epoch validation, best epoch kept, resumable checkpoints.

A run folder holds ``last.pt`` (everything needed to resume: weights, optimiser and RNG
states, history), ``best.pt`` (a loadable model, the epoch with the lowest validation loss),
``history.csv`` and ``loss.png``. All files are written atomically, so a run killed at any
moment resumes from its last checkpoint with ``resume=True``.

Under ``torchrun`` the same function trains on several processes
(:mod:`vocalsep.distributed`): the model is wrapped in ``DistributedDataParallel``, each
process computes its share of every batch (the examples of a batch are fixed by the seed, the
epoch and the step: :meth:`~vocalsep.data.RemixSampler.batch_at`), every ``world``-th
validation batch, and the losses are summed over the processes; only rank 0 writes files. A
run resumes with any number of processes that divides the batch size.
"""
from __future__ import annotations

import csv
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .data import RemixSampler, Track, examples, fit_channels
from .distributed import LostRankError, Ranks, any_rank, same_on_all_ranks, sum_over_ranks, with_peers
from .models import SeparationModel, save


@dataclass
class TrainConfig:
    """Options of one training run."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    remix: bool = True
    gain_db: float = 6.0
    speed: float = 0.0  # each remixed stem played at its own random speed in [1 - speed, 1 + speed]
    steps_per_epoch: int | None = None  # default: one pass over the training frames
    patience: int | None = None  # early stopping after this many epochs without improvement
    lr_patience: int | None = None  # halve the learning rate after this many stale epochs
    max_minutes: float | None = None  # stop (after checkpointing) when this much time has passed
    checkpoint_minutes: float = 5.0
    threads: int | None = None
    valid_stride: int | None = None  # frames between validation examples
    balance_groups: bool = False  # draw each source rate (e.g. 16 kHz MIR-1K, 44.1 kHz MUSDB) equally
    group_weights: dict[int, float] | None = None  # or in proportion to these weights (source rate -> weight)
    teacher: str | None = None  # a model (or "spleeter") whose estimates are a second target
    teacher_rate: int | None = None  # distil only on examples of data at this sample rate
    l2sp: float = 0.0  # weight of the squared distance to the starting weights (L2-SP)
    keep_epochs: bool = False  # also save every epoch's model as epoch-NNN.pt
    device: str = "cpu"  # where the model trains ("cuda": this process's GPU under torchrun)
    #: frames per example instead of the model's own, e.g. a short live segment (stemunet pads
    #: each to a multiple of 64; with ``past_frames``, the past comes first)
    example_frames: int | None = None
    #: stemunet: frames of the past before each example, heard by the network but not scored
    #: (as a live segment shorter than the network's window is separated: SHORT_SEGMENTS)
    past_frames: int = 0
    #: targets along the mixture's phase, |S| cos(∠S - ∠X), instead of |S| (data.magnitudes;
    #: for the paper model's binary target: the stem with the larger part)
    phase_sensitive: bool = False
    #: share of remixed examples whose backing may come from another group (data.RemixSampler);
    #: the model must hear no more than the narrowest group's band
    cross_groups: float = 0.0
    #: stemunet: plus this weight times the mean −SDR (dB) of both stems, the examples' masks
    #: applied to the mixture's STFT and inverted (:mod:`vocalsep.losses`); the validation
    #: loss too, so it is then partly in dB (not with a teacher)
    sdr_weight: float = 0.0
    history: list[dict] = field(default_factory=list)

    def check(self, arch: str) -> None:
        """Raise ``ValueError`` (one line, naming the option as the ``train`` command spells
        it) for options that do not go together or are out of range, for a model of ``arch``;
        what also depends on the data or the model's band is checked when training starts."""
        weights = list((self.group_weights or {}).values())
        problems = [
            (f"--batch-size {self.batch_size}: at least 1", self.batch_size < 1),
            (f"--example-frames {self.example_frames}: at least 1",
             self.example_frames is not None and self.example_frames < 1),
            (f"--past-frames {self.past_frames}: a number >= 0, for stemunet only",
             self.past_frames < 0 or (self.past_frames and arch != "stemunet")),
            (f"--cross-groups {self.cross_groups}: a share from 0 to 1", not 0 <= self.cross_groups <= 1),
            ("--cross-groups: only for remixed examples (not with --no-remix)",
             self.cross_groups and not self.remix),
            ("--cross-groups: not with --teacher-rate (an example's group is its voice's)",
             self.cross_groups and self.teacher_rate),
            (f"--sdr-weight {self.sdr_weight}: a finite number >= 0, for stemunet, not with "
             f"--past-frames or --teacher",
             not (math.isfinite(self.sdr_weight) and self.sdr_weight >= 0)
             or (self.sdr_weight and (arch != "stemunet" or self.past_frames or self.teacher))),
            (f"--speed {self.speed}: from 0 to below 0.5, and only for remixed examples (not with "
             f"--no-remix)", not 0 <= self.speed < 0.5 or (self.speed and not self.remix)),
            ("--group-weight weighs the groups of --balance-groups: give both",
             bool(weights) and not self.balance_groups),
            ("--group-weight: weights must be finite and not negative",
             not all(math.isfinite(w) and w >= 0 for w in weights)),
        ]
        for message, bad in problems:
            if bad:
                raise ValueError(message)


def _atomic_torch_save(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def validation_batches(model: SeparationModel, tracks: list[Track], stride: int | None = None,
                       batch_size: int = 16, phase_sensitive: bool = False,
                       waveforms: bool = False) -> list[tuple[torch.Tensor, ...]]:
    """Fixed validation examples: excerpts of the tracks' own mixtures every ``stride`` frames
    (targets as :func:`~vocalsep.data.magnitudes` makes them; with ``waveforms``, then the
    stems' samples, as :meth:`~vocalsep.data.RemixSampler.batch` gives them)."""
    cfg = model.config
    frames = model.example_frames
    stride = stride or frames
    length = (frames - 1) * cfg.hop
    channels = 2 if model.stereo else 1
    v_list, a_list = [], []
    for t in tracks:
        n = t.vocals.shape[1]
        vocals, acc = (fit_channels(x, channels) for x in (t.vocals, t.accompaniment))
        for start in range(0, max(1, n - length + 1), stride * cfg.hop):
            v = vocals[..., start:start + length]
            a = acc[..., start:start + length]
            pad = [(0, 0)] * (v.ndim - 1) + [(0, length - v.shape[-1])]
            v_list.append(np.pad(v, pad))
            a_list.append(np.pad(a, pad))
    batches = []
    for i in range(0, len(v_list), batch_size):
        v = torch.from_numpy(np.stack(v_list[i:i + batch_size]).astype(np.float32))
        a = torch.from_numpy(np.stack(a_list[i:i + batch_size]).astype(np.float32))
        batches.append(examples(v, a, cfg.n_fft, cfg.hop, phase_sensitive, waveforms))
    return batches


@torch.no_grad()
def teacher_estimates(teacher: SeparationModel, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's vocal and accompaniment magnitudes (its mask times ``mix``) for a batch of
    examples ``(batch, bins, frames)``, or ``(batch, 2, bins, frames)`` with a mask per channel."""
    if mix.ndim == 4:  # train() checked that the teacher has a mask per channel
        mask = teacher.channel_masks(mix, teacher.inference_net())
    else:
        mask = teacher.mask(mix)
    mix = mix[..., : mask.shape[-2], :]  # a teacher may give only the student's band
    return mask * mix, (1 - mask) * mix


def batch_loss(model: SeparationModel, batch: tuple[torch.Tensor, ...], sdr_weight: float = 0.0) -> torch.Tensor:
    """The model's loss of a batch ``(mixture, vocals, accompaniment)`` of magnitudes, and,
    with ``sdr_weight``, the stems' waveforms after them."""
    if sdr_weight:
        return model.training_loss(*batch, sdr_weight=sdr_weight)
    return model.training_loss(*batch[:3])


def step_loss(model: SeparationModel, batch: tuple[torch.Tensor, ...],
              teacher: SeparationModel | None, taught: torch.Tensor | None = None,
              sdr_weight: float = 0.0) -> torch.Tensor:
    """The training loss of one batch (:func:`batch_loss`); with a teacher, the mean of that
    and the spectral loss against the teacher's estimates (``taught``, a ``(batch,)`` bool
    tensor: only for those examples, the others count the true stems twice)."""
    loss = batch_loss(model, batch, sdr_weight)
    if teacher is not None:
        targets = teacher_estimates(teacher, batch[0])
        if taught is not None:
            keep = taught.view(-1, *[1] * (batch[0].ndim - 1))
            bins = targets[0].shape[-2]
            targets = tuple(torch.where(keep, t, true[..., :bins, :])
                            for t, true in zip(targets, batch[1:3]))
        loss = (loss + model.training_loss(batch[0], *targets)) / 2
    return loss


class _StepLoss(nn.Module):
    """One step's loss as a module's ``forward``, what ``DistributedDataParallel`` wraps (its
    gradients are averaged over the processes in ``backward``): :func:`step_loss` plus the
    L2-SP term. The teacher and the starting weights are held outside the module's state."""

    def __init__(self, model: SeparationModel, teacher: SeparationModel | None, l2sp: float,
                 start: list[torch.Tensor], sdr_weight: float = 0.0):
        super().__init__()
        self.model = model
        self._fixed = (teacher, l2sp, start, sdr_weight)

    def forward(self, batch: tuple[torch.Tensor, ...], taught: torch.Tensor | None) -> torch.Tensor:
        teacher, l2sp, start, sdr_weight = self._fixed
        loss = step_loss(self.model, batch, teacher, taught, sdr_weight)
        if l2sp:
            loss = loss + l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(self.model.parameters(), start))
        return loss


@torch.no_grad()
def validation_loss(model: SeparationModel, batches: list[tuple[torch.Tensor, ...]],
                    ranks: Ranks = Ranks(), device: str = "cpu", sdr_weight: float = 0.0) -> float:
    """Mean loss per example over ``batches`` (:func:`batch_loss`); under several processes
    each computes every ``world``-th batch and the sums are reduced, so every rank returns the
    same value."""
    model.eval()
    total = count = 0.0
    for i in ranks.every(len(batches)):
        b = tuple(t.to(device) for t in batches[i])
        total += batch_loss(model, b, sdr_weight).item() * b[0].shape[0]
        count += b[0].shape[0]
    total, count = sum_over_ranks([total, count], ranks)
    return total / max(1.0, count)


def write_history(history: list[dict], folder: Path) -> None:
    """``history.csv`` and ``loss.png`` in ``folder`` (both atomic)."""
    if not history:
        return
    tmp = folder / ".history.csv.part"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, folder / "history.csv")
    from .plots import plot_loss

    plot_loss(history, folder / "loss.png")


def train(model: SeparationModel, train_tracks: list[Track], valid_tracks: list[Track],
          out_dir: str | os.PathLike, config: TrainConfig | None = None, resume: bool = True,
          progress: Callable[[int, int, float], None] | None = None, meta: dict | None = None,
          ranks: Ranks = Ranks()) -> list[dict]:
    """Train ``model`` on tracks at its sample rate (mono, or stereo for a stereo model); return
    the loss history.

    ``progress(step, steps, loss)`` is called after every step (the CLI draws a bar with it);
    ``loss`` is the running mean over the epoch of the whole batch's loss. ``ranks``: this
    process's place in a ``torchrun`` launch (:func:`vocalsep.distributed.start`), whose
    process group must be joined; each rank gets ``batch_size / world`` examples per step.
    A killed process fails the others with :class:`~vocalsep.distributed.LostRankError`.
    """
    cfg = config or TrainConfig()
    own = {k: vars(model)[k] for k in ("example_frames", "target_frames") if k in vars(model)}
    try:
        return _train(model, train_tracks, valid_tracks, out_dir, cfg, resume, progress, meta, ranks)
    finally:  # example_frames is the run's, not the model's: the caller's model keeps its own
        for k in ("example_frames", "target_frames"):
            if k in own:
                setattr(model, k, own[k])
            else:
                vars(model).pop(k, None)


def _train(model: SeparationModel, train_tracks: list[Track], valid_tracks: list[Track],
           out_dir: str | os.PathLike, cfg: TrainConfig, resume: bool,
           progress: Callable[[int, int, float], None] | None, meta: dict | None,
           ranks: Ranks) -> list[dict]:
    cfg.check(model.config.arch)
    if cfg.batch_size % ranks.world:
        raise ValueError(f"batch size {cfg.batch_size}: not divisible by the {ranks.world} "
                         f"training processes (each takes an equal share of every batch)")
    if cfg.cross_groups:  # other bands remixed: the model may hear only the narrowest
        mc = model.config
        narrowest = min(min(t.rate for t in train_tracks), mc.sample_rate) / 2
        heard = min((model.heard_bins - 1) * mc.sample_rate / mc.n_fft, mc.sample_rate / 2)
        if heard > narrowest:
            raise ValueError(f"--cross-groups: the model hears up to {heard:.0f} Hz, above the "
                             f"{narrowest:.0f} Hz band of the narrowest data, so a voice of that "
                             f"band over a wider backing would teach it that voices stop there")
    out = Path(out_dir)
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    mc = model.config
    if cfg.example_frames or cfg.past_frames:
        model.target_frames = cfg.example_frames or model.target_frames
        model.example_frames = model.target_frames + cfg.past_frames
    groups = [t.rate for t in train_tracks]  # remix only voices and backings of the same band
    train_tracks = [t.converted(mc.sample_rate, mono=not model.stereo) for t in train_tracks]
    valid_tracks = [t.converted(mc.sample_rate, mono=not model.stereo) for t in valid_tracks]
    sampler = RemixSampler(train_tracks, mc.n_fft, mc.hop, model.example_frames,
                           remix=cfg.remix, gain_db=cfg.gain_db if cfg.remix else 0.0, seed=cfg.seed,
                           groups=groups, channels=2 if model.stereo else 1,
                           swap_channels=model.stereo, balance_groups=cfg.balance_groups,
                           group_weights=cfg.group_weights,
                           speed=cfg.speed, phase_sensitive=cfg.phase_sensitive,
                           cross_groups=cfg.cross_groups,
                           waveforms=bool(cfg.sdr_weight))
    total_frames = sum(t.vocals.shape[1] // mc.hop for t in train_tracks)
    steps = cfg.steps_per_epoch or max(1, math.ceil(total_frames / (cfg.batch_size * model.target_frames)))
    # with a past before each example, one example per scored stretch: every frame scored once
    valid = validation_batches(model, valid_tracks,
                               cfg.valid_stride or (model.target_frames if cfg.past_frames else None),
                               phase_sensitive=cfg.phase_sensitive, waveforms=bool(cfg.sdr_weight))
    device = torch.device(cfg.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    teacher = None
    if cfg.teacher == "spleeter":
        from .models.stemunet import SpleeterRatioTeacher

        teacher = SpleeterRatioTeacher(getattr(model, "net_bins", 1024))
    elif cfg.teacher:
        from .models import load

        teacher = load(cfg.teacher).requires_grad_(False)
    if teacher is not None:
        teacher.to(device)
    if cfg.teacher:
        t, m = teacher.config, model.config
        if (t.sample_rate, t.n_fft, t.hop) != (m.sample_rate, m.n_fft, m.hop) \
                or (model.stereo and not hasattr(teacher, "channel_masks")) \
                or (teacher.stereo and not model.stereo):
            raise ValueError(f"teacher {cfg.teacher}: its STFT ({t.sample_rate} Hz, {t.n_fft}/{t.hop}, "
                             f"{'stereo' if teacher.stereo else 'mono'}) must be the student's "
                             f"({m.sample_rate} Hz, {m.n_fft}/{m.hop}, {'stereo' if model.stereo else 'mono'})")

    #: what the losses of the history measure (a resumed run must measure the same)
    loss_options = {"sdr_weight": cfg.sdr_weight, "phase_sensitive": cfg.phase_sensitive}
    # L2-SP: the weights the run started from (on resume, those saved with the checkpoint)
    start = [p.detach().clone() for p in model.parameters()] if cfg.l2sp else []
    history: list[dict] = []
    epoch, step_in_epoch, best, elapsed, running = 0, 0, math.inf, 0.0, []
    last = out / "last.pt"
    for stale in out.glob(".*.part*") if ranks.main else ():  # temporaries of a killed run
        stale.unlink(missing_ok=True)
    if resume and last.exists():
        try:
            state = torch.load(last, map_location="cpu", weights_only=False)
        except LostRankError:  # stopped by torchrun while reading: the file is fine
            raise
        except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
            first = (str(err).splitlines() or [type(err).__name__])[0][:100]
            raise ValueError(f"{last}: not a usable checkpoint ({first}); --restart to start over") from None
        if state.get("loss", loss_options) != loss_options:  # best and history in another measure
            raise ValueError(f"{last}: trained with {state['loss']}, not {loss_options}; the same "
                             f"options to resume, or --restart to start over")
        model.load_state_dict(state["model"])
        if cfg.l2sp:
            start = state.get("start") or start
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        epoch, step_in_epoch, best = state["epoch"], state["step"], state["best"]
        history, elapsed, running = state["history"], state["elapsed"], state["running"]
        for h in history:  # older checkpoints counted examples, not target frames
            if "examples" in h:
                h["frames"] = h.pop("examples") * model.target_frames
            h.setdefault("lr", cfg.lr)
        history = [{k: h[k] for k in ("epoch", "train_loss", "valid_loss", "seconds", "lr", "frames")}
                   for h in history]

    def checkpoint() -> None:
        if not ranks.main:
            return
        _atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch, "step": step_in_epoch, "best": best, "history": history,
            "elapsed": elapsed + time.monotonic() - started, "running": running, "loss": loss_options,
            **({"start": start} if cfg.l2sp else {}),
        }, last)

    if not same_on_all_ranks([epoch, step_in_epoch], ranks):
        raise ValueError(f"{last}: the training processes resume from different checkpoints "
                         f"(the run folder must be one folder that every machine sees)")
    step_loss_module = _StepLoss(model, teacher, cfg.l2sp, [p.to(device) for p in start], cfg.sdr_weight)
    if ranks.world > 1:  # gradients averaged over the processes in backward()
        from torch.nn.parallel import DistributedDataParallel

        # dropout differs between ranks (their examples differ too); the weights do not:
        # DistributedDataParallel copies rank 0's when it wraps the model
        torch.manual_seed(hash((cfg.seed, ranks.rank, epoch, step_in_epoch)) % 2**63)

        # static graph: the same parameters every step, some never used (Spleeter's U-Net
        # has a batch norm after its deepest convolution whose output nothing reads)
        with with_peers():  # broadcasts rank 0's weights
            step_loss_module = DistributedDataParallel(
                step_loss_module, device_ids=[device.index] if device.type == "cuda" else None,
                static_graph=True)
    mine = ranks.share(cfg.batch_size)
    started = time.monotonic()
    last_ckpt = started
    stale = sum(1 for _ in _epochs_since_best(history))
    while epoch < cfg.epochs:
        model.train()
        while step_in_epoch < steps:
            batch = tuple(t.to(device) for t in sampler.batch_at(epoch, step_in_epoch, mine))
            taught = None if cfg.teacher_rate is None else torch.tensor(
                [g == cfg.teacher_rate for g in sampler.drawn], device=device)
            with with_peers(ranks.world > 1):  # under DDP, forward and backward talk to the others
                loss = step_loss_module(batch, taught)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
            running.append(sum_over_ranks([loss.item()], ranks)[0] / ranks.world)
            step_in_epoch += 1
            if progress:
                progress(step_in_epoch, steps, float(np.mean(running)))
            now = time.monotonic()
            out_of_time = cfg.max_minutes is not None and any_rank(
                (now - started) / 60 >= cfg.max_minutes, ranks)
            if now - last_ckpt >= cfg.checkpoint_minutes * 60 or out_of_time:
                checkpoint()
                last_ckpt = now
            if out_of_time:
                return history
        v = validation_loss(model, valid, ranks, cfg.device, cfg.sdr_weight)
        seconds = elapsed + time.monotonic() - started
        history.append({"epoch": epoch + 1, "train_loss": round(float(np.mean(running)), 6),
                        "valid_loss": round(v, 6), "seconds": round(seconds, 1),
                        "lr": optimizer.param_groups[0]["lr"],
                        "frames": (epoch + 1) * steps * cfg.batch_size * model.target_frames})
        epoch, step_in_epoch, running = epoch + 1, 0, []
        if cfg.keep_epochs and ranks.main:
            save(model, out / f"epoch-{epoch:03d}.pt", meta={**(meta or {}), "epoch": epoch, "valid_loss": v})
        if v < best:
            best, stale = v, 0
            if ranks.main:
                save(model, out / "best.pt", meta={**(meta or {}), "epoch": epoch, "valid_loss": v,
                                                   "train_seconds": round(seconds, 1),
                                                   "frames_per_epoch": steps * cfg.batch_size * model.target_frames})
        else:
            stale += 1
            if cfg.lr_patience and stale % cfg.lr_patience == 0:
                for group in optimizer.param_groups:
                    group["lr"] /= 2
        if ranks.main:
            write_history(history, out)
        checkpoint()
        last_ckpt = time.monotonic()
        if cfg.patience is not None and stale >= cfg.patience:
            break
    return history


def _epochs_since_best(history: list[dict]):
    best = math.inf
    since = []
    for h in history:
        if h["valid_loss"] < best:
            best, since = h["valid_loss"], []
        else:
            since.append(h)
    return since
