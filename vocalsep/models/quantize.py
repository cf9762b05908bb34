"""8-bit storage of a model's weights (``save(..., int8=True)``, the ONNX export's ``int8``)."""
from __future__ import annotations

import torch


def quantize(weights: torch.Tensor, per: str = "kernel") -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: int8 ``q`` and float32 ``scale`` with ``q * scale ≈ weights``. The scale
    broadcasts: ``per="kernel"``, one per kernel of a convolution (a slice of the first two
    axes) or per row of a matrix; ``per="filter"``, one per slice of the first axis (files
    written before 2026-12-02's `hq`); the largest magnitude in it over 127."""
    if per not in ("kernel", "filter"):
        raise ValueError(f"per {per!r}: 'kernel' or 'filter'")
    w = weights.float()
    first = 1 if per == "filter" else min(2, w.ndim - 1)
    top = w.abs().amax(dim=tuple(range(first, w.ndim)), keepdim=True)
    scale = torch.where(top > 0, top / 127, torch.ones_like(top))
    return (w / scale).round().clamp(-127, 127).to(torch.int8), scale


def requantize(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize` for weights loaded from an int8 file, on the grid they already lie on
    (a scale per filter for older files, else per kernel), so storing them again changes
    nothing."""
    q, scale = quantize(weights, "filter")
    if torch.allclose(q.float() * scale, weights.float(), rtol=1e-5, atol=0):
        return q, scale
    return quantize(weights, "kernel")
