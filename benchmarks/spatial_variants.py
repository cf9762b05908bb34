"""The spatial step's choices (issue #15): a model's masks followed by a multichannel Wiener
step of several kinds, on MUSDB18-7 valid (museval v4, median over tracks), each row's worst
track against Spleeter's vocal SDR (from docs/bench/quality-musdb/per_track.csv).

Rows: the mask alone; the whole-clip EM of ``vocalsep.filtering`` (``--wiener N``: power 2) and
the same with another ``power`` (the level ``(mean_c |y|²)^(power/2)``); the streamed step as
shipped (``vocalsep.pipeline.spatial``) with other windows and bands.

    python benchmarks/spatial_variants.py [--model default] [--jobs 2]
"""
from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from vocalsep.data import load_musdb
from vocalsep.evaluate import evaluate
from vocalsep.pipeline.plan import SeparatorOptions
from vocalsep.pipeline.spatial import SpatialISTFT, window_frames
from vocalsep.pipeline.stream import SeparationStream
from vocalsep.postfilter import PostFilter
from vocalsep.separate import Separator

ROOT = Path(__file__).resolve().parents[1]
MUSDB = ROOT.parent / "shared" / "data" / "musdb18-7"
SPLEETER = ROOT / "docs" / "bench" / "quality-musdb" / "per_track.csv"

#: label → ("em", iterations, power) | ("stream", window seconds, top Hz or None for all bins)
VARIANTS = {
    "the mask alone": ("off",),
    "EM, power 2, 1 iteration (--wiener 1)": ("em", 1, 2.0),
    "EM, power 2, 2 iterations (--wiener 2)": ("em", 2, 2.0),
    "EM, power 1, 1 iteration, whole clip": ("em", 1, 1.0),
    "EM, power 1, 2 iterations": ("em", 2, 1.0),
    "EM, power 1, 3 iterations": ("em", 3, 1.0),
    "EM, power 0.75, 2 iterations": ("em", 2, 0.75),
    "EM, power 1.25, 1 iteration": ("em", 1, 1.25),
    "EM, power 1.25, 2 iterations": ("em", 2, 1.25),
    "streamed, power 1, 3-s windows, all bins": ("stream", 3.0, None),
    "streamed, power 1, 10-s windows, all bins": ("stream", 10.0, None),
    "streamed, power 1, 10-s windows, below 11 kHz": ("stream", 10.0, 11_000.0),
    "shipped: streamed, power 1, 10-s windows, below the model's band (6.9 kHz)": ("on",),
}


class _EM(PostFilter):
    """The whole-clip post-filter with another ``power`` (set by a subclass)."""


class _Variant(Separator):
    """A separator whose stream ends in one of :data:`VARIANTS`."""

    def __init__(self, model: str, variant: tuple):
        kind = variant[0]
        super().__init__(model, SeparatorOptions(spatial=kind == "on", precision="float32",
                                                 wiener=variant[1] if kind == "em" else 0), threads=1)
        self.variant = variant

    def stream(self, rate: int, channels: int) -> SeparationStream:
        kind, *args = self.variant
        if kind == "em":
            factory = type("EM", (_EM,), {"power": args[1]})
        elif kind == "stream":
            seconds, top = args

            def factory(n_fft: int, hop: int, ch: int, options: SeparatorOptions) -> SpatialISTFT:
                frame_rate = rate / hop  # the models here run at the songs' 44.1 kHz
                bins = None if top is None else min(n_fft // 2 + 1, math.ceil(top * n_fft / rate))
                return SpatialISTFT(n_fft, hop, ch, window_frames(frame_rate, seconds), bins)
        else:
            return super().stream(rate, channels)
        return SeparationStream(self.backend, self.options, rate, channels, factory)


def _score(job: tuple[str, str]) -> pd.DataFrame:
    model, label = job
    report = evaluate(load_musdb(MUSDB, "train", "valid"), {label: _Variant(model, VARIANTS[label]).separate},
                      protocol="v4", baselines=False)
    return pd.DataFrame([{"method": r.method, "track": r.track, **r.metrics} for r in report.rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = pd.concat(pool.map(_score, [(args.model, label) for label in VARIANTS]))
    spleeter = pd.read_csv(SPLEETER)
    spleeter = spleeter[spleeter["method"] == "Spleeter 2stems"].set_index("track")["vocals_SDR"]
    print(f"{args.model} on MUSDB18-7 valid (museval v4, medians over 14 tracks, dB)\n")
    print("| post-processing | vocals SDR | SIR | SAR | accompaniment SDR | worst track − Spleeter |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in VARIANTS:
        r = rows[rows["method"] == label]
        worst = (r.set_index("track")["vocals_SDR"] - spleeter).min()
        cells = " | ".join(f"{r[c].median():.2f}" for c in
                           ("vocals_SDR", "vocals_SIR", "vocals_SAR", "accompaniment_SDR"))
        print(f"| {label} | {cells} | {worst:+.2f} |")


if __name__ == "__main__":
    main()
