"""Generate docs/paper-reproduction.md: the paper's experiment, re-run on MIR-1K.

    python benchmarks/paper_reproduction.py [--data ../shared/data/mir1k/test] [--jobs 2]
        [--paper-run runs/paper] [--limit N]

Evaluates on the test clips (BSS Eval v3, whole clips): the shipped `paper` model with soft and
binary masks, each through iSTFT and through Griffin-Lim; the shipped `small` and `default`
models; and the mixture, ideal-binary-mask and ideal-ratio-mask baselines. Writes the report, the per-clip CSV,
the paper model's training history and its loss curve under docs/.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ASSETS = DOCS / "paper-reproduction"
VARIANTS = {  # label -> (model, mask, reconstruct)
    "paper, binary mask (0.5), iSTFT": ("paper", "binary", "istft"),
    "paper, soft mask (sigmoid), iSTFT": ("paper", "soft", "istft"),
    "paper, binary mask (0.5), Griffin-Lim": ("paper", "binary", "griffinlim"),
    "paper, soft mask (sigmoid), Griffin-Lim": ("paper", "soft", "griffinlim"),
    "small (U-Net, 16 kHz), soft mask, iSTFT": ("small", "soft", "istft"),
    "default (Spleeter's U-Net fine-tuned), soft mask, iSTFT": ("default", "soft", "istft"),
}


THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def choose_threshold(valid: Path) -> tuple[float, dict[float, float]]:
    """The binary-mask threshold with the best vocal GNSDR on the validation clips."""
    from vocalsep.data import load_mir1k
    from vocalsep.evaluate import evaluate
    from vocalsep.models import load
    from vocalsep.separate import Separator, SeparatorOptions

    model = _memoize_mask(load("paper"))
    methods = {t: Separator(model, SeparatorOptions(mask="binary", threshold=t)).separate
               for t in THRESHOLDS}
    summary = evaluate(load_mir1k(valid), methods, protocol="v3", baselines=False).summary()
    scores = {t: summary[t]["vocals_GNSDR"] for t in THRESHOLDS}
    return max(scores, key=scores.get), scores


def _evaluate_part(args: tuple[list[str], float]):
    import torch

    torch.set_num_threads(1)
    from vocalsep.data import read_mir1k_clip
    from vocalsep.evaluate import evaluate
    from vocalsep.separate import Separator, SeparatorOptions

    from vocalsep.models import load

    files, threshold = args
    variants = {**VARIANTS, f"paper, binary mask ({threshold}, chosen on valid/), iSTFT":
                ("paper", "binary", "istft", threshold)}
    tracks = [read_mir1k_clip(f) for f in files]
    models = {name: _memoize_mask(load(name)) for name in {v[0] for v in variants.values()}}
    methods = {label: Separator(models[v[0]], SeparatorOptions(
        mask=v[1], reconstruct=v[2], threshold=v[3] if len(v) > 3 else 0.5)).separate
        for label, v in variants.items()}
    return evaluate(tracks, methods, protocol="v3", baselines=True)


def _memoize_mask(model):
    """Let the variants of one clip share one mask computation: the paper model's sliding
    inference is the expensive part, and its mask does not depend on the variant."""
    import torch

    inner, last = model.mask, {}

    def mask(mag: torch.Tensor) -> torch.Tensor:
        key = (tuple(mag.shape), float(mag.sum()), float((mag * mag).sum()))
        if last.get("key") != key:
            last["key"], last["mask"] = key, inner(mag)
        return last["mask"]

    model.mask = mask
    return model


def _frames(folder: Path, hop: int = 512) -> int:
    return sum(sf.info(str(f)).frames // hop + 1 for f in sorted(folder.glob("*.flac")))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/mir1k/test")
    p.add_argument("--train-data", type=Path, default=ROOT.parent / "shared/data/mir1k/train")
    p.add_argument("--valid-data", type=Path, default=ROOT.parent / "shared/data/mir1k/valid")
    p.add_argument("--paper-run", type=Path, default=ROOT / "runs/paper")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()

    from vocalsep.evaluate import EvalReport
    from vocalsep.plots import plot_loss, read_history

    ASSETS.mkdir(parents=True, exist_ok=True)
    if (args.paper_run / "history.csv").exists():
        shutil.copyfile(args.paper_run / "history.csv", ASSETS / "paper_history.csv")
    history = read_history(ASSETS / "paper_history.csv")
    plot_loss(history, ASSETS / "paper_loss.png", title="paper CNN on MIR-1K: BCE loss")

    files = sorted(str(f) for f in args.data.glob("*.flac"))[: args.limit]
    threshold, threshold_scores = choose_threshold(args.valid_data)
    parts = [(files[i::args.jobs], threshold) for i in range(args.jobs)]
    started = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        reports = list(pool.map(_evaluate_part, parts))
    rows = [r for rep in reports for r in rep.rows]
    report = EvalReport(protocol="v3", methods=reports[0].methods, rows=rows)
    wall = time.monotonic() - started
    report.write_csv(ASSETS / "per_clip.csv")
    summary = report.summary()

    train_frames = _frames(args.train_data)
    examples = history[-1]["frames"] if history else 0
    best = min(history, key=lambda h: h["valid_loss"]) if history else {}
    cmd = "python benchmarks/paper_reproduction.py" + (f" --limit {args.limit}" if args.limit else "")
    text = REPORT.format(
        clips=len(files), data=args.data.name, cmd=cmd, wall=wall / 60,
        table=report.to_markdown(),
        epochs=len(history), examples=examples, passes=examples / train_frames,
        train_frames=train_frames, hours=(history[-1]["seconds"] / 3600) if history else 0,
        best_epoch=best.get("epoch"), best_valid=best.get("valid_loss", float("nan")),
        steps=history[0]["frames"] // 32 if history else 0,
        rate=examples / max(1.0, history[-1]["seconds"]) if history else 0.0,
        full_days=200 * train_frames / max(1e-9, examples / max(1.0, history[-1]["seconds"])) / 86400
        if history else 0.0,
        paper_sdr=summary["paper, soft mask (sigmoid), iSTFT"]["vocals_SDR_mean"],
        paper_bin_sdr=summary["paper, binary mask (0.5), iSTFT"]["vocals_SDR_mean"],
        mix_sdr=summary["mixture"]["vocals_SDR_mean"],
        threshold=threshold,
        threshold_scores=", ".join(f"{t}: {v:.2f} dB" for t, v in threshold_scores.items()),
    )
    (DOCS / "paper-reproduction.md").write_text(text)
    from paper_musdb import include  # the MUSDB18-7 section, if benchmarks/paper_musdb.py made it

    include(DOCS / "paper-reproduction.md")
    print(report.to_markdown())
    print(f"wrote {DOCS / 'paper-reproduction.md'} in {wall / 60:.1f} min", file=sys.stderr)


REPORT = """# The paper, reproduced on MIR-1K

Generated by `{cmd}` (from the repository root; {wall:.0f} min on 2 CPU cores). Data: the
{clips} clips of `../shared/data/mir1k/{data}` (5 singers never seen in training; 16 kHz, mixture =
accompaniment + vocals at 0 dB). Metric: BSS Eval v3 (`mir_eval`) on whole clips, mono; NSDR =
SDR(estimate) − SDR(mixture); GNSDR/GSIR/GSAR = means weighted by clip length.
Per-clip numbers: [paper-reproduction/per_clip.csv](paper-reproduction/per_clip.csv).

## The model and its training

The paper's CNN exactly (`vocalsep/models/paper.py`, 5,378,465 parameters): input a 1025×100
window of `log1p(|STFT|)` (n_fft 2048, hop 512, Hann), output the 1025-bin mask of the window's
centre frame; at separation the window slides one frame at a time over the song. Trained on
`train/` (171 clips, {train_frames:,} frames) with Adam (lr 1e-3), 32 windows per step, binary
cross-entropy against the ideal binary mask (vocal magnitude > accompaniment magnitude), no
augmentation. A step's 32 windows are 2 random excerpts of 16 consecutive windows each; the 16
windows of an excerpt share the first block's convolutions, computed once, with the same
outputs and gradients (dropout drawn per window) as 16 separate windows, which made training
about 3.5× faster (the first 2 epochs used 32 independent random windows). Validation loss on
`valid/` (4 clips, consecutive non-overlapping excerpts) after every {steps} steps ("epoch" below
= {steps} steps of 32 windows); the best one is kept.

Training so far: **{epochs} epochs of {steps} steps = {examples:,} windows = {passes:.2f} passes over
the training frames, {hours:.1f} h on one CPU thread** ({rate:.1f} windows/s on one `nice`d thread
sharing 2 cores with the default model's training; the paper trained about 200 full passes, which
at this rate would take {full_days:.0f} days). Kept: epoch {best_epoch} (validation BCE
{best_valid:.4f}). Training continues across sessions from the last checkpoint
(`vocalsep train paper --data ../shared/data/mir1k/train --valid ../shared/data/mir1k/valid
--out runs/paper --batch-size 2 --steps-per-epoch 50 --no-remix` resumes a run folder).

![paper training loss](paper-reproduction/paper_loss.png)

Choices the paper leaves open, and what we chose (faithful defaults first):
- LeakyReLU slope 0.3 and MaxPool stride = pool size ('valid'), Keras' defaults; dropout 0.25
  after each pooling block and 0.5 after the dense layer.
- Raw `log1p` magnitudes as input, no normalisation; unweighted BCE (no class weighting), so the
  network's output is a calibrated vocal probability per bin.
- Threshold: the binary mask uses 0.5, the natural choice for a sigmoid trained with BCE; the
  sigmoid itself is also reported as a soft mask. Vocal bins are the minority class and the
  under-trained network's probabilities rarely exceed 0.5, so the 0.5 mask keeps little of the
  voice. A threshold chosen on `valid/` (vocal GNSDR of the binary mask on its 4 clips — {threshold_scores})
  is reported too: {threshold}. The test clips played no part in that choice.
- Accompaniment = mixture − vocals (so the two stems always add up to the input).
- Griffin-Lim: 32 iterations from random phase (seed 0), on mask × mixture magnitude.

## Results

{table}
For comparison with the paper: it reported vocal SDR of 0.9–3.5 dB on four MUSDB18 test songs,
where the mixture itself scores about 1.1 dB, i.e. at most about 2.4 dB above doing nothing. Here
the paper model's mean vocal SDR is {paper_sdr:.2f} dB with the soft mask and {paper_bin_sdr:.2f} dB
with the binary mask, against {mix_sdr:.2f} dB for the mixture (NSDR/GNSDR in the table). The data
differ (16 kHz karaoke clips at 0 dB here, full studio songs there), so only the gap to the
mixture is comparable. As in the paper, iSTFT with the mixture's phase beats Griffin-Lim.

The issue that asked for this reproduction measured a quick reimplementation (Adam 1e-3, batch
32 independent random windows) on 12 test clips: soft mask +2.26 dB GNSDR after 0.4 epoch, +2.40
after 1 epoch; binary at 0.2 about +1.3; binary at 0.5 about −2 to −2.7 dB. Ours stays below
that on all 180 clips. A difference worth testing first: after its first 2 epochs this run drew
each step's 32 windows as 2 excerpts of 16 consecutive windows (for the shared computation),
so a step sees 2 places in the data instead of 32, which makes its gradients more correlated.
More excerpts of fewer windows (e.g. 8 × 4) keep most of the speed-up.
"""

if __name__ == "__main__":
    main()
