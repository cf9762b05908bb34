"""``python -m vocalsep.reliability``: make the bad-input corpus, or run the whole campaign.

    python -m vocalsep.reliability corpus DIR            # the corpus and its manifest.json
    python -m vocalsep.reliability run                   # the quick part (what CI runs)
    python -m vocalsep.reliability run --full            # all of the package's part at full size
    python scripts/reliability_full.py                   # from a checkout: that, and the property
                                                         # and web server tests at full size
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import campaign
from .corpus import make_corpus, summary


def default_seed() -> Path | None:
    """A MIR-1K test clip from the shared data folder ($VOCALSEP_SHARED or ../shared), if any."""
    roots = [os.environ.get("VOCALSEP_SHARED"), "../shared"]
    for root in filter(None, roots):
        clips = sorted((Path(root) / "data" / "mir1k" / "test").glob("*.flac"))
        if clips:
            return clips[0]
    return None


def run(args: argparse.Namespace) -> int:
    seed = None if args.seed_audio == "synthetic" else (args.seed_audio or default_seed())
    results: list[campaign.Result] = []
    timings: list[tuple[str, float]] = []
    with campaign.scratch() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "corpus"

        def step(name: str, fn, *a, **kw) -> None:
            started = time.monotonic()
            print(f"-- {name} ...", file=sys.stderr, flush=True)
            rows = fn(*a, **kw)
            results.extend(rows)
            timings.append((name, time.monotonic() - started))
            bad = sum(not r.passed for r in rows)
            print(f"   {len(rows)} rows, {bad} failed, {timings[-1][1]:.0f} s", file=sys.stderr, flush=True)

        started = time.monotonic()
        cases = make_corpus(corpus, seed)
        timings.append(("corpus", time.monotonic() - started))
        counts = {e: sum(c.expect == e for c in cases) for e in ("error", "ok", "any")}
        print(f"corpus: {len(cases)} files ({counts['error']} must fail, {counts['ok']} must separate, "
              f"{counts['any']} either) from {seed or 'a synthetic seed'}", file=sys.stderr)
        step("Python API, every file", campaign.run_api, cases, corpus, work / "api", args.model)
        step("CLI, every file in one process", campaign.run_cli_batch, cases, corpus, work / "batch", args.model)
        each = cases if args.full else campaign.sample(cases, campaign.QUICK_EACH)
        step(f"CLI, one process per file ({len(each)})", campaign.run_cli_each, each, corpus, work / "each",
             args.model, args.workers)
        if args.full:
            step("CLI, every file in one process, -j 2", campaign.run_cli_batch, cases, corpus,
                 work / "batch-j2", args.model, 2)
        step("output faults", campaign.output_faults, work / "faults", args.model, quick=not args.full)
        step("kill -9 a batch", campaign.kill_batch, work / "kill-batch", kills=5 if args.full else 1,
             model=args.model)
        step("kill -9 training", campaign.kill_train, work / "kill-train", kills=4 if args.full else 1,
             epochs=6 if args.full else 4,
             reference=args.full)
    print()
    print(campaign.report(results))
    bad = campaign.failures(results)
    if bad:
        print("\nFAILED:\n" + bad)
    if args.csv:
        campaign.write_csv(results, Path(args.csv))
    print("\n" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vocalsep.reliability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus", help="write the bad-input corpus and its manifest.json")
    c.add_argument("dir")
    c.add_argument("--seed-audio", default=None, help="audio file the corpus is cut from (default: synthetic)")
    r = sub.add_parser("run", help="run the campaign and print its table")
    r.add_argument("--full", action="store_true",
                   help="every file one process each, -j 2, more kills, an uninterrupted training run "
                        "to compare with (the repository's scripts/reliability_full.py adds the property "
                        "tests with 500 examples and the web server's campaign)")
    r.add_argument("--work", default=None, help="keep the corpus and outputs here (default: a temp folder)")
    r.add_argument("--seed-audio", default=None,
                   help="audio the corpus is cut from ('synthetic'; default: a MIR-1K test clip if found)")
    r.add_argument("--model", default="small")
    r.add_argument("--workers", type=int, default=2, help="CLI processes at a time")
    r.add_argument("--csv", default=None, help="also write every row to this CSV")
    args = p.parse_args(argv)
    if args.command == "corpus":
        cases = make_corpus(args.dir, args.seed_audio)
        for category, expect, n in summary(cases):
            print(f"{n:4d}  {expect:<5}  {category}")
        print(f"{len(cases)} files in {args.dir}, manifest: {Path(args.dir) / 'manifest.json'}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
