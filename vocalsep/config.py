"""A model's configuration (saved beside its weights) and where the shipped models live.

Kept apart from :mod:`vocalsep.models` (which needs torch) so that the ONNX runtime path
(:mod:`vocalsep.runtime`) finds and reads a model without importing torch.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = "default"
#: shipped model name → file in ``vocalsep/pretrained`` (an ``.onnx`` twin may sit beside it)
SHIPPED = {"default": "default.pt", "small": "small.pt", "paper": "paper.pt"}


class ModelError(ValueError):
    """A model name or file that cannot be used; ``str()`` is one line."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved beside its weights."""

    arch: str
    sample_rate: int = 16_000
    n_fft: int = 2048
    hop: int = 512
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """Path of a shipped model name (``default``, ``paper``) or of a model file."""
    name = str(name_or_path or DEFAULT_MODEL)
    if name in SHIPPED:
        path = PRETRAINED_DIR / SHIPPED[name]
        if not path.exists():
            raise ModelError(f"shipped model {name!r} is missing from the package ({path})")
        return path
    path = Path(name)
    if path.is_dir():
        raise ModelError(f"{name}: is a directory, not a model file")
    if not path.exists():
        raise ModelError(f"{name}: no such model (shipped: {', '.join(SHIPPED)}; or a .pt or .onnx file)")
    return path


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (model cards; checking an ONNX export against its ``.pt``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
