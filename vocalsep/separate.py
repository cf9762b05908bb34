"""Separation: from a signal (or a file) to vocals and accompaniment.

:class:`Separator` holds the options and a mask backend (:mod:`vocalsep.backends`: ONNX Runtime,
OpenVINO or torch, picked once) and drives the one signal path, :class:`~vocalsep.pipeline.stream.
SeparationStream`: :meth:`Separator.separate` gives it a whole song as one block,
:meth:`Separator.separate_file` the blocks of a file as they are decoded, and
:meth:`Separator.stream` hands it out for songs that arrive in pieces. The steps and the
decisions behind them are in :mod:`vocalsep.pipeline.stream` and :mod:`vocalsep.pipeline.plan`.
Options that need the whole song's frames (the Wiener filter, Griffin-Lim) end the stream with
a post-filter (:mod:`vocalsep.postfilter`, torch).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from . import audio as audio_io
from .backends import open_backend
from .pipeline.plan import SeparatorOptions
from .pipeline.stream import SeparationStream

if TYPE_CHECKING:
    from .models import SeparationModel
    from .pipeline.stream import MaskBackend

STEMS = ("vocals", "accompaniment")
#: where each stem goes below the output folder (Demucs' ``--filename`` default)
TEMPLATE = "{track}/{stem}.{ext}"


class Stems(NamedTuple):
    """A song's stems, each float32 ``(channels, n)`` at ``rate`` Hz (vocals + accompaniment =
    the song)."""

    vocals: np.ndarray
    accompaniment: np.ndarray
    rate: int


#: samples per channel fed to the stream at a time when a progress callback is given
PROGRESS_BLOCK = 1 << 18


class Separator:
    """Keeps a loaded model; separates arrays or files.

    >>> sep = Separator("default")
    >>> stems = sep.separate(samples, 44100)   # samples: (channels, n) float32
    >>> stems["vocals"].shape == samples.shape
    """

    def __init__(self, model: str | os.PathLike | SeparationModel | MaskBackend | None = None,
                 options: SeparatorOptions | None = None, device: str = "cpu",
                 threads: int | None = None):
        check_device(device)
        self.options = options or SeparatorOptions()
        self.options.check()
        self.device = device
        self.backend = open_backend(model, self.options, device, threads)

    @property
    def model(self):
        """The model the backend runs: a torch :class:`~vocalsep.models.SeparationModel`, or
        the :class:`~vocalsep.backends.onnx.OnnxModel` itself."""
        return getattr(self.backend, "model", self.backend)

    @property
    def rate(self) -> int:
        """The model's sample rate in Hz."""
        return self.backend.config.sample_rate

    def describe(self) -> str:
        """What separates, in one line: the model's architecture, the runtime, the precision and
        the CPU threads (e.g. ``"stemunet in ONNX Runtime, float32, 2 threads"``)."""
        return self.backend.describe()

    def stream(self, rate: int, channels: int) -> SeparationStream:
        """A :class:`~vocalsep.pipeline.stream.SeparationStream` for one song of ``channels``
        channels at ``rate`` Hz, fed block by block."""
        reconstruction = None
        if self.options.post_filter:
            from .postfilter import PostFilter

            reconstruction = PostFilter
        return SeparationStream(self.backend, self.options, rate, channels, reconstruction)

    def separate(self, samples: np.ndarray, rate: int,
                 progress: Callable[[float], None] | None = None) -> dict[str, np.ndarray]:
        """``samples`` float32 ``(channels, n)`` at ``rate`` Hz → ``{"vocals", "accompaniment"}``,
        each ``(channels, n)`` at ``rate`` Hz; vocals + accompaniment == samples. A 1-D
        ``(n,)`` array is one channel, and its stems are 1-D too.

        Raises ``ValueError`` (one line) for samples that are not a float ``(channels, n)``
        array of finite values within :data:`vocalsep.audio.MAX_LEVEL` (soundfile's ``(n,
        channels)`` is refused with a hint, not separated as n channels), or a rate that is not
        a positive number of Hz. ``progress(fraction)`` is called as the song advances (0 to 1)."""
        if np.ndim(samples) == 1:
            return {k: v[0] for k, v in self.separate(np.asarray(samples)[None], rate, progress).items()}
        samples = check_samples(samples, rate)
        job = self.stream(int(rate), samples.shape[0])
        n = samples.shape[1]
        step = PROGRESS_BLOCK if progress else max(1, n)
        pieces = []
        for start in range(0, n, step):
            pieces += job.feed(samples[:, start:start + step])
            if progress:
                progress(min(1.0, (start + step) / n))
        pieces += job.finish()
        if not pieces:
            return {"vocals": samples.copy(), "accompaniment": samples.copy()}
        vocals, accompaniment = (np.concatenate(p, axis=1) for p in zip(*pieces))
        return {"vocals": vocals, "accompaniment": accompaniment}

    def separate_audio_file(self, path: str | os.PathLike,
                            progress: Callable[[float], None] | None = None) -> Stems:
        """Decode ``path`` (any format :func:`vocalsep.audio.read_audio` reads) and separate
        it: its :class:`Stems` at the file's own rate and channels. ``AudioError`` (one line,
        naming the file) for a file that cannot be decoded."""
        source = audio_io.AudioSource(path)
        job = self.stream(source.rate, source.channels)
        pieces = []
        for block in source.blocks():
            pieces += job.feed(block)
            if progress and source.length:
                progress(min(1.0, source.samples / source.length))
        pieces += job.finish()
        empty = np.zeros((source.channels, 0), np.float32)
        vocals, accompaniment = (np.concatenate(p, axis=1) for p in zip(*pieces)) if pieces else (empty, empty)
        return Stems(vocals, accompaniment, source.rate)

    def separate_file(self, path: str | os.PathLike, out_dir: str | os.PathLike,
                      stems: tuple[str, ...] = STEMS, ext: str = "wav", bits: str = "16",
                      force: bool = False,
                      progress: Callable[[float], None] | None = None,
                      template: str = TEMPLATE, bitrate: int | None = None,
                      tap: Callable[[dict[str, np.ndarray]], None] | None = None) -> dict[str, Path]:
        """Separate one file into ``out_dir/<input stem>/<stem>.<ext>`` (``template``: see
        :func:`output_paths`); return the written paths. ``bitrate``: kbit/s of mp3/m4a outputs.
        ``tap(blocks)`` sees each block of the stems as it is written (stem → ``(channels, m)``
        float samples, in order), e.g. to play them while the song is separated.

        Refuses to overwrite existing outputs unless ``force``. The song is decoded, separated
        and written block by block, so memory does not grow with its length (except with a
        post-filter, which needs the whole song's frames). The stems appear all together,
        only when complete (:class:`vocalsep.audio.StemWriter`). ``progress(fraction)`` is
        called as the song's decoding advances (0 to 1).
        """
        path = Path(path)
        targets = output_paths(path, out_dir, stems, ext, template)
        existing = [p for p in targets.values() if p.exists()]
        if existing and not force:
            raise FileExistsError(f"{existing[0]}: already exists (use --force to overwrite)")
        source = audio_io.AudioSource(path)
        job = self.stream(source.rate, source.channels)
        with audio_io.StemWriter(targets, source.rate, source.channels, bits, bitrate=bitrate) as writer:
            def write(vocals: np.ndarray, acc: np.ndarray) -> None:
                blocks = _pick(stems, vocals, acc)
                writer.write(blocks)
                if tap:
                    tap(blocks)

            for block in source.blocks():
                for vocals, acc in job.feed(block):
                    write(vocals, acc)
                if progress and source.length:
                    progress(min(1.0, source.samples / source.length))
            for vocals, acc in job.finish():
                write(vocals, acc)
            writer.finish()
        return targets


def check_samples(samples: np.ndarray, rate: float) -> np.ndarray:
    """``samples`` as float32 ``(channels, n)``; ``ValueError`` saying what is wrong otherwise
    (``rate`` must be a positive whole number of Hz, as int or float)."""
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"samples must be shaped (channels, n) or (n,), got shape {x.shape}")
    if x.shape[0] > audio_io.MAX_CHANNELS:
        hint = "; did you mean x.T?" if x.shape[1] <= audio_io.MAX_CHANNELS else ""
        raise ValueError(f"samples shaped {x.shape}: {x.shape[0]} channels, at most "
                         f"{audio_io.MAX_CHANNELS} ((channels, n) expected{hint})")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"samples must be floating point (about ±1), got {x.dtype}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) \
            or not 0 < float(rate) < np.inf or float(rate) % 1:
        raise ValueError(f"rate must be a positive whole number of Hz, got {rate!r}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    if x.size and float(np.abs(x).max()) > audio_io.MAX_LEVEL:
        raise ValueError(f"samples up to {float(np.abs(x).max()):.3g}, more than 200 dB above full scale")
    return x


def check_device(device: str) -> None:
    """Raise ``ValueError`` (one line) unless ``device`` ('cpu', 'cuda', 'cuda:N') can be used."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ValueError(f"--device {device}: unknown device (cpu or cuda)")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device here (torch {torch.__version__}); use cpu")


def check_template(template: str) -> str:
    """``template`` itself; ``ValueError`` (one line) unless it names only ``{track}``,
    ``{stem}`` and ``{ext}``, holds ``{stem}`` (else the stems would overwrite each other) and
    stays below the output folder."""
    import string

    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    unknown = sorted(set(fields) - {"track", "stem", "ext"})
    if unknown or "stem" not in fields:
        raise ValueError(f"--filename {template!r}: use {{track}}, {{stem}} and {{ext}} only, "
                         f"{{stem}} at least" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    parts = Path(template).parts
    if Path(template).is_absolute() or ".." in parts:
        raise ValueError(f"--filename {template!r}: must stay below the output folder")
    return template


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike,
                 stems: tuple[str, ...] = STEMS, ext: str = "wav",
                 template: str = TEMPLATE) -> dict[str, Path]:
    """Where :meth:`Separator.separate_file` writes each stem of ``path``: ``out_dir`` /
    ``template`` with ``{track}`` (the file's name without its extension), ``{stem}``, ``{ext}``."""
    name = Path(path).name
    for suffix in (".stem.mp4",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    check_template(template)
    return {s: Path(out_dir) / template.format(track=name, stem=s, ext=ext) for s in stems}


def _pick(stems: tuple[str, ...], vocals: np.ndarray, accompaniment: np.ndarray) -> dict:
    both = {"vocals": vocals, "accompaniment": accompaniment}
    return {s: both[s] for s in stems}


def separate(samples: np.ndarray, rate: int, model: str | SeparationModel | None = None,
             **options) -> dict[str, np.ndarray]:
    """One-call API: separate ``(channels, n)`` float32 samples at ``rate`` Hz."""
    return Separator(model, SeparatorOptions(**options)).separate(samples, rate)
