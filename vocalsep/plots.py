"""Figures: loss curves, spectrograms of input and result, waveform difference (PNG files)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
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
