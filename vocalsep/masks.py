"""Time-frequency masks: ideal masks from stems (training targets and oracles), thresholds.

All functions take magnitude spectrograms of the same shape (any leading dimensions,
``(..., bins, frames)``) and return a mask of that shape with values in ``[0, 1]``.
"""
from __future__ import annotations

import torch

EPS = 1e-10


def ideal_binary_mask(vocals_mag: torch.Tensor, accompaniment_mag: torch.Tensor) -> torch.Tensor:
    """1 where the vocal magnitude exceeds the accompaniment's, else 0 (the paper's target)."""
    return (vocals_mag > accompaniment_mag).to(vocals_mag.dtype)


def ideal_ratio_mask(vocals_mag: torch.Tensor, accompaniment_mag: torch.Tensor,
                     power: float = 1.0) -> torch.Tensor:
    """Soft vocal share ``|V|^p / (|V|^p + |A|^p)`` per bin (0 where both are silent)."""
    v = vocals_mag.pow(power)
    a = accompaniment_mag.pow(power)
    return v / (v + a + EPS)


def binarize(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Hard mask: 1 where ``mask > threshold``."""
    return (mask > threshold).to(mask.dtype)
