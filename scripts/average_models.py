"""Average the weights of saved models of one configuration (checkpoint averaging, e.g. the
last epochs of a run kept with ``vocalsep train --keep-epochs``).

    python scripts/average_models.py runs/x/epoch-008.pt runs/x/epoch-009.pt ... -o runs/x/avg.pt

Floating-point tensors (weights, and batch-norm statistics) are averaged; integer ones
(counters) are taken from the first file. The metadata is the last file's, with the list of
averaged files under ``averaged``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vocalsep.models import load, save


def average(paths: list[Path], out: Path) -> Path:
    """Write the mean of ``paths``' weights to ``out``; ``ValueError`` if their configurations differ."""
    models = [load(p) for p in paths]
    first = models[0]
    for p, m in zip(paths[1:], models[1:]):
        if m.config != first.config:
            raise ValueError(f"{p}: another configuration than {paths[0]}")
    state = first.state_dict()
    mean = {k: sum(m.state_dict()[k] for m in models) / len(models) if v.is_floating_point() else v
            for k, v in state.items()}
    first.load_state_dict(mean)
    return save(first, out, meta={**models[-1].meta, "averaged": [str(p) for p in paths]})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        print(average(args.models, args.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
