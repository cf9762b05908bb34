"""Throw-away (session 14): MUSDB18-7 valid (museval v4, 14 tracks) with an ONNX export's network run
by OpenVINO (bf16 or f32) inside the shipped pipeline (the ONNX backend's _run patched), the spatial
step on; `ort` is ONNX Runtime as shipped. Rows: | method | vocals SDR | accompaniment SDR | worst track − Spleeter |.

    python openvino_quality.py vocalsep/pretrained/default.onnx,/tmp/s14/p2-int8.onnx ort,bf16
"""
import sys
from concurrent.futures import ProcessPoolExecutor
import numpy as np, pandas as pd
import openvino as ov
from vocalsep.data import load_musdb
from vocalsep.evaluate import evaluate
from vocalsep.pipeline.plan import SeparatorOptions
from vocalsep.separate import Separator

def score(job):
    model, prec = job
    sep = Separator(model, SeparatorOptions(), threads=1)
    if prec != "ort":
        c = ov.Core().compile_model(ov.Core().read_model(model), "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": prec})
        req = c.create_infer_request()
        sep.backend._run = lambda pieces: req.infer({0: np.ascontiguousarray(pieces)})[0].copy()
    rep = evaluate(load_musdb("/work/shared/data/musdb18-7", "train", "valid"), {f"{model}:{prec}": sep.separate}, protocol="v4", baselines=False)
    return pd.DataFrame([{"method": r.method, "track": r.track, **r.metrics} for r in rep.rows])

jobs = [(m, p) for m in sys.argv[1].split(",") for p in sys.argv[2].split(",")]
with ProcessPoolExecutor(2) as pool:
    rows = pd.concat(pool.map(score, jobs))
sp = pd.read_csv("/work/main/docs/bench/quality-musdb/per_track.csv")
sp = sp[sp.method == "Spleeter 2stems"].set_index("track")["vocals_SDR"]
for m, r in rows.groupby("method", sort=False):
    worst = (r.set_index("track")["vocals_SDR"] - sp).min()
    print(f"| {m} | {r.vocals_SDR.median():.2f} | {r.accompaniment_SDR.median():.2f} | {worst:+.2f} |")
