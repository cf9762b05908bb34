"""The number format a torch model computes in (torch-free: read from the CPU's flags)."""
from __future__ import annotations

from ..pipeline.plan import PRECISIONS


def native_bfloat16() -> bool:
    """True if this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where bfloat16
    convolutions are faster than float32 ones rather than emulated and slower. Read from
    ``/proc/cpuinfo`` (without importing torch); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def choose_precision(precision: str, precisions: tuple[str, ...], device: str = "cpu") -> str:
    """``precision`` itself, or for ``"auto"`` bfloat16 if the model offers it (``precisions``)
    and the CPU computes it natively (:func:`native_bfloat16`), else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision}: one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device == "cpu" and "bfloat16" in precisions and native_bfloat16():
        return "bfloat16"
    return "float32"
