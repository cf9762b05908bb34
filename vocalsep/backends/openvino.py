"""An ONNX export run by OpenVINO (the ``[openvino]`` extra): the same file and the same masks
as ONNX Runtime's, computed in float32, or in bfloat16 where the CPU does so natively.

:class:`OpenVinoEngine` only runs the network; :class:`~vocalsep.backends.onnx.OnnxModel` does
the rest (segments, mono or stereo, the band) whichever engine it has.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..config import EngineError

#: ``OnnxModel``'s precision names → OpenVINO's inference precision hints
HINTS = {"float32": "f32", "bfloat16": "bf16"}


def last_line(err: BaseException) -> str:
    """OpenVINO's messages start with where in its sources they were raised and end with why."""
    return ([line for line in str(err).splitlines() if line.strip()] or [type(err).__name__])[-1][:200]


class OpenVinoEngine:
    """The network of the ONNX file at ``path`` compiled by OpenVINO for the CPU, computing in
    ``precision`` (``"float32"`` or ``"bfloat16"``), ``threads`` CPU threads per call. A
    caller that gave fewer threads than this process has cores may call :meth:`run` from that
    many threads at once (``vocalsep serve --workers``): it gets one stream each, not a queue.
    The ONNX file is read by OpenVINO's ONNX frontend alone (a damaged file: ``ValueError``),
    threads are not pinned to cores (other processes may run OpenVINO beside this one)."""

    name = "OpenVINO"

    def __init__(self, path: str | os.PathLike, threads: int, precision: str):
        if precision not in HINTS:
            raise EngineError(f"OpenVINO computes in {' or '.join(HINTS)}, not {precision}")
        try:
            import openvino as ov
            from openvino.frontend import FrontEndManager
        except ImportError as err:
            raise EngineError(f"openvino cannot be imported ({err})") from None
        onnx = FrontEndManager().load_by_framework("onnx")  # (not every frontend in turn,
        try:  # which would log each one's parse error of a damaged file)
            graph = onnx.convert(onnx.load(str(path)))
        except Exception as err:
            raise ValueError(last_line(err)) from None
        info = graph.get_rt_info()
        #: the ONNX file's metadata (``metadata_props``), as ONNX Runtime reads it
        self.metadata: dict[str, str] = ({k: v.astype(str) for k, v in info["framework"].items()}
                                         if "framework" in info else {})
        self.precision = precision
        streams = max(1, len(os.sched_getaffinity(0)) // threads)
        try:
            self.compiled = ov.Core().compile_model(graph, "CPU", {
                "INFERENCE_NUM_THREADS": threads * streams, "NUM_STREAMS": streams,
                "INFERENCE_PRECISION_HINT": HINTS[precision], "ENABLE_CPU_PINNING": False})
        except Exception as err:
            raise EngineError(f"OpenVINO could not compile the network ({last_line(err)})") from None
        self._requests = threading.local()

    def run(self, pieces: np.ndarray) -> np.ndarray:
        """The network on ``(n, 2, frames, net_bins)`` float32 magnitudes: their masks."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request.infer({0: np.ascontiguousarray(pieces)})[0].copy()
