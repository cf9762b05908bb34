"""The ``stemunet`` architecture: Spleeter's U-Net as a vocalsep model.

``net`` (the network, pruning), ``inference`` (its fast inference copy), ``spleeter`` (Spleeter's
weights, the ratio-mask teacher), ``model`` (:class:`StemUNetModel`), ``export`` (ONNX).
"""
from .export import export_onnx
from .inference import DTYPES, InferenceStemUNet, inference_copy, phase_conv
from .model import StemUNetModel
from .net import RatioUNet, StemUNet, decoder_widths, pruned
from .spleeter import (SPLEETER_CHECKPOINTS, SPLEETER_INSTALL, SPLEETER_PACKAGE, SpleeterRatioTeacher,
                       SpleeterWeightsError, load_spleeter_stem, spleeter_checkpoint_dir)

__all__ = ["DTYPES", "SPLEETER_CHECKPOINTS", "SPLEETER_INSTALL", "SPLEETER_PACKAGE", "InferenceStemUNet", "RatioUNet",
           "SpleeterRatioTeacher", "SpleeterWeightsError", "StemUNet", "StemUNetModel", "decoder_widths",
           "export_onnx", "inference_copy", "load_spleeter_stem", "phase_conv", "pruned", "spleeter_checkpoint_dir"]
