"""What computes a model's masks: one place picks the implementation.

A :class:`~vocalsep.pipeline.stream.MaskBackend` turns numpy magnitudes into numpy masks, frames
first. :func:`open_backend` picks it: a model with an ONNX export runs it in OpenVINO
(:mod:`.openvino`, where installed) or ONNX Runtime (:mod:`.onnx`), no torch, where it can
(:func:`~.onnx.choose_runtime`), else in torch (:mod:`.torch`) in the precision
:func:`choose_precision` picks. torch is imported only on the torch path.
"""
from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING

from ..config import EngineError, StemUNetParams
from ..pipeline.bands import FRAME_MULTIPLE
from ..pipeline.plan import SeparatorOptions
from .onnx import OnnxModel, choose_runtime, open_onnx
from .precision import choose_precision, native_bfloat16

#: frames of the past a live segment hears at least (docs/live.md: the default scored lower
#: with 8 before a 56-frame segment than with 72, and with no past before a 64-frame one)
MIN_PAST = 16

__all__ = ["choose_precision", "choose_runtime", "native_bfloat16", "open_backend", "open_onnx"]

if TYPE_CHECKING:
    from ..models import SeparationModel
    from ..pipeline.stream import MaskBackend


def open_backend(model: str | os.PathLike | SeparationModel | MaskBackend | None,
                 options: SeparatorOptions, device: str = "cpu", threads: int | None = None) -> MaskBackend:
    """The backend for ``model``: a shipped name, a ``.pt``/``.onnx`` path (None: the default
    model), a loaded torch model, or a backend itself; ``threads`` CPU threads (None: all);
    with ``options.segment``, a segment model cut into segments of that many frames."""
    backend = _open(model, options, device, threads)
    if options.segment is not None:
        target = getattr(backend, "model", backend)  # the torch model, or the ONNX one
        if not hasattr(target, "segment"):
            raise ValueError(f"segment: model {backend.config.arch} is not cut into segments")
        if target is model:  # the caller's own model, which others may use: cut a shallow
            target = copy.copy(model)  # copy (the same weights, the same ONNX session)
            if backend is model:
                backend = target
            else:
                backend.model = target
        cut_segments(target, backend, int(options.segment))
    return backend


def cut_segments(model: SeparationModel | OnnxModel, backend: MaskBackend, segment: int) -> None:
    """Cut ``model`` (the segment model ``backend`` runs) into ``segment``-frame blocks. A
    block shorter than the model's own segment goes through the network with the frames before
    it (the past: no added latency) in a window of whole
    :data:`~vocalsep.pipeline.bands.FRAME_MULTIPLE`-frame multiples holding at least
    :data:`MIN_PAST` of them (at a song's start, the past it has)."""
    window = segment
    if segment < StemUNetParams.of(model.config.params).segment:  # the model's own
        window = -(-(segment + MIN_PAST) // FRAME_MULTIPLE) * FRAME_MULTIPLE
    model.segment = window
    model.stream_block = backend.stream_block = segment
    model.stream_history = backend.stream_history = window - segment


def _open(model: str | os.PathLike | SeparationModel | MaskBackend | None,
          options: SeparatorOptions, device: str, threads: int | None) -> MaskBackend:
    if isinstance(model, OnnxModel):
        return model
    if not isinstance(model, (str, os.PathLike, type(None))):
        if options.runtime in ("onnx", "openvino"):
            raise ValueError(f"runtime {options.runtime}: give the model by name or .onnx path, "
                             "not as a torch model")
        from .torch import TorchBackend

        return TorchBackend(model, device, options.precision)
    onnx = choose_runtime(options.runtime, model, device, options.precision)
    if onnx is not None:
        try:
            return open_onnx(onnx.path, model, threads, onnx.engine, onnx.precision)
        except EngineError:
            if options.runtime != "auto" or onnx.engine == "onnx":
                raise
            return open_onnx(onnx.path, model, threads)  # OpenVINO failed to start: ONNX Runtime
    from ..models import load
    from .torch import TorchBackend, set_threads

    set_threads(threads)
    return TorchBackend(load(model, device), device, options.precision)
