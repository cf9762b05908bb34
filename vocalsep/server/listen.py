"""Listening to a job's accompaniment while it is still being separated (issue #19).

The job's worker appends each block of the accompaniment, as it is written, to
``<job folder>/live.pcm`` as 16-bit little-endian PCM (:class:`LiveTap`); the page's player
reads ``GET /api/jobs/<id>/live``, a WAV stream that :func:`follow` feeds from that file as it
grows, and from the finished ``accompaniment.wav`` when the job ended before it was opened.
The stream holds the same samples as the finished stem (clamped to [-1, 1] where the stem was
scaled down instead); it has no length in its header and cannot be sought.
"""
from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np

from ..audio import file_samples

#: the growing accompaniment of a running job, in its folder
LIVE_FILE = "live.pcm"
#: bytes read at a time, and seconds between two looks at a file that has not grown
CHUNK, POLL_S = 1 << 16, 0.2


class LiveTap:
    """A :meth:`vocalsep.separate.Separator.separate_file` tap writing the accompaniment's
    blocks (``(channels, m)`` floats) to ``path`` as interleaved 16-bit PCM, flushed each block."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")

    def __call__(self, blocks: dict[str, np.ndarray]) -> None:
        self.file.write(pcm16(blocks["accompaniment"]))
        self.file.flush()

    def close(self) -> None:
        """Close and remove the file (a reader that has it open reads on to its end)."""
        self.file.close()
        self.path.unlink(missing_ok=True)


def pcm16(block: np.ndarray) -> bytes:
    """``(channels, m)`` float samples → interleaved 16-bit little-endian PCM, as the 16-bit
    stems are written (held to the int16 range)."""
    return file_samples(block, "16", "clamp").astype("<i2", copy=False).tobytes()


def wav_header(rate: int, channels: int) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (sizes at their largest)."""
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF - 36))


async def follow(folder: Path, status: Callable[[], str], rate: int, channels: int) -> AsyncIterator[bytes]:
    """The WAV stream of a job's accompaniment: :func:`wav_header`, then the bytes of
    ``folder/live.pcm`` as they are written, until ``status()`` (the job's status, read again
    whenever the file has no more) is no longer ``queued`` or ``running``. A job that finished
    before the file was opened streams its ``accompaniment.wav``; a failed one ends the stream."""
    import soundfile as sf

    yield wav_header(rate, channels)
    live = folder / LIVE_FILE
    source = None
    try:
        while True:
            if source is None:
                try:
                    source = await asyncio.to_thread(open, live, "rb")
                except FileNotFoundError:
                    pass
            data = await asyncio.to_thread(source.read, CHUNK) if source is not None else b""
            if data:
                yield data
                continue
            state = await asyncio.to_thread(status)
            if state in ("queued", "running"):
                await asyncio.sleep(POLL_S)
                continue
            if state == "done":
                if source is not None:  # the rest, written before the job was marked done
                    while data := await asyncio.to_thread(source.read, CHUNK):
                        yield data
                else:  # read off the event loop, block by block
                    finished = await asyncio.to_thread(sf.SoundFile, os.fspath(folder / "accompaniment.wav"))
                    with finished:
                        while len(block := await asyncio.to_thread(
                                finished.read, CHUNK // (2 * channels), dtype="int16")):
                            yield block.astype("<i2").tobytes()
            return
    finally:
        if source is not None:
            source.close()
