"""8-bit storage of a model's weights (``save(..., int8=True)``, the ONNX export's ``int8``)."""
from __future__ import annotations

import torch


def quantize(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: int8 ``q`` and float32 ``scale`` (shaped to broadcast: one per slice of
    the first axis, the largest magnitude of the slice over 127) with ``q * scale ≈ weights``."""
    w = weights.float()
    top = w.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True)
    scale = torch.where(top > 0, top / 127, torch.ones_like(top))
    return (w / scale).round().clamp(-127, 127).to(torch.int8), scale
