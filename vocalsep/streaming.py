"""Separation of a song that arrives in blocks, in memory that does not grow with its length.

:class:`SeparationStream` runs the signal path of :meth:`vocalsep.separate.Separator.separate`
on a stream: resampling (soxr's streaming resampler, which gives the same samples as resampling
the whole song), the STFT and iSTFT of :mod:`vocalsep.stream` (the same frames and samples as
the whole-song transforms), and the model's mask computed ``model.stream_block`` frames at a
time with ``model.stream_context`` frames of context on each side. For models whose masks
depend on nothing farther away (the paper's CNN: ±50 frames; the default's independent
512-frame segments, taken on the song's own segment grid) the output equals the whole-song
separation up to float rounding; for others (the ``small`` U-Net) it differs slightly near
block edges (see tests/test_streaming.py for the measured tolerance).

Not streamable (they need the whole song): Griffin-Lim and the Wiener filter.

numpy only: torch is imported only if the separator's model is a torch model, so separating
with an ONNX model (:mod:`vocalsep.runtime`) starts without it (except for a song shorter than
one STFT window, which goes through the whole-song path).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import soxr

from .masks import full_band_mask
from .separate import Separator, full_band_stft
from .stream import StreamingISTFT, StreamingSTFT
from .timing import stage

Pieces = list[tuple[np.ndarray, np.ndarray]]


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
    """Block-by-block :meth:`Separator.separate` of one song of ``channels`` channels at ``rate``.

    >>> job = SeparationStream(Separator("default"), 44100, 2)
    >>> for block in blocks:             # (2, m) float32, any m
    ...     for vocals, accompaniment in job.feed(block): write(vocals, accompaniment)
    >>> for vocals, accompaniment in job.finish(): write(vocals, accompaniment)
    """

    def __init__(self, separator: Separator, rate: int, channels: int):
        opts, model = separator.options, separator.model
        if opts.wiener or opts.reconstruct != "istft":
            raise ValueError("streaming separation needs --reconstruct istft and no Wiener filter")
        self.sep, self.model, self.cfg = separator, model, model.config
        self.rate, self.channels = rate, channels
        self.full_band = opts.full_band and rate > self.cfg.sample_rate
        self.stereo = bool(model.stereo) and channels == 2
        # the whole-song path pads the input to one model window at least
        self.min_len = int(np.ceil(self.cfg.n_fft * rate / self.cfg.sample_rate)) + 1
        self.received = 0
        self.inputs: list[np.ndarray] = []  # input not yet paired with vocals
        self.started = False
        cfg = self.cfg
        heard = channels if (self.stereo or not self.full_band) else 1
        self.to_model = _Resampler(rate, cfg.sample_rate, heard)
        self.model_stft = StreamingSTFT(cfg.n_fft, cfg.hop, heard)
        self.frames = np.zeros((heard, 0, cfg.bins), dtype=np.complex64)  # model-rate STFT, frames first
        self.frame0 = 0  # global index of self.frames[:, 0]
        # frames computed since, appended to self.frames only when a model block needs them
        # (one concatenation per model block rather than one per input block)
        self.pending: list[np.ndarray] = []
        self.pending_frames = 0
        self.next_block = 0  # first model frame without a mask yet
        self.model_samples = 0
        if self.full_band:
            self.n_fft, self.hop = full_band_stft(cfg.n_fft, cfg.hop, cfg.sample_rate, rate)
            self.input_stft = StreamingSTFT(self.n_fft, self.hop, channels)
            self.input_frames = np.zeros((channels, 0, self.n_fft // 2 + 1), dtype=np.complex64)
            self.input_frame0 = 0
            self.masks = np.zeros((2 if self.stereo else 1, 0, cfg.bins), dtype=np.float32)
            self.mask0 = 0
            self.istft = StreamingISTFT(self.n_fft, self.hop, channels)
        else:
            self.istft = StreamingISTFT(cfg.n_fft, cfg.hop, channels)
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
            if self.received < self.min_len:  # too short so far: wait (maybe it stays short)
                return []
            self.started = True
            block = np.concatenate(self.inputs, axis=1)
        return self._pair(self._vocals(block, last=False))

    def finish(self) -> Pieces:
        """End of input: the remaining pieces."""
        if not self.started:
            if not self.received:
                return []
            whole = np.concatenate(self.inputs, axis=1)
            self.inputs = []
            out = self.sep.separate(whole, self.rate)  # short: the whole-song path pads it
            return [(out["vocals"], out["accompaniment"])]
        return self._pair(self._vocals(np.zeros((self.channels, 0), np.float32), last=True))

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
        heard = block if (self.stereo or not self.full_band) else block.mean(axis=0, keepdims=True)
        at_model = self.to_model(heard, last=last)
        self.model_samples += at_model.shape[1]
        with stage("stft"):
            frames = self.model_stft.feed(at_model)
            if last:
                frames = np.concatenate([frames, self.model_stft.finish()], axis=1)
        self.pending.append(frames)
        self.pending_frames += frames.shape[1]
        if self.full_band:
            return self._full_band(block, last)
        masked = self._masked_blocks(last)
        with stage("istft"):
            vocals = self.istft.feed(masked)
            if last:
                vocals = np.concatenate([vocals, self.istft.finish(self.model_samples)], axis=1)
        out = self.from_model(vocals, last=last)
        if last:  # the whole-song path fits the resampled vocals to the input's length
            total = max(self.received, self.min_len)
            out = _fit(out, total - self.vocals_at_rate)[:, : self.received - self.vocals_at_rate]
        self.vocals_at_rate += out.shape[1]
        return out

    def _next_masks(self, last: bool) -> Iterator[tuple[int, np.ndarray]]:
        """``(first frame, mask (c, k, bins))`` of every block whose context is complete; while
        a block is yielded, its frames are still in ``self.frames``."""
        block, context = self.model.stream_block, self.model.stream_context
        end = self.frame0 + self.frames.shape[1] + self.pending_frames
        while self.next_block < end and (last or self.next_block + block + context <= end):
            if self.pending:  # a block is ready: its frames join self.frames now
                self.frames = np.concatenate([self.frames, *self.pending], axis=1)
                self.pending, self.pending_frames = [], 0
            f0 = self.next_block
            f1 = min(f0 + block, end)
            lo, hi = max(self.frame0, f0 - context), min(end, f1 + context)
            spec = self.frames[:, lo - self.frame0: hi - self.frame0]
            if not self.stereo and spec.shape[0] > 1:
                spec = spec.mean(axis=0, keepdims=True)  # = the STFT of the mono mixdown
            with stage("model"):
                mask = self.sep.mask_frames(spec)
            yield f0, mask[:, f0 - lo: f1 - lo]
            self.next_block = f1
            drop = max(0, f1 - context - self.frame0)  # keep the next block's left context
            self.frames = self.frames[:, drop:]
            self.frame0 += drop

    def _masked_blocks(self, last: bool) -> np.ndarray:
        """Model-rate path: the mixture's frames times their masks, for every finished block."""
        out = [mask * self.frames[:, f0 - self.frame0: f0 - self.frame0 + mask.shape[1]]
               for f0, mask in self._next_masks(last)]
        if not out:
            return np.zeros((self.channels, 0, self.cfg.bins), dtype=np.complex64)
        return np.concatenate(out, axis=1)

    def _full_band(self, block: np.ndarray, last: bool) -> np.ndarray:
        """Input-rate path: the model's masks mapped onto the input's own STFT frames."""
        cfg = self.cfg
        for _, mask in self._next_masks(last):
            self.masks = np.concatenate([self.masks, mask], axis=1)
        with stage("stft"):
            frames = self.input_stft.feed(block)
            if last:
                frames = np.concatenate([frames, self.input_stft.finish()], axis=1)
        self.input_frames = np.concatenate([self.input_frames, frames], axis=1)
        masked_until = self.mask0 + self.masks.shape[1]  # model frames with a mask
        ratio = self.hop * cfg.sample_rate / (self.rate * cfg.hop)
        k = self.input_frames.shape[1]
        if not last:  # an input frame needs the model frames around its time
            index = np.arange(self.input_frame0, self.input_frame0 + k)
            k = int(np.count_nonzero(np.floor(index * ratio) + 1 < masked_until))
        if k:
            mapped = full_band_mask(self.masks.swapaxes(1, 2), cfg.sample_rate, cfg.n_fft, cfg.hop,
                                    self.rate, self.n_fft, self.hop, k,
                                    first_frame=self.input_frame0, first_model_frame=self.mask0,
                                    model_frames=masked_until if last else None)
            masked = mapped.swapaxes(1, 2) * self.input_frames[:, :k]
            self.input_frames = self.input_frames[:, k:]
            self.input_frame0 += k
            # keep the masks the next input frame still interpolates from
            keep_from = int(np.floor(self.input_frame0 * ratio))
            drop = max(0, min(keep_from, masked_until - 1) - self.mask0)
            self.masks = self.masks[:, drop:]
            self.mask0 += drop
        else:
            masked = np.zeros((self.channels, 0, self.n_fft // 2 + 1), dtype=np.complex64)
        with stage("istft"):
            vocals = self.istft.feed(masked)
            if last:
                total = max(self.received, self.min_len)
                vocals = np.concatenate([vocals, self.istft.finish(total)], axis=1)
            done = self.istft.emitted - vocals.shape[1]
            vocals = vocals[:, : max(0, self.received - done)]
        return vocals


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``(channels, m)`` to ``n`` samples."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def separate_blocks(separator: Separator, blocks: Iterable[np.ndarray], rate: int,
                    channels: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generator form: ``(vocals, accompaniment)`` pieces of a song given as blocks."""
    job = SeparationStream(separator, rate, channels)
    for block in blocks:
        yield from job.feed(block)
    yield from job.finish()
