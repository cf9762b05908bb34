"""Model zoo: architecture names → classes, shipped models, saving and loading with config.

A saved model is one ``.pt`` file holding ``{"config": ModelConfig dict, "state": weights,
"meta": {...}}``; it loads without knowing its hyper-parameters.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..config import DEFAULT_MODEL, PRETRAINED_DIR, SHIPPED, ModelError, resolve, sha256
from .base import ModelConfig, SeparationModel
from .paper import PaperCNN
from .quantize import quantize
from .stemunet import StemUNetModel
from .unet import UNet

ARCHITECTURES: dict[str, type[SeparationModel]] = {"paper": PaperCNN, "unet": UNet,
                                                   "stemunet": StemUNetModel}


def build(arch: str, params: dict[str, Any] | None = None, **config: Any) -> SeparationModel:
    """A fresh, untrained model of architecture ``arch`` with its default configuration."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    model = ARCHITECTURES[arch]()
    if params or config:
        cfg = model.config
        merged = ModelConfig(arch=arch, sample_rate=config.get("sample_rate", cfg.sample_rate),
                             n_fft=config.get("n_fft", cfg.n_fft), hop=config.get("hop", cfg.hop),
                             params={**cfg.params, **(params or {})})
        model = ARCHITECTURES[arch](merged)
    return model


def save(model: SeparationModel, path: str | os.PathLike, meta: dict[str, Any] | None = None,
         half: bool = False, int8: bool = False) -> Path:
    """Write ``model`` with its config to ``path`` atomically; ``half`` stores float weights as
    float16 (half the file), ``int8`` the convolutions' weights as 8-bit integers with a float
    scale per kernel (about a quarter; :func:`quantize`); :func:`load` turns both back into
    float32."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    scales = {}
    if int8:
        for k, v in state.items():
            if v.is_floating_point() and v.ndim >= 2:
                state[k], scales[k] = quantize(v)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    blob = {"config": model.config.to_dict(), "state": state, "meta": meta or {}}
    torch.save({**blob, "int8_scales": scales} if scales else blob, tmp)
    os.replace(tmp, path)
    return path


def load(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> SeparationModel:
    """Load a shipped model by name, or a saved ``.pt`` file, ready for inference."""
    path = resolve(name_or_path)
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        config = ModelConfig(**blob["config"])
        model = ARCHITECTURES[config.arch](config)
        state = blob["state"]
        for k, scale in blob.get("int8_scales", {}).items():
            state[k] = state[k].float() * scale
        model.load_state_dict(state)
    except Exception as err:  # torch.load raises many kinds for a file that is not a model
        first = (str(err).splitlines() or [type(err).__name__])[0][:100]
        raise ModelError(f"{path}: not a usable vocalsep model ({first})") from None
    model.meta = blob.get("meta", {})
    return model.to(device).eval()
