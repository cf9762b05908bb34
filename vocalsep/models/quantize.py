"""8-bit storage of a model's weights (``save(..., int8=True)``, the ONNX export's ``int8``)."""
from __future__ import annotations

import torch


def quantize(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: int8 ``q`` and float32 ``scale`` with ``q * scale ≈ weights``. The scale
    broadcasts: one per kernel of a convolution (a slice of the first two axes, e.g. 5 × 5
    weights) or per row of a matrix, the largest magnitude in it over 127. (Files written
    before 2026-12-02's `hq` have a scale per slice of the first axis; they load the same way.)"""
    w = weights.float()
    top = w.abs().amax(dim=tuple(range(min(2, w.ndim - 1), w.ndim)), keepdim=True)
    scale = torch.where(top > 0, top / 127, torch.ones_like(top))
    return (w / scale).round().clamp(-127, 127).to(torch.int8), scale
