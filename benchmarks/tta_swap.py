"""Channel-swap test-time augmentation (issue #15): a model's masks averaged over the song and
the song with its two channels swapped, against the model alone, on MUSDB18-7 valid (museval
v4, vocal and accompaniment SDR, median over tracks; then the per-track vocal SDR gain).

    python benchmarks/tta_swap.py [--model default]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from vocalsep.data import load_musdb
from vocalsep.evaluate import evaluate
from vocalsep.separate import Separator

MUSDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-7"


class SwappedToo:
    """A mask backend averaging ``inner``'s masks of ``(2, frames, bins)`` magnitudes with its
    masks of the channels swapped (swapped back); one channel passes through."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def masks(self, mags: np.ndarray) -> np.ndarray:
        masks = self.inner.masks(mags)
        if mags.shape[0] != 2:
            return masks
        return (masks + self.inner.masks(np.ascontiguousarray(mags[::-1]))[::-1]) / 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    args = p.parse_args()
    plain, swapped = Separator(args.model, threads=1), Separator(args.model, threads=1)
    swapped.backend = SwappedToo(swapped.backend)
    report = evaluate(load_musdb(MUSDB, "train", "valid"),
                      {"plain": plain.separate, "swap": swapped.separate}, protocol="v4", baselines=False)
    rows = pd.DataFrame([{"method": r.method, "track": r.track, **r.metrics} for r in report.rows])
    print(rows.groupby("method")[["vocals_SDR", "accompaniment_SDR"]].median().round(2).to_string())
    per_track = rows.pivot(index="track", columns="method", values="vocals_SDR")
    gain = per_track["swap"] - per_track["plain"]
    print(f"\nvocal SDR gain per track: median {gain.median():+.3f}, worst {gain.min():+.3f}, "
          f"best {gain.max():+.3f} dB")


if __name__ == "__main__":
    main()
