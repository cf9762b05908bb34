"""Live separation: a stream of raw samples in, the separated stream out, at a fixed latency.

:class:`LiveSeparation` wraps the one signal path (:class:`~vocalsep.pipeline.stream.
SeparationStream`) for input that arrives as it plays: it reads ``chunk`` samples at a time and
gives output sample ``k`` as input sample ``k − latency`` (the first ``latency`` output samples
are silence), exactly. The latency is the stream's own delay for that chunk size, measured once
by :func:`stream_latency` on silence with masks that cost nothing (when a sample leaves the
stream depends on the frame and segment grid, never on the masks' values); a segment model's
latency is set by its segment length (:func:`segment_for_latency`).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .config import ModelConfig
from .pipeline.plan import SeparatorOptions
from .pipeline.stream import MaskBackend, SeparationStream

#: the segment lengths (frames) a live separation may use, shortest first
SEGMENTS = tuple(range(64, 513, 64))


class _Silent:
    """A backend with ``backend``'s frame grid whose masks are zeros (for timing only)."""

    def __init__(self, backend: MaskBackend):
        self.config: ModelConfig = backend.config
        self.stereo, self.heard_bins = backend.stereo, backend.heard_bins
        self.stream_block, self.stream_context = backend.stream_block, backend.stream_context

    def masks(self, mags: np.ndarray) -> np.ndarray:
        return np.zeros((*mags.shape[:-1], self.config.bins), np.float32)


def stream_latency(backend: MaskBackend, options: SeparatorOptions, rate: int, channels: int,
                   chunk: int) -> int:
    """Samples of delay of a stream fed ``chunk`` samples at a time: the least ``L`` such that
    output sample ``k`` is always out once input sample ``k + L`` is in."""
    stream = SeparationStream(_Silent(backend), options, rate, channels)
    cfg = backend.config
    # four blocks of the model's frames: the delay repeats from the second on
    frames = 4 * backend.stream_block + 2 * backend.stream_context + 8
    total = int(frames * cfg.hop * rate / cfg.sample_rate) + cfg.n_fft * rate // cfg.sample_rate + chunk
    received = emitted = latency = 0
    silence = np.zeros((channels, chunk), np.float32)
    while received < total:
        received += chunk
        for vocals, _ in stream.feed(silence):
            latency = max(latency, received - emitted - 1)
            emitted += vocals.shape[1]
    return latency


def segment_for_latency(backend: MaskBackend, options: SeparatorOptions, rate: int, channels: int,
                        chunk: int, seconds: float) -> tuple[int, int]:
    """``(segment, latency in samples)``: the longest segment (the better masks) whose latency
    is at most ``seconds``; ``ValueError`` naming the shortest possible latency if none is."""
    original = backend.stream_block
    best = None
    try:
        for segment in SEGMENTS:
            backend.stream_block = segment
            latency = stream_latency(backend, options, rate, channels, chunk)
            if latency <= seconds * rate:
                best = (segment, latency)
            elif best is None:
                raise ValueError(f"--latency {seconds:g}: the shortest here is "
                                 f"{latency / rate:.3f} s ({segment}-frame segments)")
    finally:
        backend.stream_block = original
    return best


class LiveSeparation:
    """One stream at ``rate`` Hz with ``channels``, fed ``chunk`` samples at a time: each
    :meth:`feed` gives the stems' samples that are due, delayed by exactly :attr:`latency`."""

    def __init__(self, separator, rate: int, channels: int, chunk: int):
        self.stream = separator.stream(rate, channels)
        self.latency = stream_latency(separator.backend, separator.options, rate, channels, chunk)
        self.channels = channels
        self.started = False

    def _lead(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not self.started:
            self.started = True
            silence = np.zeros((self.channels, self.latency), np.float32)
            yield silence, silence

    def feed(self, block: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(channels, m)`` float32 samples in → ``(vocals, accompaniment)`` pieces out."""
        yield from self._lead()
        yield from self.stream.feed(block)

    def finish(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """End of input: the rest."""
        yield from self._lead()
        yield from self.stream.finish()
