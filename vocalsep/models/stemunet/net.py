"""Spleeter's per-stem U-Net (:class:`StemUNet`, any width) and pruning it to a narrower one.

6 strided 5×5 convolutions (16..512 filters; batch norm, leaky ReLU 0.2), 6 transposed
convolutions back (ReLU, batch norm; skip connections from the encoder's convolutions), a
dilated 4×4 convolution to the input's channels and a sigmoid; input and output
``(batch, 2, frames, bins)``, frames and bins multiples of 64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StemUNet(nn.Module):
    """Spleeter's U-Net for one stem: magnitudes ``(batch, channels, T, F)`` → mask, same shape.

    Convolutions pad like TensorFlow's ``"same"`` with stride 2 (1 before, 2 after); ``T`` and
    ``F`` must be multiples of 64."""

    FILTERS = (16, 32, 64, 128, 256, 512)

    def __init__(self, channels: int = 2, width: float = 1.0):
        super().__init__()
        self.filters = filters = tuple(max(1, round(f * width)) for f in self.FILTERS)
        widths = (channels, *filters)
        self.encoders = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 5, stride=2)
                                      for i in range(6))
        self.encoder_norms = nn.ModuleList(nn.BatchNorm2d(w, eps=1e-3) for w in filters)
        # decoder i takes the previous decoder's output concatenated with an encoder conv output
        ins, outs = decoder_widths(filters)
        self.decoders = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(ins, outs))
        self.decoder_norms = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in outs)
        self.head = nn.Conv2d(1, channels, 4, dilation=2, padding=3)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        ups = [lambda y, d=d: d(y)[:, :, 1:-2, 1:-2] for d in self.decoders]
        return _unet(magnitude, self, ups)


class RatioUNet(nn.Module):
    """Two U-Nets, one per stem, and the vocal mask as the ratio of their masks ``v`` and
    ``a``: ``v^p / (v^p + a^p)`` (Spleeter's 2stems separates this way with ``p = 2``).
    Input and output as :class:`StemUNet`'s; ``vocals`` and ``accompaniment`` may be any
    modules of that signature (e.g. their inference copies)."""

    EPSILON = 1e-10  # Spleeter's: silent bins get a half mask

    def __init__(self, vocals: nn.Module, accompaniment: nn.Module, power: float = 1.0):
        super().__init__()
        self.vocals, self.accompaniment, self.power = vocals, accompaniment, power

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        return self.ratio(self.vocals(magnitude), self.accompaniment(magnitude))

    def ratio(self, vocals: torch.Tensor, accompaniment: torch.Tensor) -> torch.Tensor:
        """The vocal mask from the two networks' masks (any one shape)."""
        v, a = vocals ** self.power, accompaniment ** self.power
        return (v + self.EPSILON / 2) / (v + a + self.EPSILON)


def decoder_widths(filters: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and output channels of the six decoders of a U-Net with encoder ``filters``:
    decoder 0 reads the deepest conv; each later one its predecessor's output beside the
    encoder conv of the same size; the last gives one channel."""
    outs = (*filters[-2::-1], 1)
    ins = (filters[-1], *(2 * f for f in filters[-2::-1]))
    return ins, outs


def _unet(x: torch.Tensor, net: nn.Module, upsamplers: list) -> torch.Tensor:
    """The U-Net's signal path over ``net``'s encoders, norms and head: ``(batch, channels, T,
    F)`` magnitudes → mask of the same shape (T, F multiples of 64). ``upsamplers[i](y)`` is
    decoder ``i``'s (cropped) transposed convolution, doubling T and F."""
    convs = []
    for conv, norm in zip(net.encoders, net.encoder_norms):
        c = conv(_tf_same(x))
        convs.append(c)
        x = F.leaky_relu(norm(c), 0.2)
    # the deepest conv output (before its norm) starts the decoder; x is unused past here
    y = convs.pop()
    for i, (up, norm) in enumerate(zip(upsamplers, net.decoder_norms)):
        if i:
            y = torch.cat([convs.pop(), y], dim=1)
        y = norm(F.relu(up(y)))
    return torch.sigmoid(net.head(y))


def _tf_same(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``"same"`` padding for a stride-2 5×5 convolution: 1 before, 2 after."""
    return F.pad(x, (1, 2, 1, 2))


def pruned(net: StemUNet, width: float) -> StemUNet:
    """A narrower copy of ``net`` (``width`` of Spleeter's filters, no more than ``net`` has), a
    start for fine-tuning a faster network: each convolution keeps the output channels whose
    filters have the largest L1 norms, and the weights between kept channels."""
    if not isinstance(net, StemUNet):
        raise ValueError("only a single U-Net can be pruned, not a pair of them")
    small = StemUNet(net.encoders[0].in_channels, width)
    if any(s > f for s, f in zip(small.filters, net.filters)):
        raise ValueError(f"cannot prune {net.filters} filters to {small.filters}")

    def top(weight: torch.Tensor, dim: int, count: int) -> torch.Tensor:
        norms = weight.abs().sum(dim=[d for d in range(weight.ndim) if d != dim])
        return norms.topk(count).indices.sort().values

    def copy_norm(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, keep: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).data.copy_(getattr(src, name).data[keep])

    enc_keep, previous = [], torch.arange(small.encoders[0].in_channels)
    for big, little, big_norm, little_norm in zip(net.encoders, small.encoders, net.encoder_norms,
                                                  small.encoder_norms):
        keep = top(big.weight.data, 0, little.out_channels)
        little.weight.data.copy_(big.weight.data[keep][:, previous])
        little.bias.data.copy_(big.bias.data[keep])
        copy_norm(big_norm, little_norm, keep)
        enc_keep.append(keep)
        previous = keep
    previous = enc_keep[-1]
    for i, (big, little) in enumerate(zip(net.decoders, small.decoders)):
        if i:  # the encoder conv of this size, then the previous decoder's output
            previous = torch.cat([enc_keep[5 - i], net.filters[5 - i] + previous])
        keep = top(big.weight.data, 1, little.out_channels)
        little.weight.data.copy_(big.weight.data[previous][:, keep])
        little.bias.data.copy_(big.bias.data[keep])
        copy_norm(net.decoder_norms[i], small.decoder_norms[i], keep)
        previous = keep
    small.head.load_state_dict(net.head.state_dict())
    return small
