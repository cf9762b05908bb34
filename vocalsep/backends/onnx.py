"""A model exported to ONNX and run by ONNX Runtime (or OpenVINO) on numpy arrays: separation
without torch.

A shipped model may have an ``.onnx`` twin beside its ``.pt`` (``scripts/ship_model.py
--export-onnx NAME``): its network alone, on the magnitudes of the band it sees, frames first
(any number of frames that is a multiple of 64), with the model's configuration, the I/O
version and the sha256 of the ``.pt`` it was exported from in the file's metadata.
:class:`OnnxModel` does the rest in numpy (segments, mono or stereo, the mask above the band;
:mod:`vocalsep.pipeline.bands`, shared with the torch model) and computes the torch model's
masks (float32, equal to about 1e-5) without torch: it is a
:class:`~vocalsep.pipeline.stream.MaskBackend`, so ``vocalsep separate`` never imports torch.

:func:`choose_runtime` picks the runtime a :class:`~vocalsep.separate.Separator` uses.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from ..config import SHIPPED, EngineError, ModelConfig, ModelError, StemUNetParams, resolve, sha256
from ..pipeline.bands import network_band, segment_batches
from ..pipeline.plan import RUNTIMES
from .precision import native_bfloat16

#: metadata keys of an exported model
CONFIG_KEY, SOURCE_KEY, IO_KEY = "vocalsep_config", "vocalsep_source_sha256", "vocalsep_io"
#: what the exported graph takes and gives (files without it are older exports: re-export)
IO_VERSION = "2: (batch, 2, frames, net_bins) magnitudes -> mask of that band"
#: the exported graph's input and output names
INPUT, OUTPUT = "magnitude", "mask"


def onnx_twin(name_or_path: str | os.PathLike | None) -> Path | None:
    """The ``.onnx`` file to run for a model: a given ``.onnx`` path, or the twin beside a
    shipped model's ``.pt``; None for other ``.pt`` files (a twin is never guessed for them)."""
    if name_or_path is not None and str(name_or_path).endswith(".onnx"):
        return resolve(name_or_path)
    if name_or_path is not None and str(name_or_path) not in SHIPPED:
        return None
    twin = resolve(name_or_path).with_suffix(".onnx")
    return twin if twin.is_file() else None


class RuntimeChoice(NamedTuple):
    """An ONNX export and what runs it: the engine (a key of :data:`ENGINES`) and its precision."""

    path: Path
    engine: str  # "onnx" or "openvino"
    precision: str  # "float32" or "bfloat16"


def choose_runtime(runtime: str, name_or_path: str | os.PathLike | None, device: str,
                   precision: str) -> RuntimeChoice | None:
    """The ONNX file to run a model with, the engine and its precision, or None for torch.
    ``auto`` takes the model's ONNX export when it has one, on the CPU: in OpenVINO's bfloat16 where OpenVINO is installed and
    the CPU computes bfloat16 natively (there it ran the network 1.8-1.9 times as fast), else
    in ONNX Runtime, float32 (OpenVINO's float32 gained little where measured); see
    docs/bench/runtime-choice.md. ``onnx`` or ``openvino`` (in bfloat16 where native, else
    float32, unless ``precision`` says), or a model given as an ``.onnx`` file, insists
    (``ModelError`` saying why not); ``torch`` never takes an export."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime}: one of {', '.join(RUNTIMES)}")
    given_onnx = name_or_path is not None and str(name_or_path).endswith(".onnx")
    if runtime == "torch":
        if given_onnx:
            raise ModelError(f"{name_or_path}: an ONNX model runs with ONNX Runtime or OpenVINO, not torch")
        return None
    twin = onnx_twin(name_or_path)
    native = native_bfloat16()
    failed = {}
    for engine in ("openvino", "onnx") if runtime == "auto" else (runtime,):
        chosen = ("bfloat16" if engine == "openvino" and precision == "auto" and native else
                  "float32" if precision == "auto" else precision)
        reasons = [why for why, bad in (
            ("it has no ONNX export", twin is None),
            (f"{ENGINES[engine]} runs on the CPU, not {device}", device != "cpu"),
            (f"ONNX Runtime computes in float32, not {precision}", engine == "onnx" and chosen != "float32"),
            ("this CPU has no native bfloat16", engine == "openvino" and chosen == "bfloat16" and not native),
            ("auto takes it for native bfloat16 only",
             engine == "openvino" and runtime == "auto" and chosen == "float32"),
            (f"{ENGINE_PACKAGES[engine]} is not installed ({INSTALL[engine]})",
             not installed(ENGINE_PACKAGES[engine]))) if bad]
        if not reasons:
            return RuntimeChoice(twin, engine, chosen)
        failed[engine] = reasons
    if runtime != "auto" or given_onnx:
        raise ModelError(f"model {name_or_path or 'default'}: cannot run with "
                         + " or ".join(f"{ENGINES[e]} ({'; '.join(r)})" for e, r in failed.items()))
    return None


def open_onnx(path: Path, name_or_path: str | os.PathLike | None, threads: int | None = None,
              runtime: str = "onnx", precision: str = "float32") -> "OnnxModel":
    """:class:`OnnxModel` of ``path`` in ``runtime`` and ``precision`` (as
    :func:`choose_runtime` gives them); for the twin of a shipped model, checked to be the
    export of that model's current ``.pt`` (a stale export would run other weights)."""
    model = OnnxModel(path, threads, runtime, precision)
    if path != Path(str(name_or_path)):  # a twin, not a file given by the user
        source = resolve(name_or_path)
        if model.source_sha256 != sha256(source):
            raise ModelError(f"{path}: an export of other weights than {source.name} "
                             "(re-export it: scripts/ship_model.py --export-onnx NAME)")
    return model


class Engine(Protocol):
    """What runs an exported network for :class:`OnnxModel`: :class:`OnnxRuntimeEngine` or
    :class:`~vocalsep.backends.openvino.OpenVinoEngine`."""

    name: str  # e.g. "ONNX Runtime"
    precision: str  # "float32" or "bfloat16"
    metadata: dict[str, str]  # the ONNX file's metadata_props

    def run(self, pieces: np.ndarray) -> np.ndarray:
        """``(n, 2, frames, net_bins)`` float32 magnitudes → their masks, same shape."""


class OnnxRuntimeEngine:
    """The network of the ONNX file at ``path`` in an ONNX Runtime session on ``threads`` CPU
    threads, computing in float32 (the only ``precision`` it takes)."""

    name, precision = "ONNX Runtime", "float32"

    def __init__(self, path: str | os.PathLike, threads: int, precision: str = "float32"):
        if precision != "float32":
            raise EngineError(f"ONNX Runtime computes in float32, not {precision}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise EngineError(f"onnxruntime cannot be imported ({err})") from None

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle threads sleep rather than spin between runs, leaving the cores to the numpy
        # work around them (FFTs, writing); spinning was slower end to end on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        #: the ONNX file's metadata (``metadata_props``)
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map

    def run(self, pieces: np.ndarray) -> np.ndarray:
        """The network on ``(n, 2, frames, net_bins)`` float32 magnitudes: their masks."""
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(pieces)})[0]


#: the engines that run an ONNX export, by runtime name (``SeparatorOptions.runtime``)
ENGINES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
#: the package each engine needs, and how to install it
ENGINE_PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}
INSTALL = {"onnx": "pip install onnxruntime", "openvino": "pip install 'vocalsep[openvino]'"}


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (without importing it)."""
    return importlib.util.find_spec(package) is not None


def open_engine(runtime: str, path: str | os.PathLike, threads: int, precision: str) -> Engine:
    """The engine ``runtime`` (a key of :data:`ENGINES`) for the ONNX file at ``path``;
    :class:`EngineError` if the engine itself fails, another exception if the file does."""
    if runtime == "openvino":
        from .openvino import OpenVinoEngine

        return OpenVinoEngine(path, threads, precision)
    if runtime != "onnx":
        raise ValueError(f"runtime {runtime}: one of {', '.join(ENGINES)}")
    return OnnxRuntimeEngine(path, threads, precision)


class OnnxModel:
    """A segment model (the ``stemunet`` architecture) exported to ONNX: masks for whole songs
    from numpy magnitudes, as :meth:`vocalsep.models.stemunet.StemUNetModel.mask` gives them;
    a :class:`~vocalsep.pipeline.stream.MaskBackend` (:meth:`masks`, frames first). The network
    runs in ``runtime``: ``"onnx"`` (ONNX Runtime, float32) or ``"openvino"`` (OpenVINO, in
    ``precision``: float32, or bfloat16 where the CPU has it natively)."""

    stream_context = 0  # segments are separated independently
    stream_history = 0  # (a live segment shorter than the network's window: the past before it)

    def __init__(self, path: str | os.PathLike, threads: int | None = None, runtime: str = "onnx",
                 precision: str = "float32"):
        #: CPU threads of the network: as given, else one per core this process may use
        self.threads = threads or len(os.sched_getaffinity(0))
        try:
            self.engine = open_engine(runtime, path, self.threads, precision)
            meta = self.engine.metadata
            self.config = ModelConfig(**json.loads(meta[CONFIG_KEY]))
            params = StemUNetParams.of(self.config.params)
            self.segment = self.stream_block = params.segment
            self.net_bins, self.band = network_band(params, self.config.sample_rate, self.config.n_fft)
            self.heard_bins = self.net_bins
        except EngineError:  # the engine, not the file
            raise
        except Exception as err:  # each engine raises its own kinds for a damaged file
            first = (str(err).splitlines() or [type(err).__name__])[0][:100]
            raise ModelError(f"{path}: not a usable vocalsep ONNX model ({first})") from None
        if meta.get(IO_KEY) != IO_VERSION:
            raise ModelError(f"{path}: exported by an older vocalsep (re-export it: "
                             "scripts/ship_model.py --export-onnx NAME)")
        self.path, self.source_sha256 = Path(path), meta.get(SOURCE_KEY)
        self.stereo, self.segments_per_batch = params.stereo, params.segments_per_batch
        self.precision = self.engine.precision

    def mask(self, mags: np.ndarray) -> np.ndarray:
        """``(songs, bins, frames)`` mono magnitudes → masks of the same shape; for a stereo
        model a ``(2, bins, frames)`` input is the two channels of one song and gets a mask per
        channel (as :meth:`vocalsep.models.stemunet.StemUNetModel.mask`). See :meth:`masks`."""
        return self.masks(mags.swapaxes(-1, -2)).swapaxes(-1, -2)

    def describe(self) -> str:
        """``"stemunet in ONNX Runtime, float32, 2 threads"``."""
        return f"{self.config.arch} in {self.engine.name}, {self.precision}, {self.threads} threads"

    def masks(self, mags: np.ndarray) -> np.ndarray:
        """:meth:`mask` with frames first: ``(songs or 2, frames, bins)`` → the same shape,
        the layout the network and the streaming STFT work in (no transposes). A mono song is
        given on both network channels and their masks are averaged. Above the network's band,
        each frame's mean mask over ``extension_hz``."""
        pair = self.stereo and mags.shape[0] == 2
        low = np.asarray(mags[..., : self.net_bins], dtype=np.float32)
        x = low[None] if pair else np.repeat(low[:, None], 2, axis=1)  # (songs, 2, frames, net_bins)
        out = np.empty_like(x)
        for group in segment_batches(x.shape[0], x.shape[2], self.segment, self.segments_per_batch):
            pieces = np.stack([np.pad(x[song, :, start:stop], ((0, 0), (0, padded - (stop - start)), (0, 0)))
                               for song, start, stop, padded in group])
            for (song, start, stop, _), mask in zip(group, self._run(pieces)):
                out[song, :, start:stop] = mask[:, : stop - start]
        masks = out[0] if pair else out.mean(axis=1)
        high = masks[..., self.band].mean(axis=-1, keepdims=True)
        extra = self.config.bins - self.net_bins
        return np.concatenate([masks, np.broadcast_to(high, (*high.shape[:-1], extra))], axis=-1)

    def _run(self, pieces: np.ndarray) -> np.ndarray:
        """The network on ``(n, 2, frames, net_bins)`` magnitudes: their masks."""
        return self.engine.run(pieces)
