"""A small U-Net over the magnitude spectrogram that predicts a soft vocal mask.

In the spirit of Jansson et al. (2017) and Spleeter: strided 5×5 convolutions down, transposed
convolutions up with skip connections, a sigmoid mask out. It is fully convolutional in time, so
it runs on a whole song at once (frames are padded to a multiple of ``2**depth``) and trains on
short patches. The top STFT bin (Nyquist) is not modelled: its mask copies the bin below.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelConfig, SeparationModel


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, stride=2, padding=2),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


def _up(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout2d(dropout))


class UNet(SeparationModel):
    """Soft-mask U-Net: ``(batch, bins, frames)`` magnitude → mask of the same shape."""

    example_frames = 128
    target_frames = 128

    def __init__(self, config: ModelConfig | None = None):
        config = config or ModelConfig(arch="unet", sample_rate=16_000, n_fft=1024, hop=256,
                                       params={"channels": [16, 32, 64, 128, 256], "dropout": 0.3})
        super().__init__(config)
        channels = list(config.params.get("channels", [16, 32, 64, 128, 256]))
        dropout = float(config.params.get("dropout", 0.3))
        self.modelled_bins = config.bins - 1
        self.depth = len(channels)
        self.input_norm = nn.BatchNorm2d(1)
        self.freq_scale = nn.Parameter(torch.ones(1, 1, self.modelled_bins, 1))
        self.freq_bias = nn.Parameter(torch.zeros(1, 1, self.modelled_bins, 1))
        ins = [1] + channels[:-1]
        self.down = nn.ModuleList(_down(i, o) for i, o in zip(ins, channels))
        self.up = nn.ModuleList()
        for level in reversed(range(1, self.depth)):
            c_in = channels[level] * (1 if level == self.depth - 1 else 2)
            self.up.append(_up(c_in, channels[level - 1], dropout if level >= self.depth - 2 else 0.0))
        self.out = nn.ConvTranspose2d(channels[0] * 2, 1, 5, stride=2, padding=2, output_padding=1)

    def forward(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """``(batch, bins, frames)`` magnitude → ``(batch, bins, frames)`` mask in [0, 1]."""
        batch, bins, frames = mix_mag.shape
        unit = 2 ** self.depth
        pad = (-frames) % unit
        x = torch.log1p(mix_mag[:, : self.modelled_bins])
        x = F.pad(x, (0, pad)).unsqueeze(1)
        x = self.input_norm(x) * self.freq_scale + self.freq_bias
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for layer in self.up:
            x = torch.cat([layer(x), skips.pop()], dim=1)
        mask = torch.sigmoid(self.out(x))[:, 0, :, :frames]
        return torch.cat([mask, mask[:, -1:]], dim=1)

    def training_loss(self, mix_mag: torch.Tensor, vocals_mag: torch.Tensor,
                      accompaniment_mag: torch.Tensor) -> torch.Tensor:
        """L1 distance of both masked estimates to the true magnitudes (as in Spleeter)."""
        mask = self(mix_mag)
        vocal_err = (mask * mix_mag - vocals_mag).abs().mean()
        acc_err = ((1 - mask) * mix_mag - accompaniment_mag).abs().mean()
        return vocal_err + acc_err

    @torch.no_grad()
    def mask(self, mix_mag: torch.Tensor) -> torch.Tensor:
        return self(mix_mag)
