"""A model's configuration (saved beside its weights) and where the shipped models live.

Kept apart from :mod:`vocalsep.models` (which needs torch) so that the ONNX runtime path
(:mod:`vocalsep.backends.onnx`) finds and reads a model without importing torch.
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
SHIPPED = {"default": "default.pt", "small": "small.pt", "paper": "paper.pt", "live": "live.pt",
           "hq": "hq.pt"}


class ModelError(ValueError):
    """A model name or file that cannot be used; ``str()`` is one line."""


class EngineError(ModelError):
    """What runs an exported network failed (not installed as it should be, or could not
    compile it), not the model file: ``--runtime auto`` then takes ONNX Runtime instead."""


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


@dataclass(frozen=True)
class StemUNetParams:
    """The ``params`` of a ``stemunet`` model (Spleeter's U-Net), typed; ``ModelConfig.params``
    holds them as the plain dict saved with the weights (:meth:`of` reads it)."""

    #: the lowest STFT bins the network sees (a multiple of 64): Spleeter's 1024 (0-11 kHz)
    bins: int = 1024
    #: frames per network input (a multiple of 64); a song is cut into such segments
    segment: int = 512
    #: segments run through the network at once
    segments_per_batch: int = 4
    #: Hz range of the network's band whose mean mask, per frame, goes above the band
    extension_hz: tuple[float, float] = (7000.0, 11000.0)
    #: batch norms keep their running statistics while fine-tuning
    freeze_norm: bool = True
    #: a stereo song's two channels go through the network together, a mask each
    stereo: bool = False
    #: share of Spleeter's filters in every layer (1: Spleeter's network)
    width: float = 1.0
    #: a second U-Net estimates the accompaniment's mask ``a``; the vocal mask is then the
    #: ratio ``v^p / (v^p + a^p)`` of the two networks' masks (Spleeter's way; ``p`` below)
    accompaniment: bool = False
    #: the exponent ``p`` of that ratio (Spleeter separates with 2)
    ratio_power: float = 1.0
    #: share of Spleeter's filters in the accompaniment network (None: ``width``)
    accompaniment_width: float | None = None

    @classmethod
    def of(cls, params: dict[str, Any]) -> "StemUNetParams":
        """The typed form of a saved ``params`` dict (missing keys: the defaults above);
        ``ModelError`` for a key it does not know."""
        unknown = sorted(set(params) - set(cls.__dataclass_fields__))
        if unknown:
            raise ModelError(f"stemunet: unknown configuration key(s) {', '.join(unknown)}")
        p = cls(**params)
        lo, hi = p.extension_hz
        return cls(bins=int(p.bins), segment=int(p.segment), segments_per_batch=int(p.segments_per_batch),
                   extension_hz=(float(lo), float(hi)), freeze_norm=bool(p.freeze_norm),
                   stereo=bool(p.stereo), width=float(p.width), accompaniment=bool(p.accompaniment),
                   ratio_power=float(p.ratio_power),
                   accompaniment_width=None if p.accompaniment_width is None else float(p.accompaniment_width))


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
