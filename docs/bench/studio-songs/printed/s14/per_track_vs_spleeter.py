"""Throw-away (session 14): each model's MUSDB18-7 valid median vocal and accompaniment SDR,
its worst track against Spleeter's (docs/bench/quality-musdb/per_track.csv), the tracks above
Spleeter's, and its MIR-1K valid GNSDR (weighted by clip length) where a folder of the same
name with evalmir- for eval- holds one.

    python per_track_vs_spleeter.py DIR...   # DIR: a `vocalsep bench quality --musdb --out` folder
"""
import sys
from pathlib import Path

import pandas as pd

sp = pd.read_csv(Path(__file__).resolve().parents[5] / "docs/bench/quality-musdb/per_track.csv")
s = sp[sp.method == "Spleeter 2stems"].set_index("track")
for d in sys.argv[1:]:
    p = pd.read_csv(f"{d}/per_track.csv")
    try:
        mir = pd.read_csv(d.replace("/eval-", "/evalmir-") + "/per_clip.csv")
    except Exception:
        mir = None
    for m, r in p.groupby("method", sort=False):
        if not m.startswith("vocalsep"): continue
        r = r.set_index("track")
        diff = r.vocals_SDR - s.vocals_SDR
        g = ""
        if mir is not None:
            q = mir[mir.method == m]
            if len(q):
                cols = [c for c in q.columns if "NSDR" in c and "vocal" in c]
                w = q["length"]
                g = f" MIRv {q[cols[0]].mean():.2f}" if w is None else f" MIRv {(q[cols[0]]*w).sum()/w.sum():.2f}"
        print(f"{m:60s} {r.vocals_SDR.median():.2f} acc {r.accompaniment_SDR.median():.2f} worst {diff.min():+.2f} above {int((diff>0).sum())}/14{g}")
