"""The signal path: a song, whole or arriving in blocks, to vocals and accompaniment, in memory
that does not grow with its length (numpy; the model through a :class:`MaskBackend`).

:class:`SeparationStream` follows a :class:`~vocalsep.pipeline.plan.Plan`, top to bottom:

1. what the model hears (both channels of a stereo input for a model with a mask per channel,
   else the mono downmix), resampled to the model's rate (soxr's streaming resampler: the same
   samples as resampling the whole song);
2. STFT (:mod:`vocalsep.pipeline.stft`: the same frames as the whole-signal transform) and the
   model's vocal mask, ``backend.stream_block`` frames at a time with ``backend.stream_context``
   frames of context on each side and ``backend.stream_history`` more before (the past a short
   live segment hears; soft, or binary at ``threshold``);
3. the STFT the mask is applied to, per input channel: **full band** (inputs above the model's
   rate) the input's own STFT at its rate, ``n_fft``/``hop`` scaled so frames line up in time,
   the mask mapped onto it (:func:`~vocalsep.pipeline.bands.full_band_mask`); otherwise the
   STFT of each channel at the model's rate (the vocals stop at its Nyquist);
4. the masked frames back to samples by a :class:`Reconstruction`: the streaming iSTFT, or a
   post-filter (the Wiener filter, Griffin-Lim: :mod:`vocalsep.postfilter`) that collects the
   whole song's frames and reconstructs at its end;
5. the vocals at the input's rate and length; accompaniment = input − vocals (exactly).

A song shorter than :attr:`Plan.min_len` is zero-padded to it and cut back. For models whose
masks depend on nothing farther away than their context (the paper's CNN: ±50 frames; the
default's independent 512-frame segments, taken on the song's own segment grid) the output does
not depend on how the song is cut into blocks, up to float rounding; for others (the ``small``
U-Net) it differs slightly near block edges (tests/test_streaming.py measures it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
import soxr

from ..config import ModelConfig
from ..masks import binarize
from ..timing import stage
from .bands import full_band_mask
from .plan import Plan, SeparatorOptions, make_plan
from .spatial import SpatialISTFT, window_frames
from .stft import StreamingISTFT, StreamingSTFT

Pieces = list[tuple[np.ndarray, np.ndarray]]


class MaskBackend(Protocol):
    """What computes a model's masks for the signal path (:mod:`vocalsep.backends`)."""

    config: ModelConfig
    #: a stereo input's two channels are heard together and each gets its own mask
    stereo: bool
    #: masks are computed ``stream_block`` frames at a time with ``stream_context`` frames of
    #: context on each side (exact when no mask depends on frames farther away)
    stream_block: int
    stream_context: int
    #: and ``stream_history`` more frames before each block (the past: no added latency)
    stream_history: int
    #: the lowest bins the model reads (the masks cover all of ``config.bins``)
    heard_bins: int

    def masks(self, mags: np.ndarray) -> np.ndarray:
        """``(c, frames, heard_bins)`` float32 magnitudes → ``(c, frames, config.bins)`` vocal
        masks in [0, 1]; ``c`` = 1, or 2 for a stereo model (a mask per channel)."""
        ...


class Reconstruction(Protocol):
    """Masked frames back to samples, as the frames arrive."""

    #: samples returned so far
    emitted: int

    def feed(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Mixture frames ``(channels, k, bins)`` and their masks ``(1 or channels, k, bins)``
        → the vocal samples ``(channels, m)`` that became final."""
        ...

    def finish(self, length: int) -> np.ndarray:
        """The rest of a ``length``-sample signal."""
        ...


#: ``(n_fft, hop, channels, options)`` → the reconstruction of a stream
ReconstructionFactory = Callable[[int, int, int, SeparatorOptions], Reconstruction]


class MaskedISTFT:
    """The streaming iSTFT of the masked frames (``--reconstruct istft`` without a post-filter)."""

    def __init__(self, n_fft: int, hop: int, channels: int, options: SeparatorOptions | None = None):
        self.istft = StreamingISTFT(n_fft, hop, channels)

    @property
    def emitted(self) -> int:
        return self.istft.emitted

    def feed(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        with stage("istft"):
            return self.istft.feed(masks * frames)

    def finish(self, length: int) -> np.ndarray:
        with stage("istft"):
            return self.istft.finish(length)


class _Resampler:
    """soxr's streaming resampler on ``(channels, m)`` float32 blocks (identity at equal rates)."""

    def __init__(self, rate_in: int, rate_out: int, channels: int):
        self.stream = (soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32", quality="HQ")
                       if rate_in != rate_out else None)
        self.channels = channels

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return block
        with stage("resample"):
            out = self.stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, self.channels).T)


class SeparationStream:
    """One song of ``channels`` channels at ``rate`` Hz through the signal path, block by block.

    >>> job = SeparationStream(backend, SeparatorOptions(), 44100, 2)
    >>> for block in blocks:             # (2, m) float32, any m
    ...     for vocals, accompaniment in job.feed(block): write(vocals, accompaniment)
    >>> for vocals, accompaniment in job.finish(): write(vocals, accompaniment)

    ``reconstruction`` makes the last stage (default: :class:`MaskedISTFT`, or
    :class:`~vocalsep.pipeline.spatial.SpatialISTFT` where the plan has the spatial step; the
    separator gives :class:`vocalsep.postfilter.PostFilter` for options that need a post-filter).
    """

    def __init__(self, backend: MaskBackend, options: SeparatorOptions, rate: int, channels: int,
                 reconstruction: ReconstructionFactory | None = None):
        self.backend, self.options, self.cfg = backend, options, backend.config
        self.plan: Plan = make_plan(self.cfg, backend.stereo, rate, channels, options, backend.heard_bins)
        plan, cfg = self.plan, self.cfg
        self.rate, self.channels = rate, channels
        self.received = 0
        self.inputs: list[np.ndarray] = []  # input not yet paired with vocals
        self.started = False
        self.to_model = _Resampler(rate, cfg.sample_rate, plan.model_channels)
        self.model_stft = StreamingSTFT(cfg.n_fft, cfg.hop, plan.model_channels)
        self.frames = np.zeros((plan.model_channels, 0, cfg.bins), dtype=np.complex64)  # frames first
        self.frame0 = 0  # global index of self.frames[:, 0]
        # frames computed since, appended to self.frames only when a model block needs them
        # (one concatenation per model block rather than one per input block)
        self.pending: list[np.ndarray] = []
        self.pending_frames = 0
        self.next_block = 0  # first model frame without a mask yet
        self.model_samples = 0
        if reconstruction is not None:
            self.out = reconstruction(plan.n_fft, plan.hop, channels, options)
        elif plan.spatial_bins:
            self.out = SpatialISTFT(plan.n_fft, plan.hop, channels, window_frames(plan.frame_rate),
                                    plan.spatial_bins)
        else:
            self.out = MaskedISTFT(plan.n_fft, plan.hop, channels)
        if plan.full_band:
            self.input_stft = StreamingSTFT(plan.n_fft, plan.hop, channels)
            self.input_frames = np.zeros((channels, 0, plan.n_fft // 2 + 1), dtype=np.complex64)
            self.input_frame0 = 0
            self.masks = np.zeros((2 if plan.stereo else 1, 0, cfg.bins), dtype=np.float32)
            self.mask0 = 0
        else:
            self.from_model = _Resampler(cfg.sample_rate, rate, channels)
            self.vocals_at_rate = 0

    # --- input ----------------------------------------------------------------------------

    def feed(self, block: np.ndarray) -> Pieces:
        """Add ``(channels, m)`` float32 samples; return the final ``(vocals, accompaniment)``
        pieces so far (in order; possibly none)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, m) samples, got {block.shape}")
        self.inputs.append(block)
        self.received += block.shape[1]
        if not self.started:
            if self.received < self.plan.min_len:  # too short so far: wait (maybe it stays short)
                return []
            self.started = True
            block = np.concatenate(self.inputs, axis=1)
        return self._pair(self._vocals(block, last=False))

    def finish(self) -> Pieces:
        """End of input: the remaining pieces."""
        rest = np.zeros((self.channels, 0), np.float32)
        if not self.started:
            if not self.received:
                return []
            # shorter than one model window: zero-padded to it (not counted as received)
            self.started = True
            rest = np.pad(np.concatenate(self.inputs, axis=1),
                          ((0, 0), (0, self.plan.min_len - self.received)))
        return self._pair(self._vocals(rest, last=True))

    def _pair(self, vocals: np.ndarray) -> Pieces:
        """Pair vocals with the same input samples: accompaniment = input − vocals."""
        n = vocals.shape[1]
        if not n:
            return []
        taken, have = [], 0
        while have < n:
            x = self.inputs[0]
            need = n - have
            if x.shape[1] <= need:
                taken.append(self.inputs.pop(0))
                have += x.shape[1]
            else:
                taken.append(x[:, :need])
                self.inputs[0] = x[:, need:]
                have = n
        mix = np.concatenate(taken, axis=1)
        return [(vocals, mix - vocals)]

    # --- the signal path ---------------------------------------------------------------------

    def _vocals(self, block: np.ndarray, last: bool) -> np.ndarray:
        """Feed input samples through; return the vocal samples that became final."""
        plan = self.plan
        heard = block if plan.model_channels == self.channels else block.mean(axis=0, keepdims=True)
        at_model = self.to_model(heard, last=last)
        self.model_samples += at_model.shape[1]
        with stage("stft"):
            frames = self.model_stft.feed(at_model)
            if last:
                frames = np.concatenate([frames, self.model_stft.finish()], axis=1)
        self.pending.append(frames)
        self.pending_frames += frames.shape[1]
        if plan.full_band:
            return self._full_band(block, last)
        vocals = self._model_rate(last)
        if last:
            vocals = np.concatenate([vocals, self.out.finish(self.model_samples)], axis=1)
        out = self.from_model(vocals, last=last)
        if last:  # the resampled vocals fitted to the (padded) input's length, then cut
            total = max(self.received, plan.min_len)
            out = fit_length(out, total - self.vocals_at_rate)[:, : self.received - self.vocals_at_rate]
        self.vocals_at_rate += out.shape[1]
        return out

    def mask_frames(self, spec: np.ndarray) -> np.ndarray:
        """The vocal mask ``(1 or 2, k, bins)`` of complex model-rate frames ``(c, k, bins)``
        (their downmix unless the model hears both channels), soft or binary."""
        if not self.plan.stereo and spec.shape[0] > 1:
            spec = spec.mean(axis=0, keepdims=True)  # = the STFT of the mono downmix
        with stage("model"):
            mask = self.backend.masks(np.abs(spec[..., : self.backend.heard_bins]))
        if self.options.mask == "binary":
            mask = binarize(mask, self.options.threshold)
        return mask

    def _next_masks(self, last: bool) -> Iterator[tuple[int, np.ndarray]]:
        """``(first frame, mask (c, k, bins))`` of every block whose context is complete; while
        a block is yielded, its frames are still in ``self.frames``."""
        block, context = self.backend.stream_block, self.backend.stream_context
        before = context + self.backend.stream_history
        end = self.frame0 + self.frames.shape[1] + self.pending_frames
        while self.next_block < end and (last or self.next_block + block + context <= end):
            if self.pending:  # a block is ready: its frames join self.frames now
                self.frames = np.concatenate([self.frames, *self.pending], axis=1)
                self.pending, self.pending_frames = [], 0
            f0 = self.next_block
            f1 = min(f0 + block, end)
            lo, hi = max(self.frame0, f0 - before), min(end, f1 + context)
            mask = self.mask_frames(self.frames[:, lo - self.frame0: hi - self.frame0])
            yield f0, mask[:, f0 - lo: f1 - lo]
            self.next_block = f1
            drop = max(0, f1 - before - self.frame0)  # keep the next block's context and past
            self.frames = self.frames[:, drop:]
            self.frame0 += drop

    def _model_rate(self, last: bool) -> np.ndarray:
        """Model-rate path: every finished block's frames and masks through the reconstruction."""
        pieces = [self.out.feed(self.frames[:, f0 - self.frame0: f0 - self.frame0 + mask.shape[1]], mask)
                  for f0, mask in self._next_masks(last)]
        return np.concatenate(pieces, axis=1) if pieces else np.zeros((self.channels, 0), np.float32)

    def _full_band(self, block: np.ndarray, last: bool) -> np.ndarray:
        """Input-rate path: the model's masks mapped onto the input's own STFT frames."""
        cfg, plan = self.cfg, self.plan
        for _, mask in self._next_masks(last):
            self.masks = np.concatenate([self.masks, mask], axis=1)
        with stage("stft"):
            frames = self.input_stft.feed(block)
            if last:
                frames = np.concatenate([frames, self.input_stft.finish()], axis=1)
        self.input_frames = np.concatenate([self.input_frames, frames], axis=1)
        masked_until = self.mask0 + self.masks.shape[1]  # model frames with a mask
        ratio = plan.hop * cfg.sample_rate / (self.rate * cfg.hop)
        k = self.input_frames.shape[1]
        if not last:  # an input frame needs the model frames around its time
            index = np.arange(self.input_frame0, self.input_frame0 + k)
            k = int(np.count_nonzero(np.floor(index * ratio) + 1 < masked_until))
        vocals = np.zeros((self.channels, 0), np.float32)
        if k:
            mapped = full_band_mask(self.masks.swapaxes(1, 2), cfg.sample_rate, cfg.n_fft, cfg.hop,
                                    self.rate, plan.n_fft, plan.hop, k,
                                    first_frame=self.input_frame0, first_model_frame=self.mask0,
                                    model_frames=masked_until if last else None)
            vocals = self.out.feed(self.input_frames[:, :k], mapped.swapaxes(1, 2))
            self.input_frames = self.input_frames[:, k:]
            self.input_frame0 += k
            # keep the masks the next input frame still interpolates from
            keep_from = int(np.floor(self.input_frame0 * ratio))
            drop = max(0, min(keep_from, masked_until - 1) - self.mask0)
            self.masks = self.masks[:, drop:]
            self.mask0 += drop
        if last:
            vocals = np.concatenate([vocals, self.out.finish(max(self.received, plan.min_len))], axis=1)
        done = self.out.emitted - vocals.shape[1]
        return vocals[:, : max(0, self.received - done)]


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``(channels, m)`` to ``n`` samples."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def separate_blocks(stream: SeparationStream, blocks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generator form: ``(vocals, accompaniment)`` pieces of a song given as blocks."""
    for block in blocks:
        yield from stream.feed(block)
    yield from stream.finish()
