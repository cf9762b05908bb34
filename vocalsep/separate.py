"""Separation: from a signal (or a file) to vocals and accompaniment.

The signal path, top to bottom (:meth:`Separator.separate`):

1. mix the input down to mono and resample it to the model's rate;
2. STFT, magnitude → the model's vocal mask (soft, or binary at ``threshold``);
3. back to audio: ``istft`` applies the mask to the complex STFT of every input channel and
   inverts it (the paper's 2nd experiment); ``griffinlim`` applies it to the magnitude and
   estimates a phase with Griffin-Lim (its 1st);
4. resample the vocals to the input rate; accompaniment = input − vocals, so the two stems
   always add up to the input exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import audio as audio_io
from .masks import binarize
from .models import SeparationModel, load
from .spectral import griffin_lim, istft, stft

STEMS = ("vocals", "accompaniment")
RECONSTRUCTIONS = ("istft", "griffinlim")


@dataclass
class SeparatorOptions:
    """How masks become audio."""

    reconstruct: str = "istft"  # istft | griffinlim
    mask: str = "soft"  # soft | binary
    threshold: float = 0.5  # for binary masks
    griffin_lim_iterations: int = 32


class Separator:
    """Keeps a loaded model; separates arrays or files.

    >>> sep = Separator("default")
    >>> stems = sep.separate(samples, 44100)   # samples: (channels, n) float32
    >>> stems["vocals"].shape == samples.shape
    """

    def __init__(self, model: str | os.PathLike | SeparationModel | None = None,
                 options: SeparatorOptions | None = None, device: str = "cpu"):
        self.model = model if isinstance(model, SeparationModel) else load(model, device)
        self.model.eval()
        self.options = options or SeparatorOptions()
        if self.options.reconstruct not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruct must be one of {RECONSTRUCTIONS}")
        if self.options.mask not in ("soft", "binary"):
            raise ValueError("mask must be 'soft' or 'binary'")
        self.device = device

    @property
    def rate(self) -> int:
        """The model's sample rate in Hz."""
        return self.model.config.sample_rate

    @torch.no_grad()
    def vocal_mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Mask for a complex mono spectrogram ``(1, bins, frames)`` → ``(1, bins, frames)``."""
        mask = self.model.mask(spec.abs())
        if self.options.mask == "binary":
            mask = binarize(mask, self.options.threshold)
        return mask

    @torch.no_grad()
    def separate(self, samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        """``samples`` float32 ``(channels, n)`` at ``rate`` Hz → ``{"vocals", "accompaniment"}``,
        each ``(channels, n)`` at ``rate`` Hz; vocals + accompaniment == samples."""
        cfg = self.model.config
        n = samples.shape[1]
        # at least one full STFT window at the model's rate, so even one sample is handled
        min_len = int(np.ceil(cfg.n_fft * rate / cfg.sample_rate)) + 1
        padded = np.pad(samples, ((0, 0), (0, max(0, min_len - n))))
        at_model_rate = torch.from_numpy(audio_io.resample(padded, rate, cfg.sample_rate)).to(self.device)
        length = at_model_rate.shape[1]
        spec = stft(at_model_rate, cfg.n_fft, cfg.hop)  # (channels, bins, frames)
        mask = self.vocal_mask(stft(at_model_rate.mean(0, keepdim=True), cfg.n_fft, cfg.hop))
        if self.options.reconstruct == "istft":
            vocals = istft(mask * spec, length, cfg.n_fft, cfg.hop)
        else:
            vocals = griffin_lim(mask * spec.abs(), length, cfg.n_fft, cfg.hop,
                                 self.options.griffin_lim_iterations)
        vocals = audio_io.resample(vocals.cpu().numpy().astype(np.float32), cfg.sample_rate, rate)
        vocals = _fit_length(vocals, padded.shape[1])[:, :n]
        return {"vocals": vocals, "accompaniment": samples - vocals}

    def separate_file(self, path: str | os.PathLike, out_dir: str | os.PathLike,
                      stems: tuple[str, ...] = STEMS, ext: str = "wav", bits: str = "16",
                      force: bool = False) -> dict[str, Path]:
        """Separate one file into ``out_dir/<input stem>/<stem>.<ext>``; return the written paths.

        Refuses to overwrite existing outputs unless ``force``. Each file is written atomically.
        """
        path = Path(path)
        targets = output_paths(path, out_dir, stems, ext)
        existing = [p for p in targets.values() if p.exists()]
        if existing and not force:
            raise FileExistsError(f"{existing[0]}: already exists (use --force to overwrite)")
        audio = audio_io.read_audio(path)
        result = self.separate(audio.samples, audio.rate)
        audio_io.write_audio_files({target: result[stem] for stem, target in targets.items()},
                                   audio.rate, bits=bits)
        return targets


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike,
                 stems: tuple[str, ...] = STEMS, ext: str = "wav") -> dict[str, Path]:
    """Where :meth:`Separator.separate_file` writes each stem of ``path``."""
    name = Path(path).name
    for suffix in (".stem.mp4",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return {s: Path(out_dir) / name / f"{s}.{ext}" for s in stems}


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


def separate(samples: np.ndarray, rate: int, model: str | SeparationModel | None = None,
             **options) -> dict[str, np.ndarray]:
    """One-call API: separate ``(channels, n)`` float32 samples at ``rate`` Hz."""
    return Separator(model, SeparatorOptions(**options)).separate(samples, rate)
