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

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .config import ModelConfig
from .pipeline.plan import SHORT_SEGMENTS, SeparatorOptions
from .pipeline.stream import MaskBackend, SeparationStream

if TYPE_CHECKING:
    from .separate import Separator

#: the segment lengths (frames) a live separation may use, shortest first (each shorter than
#: the model's own heard with its past: :func:`vocalsep.backends.cut_segments`)
SEGMENTS = (*SHORT_SEGMENTS, *range(64, 513, 64))
#: the shipped model `vocalsep live` takes for segments of up to LIVE_SEGMENTS frames
LIVE_MODEL, LIVE_SEGMENTS = "live", 64


class _Silent:
    """A backend with ``backend``'s frame grid (or blocks of ``block`` frames) whose masks are
    zeros (for timing only)."""

    def __init__(self, backend: MaskBackend, block: int | None = None):
        self.config: ModelConfig = backend.config
        self.stereo, self.heard_bins = backend.stereo, backend.heard_bins
        self.stream_block, self.stream_context = block or backend.stream_block, backend.stream_context
        self.stream_history = backend.stream_history

    def masks(self, mags: np.ndarray) -> np.ndarray:
        return np.zeros((*mags.shape[:-1], self.config.bins), np.float32)


def stream_latency(backend: MaskBackend, options: SeparatorOptions, rate: int, channels: int,
                   chunk: int, block: int | None = None) -> int:
    """Samples of delay of a stream fed ``chunk`` samples at a time: the least ``L`` such that
    output sample ``k`` is always out once input sample ``k + L`` is in; ``block``: as if
    ``backend`` were cut into segments of that many frames (the backend is left as it is)."""
    silent = _Silent(backend, block)
    stream = SeparationStream(silent, options, rate, channels)
    cfg = backend.config
    # four blocks of the model's frames: the delay repeats from the second on
    frames = 4 * silent.stream_block + 2 * silent.stream_context + 8
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
    best = None
    for segment in SEGMENTS:
        latency = stream_latency(backend, options, rate, channels, chunk, block=segment)
        if latency <= seconds * rate:
            best = (segment, latency)
        elif best is None:
            raise ValueError(f"--latency {seconds:g}: the shortest here is "
                             f"{latency / rate:.3f} s ({segment}-frame segments)")
    return best


def live_separator(model: str | None, rate: int, channels: int, chunk: int,
                   seconds: float | None) -> tuple["Separator", str]:
    """The separator `vocalsep live` runs, and its model's name: ``model`` (None: the default)
    cut into the longest segments whose latency is at most ``seconds`` (None: its own
    segments). Without ``model``, segments of up to :data:`LIVE_SEGMENTS` frames take
    :data:`LIVE_MODEL`, fine-tuned for them (docs/live.md), its segment found on its own grid.
    ``ValueError`` if no segment is short enough."""
    from .separate import Separator

    # no spatial step: its windows would add their length to the wait
    quick = SeparatorOptions(spatial=False)
    name, separator = model or "default", Separator(model, quick)
    if seconds is None:
        return separator, name
    segment, _ = segment_for_latency(separator.backend, separator.options, rate, channels, chunk, seconds)
    if model is None and segment <= LIVE_SEGMENTS:
        name, separator = LIVE_MODEL, Separator(LIVE_MODEL, quick)
        segment, _ = segment_for_latency(separator.backend, separator.options, rate, channels, chunk, seconds)
    return Separator(separator.model, replace(quick, segment=segment)), name


class LiveSeparation:
    """One stream at ``rate`` Hz with ``channels``, fed ``chunk`` samples at a time: each
    :meth:`feed` gives the stems' samples that are due, delayed by exactly :attr:`latency`."""

    def __init__(self, separator: "Separator", rate: int, channels: int, chunk: int):
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


class RealTime:
    """The real-time clock of a stream of ``rate`` Hz: when each block's input is due, and
    which blocks' output came too late.

    Real time starts once the first block's output is out (the first block also pays for
    warming up: a player starts a moment later): its last sample is then due, and input sample
    ``i`` at ``t0 + i / rate``. With ``pace``, :meth:`arrived` waits until a block is due: a
    file played at its own speed. A later block is *late* when its output is written after the
    next block's input is due (``chunk`` more samples). A real-time source has then run ahead,
    and its samples pile up in the pipe. The output stays continuous: nothing is dropped, it is
    only later than the stated latency.
    """

    def __init__(self, rate: int, chunk: int, pace: bool = False, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.chunk, self.pace = rate, chunk, pace
        self.clock, self.sleep = clock, sleep
        self.t0: float | None = None
        self.received = 0
        #: blocks written, blocks written late, and the most any was late (seconds)
        self.blocks = self.late = 0
        self.worst = 0.0

    def arrived(self, samples: int) -> None:
        """A block of ``samples`` has been read (with ``pace``: wait until it is due)."""
        self.received += samples
        if self.pace and self.t0 is not None:
            wait = self.t0 + self.received / self.rate - self.clock()
            if wait > 0:
                self.sleep(wait)

    def written(self) -> float:
        """The output of the last block read is written: how late it is (0 if in time)."""
        self.blocks += 1
        if self.t0 is None:
            self.t0 = self.clock() - self.received / self.rate
            return 0.0
        behind = self.clock() - (self.t0 + (self.received + self.chunk) / self.rate)
        if behind > 0:
            self.late += 1
            self.worst = max(self.worst, behind)
            return behind
        return 0.0

    def report(self) -> str | None:
        """One line on the late blocks, or None if none was late."""
        if not self.late:
            return None
        return (f"{self.late} of {self.blocks} blocks were late (up to {self.worst:.3f} s behind "
                f"real time; the output stayed continuous, later than the stated latency)")
