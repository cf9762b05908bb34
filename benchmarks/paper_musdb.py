"""The paper's experiment on its own data: its CNN trained on MUSDB18-7, scored on the valid split.

    vocalsep train paper --data ../shared/data/musdb18-7 --out runs/paper-musdb --batch-size 2 \\
        --steps-per-epoch 50 --no-remix --max-minutes 22 --threads 2
    python benchmarks/paper_musdb.py [--run runs/paper-musdb] [--musdb ../shared/data/musdb18-7]

Scores the run's best epoch on the 14 validation tracks (museval BSS Eval v4, medians) with the
soft and the binary (0.5) mask through iSTFT, beside the mixture and the oracles, and writes the
section to ``docs/paper-reproduction/musdb.md`` (with the run's loss history and curve), which
``benchmarks/paper_reproduction.py`` includes in ``docs/paper-reproduction.md``; this script
also puts it there directly.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "paper-reproduction"
SECTION = ASSETS / "musdb.md"
BEGIN, END = "<!-- musdb section -->", "<!-- end of musdb section -->"

TEXT = """## The paper's experiment on MUSDB18-7 (its own data)

The same CNN, trained the same way (Adam 1e-3, BCE against the ideal binary mask, 32 windows a
step, no remixing) on the 80 tracks of the MUSDB18-7 `train` split (6.8-s excerpts, mixed down to
mono and resampled to 16 kHz: 10.7 minutes of music in all), model selection on the 14-track
`valid` split; scored on those 14 validation tracks, stereo at 44.1 kHz (the mask of the 16 kHz
mono mixdown applied to each channel's full-band STFT), museval BSS Eval v4, median over 1-s
frames then over tracks. Training: **{epochs} epochs of 50 steps = {windows:,} windows, {minutes:.0f}
minutes on 2 CPU threads**; kept: epoch {best_epoch} (validation BCE {best_loss:.4f}). Commands:

    vocalsep train paper --data ../shared/data/musdb18-7 --out runs/paper-musdb --batch-size 2 \\
        --steps-per-epoch 50 --no-remix --max-minutes 22 --threads 2
    python benchmarks/paper_musdb.py

{table}
The validation loss was lowest at epoch {best_epoch} of {epochs} and rose afterwards while the
training loss kept falling: 10.7 minutes of music without remixing (the paper's setting) is
quickly overfitted. The paper reported 0.9–3.5 dB vocal SDR on four full MUSDB18 test songs;
these are the 7-second validation excerpts, where the mixture itself scores {mixture:.2f} dB, so
the soft mask here is {soft_gain:.1f} dB above doing nothing.

![paper CNN on MUSDB18-7: BCE loss](paper-reproduction/paper_musdb_loss.png)
"""


def include(doc: Path) -> None:
    """Put the saved section into ``doc`` (replacing an earlier one), if it exists."""
    if not SECTION.exists():
        return
    text = doc.read_text()
    section = f"{BEGIN}\n{SECTION.read_text().rstrip()}\n{END}\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, default=ROOT / "runs/paper-musdb")
    p.add_argument("--musdb", type=Path, default=ROOT.parent / "shared/data/musdb18-7")
    args = p.parse_args()

    import torch

    torch.set_num_threads(2)
    from vocalsep.data import load_musdb
    from vocalsep.evaluate import evaluate
    from vocalsep.models import load
    from vocalsep.plots import plot_loss, read_history
    from vocalsep.separate import Separator, SeparatorOptions

    shutil.copyfile(args.run / "history.csv", ASSETS / "paper_musdb_history.csv")
    history = read_history(ASSETS / "paper_musdb_history.csv")
    plot_loss(history, ASSETS / "paper_musdb_loss.png", title="paper CNN on MUSDB18-7: BCE loss")
    model = load(args.run / "best.pt")
    methods = {f"paper, {mask} mask, iSTFT": Separator(model, SeparatorOptions(mask=mask)).separate
               for mask in ("soft", "binary")}
    report = evaluate(load_musdb(args.musdb, "train", "valid"), methods, protocol="v4")
    summary = report.summary()
    best = min(history, key=lambda h: h["valid_loss"])
    SECTION.write_text(TEXT.format(
        epochs=len(history), windows=int(history[-1]["frames"]), minutes=history[-1]["seconds"] / 60,
        best_epoch=best["epoch"], best_loss=best["valid_loss"], table=report.to_markdown(),
        mixture=summary["mixture"]["vocals_SDR"],
        soft_gain=summary["paper, soft mask, iSTFT"]["vocals_SDR"] - summary["mixture"]["vocals_SDR"]))
    include(ROOT / "docs" / "paper-reproduction.md")
    print(SECTION.read_text())


if __name__ == "__main__":
    main()
