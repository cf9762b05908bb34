"""What every separation model offers: its configuration, a mask, and a training loss.

A model sees the magnitude STFT of a mono mixture at its own ``sample_rate`` with its own
``n_fft``/``hop`` (all in :class:`ModelConfig`) and returns a vocal mask in ``[0, 1]`` of the
same shape. Everything else (decoding, resampling, applying the mask, iSTFT) lives outside.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


class SeparationModel(nn.Module):
    """Base class: subclasses implement :meth:`mask` and :meth:`training_loss`."""

    #: frames of spectrogram cut for one training example
    example_frames: int = 100
    #: target frames one example trains (1 for the paper's centre-frame CNN)
    target_frames: int = 100
    #: True if :meth:`mask` of a ``(2, bins, frames)`` input treats it as the two channels of
    #: one stereo song and returns a mask per channel (the separator then gives it stereo)
    stereo: bool = False
    #: streaming separation computes masks ``stream_block`` frames at a time, each block with
    #: ``stream_context`` frames of context on both sides; exact (equal to the whole song's
    #: mask) when no frame's mask depends on frames farther away, and for segment models when
    #: blocks are their segments
    stream_block: int = 256
    stream_context: int = 128
    #: frames before each block also given to the mask (past only, so no added latency): a
    #: live segment shorter than the network's window fills the rest of it with the past
    stream_history: int = 0
    #: number formats :meth:`mask` can compute in (see :meth:`set_precision`)
    precisions: tuple[str, ...] = ("float32",)
    precision: str = "float32"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    @property
    def heard_bins(self) -> int:
        """The lowest bins :meth:`mask` reads (all ``config.bins`` unless the network sees a
        narrower band and extends its mask above it)."""
        return self.config.bins

    def mask(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Vocal mask for a whole song. ``mix_mag``: ``(batch, bins, frames)`` → same shape."""
        raise NotImplementedError

    def training_loss(self, mix_mag: torch.Tensor, vocals_mag: torch.Tensor,
                      accompaniment_mag: torch.Tensor) -> torch.Tensor:
        """Scalar loss for a batch of examples, each ``(batch, bins, example_frames)``."""
        raise NotImplementedError

    def set_precision(self, precision: str) -> None:
        """Compute masks in ``precision`` (one of :attr:`precisions`; training stays float32)."""
        if precision not in self.precisions:
            raise ValueError(f"precision {precision}: this model computes in "
                             f"{', '.join(self.precisions)}")
        self.precision = precision

    def prepare(self) -> None:
        """Get ready to compute masks (e.g. build an inference copy); the separator calls it
        once, so that the cost is part of loading rather than of the first song."""

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
