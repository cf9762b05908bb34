"""The latency table of `vocalsep live` (docs/live.md): for each segment length, the exact
latency, the quality against the offline default, and the compute per block against the
block's duration.

    python benchmarks/live_latency.py [--model default] [--segments 16,32,64] [--mir1k-limit 36] [--repeat 30] [--out DIR]

Quality: vocal SDR on the MUSDB18-7 validation split (museval v4, 14 tracks) and vocal GNSDR on
MIR-1K test clips (BSS Eval v3; ``--mir1k-limit`` spreads that many over the 180), each with
the model (``--model``: the default, or a model fine-tuned for short segments) cut into
segments of that length. Compute: the model's masks (the runtime
``auto`` takes: ONNX Runtime, or OpenVINO where installed and the CPU has native bfloat16) of one stereo window (the segment and the past it hears), ``--repeat`` times on this machine's threads:
the median, the 99th percentile and the worst, as a share of the segment's duration (a live
stream keeps up while this stays below 1).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vocalsep.bench.quality import clip_files
from vocalsep.data import load_musdb, read_mir1k_clip
from vocalsep.evaluate import evaluate
from vocalsep.live import SEGMENTS, stream_latency
from vocalsep.separate import Separator, SeparatorOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RATE = 44_100


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--segments", default="64,128,256,512")
    p.add_argument("--mir1k-limit", type=int, default=36)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--model", default="default", help="a shipped model name or a model file")
    args = p.parse_args()
    segments = [int(s) for s in args.segments.split(",")]
    assert all(s in SEGMENTS for s in segments)
    # as `vocalsep live` separates (vocalsep.live.live_separator): without the spatial step
    seps = {s: Separator(args.model, SeparatorOptions(segment=s, spatial=False)) for s in segments}
    musdb = load_musdb(SHARED / "musdb18-7", "train", "valid")
    mir1k = [read_mir1k_clip(f) for f in clip_files(SHARED / "mir1k" / "test", args.mir1k_limit)]
    v4 = evaluate(musdb, {f"{s}": sep.separate for s, sep in seps.items()}, protocol="v4",
                  baselines=False).summary()
    v3 = evaluate(mir1k, {f"{s}": sep.separate for s, sep in seps.items()}, protocol="v3",
                  baselines=False).summary()
    rows = ["| segment (frames) | latency at 44.1 kHz, chunks of 1024 (samples, s) | MUSDB valid vocal SDR "
            f"| MIR-1K test vocal GNSDR ({len(mir1k)} clips) | compute / block duration: median, p99, worst |",
            "|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for s, sep in seps.items():
        latency = stream_latency(sep.backend, sep.options, RATE, 2, 1024)
        window = s + sep.backend.stream_history  # the segment and the past before it
        mags = np.abs(rng.standard_normal((2, window, sep.backend.heard_bins))).astype(np.float32)
        sep.backend.masks(mags)  # warm up
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            sep.backend.masks(mags)
            times.append(time.perf_counter() - started)
        share = np.array(times) / (s * sep.backend.config.hop / sep.backend.config.sample_rate)
        rows.append(f"| {s} | {latency} ({latency / RATE:.3f} s) | {v4[str(s)]['vocals_SDR']:.2f} | "
                    f"{v3[str(s)]['vocals_GNSDR']:.2f} | {np.median(share):.3f}, "
                    f"{np.percentile(share, 99):.3f}, {share.max():.3f} |")
    text = "\n".join(rows) + "\n"
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latency-table.md").write_text(text)


if __name__ == "__main__":
    main()
