"""The voice above 11 kHz: how much of it each model's vocals keep, on real MUSDB18 tracks.

    python benchmarks/band_edge.py [--musdb ROOT] [--split valid] [--models default,small]
        [--no-spleeter] [--out docs/bench/band-edge]

For every track of the split (stereo, 44.1 kHz) and every method, the vocal estimate and the true
vocals are compared above ``--above`` Hz (11 kHz, where Spleeter's masks stop), on a 4096/1024
STFT summed over channels:

* level: 10·log10(energy of the estimate above the edge / energy of the truth there), dB
  (0 = as much as the truth; −∞ = nothing);
* band SDR: 10·log10(‖truth_hi‖² / ‖truth_hi − estimate_hi‖²) over those bins, dB (higher is
  better; 0 = no better than silence there).

Medians over tracks are printed as a Markdown table (and written to ``--out/summary.md`` with
a per-track CSV).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def band(x: np.ndarray, rate: int, above: float) -> torch.Tensor:
    """Complex STFT bins of ``(channels, n)`` above ``above`` Hz."""
    from vocalsep.spectral import stft

    spec = stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 4096, 1024)
    freqs = torch.arange(spec.shape[-2]) * rate / 4096
    return spec[..., freqs >= above, :]


def scores(estimate: np.ndarray, truth: np.ndarray, rate: int, above: float) -> tuple[float, float]:
    """(level dB, band SDR dB) of the estimate's content above ``above`` Hz."""
    e, t = band(estimate, rate, above), band(truth, rate, above)
    energy_t = float((t.abs() ** 2).sum())
    level = 10 * np.log10(max(float((e.abs() ** 2).sum()), 1e-30) / energy_t)
    sdr = 10 * np.log10(energy_t / max(float(((t - e).abs() ** 2).sum()), 1e-30))
    return level, sdr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--musdb", type=Path, default=REPO.parent / "shared/data/musdb18-7")
    p.add_argument("--subset", default="train")
    p.add_argument("--split", default="valid")
    p.add_argument("--models", default="default")
    p.add_argument("--no-spleeter", action="store_true")
    p.add_argument("--above", type=float, default=11_000.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from vocalsep.bench import spleeter as sp
    from vocalsep.data import load_musdb
    from vocalsep.separate import Separator

    methods = {f"vocalsep {m}": Separator(m).separate for m in args.models.split(",") if m}
    if not args.no_spleeter and sp.available():
        methods["Spleeter 2stems (masks stop at 11 kHz)"] = sp.spleeter_separate

    tracks = load_musdb(args.musdb, args.subset, args.split)
    rows = []
    for t in tracks:
        mixture = t.mixture
        for label, fn in methods.items():
            vocals = fn(mixture, t.rate)["vocals"]
            level, sdr = scores(vocals, t.vocals, t.rate, args.above)
            rows.append({"track": t.name, "method": label, "level_db": round(level, 2),
                         "band_sdr_db": round(sdr, 2)})
        print(f"{t.name}", file=sys.stderr, flush=True)
    lines = [f"# Vocals above {args.above / 1000:g} kHz on MUSDB18 ({len(tracks)} tracks, subset "
             f"{args.subset}, split {args.split})", "",
             "Median over tracks. Level: estimate's energy above the edge relative to the true "
             "vocals' (dB). Band SDR: SDR of those bins alone (dB).", "",
             "| method | level (dB) | band SDR (dB) |", "|---|---:|---:|"]
    for label in methods:
        mine = [r for r in rows if r["method"] == label]
        lines.append(f"| {label} | {np.median([r['level_db'] for r in mine]):.1f} | "
                     f"{np.median([r['band_sdr_db'] for r in mine]):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "per_track.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (args.out / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
