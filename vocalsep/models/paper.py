"""The paper's CNN, layer for layer (5,378,465 parameters).

Keras original (channels last, input 1025×100×1)::

    Conv2D 32 3x3 same, LeakyReLU | Conv2D 16 3x3 same, LeakyReLU | MaxPool 3x3 | Dropout
    Conv2D 64 3x3 same, LeakyReLU | Conv2D 16 3x3 same, LeakyReLU | MaxPool 3x3 | Dropout
    Flatten (113·11·16 = 19888) | Dense 256, LeakyReLU | Dropout | Dense 1025 (sigmoid)

How the 1025 outputs map onto frames: the network sees a 100-frame *context window* of
``log1p(|STFT|)`` and predicts the vocal mask of **one** frame, the window's centre (index 50).
To separate a song the window slides one frame at a time (the song is zero-padded by 50 frames
on the left and 49 on the right), so every frame gets its own prediction from its own context.
Why: a Dense layer of 1025 units can only describe one spectral frame; using one prediction for
all 100 frames of a window would give the same mask to 3 seconds of music.

Faithful choices where the paper is silent (documented in docs/paper-reproduction.md):
Keras' defaults for LeakyReLU (slope 0.3) and MaxPool (stride = pool size, 'valid'), dropout
0.25 after each pooling block and 0.5 after the dense layer, raw ``log1p`` input (no
normalisation), unweighted binary cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelConfig, SeparationModel
from .paper_fast import CENTRE, WINDOW, shared_window_logits, sliding_logits

#: consecutive windows in one training example: they share the first block's convolutions
WINDOWS_PER_EXAMPLE = 16


class PaperCNN(SeparationModel):
    """The paper's binary-mask CNN: ``(batch, 1025, 100)`` window → ``(batch, 1025)`` logits."""

    example_frames = WINDOW + WINDOWS_PER_EXAMPLE - 1
    stream_context = WINDOW // 2  # a frame's mask sees frames j-50 .. j+49: streaming is exact
    target_frames = WINDOWS_PER_EXAMPLE

    def __init__(self, config: ModelConfig | None = None):
        config = config or ModelConfig(arch="paper", sample_rate=16_000, n_fft=2048, hop=512,
                                       params={"slope": 0.3, "dropout": [0.25, 0.25, 0.5]})
        super().__init__(config)
        slope = config.params.get("slope", 0.3)
        d1, d2, d3 = config.params.get("dropout", [0.25, 0.25, 0.5])
        bins = config.bins
        self.block1 = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.LeakyReLU(slope),
            nn.Conv2d(32, 16, 3, padding=1), nn.LeakyReLU(slope),
            nn.MaxPool2d(3), nn.Dropout(d1),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(16, 64, 3, padding=1), nn.LeakyReLU(slope),
            nn.Conv2d(64, 16, 3, padding=1), nn.LeakyReLU(slope),
            nn.MaxPool2d(3), nn.Dropout(d2),
        )
        flat = 16 * (bins // 3 // 3) * (WINDOW // 3 // 3)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 256), nn.LeakyReLU(slope), nn.Dropout(d3),
            nn.Linear(256, bins),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``(batch, bins, 100)`` log1p-magnitude windows → ``(batch, bins)`` centre-frame logits."""
        return self.head(self.block2(self.block1(windows.unsqueeze(1))))

    def training_loss(self, mix_mag: torch.Tensor, vocals_mag: torch.Tensor,
                      accompaniment_mag: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of each window's centre frame against the ideal binary mask.

        An example ``(batch, bins, 115)`` holds 16 consecutive 100-frame windows; they are run
        through the network with their shared work done once (``shared_window_logits``), which
        gives the same outputs and gradients as 16 separate windows, dropout included.
        """
        k = self.target_frames
        centres = slice(CENTRE, CENTRE + k)
        target = (vocals_mag[..., centres] > accompaniment_mag[..., centres]).float()
        target = target.permute(0, 2, 1).reshape(-1, target.shape[1])  # (batch * k, bins)
        features = torch.log1p(mix_mag)
        logits = torch.cat([shared_window_logits(self, f, 0, k) for f in features])
        return F.binary_cross_entropy_with_logits(logits, target)

    @torch.no_grad()
    def mask(self, mix_mag: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Soft mask (sigmoid) for every frame, each from its own centred 100-frame window.

        ``mix_mag``: ``(batch, bins, frames)`` → ``(batch, bins, frames)``.
        """
        return torch.sigmoid(sliding_logits(self, torch.log1p(mix_mag), batch_size))
