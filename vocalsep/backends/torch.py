"""A torch :class:`~vocalsep.models.SeparationModel` as a mask backend: numpy in and out, frames
first; on its device, in its precision, without gradients."""
from __future__ import annotations

import numpy as np
import torch

from ..models import SeparationModel
from .precision import choose_precision


def set_threads(threads: int | None) -> None:
    """torch's CPU threads (None: leave torch's choice, one per core)."""
    if threads:
        torch.set_num_threads(threads)


class TorchBackend:
    """Masks of a torch model (a :class:`~vocalsep.pipeline.stream.MaskBackend`). The model is
    shared (e.g. by a server's threads): it holds the precision and its inference copy, so
    backends over one model must agree on the precision."""

    def __init__(self, model: SeparationModel, device: str = "cpu", precision: str = "auto"):
        self.model, self.device = model.eval(), device
        model.set_precision(choose_precision(precision, model.precisions, device))
        model.prepare()
        self.config, self.stereo = model.config, bool(model.stereo)
        self.stream_block, self.stream_context = model.stream_block, model.stream_context
        self.stream_history = model.stream_history
        self.heard_bins = model.heard_bins

    @property
    def precision(self) -> str:
        return self.model.precision

    def describe(self) -> str:
        """``"stemunet in torch on cpu, bfloat16, 2 threads"``."""
        return (f"{self.config.arch} in torch on {self.device}, {self.precision}, "
                f"{torch.get_num_threads()} threads")

    @torch.no_grad()
    def masks(self, mags: np.ndarray) -> np.ndarray:
        """``(c, frames, bins)`` magnitudes → ``(c, frames, config.bins)`` masks (the model
        itself reads ``(c, bins, frames)``)."""
        x = torch.from_numpy(np.ascontiguousarray(mags.swapaxes(-1, -2), dtype=np.float32)).to(self.device)
        mask = self.model.mask(x).float().cpu().numpy()
        return mask.swapaxes(-1, -2)
