"""Post-filters: the last stage of the signal path for options that need the whole song's
masked frames at once, the multichannel Wiener filter (``--wiener N``) and Griffin-Lim
(``--reconstruct griffinlim``).

:class:`PostFilter` is a :class:`~vocalsep.pipeline.stream.Reconstruction`: it collects the
mixture frames and their masks as the stream produces them, and at the end filters and inverts
them in torch (:mod:`vocalsep.filtering`, :mod:`vocalsep.spectral`), which it imports only then.
Memory grows with the song here, unlike the plain iSTFT.
"""
from __future__ import annotations

import numpy as np

from .pipeline.plan import SeparatorOptions


class PostFilter:
    """Collect ``(channels, k, bins)`` frames and masks; Wiener-filter and/or Griffin-Lim them
    into ``(channels, length)`` vocal samples at :meth:`finish`."""

    #: the Wiener filter's sources' levels: ``(mean_c |y|²)^(power/2)`` (2: the Gaussian model)
    power = 2.0

    def __init__(self, n_fft: int, hop: int, channels: int, options: SeparatorOptions):
        self.n_fft, self.hop, self.channels, self.options = n_fft, hop, channels, options
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.emitted = 0

    def feed(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self.frames.append(frames)
        self.masks.append(np.asarray(masks, dtype=np.float32))
        return np.zeros((self.channels, 0), np.float32)

    def finish(self, length: int) -> np.ndarray:
        import torch

        from .filtering import wiener_from_mask
        from .spectral import griffin_lim, istft

        def bins_first(parts: list[np.ndarray], bins: int, dtype) -> torch.Tensor:
            whole = np.concatenate(parts, axis=1) if parts else np.zeros((1, 0, bins), dtype)
            return torch.from_numpy(np.ascontiguousarray(whole.swapaxes(-1, -2)))

        bins, opts = self.n_fft // 2 + 1, self.options
        spec = bins_first(self.frames, bins, np.complex64)  # (channels, bins, frames)
        mask = bins_first(self.masks, bins, np.float32)  # (1 or channels, bins, frames)
        self.frames, self.masks = [], []
        with torch.no_grad():
            if opts.wiener:
                estimate = wiener_from_mask(mask, spec, int(opts.wiener), sources=(0,), power=self.power)[0]
            else:
                estimate = mask * spec
            if opts.reconstruct == "istft":
                vocals = istft(estimate, length, self.n_fft, self.hop)
            else:
                vocals = griffin_lim(estimate.abs(), length, self.n_fft, self.hop,
                                     opts.griffin_lim_iterations)
        out = vocals.numpy().astype(np.float32)
        self.emitted += out.shape[1]
        return out
