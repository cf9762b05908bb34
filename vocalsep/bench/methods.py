"""A benchmark's method, as the benchmarks' ``--models`` name it: a model and the choices its
suffixes make, e.g. ``default:torch:float32`` or ``hq:no-spatial``."""
from __future__ import annotations

from typing import Any

from ..pipeline.plan import PRECISIONS, RUNTIMES

#: suffix → the :class:`~vocalsep.pipeline.plan.SeparatorOptions` field and value it sets
SUFFIXES: dict[str, tuple[str, Any]] = {
    **{r: ("runtime", r) for r in RUNTIMES},
    **{p: ("precision", p) for p in PRECISIONS},
    "spatial": ("spatial", True),
    "no-spatial": ("spatial", False),
}


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"default:torch:float32"`` → ``("default", {"runtime": "torch", "precision":
    "float32"})``: the model (a shipped name or a file) and the ``SeparatorOptions`` fields its
    suffixes set (runtime, precision, ``spatial`` / ``no-spatial``). ``ValueError`` (one line)
    for a suffix that is none of these or one choice made twice."""
    model, *suffixes = spec.split(":")
    options: dict[str, Any] = {}
    for suffix in suffixes:
        if suffix not in SUFFIXES:
            raise ValueError(f"{spec}: unknown suffix {suffix!r} (runtimes {', '.join(RUNTIMES)}; "
                             f"precisions {', '.join(PRECISIONS)}; spatial, no-spatial)")
        field, value = SUFFIXES[suffix]
        if field in options:
            raise ValueError(f"{spec}: two {field} choices")
        options[field] = value
    return model, options


def cli_options(options: dict[str, Any]) -> list[str]:
    """The ``vocalsep separate`` options of :func:`parse_method`'s choices, e.g.
    ``["--runtime", "torch", "--no-spatial"]``."""
    out: list[str] = []
    for field, value in options.items():
        out += ([f"--{'' if value else 'no-'}spatial"] if field == "spatial" else [f"--{field}", value])
    return out
