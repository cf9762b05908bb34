"""The shipped models, listed without torch: each ``.pt`` file's configuration and parameter
count read from the file itself, and what ``auto`` would run it with on this machine.

A ``.pt`` file (``torch.save``) is a zip holding a pickle; its tensors are references to
storages. :func:`read_header` unpickles it with every torch object replaced by the shape it
describes, so no torch import and no tensor data are needed (and no code from the file runs:
only the few builders such a file names are answered, anything else is refused).
"""
from __future__ import annotations

import math
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_MODEL, SHIPPED, ModelConfig, ModelError, resolve

#: state-dict entries that are buffers, not parameters (batch-norm statistics)
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class _Shapes(pickle.Unpickler):
    """Unpickles a ``torch.save`` pickle into plain objects: tensors become their shapes."""

    def persistent_load(self, pid: Any) -> None:
        return None  # a storage: its data is not needed

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, *rest: tuple(size)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *rest: data
        if module == "torch" and name.endswith("Storage"):
            return None
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a vocalsep model file")


def read_header(path: str | Path) -> tuple[ModelConfig, int, dict]:
    """A saved model's (configuration, parameter count, metadata), without torch."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            blob = _Shapes(z.open(name)).load()
        config = ModelConfig(**blob["config"])
        count = sum(math.prod(shape) for key, shape in blob["state"].items()
                    if not key.endswith(_BUFFERS))
    except Exception as err:  # a damaged or foreign file
        first = (str(err).splitlines() or [type(err).__name__])[0][:100]
        raise ModelError(f"{path}: not a usable vocalsep model ({first})") from None
    return config, count, blob.get("meta", {})


@dataclass
class ModelInfo:
    name: str
    arch: str
    parameters: int
    sample_rate: int
    n_fft: int
    hop: int
    path: Path
    stereo: bool = False  # a mask per channel of a stereo song
    onnx: bool = False  # shipped with an ONNX export (run by ONNX Runtime or OpenVINO, without torch)
    default: bool = False


def available() -> list[ModelInfo]:
    """The shipped models that are present, with parameter counts and rates."""
    from .backends.onnx import onnx_twin

    infos = []
    for name in SHIPPED:
        try:
            config, count, _ = read_header(resolve(name))
        except ModelError:
            continue
        infos.append(ModelInfo(name, config.arch, count, config.sample_rate, config.n_fft, config.hop,
                               resolve(name), bool(config.params.get("stereo")),
                               onnx_twin(name) is not None, name == DEFAULT_MODEL))
    return infos


def auto_choice(info: ModelInfo) -> str:
    """What ``--runtime auto --precision auto`` runs ``info`` with on this machine, e.g.
    ``"OpenVINO, bfloat16"``."""
    from .backends.onnx import ENGINES, choose_runtime
    from .backends.precision import native_bfloat16

    chosen = choose_runtime("auto", info.name, "cpu", "auto")
    if chosen is not None:
        return f"{ENGINES[chosen.engine]}, {chosen.precision}"
    bf16 = info.arch == "stemunet" and native_bfloat16()  # the architecture with a bfloat16 path
    return f"torch, {'bfloat16' if bf16 else 'float32'}"
