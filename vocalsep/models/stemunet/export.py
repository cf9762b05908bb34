"""A :class:`~.model.StemUNetModel`'s network written as ONNX, for ONNX Runtime and OpenVINO
(:class:`vocalsep.backends.onnx.OnnxModel`)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from .model import StemUNetModel

def export_onnx(model: StemUNetModel, path: str | Path, source_sha256: str, int8: bool = False) -> Path:
    """Write ``model``'s network to ``path`` as ONNX for :class:`vocalsep.backends.onnx.OnnxModel`:
    ``(batch, 2, frames, net_bins)`` magnitudes of the network's band, frames first (as an
    STFT's frames come) → the sigmoid mask of that band, same shape (any batch; frames a
    multiple of 64), computing in float32. The mask above the band, the segments and the
    mono/stereo handling are the runtime's (:mod:`vocalsep.pipeline.bands`). Configuration, I/O
    version and the sha256 of the ``.pt`` it comes from go in the metadata. Weights that
    float16 holds exactly (all of them for a model shipped with ``--half``) are stored as
    float16, half the file, and cast back to float32 when ONNX Runtime loads it; with ``int8``
    (for a model saved with ``int8``, whose weights are already so) the convolutions' weights
    are stored as 8-bit integers and a scale (:func:`~vocalsep.models.quantize.quantize`), a
    quarter, and multiplied back when it loads. Needs the ``onnx`` package (only here, not to
    run it)."""
    import json
    import os
    import warnings

    import onnx

    from ...backends.onnx import CONFIG_KEY, INPUT, IO_KEY, IO_VERSION, OUTPUT, SOURCE_KEY

    model = copy.deepcopy(model).float().eval()
    example = torch.rand(model.segments_per_batch, 2, model.segment, model.net_bins)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
        # the network itself, transposed convolutions included: ONNX Runtime runs them a little
        # faster than InferenceStemUNet's phase convolutions (0.155 against 0.17 s per segment
        # in a one-off timing here), which are the faster ones in torch
        torch.onnx.export(model.net, (example,), str(tmp), input_names=[INPUT],
                          output_names=[OUTPUT], opset_version=17, dynamo=False,
                          dynamic_axes={INPUT: {0: "batch", 2: "frames"},
                                        OUTPUT: {0: "batch", 2: "frames"}})
    graph = onnx.load(str(tmp))
    if int8:
        _store_int8(graph)
    _store_half(graph)
    for key, value in ((CONFIG_KEY, json.dumps(model.config.to_dict())), (IO_KEY, IO_VERSION),
                       (SOURCE_KEY, source_sha256)):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    os.replace(tmp, path)
    return path


def _store_half(graph) -> None:
    """Store each float32 weight of an ONNX ``graph`` that float16 represents exactly as float16,
    followed by a Cast back to float32 under its old name (folded away when a session loads)."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in graph.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init)
        half = weights.astype(np.float16)
        if weights.size < 16 or not np.array_equal(half.astype(np.float32), weights):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}.half"))
        casts.append(helper.make_node("Cast", [f"{name}.half"], [name], to=TensorProto.FLOAT))
    for node in reversed(casts):
        graph.graph.node.insert(0, node)


def _store_int8(graph) -> None:
    """Store each float32 weight of 2 or more axes as int8 and float32 scales, on the grid of
    the file it was loaded from (:func:`~vocalsep.models.quantize.requantize`), followed by a
    Cast and a Mul back to float32 under its old name (folded away when a session loads)."""
    from onnx import TensorProto, helper, numpy_helper

    from ..quantize import requantize

    nodes = []
    for init in list(graph.graph.initializer):  # (the scales appended are not visited)
        weights = numpy_helper.to_array(init)
        if init.data_type != TensorProto.FLOAT or weights.ndim < 2 or weights.size < 16:
            continue
        q, scale = requantize(torch.from_numpy(weights.copy()))
        name = init.name
        init.CopyFrom(numpy_helper.from_array(q.numpy(), f"{name}.int8"))
        graph.graph.initializer.append(numpy_helper.from_array(scale.numpy(), f"{name}.scale"))
        nodes += [helper.make_node("Cast", [f"{name}.int8"], [f"{name}.float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{name}.float", f"{name}.scale"], [name])]
    for node in reversed(nodes):
        graph.graph.node.insert(0, node)
