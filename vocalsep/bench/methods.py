"""A benchmark's method, as the benchmarks' ``--models`` name it: a model and the choices its
suffixes make, e.g. ``default:torch:float32`` or ``hq:no-spatial``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pipeline.plan import PRECISIONS, RUNTIMES

#: suffix → the :class:`~vocalsep.pipeline.plan.SeparatorOptions` field and value it sets
#: (``auto``, the default of both the runtime and the precision, is no suffix)
SUFFIXES: dict[str, tuple[str, Any]] = {
    **{r: ("runtime", r) for r in RUNTIMES if r != "auto"},
    **{p: ("precision", p) for p in PRECISIONS if p != "auto"},
    "spatial": ("spatial", True),
    "no-spatial": ("spatial", False),
}


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"default:torch:float32"`` → ``("default", {"runtime": "torch", "precision":
    "float32"})``: the model (a shipped name or a file, whose path may hold a ``:``) and the
    ``SeparatorOptions`` fields its suffixes set (runtime, precision, ``spatial`` /
    ``no-spatial``), taken off the end. ``ValueError`` (one line) for a suffix that is none of
    these (what follows the last ``:`` of a name that is no file), or one choice made twice."""
    parts = spec.split(":")
    suffixes: list[str] = []
    while len(parts) > 1 and parts[-1] in SUFFIXES:
        suffixes.insert(0, parts.pop())
    model = ":".join(parts)
    if len(parts) > 1 and not Path(model).exists():
        raise ValueError(f"{spec}: unknown suffix {parts[-1]!r} (runtimes "
                         f"{', '.join(r for r in RUNTIMES if r != 'auto')}; precisions "
                         f"{', '.join(p for p in PRECISIONS if p != 'auto')}; spatial, no-spatial)")
    options: dict[str, Any] = {}
    for suffix in suffixes:
        field, value = SUFFIXES[suffix]
        if field in options:
            raise ValueError(f"{spec}: two {field} choices")
        options[field] = value
    return model, options


def separate_args(options: dict[str, Any]) -> list[str]:
    """The ``vocalsep separate`` options of :func:`parse_method`'s choices, e.g.
    ``["--runtime", "torch", "--no-spatial"]``."""
    out: list[str] = []
    for field, value in options.items():
        out += ([f"--{'' if value else 'no-'}spatial"] if field == "spatial" else [f"--{field}", value])
    return out
