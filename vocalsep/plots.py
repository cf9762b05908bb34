"""Figures: loss curves, spectrograms of input and result, waveform difference (PNG files).

Signals are float NumPy arrays, either mono ``(samples,)`` or ``(channels, samples)`` (mixed
down to mono for plotting); rates are in Hz. Every figure is written atomically (a temporary
file in the same folder, then a rename), so a crash never leaves a half-written PNG.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:  # torch is imported lazily: plotting a loss curve must not need it
    from .models import SeparationModel

#: points drawn per waveform panel before switching to a min/max envelope
_WAVE_POINTS = 4000


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_loss(history: list[dict], path: str | os.PathLike, title: str = "training loss") -> Path:
    """Training and validation loss per epoch from a history (list of dicts with
    ``epoch``, ``train_loss``, ``valid_loss``)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    best = min(history, key=lambda h: h["valid_loss"])
    ax.axvline(best["epoch"], color="grey", ls=":", label=f"best epoch {best['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


# ---------------------------------------------------------------- helpers
def _mono(x: np.ndarray, name: str) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` → float32 ``(samples,)`` (channel mean)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected (samples,) or (channels, samples), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name}: no samples")
    return x


def _pair(mixture: np.ndarray, vocals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mix, voc = _mono(mixture, "mixture"), _mono(vocals, "vocals")
    if mix.shape != voc.shape:
        raise ValueError(f"mixture and vocals differ in length ({mix.size} vs {voc.size} samples)")
    return mix, voc


def log_spectrogram(x: np.ndarray, n_fft: int = 2048, hop: int = 512,
                    frames: int | None = None) -> np.ndarray:
    """``log1p(|STFT|)`` of a mono signal ``(samples,)`` → ``(n_fft//2+1, frames)`` float32,
    computed with :func:`vocalsep.spectral.stft` (Hann window, centred frames); only the first
    ``frames`` frames if given."""
    import torch

    from .spectral import log_magnitude, stft

    sig = torch.from_numpy(np.ascontiguousarray(_mono(x, "signal")))
    if frames is not None:  # frame k only sees samples up to k*hop + n_fft/2: cut before the STFT
        sig = sig[: max(1, (frames - 1) * hop + n_fft // 2 + 1)]
    spec = log_magnitude(stft(sig, n_fft, hop)).numpy()
    return spec[:, :frames] if frames is not None else spec


def _envelope(ax, t: np.ndarray, y: np.ndarray, color: str) -> None:
    """Draw ``y`` against ``t``; long signals as a min/max envelope (fast, same look)."""
    if y.size <= _WAVE_POINTS:
        ax.plot(t, y, color=color, lw=0.6)
        return
    per = -(-y.size // (_WAVE_POINTS // 2))
    n = y.size // per * per
    blocks = y[:n].reshape(-1, per)
    tb = t[:n].reshape(-1, per).mean(axis=1)
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    if n < y.size:  # the ragged tail
        tb = np.append(tb, t[n:].mean())
        lo, hi = np.append(lo, y[n:].min()), np.append(hi, y[n:].max())
    ax.fill_between(tb, lo, hi, color=color, lw=0.4, edgecolor=color)


# ---------------------------------------------------------------- figures
def plot_spectrograms(mixture: np.ndarray, vocals: np.ndarray, rate: int, path: str | os.PathLike,
                      frames: int = 1000, n_fft: int = 2048, hop: int = 512,
                      title: str | None = None) -> Path:
    """The paper's spectrogram figure: ``log1p`` magnitude of the input (top) and of the
    separated vocals (bottom), first ``frames`` STFT frames (``n_fft``/``hop`` in samples),
    time in seconds, frequency in kHz, one colour scale shared by both panels.

    ``mixture`` and ``vocals``: ``(samples,)`` or ``(channels, samples)`` at ``rate`` Hz, equal
    length. Returns the written PNG's path.
    """
    if frames < 1 or n_fft < 2 or hop < 1 or rate <= 0:
        raise ValueError("frames, n_fft, hop and rate must be positive (n_fft >= 2)")
    mix, voc = _pair(mixture, vocals)
    specs = [log_spectrogram(s, n_fft, hop, frames) for s in (mix, voc)]
    shown = specs[0].shape[1]
    vmax = max(float(s.max()) for s in specs) or 1.0
    # pixel edges: frame k is centred at k*hop/rate s, bin b at b*rate/n_fft Hz
    dt, df = hop / rate, rate / n_fft / 1000
    extent = (-dt / 2, (shown - 0.5) * dt, -df / 2, (specs[0].shape[0] - 0.5) * df)
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, sharey=True, constrained_layout=True)
    names = ("input (mixture)", "separated vocals")
    for ax, spec, name in zip(axes, specs, names):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name}: log(1 + |STFT|)")
        ax.set_ylabel("frequency (kHz)")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="log(1 + magnitude)", shrink=0.9)
    info = f"first {shown} STFT frames ({shown * dt:.1f} s), n_fft {n_fft}, hop {hop}, {rate} Hz"
    fig.suptitle(f"{title}\n{info}" if title else f"spectrograms: {info}")
    return _save(fig, path)


def plot_waveform_difference(mixture: np.ndarray, vocals: np.ndarray, rate: int,
                             path: str | os.PathLike, title: str | None = None) -> Path:
    """Three stacked panels over time (s): the input waveform, the separated vocals, and
    their difference ``input − vocals`` (= the accompaniment), on one amplitude scale.

    ``mixture`` and ``vocals``: ``(samples,)`` or ``(channels, samples)`` at ``rate`` Hz, equal
    length. Returns the written PNG's path.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    mix, voc = _pair(mixture, vocals)
    rows = [("input (mixture)", mix, "tab:blue"), ("separated vocals", voc, "tab:red"),
            ("difference: input − vocals (= accompaniment)", mix - voc, "tab:green")]
    t = np.arange(mix.size) / rate
    peak = max(float(np.abs(y).max()) for _, y, _ in rows) or 1.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True, sharey=True, constrained_layout=True)
    for ax, (name, y, color) in zip(axes, rows):
        _envelope(ax, t, y, color)
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
        ax.set_title(f"{name}   (RMS {rms:.3f})")
        ax.set_ylabel("amplitude")
        ax.axhline(0.0, color="grey", lw=0.4)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-1.05 * peak, 1.05 * peak)
    axes[-1].set_xlim(0.0, mix.size / rate)
    axes[-1].set_xlabel("time (s)")
    info = f"{mix.size / rate:.1f} s at {rate} Hz"
    fig.suptitle(f"{title}\n{info}" if title else f"waveforms: {info}")
    return _save(fig, path)


# ---------------------------------------------------------------- history and one song
def _parse(value: str | None) -> int | float | str | None:
    if value is None or value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _history_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "history.csv" if path.is_dir() else path


def read_history(path: str | os.PathLike) -> list[dict]:
    """Read a training ``history.csv`` (as written by :func:`vocalsep.train.write_history`) or
    a run folder holding one → one dict per epoch (``epoch``, ``train_loss``, ``valid_loss``,
    ``seconds``, ``examples``), numbers as ``int`` or ``float``."""
    path = _history_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such history file")
    with open(path, newline="") as f:
        rows = [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return rows


def song_figures(input_path: str | os.PathLike, out_dir: str | os.PathLike,
                 model: str | os.PathLike | SeparationModel | None = None,
                 history: str | os.PathLike | None = None) -> list[Path]:
    """The paper's figures for one song: separate ``input_path`` (mixed down to mono) with
    :class:`~vocalsep.separate.Separator` (``model``: shipped name, ``.pt`` file or a model;
    ``None`` → the shipped default) and write ``out_dir/spectrograms.png`` and
    ``out_dir/waveforms.png``; also ``out_dir/loss.png`` when ``history`` (a ``history.csv`` or
    a run folder holding one) is given. Returns the written paths in that order."""
    from .audio import read_audio, to_mono
    from .separate import Separator

    input_path, out = Path(input_path), Path(out_dir)
    losses = None
    if history is not None:  # fail before the (slow) separation if the history is unusable
        losses = read_history(history)
        if not losses:
            raise ValueError(f"{_history_file(history)}: history has no epochs")
        missing = {"epoch", "train_loss", "valid_loss"} - set(losses[0])
        if missing:
            raise ValueError(f"{_history_file(history)}: not a training history "
                             f"(missing column(s) {', '.join(sorted(missing))})")
    audio = read_audio(input_path)
    mono = to_mono(audio.samples)
    vocals = Separator(model).separate(mono, audio.rate)["vocals"]
    name = input_path.name
    written = [
        plot_spectrograms(mono, vocals, audio.rate, out / "spectrograms.png",
                          title=f"{name}: input and separated vocals (log1p magnitude)"),
        plot_waveform_difference(mono, vocals, audio.rate, out / "waveforms.png",
                                 title=f"{name}: input, vocals and their difference"),
    ]
    if losses is not None:
        run = _history_file(history).resolve().parent.name
        written.append(plot_loss(losses, out / "loss.png", title=f"training loss ({run})"))
    return written
