"""An ONNX export run by OpenVINO (the ``[openvino]`` extra): the same file and the same masks
as ONNX Runtime's, computed in float32, or in bfloat16 where the CPU does so natively.

:class:`OpenVinoEngine` only runs the network; :class:`~vocalsep.backends.onnx.OnnxModel` does
the rest (segments, mono or stereo, the band) whichever engine it has.
"""
from __future__ import annotations

import os
import threading

import numpy as np

#: ``OnnxModel``'s precision names → OpenVINO's inference precision hints
HINTS = {"float32": "f32", "bfloat16": "bf16"}


class OpenVinoEngine:
    """The network of the ONNX file at ``path`` compiled by OpenVINO for the CPU, on
    ``threads`` threads, computing in ``precision`` (``"float32"`` or ``"bfloat16"``).
    :meth:`run` is safe to call from several threads at once (one infer request each)."""

    name = "OpenVINO"

    def __init__(self, path: str | os.PathLike, threads: int, precision: str):
        import openvino as ov
        from openvino.frontend import FrontEndManager

        onnx = FrontEndManager().load_by_framework("onnx")  # (not every frontend in turn,
        try:  # which would log each one's parse error of a damaged file)
            graph = onnx.convert(onnx.load(str(path)))
        except Exception as err:  # OpenVINO's message ends with the reason
            raise ValueError(([line for line in str(err).splitlines() if line.strip()] or ["?"])[-1]) from None
        core = ov.Core()
        info = graph.get_rt_info()
        #: the ONNX file's metadata (``metadata_props``), as ONNX Runtime reads it
        self.metadata: dict[str, str] = ({k: v.astype(str) for k, v in info["framework"].items()}
                                         if "framework" in info else {})
        self.precision = precision
        self.compiled = core.compile_model(graph, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY"})
        self._requests = threading.local()

    def run(self, pieces: np.ndarray) -> np.ndarray:
        """The network on ``(n, 2, frames, net_bins)`` float32 magnitudes: their masks."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request.infer({0: np.ascontiguousarray(pieces)})[0].copy()
