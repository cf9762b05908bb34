"""Sliding the paper CNN over a song: one centred 100-frame window per frame.

``naive_sliding_logits`` is the definition (every window run through the network on its own,
in batches). ``sliding_logits`` is what inference uses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .paper import CENTRE, WINDOW


def centred_windows(features: torch.Tensor) -> torch.Tensor:
    """``(bins, frames)`` → ``(frames, bins, 100)``: window ``t`` covers frames ``t-50 .. t+49``.

    Frames outside the song are zeros (``log1p(0) = 0``).
    """
    padded = F.pad(features, (CENTRE, WINDOW - CENTRE - 1))
    return padded.unfold(1, WINDOW, 1).permute(1, 0, 2)


@torch.no_grad()
def naive_sliding_logits(model: torch.nn.Module, features: torch.Tensor,
                         batch_size: int = 64) -> torch.Tensor:
    """Reference: ``features`` ``(batch, bins, frames)`` → logits of the same shape."""
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        windows = centred_windows(features[b])
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start:start + batch_size]
            out[b, :, start:start + chunk.shape[0]] = model(chunk).T
    return out


def sliding_logits(model: torch.nn.Module, features: torch.Tensor,
                   batch_size: int = 64) -> torch.Tensor:
    """Centre-frame logits for every frame; ``(batch, bins, frames)`` → same shape."""
    return naive_sliding_logits(model, features, batch_size)
