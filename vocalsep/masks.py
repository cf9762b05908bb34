"""Time-frequency masks: ideal masks from stems (training targets and oracles), thresholds.

The ideal masks take magnitude spectrograms (torch tensors) of the same shape (any leading
dimensions, ``(..., bins, frames)``) and return a mask of that shape with values in ``[0, 1]``.
:func:`binarize` takes tensors or numpy arrays (the signal path calls it on numpy masks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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


def binarize(mask: torch.Tensor | np.ndarray, threshold: float = 0.5) -> torch.Tensor | np.ndarray:
    """Hard mask: 1 where ``mask > threshold`` (a tensor or an array, as given)."""
    hard = mask > threshold
    return hard.astype(mask.dtype) if isinstance(mask, np.ndarray) else hard.to(mask.dtype)
