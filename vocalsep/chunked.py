"""Chunked separation with overlap-add: any length of audio in bounded memory.

The signal is cut into chunks of ``chunk`` samples that overlap by ``overlap`` samples; each
chunk is separated on its own and the vocal estimates are joined with a linear cross-fade over
the overlaps (the two weights sum to one at every sample), as Demucs' ``apply_model`` does. The
accompaniment is the input minus the joined vocals, so the stems still add up to the input
exactly. A signal no longer than one chunk is separated in one piece, exactly as without
chunking; longer ones differ from one-piece separation only near the overlaps, where each
chunk's model saw less context.

:class:`ChunkedSeparation` works on a stream: :meth:`~ChunkedSeparation.feed` takes input
blocks of any size and returns the output that is final so far; :meth:`~ChunkedSeparation.finish`
returns the rest. It never holds more than about one chunk plus one block of input.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: ``fn(samples (channels, n) float32, rate) -> {"vocals": (channels, n), ...}``
SeparationFn = Callable[[np.ndarray, int], dict]


def fade_in(overlap: int) -> np.ndarray:
    """Linear weights rising over ``overlap`` samples; ``fade_in + fade_in[::-1] == 1``."""
    return ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)


class ChunkedSeparation:
    """Streaming overlap-add of a separation function over ``(channels, n)`` float32 audio.

    >>> job = ChunkedSeparation(separator.separate, rate, chunk=30 * rate, overlap=2 * rate)
    >>> for block in blocks:                # any block sizes
    ...     for vocals, accompaniment in job.feed(block): write(vocals, accompaniment)
    >>> for vocals, accompaniment in job.finish(): write(vocals, accompaniment)
    """

    def __init__(self, fn: SeparationFn, rate: int, chunk: int, overlap: int):
        if chunk < 1 or not 0 <= overlap < chunk:
            raise ValueError(f"need chunk >= 1 and 0 <= overlap < chunk (got {chunk}, {overlap})")
        self.fn, self.rate, self.chunk, self.overlap = fn, rate, int(chunk), int(overlap)
        self._ramp = fade_in(self.overlap) if self.overlap else np.zeros(0, np.float32)
        self._input: np.ndarray | None = None  # samples from the next chunk's start on
        self._tail: np.ndarray | None = None  # vocals of the last overlap, already faded out
        self.consumed = 0  # input samples received
        self.emitted = 0  # output samples returned

    def feed(self, block: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Add ``(channels, m)`` input samples; return the ``(vocals, accompaniment)`` pieces
        that are final now (possibly none)."""
        block = np.asarray(block, dtype=np.float32)
        self._input = block if self._input is None else np.concatenate([self._input, block], axis=1)
        self.consumed += block.shape[1]
        out = []
        # a chunk is processed once input exists beyond its end (so it is not the last one)
        while self._input.shape[1] > self.chunk:
            out.append(self._process(self._input[:, : self.chunk], last=False))
            self._input = self._input[:, self.chunk - self.overlap:]
        return out

    def finish(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Separate what is left (the last chunk); return its final pieces."""
        if self._input is None or self._input.shape[1] == 0:
            return []
        out = [self._process(self._input, last=True)]
        self._input = self._input[:, :0]
        return out

    def _process(self, x: np.ndarray, last: bool) -> tuple[np.ndarray, np.ndarray]:
        """Separate chunk ``x``; return the output up to where the next chunk starts."""
        vocals = np.asarray(self.fn(x, self.rate)["vocals"], dtype=np.float32).copy()
        n = x.shape[1]
        if self._tail is not None:  # cross-fade in from the previous chunk
            k = self._tail.shape[1]
            vocals[:, :k] = vocals[:, :k] * self._ramp[:k] + self._tail
        if last or self.overlap == 0:
            done, self._tail = n, None
        else:
            done = n - self.overlap
            self._tail = vocals[:, done:] * self._ramp[::-1]
        self.emitted += done
        return vocals[:, :done], x[:, :done] - vocals[:, :done]


def separate_chunked(fn: SeparationFn, samples: np.ndarray, rate: int, chunk: int,
                     overlap: int, block: int | None = None) -> dict[str, np.ndarray]:
    """``fn`` over ``(channels, n)`` ``samples`` in overlapping chunks (fed ``block`` samples at
    a time, default one chunk); ``{"vocals", "accompaniment"}`` of the input's shape."""
    job = ChunkedSeparation(fn, rate, chunk, overlap)
    block = block or chunk
    pieces = []
    for start in range(0, samples.shape[1], block):
        pieces += job.feed(samples[:, start:start + block])
    pieces += job.finish()
    if not pieces:
        return {"vocals": samples.copy(), "accompaniment": samples.copy()}
    vocals = np.concatenate([p[0] for p in pieces], axis=1)
    acc = np.concatenate([p[1] for p in pieces], axis=1)
    return {"vocals": vocals, "accompaniment": acc}
