"""Wall time per stage of the signal path, for benchmarks (off unless asked for).

Code marks its stages with ``with stage("model"): ...``; nested stages count only in the
innermost one. When the environment variable ``VOCALSEP_TIMINGS`` names a file, the totals
(seconds per stage) are written there as JSON when the process exits; otherwise ``stage`` costs
next to nothing.
"""
from __future__ import annotations

import atexit
import json
import os
import time
from contextlib import contextmanager
from typing import Iterator

STAGES = ("load", "decode", "resample", "stft", "model", "spatial", "istft", "encode")
_TOTALS: dict[str, float] = {}
_STACK: list[list] = []  # [name, started, time spent in inner stages]
_TARGET = os.environ.get("VOCALSEP_TIMINGS")


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the time spent inside the block towards ``name`` (if timing is on)."""
    if not _TARGET:
        yield
        return
    _STACK.append([name, time.perf_counter(), 0.0])
    try:
        yield
    finally:
        name, started, inner = _STACK.pop()
        spent = time.perf_counter() - started
        _TOTALS[name] = _TOTALS.get(name, 0.0) + spent - inner
        if _STACK:
            _STACK[-1][2] += spent


def totals() -> dict[str, float]:
    """Seconds per stage so far."""
    return dict(_TOTALS)


def _dump() -> None:
    if _TARGET:
        with open(_TARGET, "w") as f:
            json.dump(totals(), f)


atexit.register(_dump)
