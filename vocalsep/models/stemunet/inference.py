"""A fast, frozen inference copy of a :class:`~.net.StemUNet` (float32 or bfloat16)."""
from __future__ import annotations

import copy
import threading

import torch
import torch.nn.functional as F
from torch import nn

from .net import RatioUNet, StemUNet, _unet

#: A stride-2 5×5 transposed convolution, cropped ``[1:-2]`` as :class:`StemUNet` does, is four
#: ordinary 3×3 convolutions, one per output phase (even/odd row × even/odd column), interleaved
#: by ``pixel_shuffle``: cropped output ``2n + q`` sums input rows ``n-1, n, n+1`` with the
#: transposed kernel's taps ``_PHASE_TAPS[q]`` (5: no tap, a zero). Ordinary convolutions are
#: 1.2× faster than transposed ones on CPU in float32, and the only fast ones in bfloat16.
_PHASE_TAPS = ((3, 1, 5), (4, 2, 0))


def phase_conv(deconv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(4·out, in, 3, 3)`` and bias of the 3×3 convolution that, padded by 1 and
    followed by ``pixel_shuffle(·, 2)``, equals ``deconv(x)[:, :, 1:-2, 1:-2]``."""
    w = F.pad(deconv.weight.detach(), (0, 1, 0, 1))  # (in, out, 6, 6): tap 5 is zero
    taps = torch.tensor(_PHASE_TAPS)
    w = w[:, :, taps][..., taps]  # (in, out, qy, dy, qx, dx)
    weight = w.permute(1, 2, 4, 0, 3, 5).reshape(-1, w.shape[0], 3, 3).contiguous()
    return weight, deconv.bias.detach().repeat_interleave(4)


class InferenceStemUNet(nn.Module):
    """A frozen copy of a :class:`StemUNet` for masks only: the same function, with each
    transposed convolution replaced by its :func:`phase_conv`, computing in ``dtype`` (float32,
    or bfloat16 where the CPU has native bfloat16 arithmetic: 2.5× faster there; on the stempeg
    example its masks differ from float32's by 0.002 on average, 0.01 at the 99th percentile).
    Takes and returns float32."""

    def __init__(self, net: StemUNet, dtype: torch.dtype = torch.float32):
        super().__init__()
        net = copy.deepcopy(net)  # a new dtype must not touch the weights being trained
        self.encoders, self.encoder_norms = net.encoders, net.encoder_norms
        self.decoder_norms, self.head = net.decoder_norms, net.head
        phases = [phase_conv(d) for d in net.decoders]
        self.phase_weights = nn.ParameterList(w for w, _ in phases)
        self.phase_biases = nn.ParameterList(b for _, b in phases)
        self.dtype = dtype
        self.to(dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        ups = [lambda y, w=w, b=b: F.pixel_shuffle(F.conv2d(y, w, b, padding=1), 2)
               for w, b in zip(self.phase_weights, self.phase_biases)]
        return _unet(magnitude.to(self.dtype), self, ups).float()


def inference_copy(net: StemUNet | RatioUNet, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The frozen inference copy of a network: an :class:`InferenceStemUNet`, or for a
    :class:`RatioUNet` a ratio of two of them."""
    if isinstance(net, RatioUNet):
        return RatioUNet(InferenceStemUNet(net.vocals, dtype), InferenceStemUNet(net.accompaniment, dtype),
                         net.power)
    return InferenceStemUNet(net, dtype)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: held while an inference network is looked up or built (models shared by server threads)
_BUILDING = threading.Lock()
