"""A model exported to ONNX and run by ONNX Runtime on numpy arrays: separation without torch.

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

import numpy as np

from ..config import SHIPPED, ModelConfig, ModelError, StemUNetParams, resolve, sha256
from ..pipeline.bands import network_band, segment_batches
from ..pipeline.plan import RUNTIMES

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


def choose_runtime(runtime: str, name_or_path: str | os.PathLike | None, device: str,
                   precision: str) -> Path | None:
    """The ONNX file to run, or None for torch. ``auto`` takes ONNX when the model has one,
    on the CPU, in float32 or auto precision, with ONNX Runtime installed: ONNX Runtime in
    float32 was the faster runtime on both CPU kinds measured, also where torch computes in
    native bfloat16 (docs/bench/runtime-choice.md). ``onnx``, or a model given as an ``.onnx``
    file, insists (``ModelError`` saying why not); ``torch`` never takes it."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime}: one of {', '.join(RUNTIMES)}")
    given_onnx = name_or_path is not None and str(name_or_path).endswith(".onnx")
    if runtime == "torch":
        if given_onnx:
            raise ModelError(f"{name_or_path}: an ONNX model runs with ONNX Runtime, not torch")
        return None
    twin = onnx_twin(name_or_path)
    reasons = [why for why, bad in (
        ("it has no ONNX export", twin is None),
        (f"ONNX runs on the CPU, not {device}", device != "cpu"),
        (f"ONNX computes in float32, not {precision}", precision not in ("auto", "float32")),
        ("onnxruntime is not installed", importlib.util.find_spec("onnxruntime") is None)) if bad]
    if (runtime == "onnx" or given_onnx) and reasons:
        raise ModelError(f"model {name_or_path or 'default'}: cannot run with ONNX Runtime: "
                         + "; ".join(reasons))
    return None if reasons else twin


def open_onnx(path: Path, name_or_path: str | os.PathLike | None,
              threads: int | None = None) -> "OnnxModel":
    """:class:`OnnxModel` of ``path``; for the twin of a shipped model, checked to be the
    export of that model's current ``.pt`` (a stale export would run other weights)."""
    model = OnnxModel(path, threads)
    if path != Path(str(name_or_path)):  # a twin, not a file given by the user
        source = resolve(name_or_path)
        if model.source_sha256 != sha256(source):
            raise ModelError(f"{path}: an export of other weights than {source.name} "
                             "(re-export it: scripts/ship_model.py --export-onnx NAME)")
    return model


class OnnxModel:
    """A segment model (the ``stemunet`` architecture) exported to ONNX: masks for whole songs
    from numpy magnitudes, as :meth:`vocalsep.models.stemunet.StemUNetModel.mask` gives them;
    a :class:`~vocalsep.pipeline.stream.MaskBackend` (:meth:`masks`, frames first)."""

    precision = "float32"
    stream_context = 0  # segments are separated independently
    stream_history = 0  # (a live segment shorter than the network's window: the past before it)

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        #: CPU threads of the network: as given, else one per core this process may use
        self.threads = threads or len(os.sched_getaffinity(0))
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # idle threads sleep rather than spin between runs, leaving the cores to the numpy
        # work around them (FFTs, writing); spinning was slower end to end on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            self.config = ModelConfig(**json.loads(meta[CONFIG_KEY]))
            params = StemUNetParams.of(self.config.params)
            self.segment = self.stream_block = params.segment
            self.net_bins, self.band = network_band(params, self.config.sample_rate, self.config.n_fft)
            self.heard_bins = self.net_bins
        except Exception as err:  # onnxruntime raises its own kinds for a damaged file
            first = (str(err).splitlines() or [type(err).__name__])[0][:100]
            raise ModelError(f"{path}: not a usable vocalsep ONNX model ({first})") from None
        if meta.get(IO_KEY) != IO_VERSION:
            raise ModelError(f"{path}: exported by an older vocalsep (re-export it: "
                             "scripts/ship_model.py --export-onnx NAME)")
        self.path, self.source_sha256 = Path(path), meta.get(SOURCE_KEY)
        self.stereo, self.segments_per_batch = params.stereo, params.segments_per_batch

    def mask(self, mags: np.ndarray) -> np.ndarray:
        """``(songs, bins, frames)`` mono magnitudes → masks of the same shape; for a stereo
        model a ``(2, bins, frames)`` input is the two channels of one song and gets a mask per
        channel (as :meth:`vocalsep.models.stemunet.StemUNetModel.mask`). See :meth:`masks`."""
        return self.masks(mags.swapaxes(-1, -2)).swapaxes(-1, -2)

    def describe(self) -> str:
        """``"stemunet in ONNX Runtime, float32, 2 threads"``."""
        return f"{self.config.arch} in ONNX Runtime, {self.precision}, {self.threads} threads"

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
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(pieces)})[0]
