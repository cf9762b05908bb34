"""Objective evaluation: BSS Eval v3 (the MIR-1K protocol) and v4 (SiSEC 2018 / MUSDB18).

Two protocols, both on sources ``[vocals, accompaniment]`` and both in dB:

``"v3"``
    ``mir_eval.separation.bss_eval_sources`` on whole clips, mono (channels averaged) at the
    clip's rate. Per clip SDR, SIR, SAR and NSDR = SDR(estimate) − SDR(mixture as estimate).
    Summary per method: GNSDR, GSIR, GSAR (means weighted by clip length in samples) and the
    plain mean and median of SDR.
``"v4"``
    ``museval.evaluate`` (BSS Eval v4: time-invariant distortion filters, stereo, native rate),
    SDR/SIR/ISR/SAR per 1-s frame, median over frames per track; summary = median over tracks.

Methods are functions ``fn(mixture, rate) -> {"vocals", "accompaniment"}`` on float32
``(channels, n)`` arrays (e.g. ``Separator(model).separate``). With ``baselines`` three
references run beside them on the same tracks: ``"mixture"`` (the mixture as both estimates)
and the oracles ``"ideal binary mask"`` / ``"ideal ratio mask"`` (mask from the true stems,
applied to the complex mixture STFT, iSTFT; accompaniment = mixture − vocals).

A track whose reference is silent, or a method whose estimate is silent or not finite (BSS
Eval is undefined there), gets rows with ``skipped`` set to the reason; such rows are left out
of the summary and counted in it.

Example::

    from vocalsep.data import load_mir1k
    from vocalsep.separate import Separator
    report = evaluate(load_mir1k("mir1k/test"), {"model": Separator("default").separate}, "v3")
    print(report.to_markdown())
    report.write_csv("scores.csv")
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from .data import Track
from .masks import ideal_binary_mask, ideal_ratio_mask
from .spectral import istft, stft

Protocol = Literal["v3", "v4"]
SeparationFn = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]
#: ``progress(done, total, track_name)``, called after each track
Progress = Callable[[int, int, str], None]

SOURCES = ("vocals", "accompaniment")
MIXTURE = "mixture"
IBM = "ideal binary mask"
IRM = "ideal ratio mask"
BASELINES = (MIXTURE, IBM, IRM)
#: per-track metrics of each protocol (each prefixed by the source: ``vocals_SDR`` ...)
METRICS: dict[str, tuple[str, ...]] = {"v3": ("SDR", "SIR", "SAR", "NSDR"),
                                       "v4": ("SDR", "SIR", "ISR", "SAR")}
#: oracle STFT (n_fft, hop) of each protocol, at the track's own rate
ORACLE_STFT: dict[str, tuple[int, int]] = {"v3": (2048, 512), "v4": (4096, 1024)}


@dataclass
class TrackResult:
    """One track × one method. ``metrics`` maps ``"<source>_<metric>"`` to dB; it is empty
    when ``skipped`` (the reason) is set. ``length`` is in samples at ``rate``; ``seconds`` is
    the time the method took to separate the track."""

    track: str
    method: str
    length: int
    rate: int
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0


@dataclass
class EvalReport:
    """Per-track rows of one protocol, and their summary per method."""

    protocol: str
    methods: list[str]
    rows: list[TrackResult]

    @property
    def metric_names(self) -> list[str]:
        """Per-track metric columns, e.g. ``vocals_SDR`` ... ``accompaniment_NSDR``."""
        return [f"{s}_{m}" for s in SOURCES for m in METRICS[self.protocol]]

    def skipped(self) -> list[TrackResult]:
        """Rows left out of the summary, each with its reason."""
        return [r for r in self.rows if r.skipped]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per method: ``tracks`` and ``skipped`` counts, then the aggregates.

        v3: ``<source>_GNSDR``/``_GSIR``/``_GSAR`` (means weighted by length in samples),
        ``<source>_SDR_mean``, ``<source>_SDR_median``. v4: ``<source>_<SDR|SIR|ISR|SAR>``,
        medians over tracks of the per-track medians. NaN where no track was scored.
        """
        out: dict[str, dict[str, float]] = {}
        for method in self.methods:
            rows = [r for r in self.rows if r.method == method]
            done = [r for r in rows if not r.skipped]
            s: dict[str, float] = {"tracks": float(len(done)), "skipped": float(len(rows) - len(done))}
            for src in SOURCES:
                col = lambda m: np.array([r.metrics[f"{src}_{m}"] for r in done], dtype=np.float64)
                if self.protocol == "v3":
                    w = np.array([r.length for r in done], dtype=np.float64)
                    for g, m in (("GNSDR", "NSDR"), ("GSIR", "SIR"), ("GSAR", "SAR")):
                        s[f"{src}_{g}"] = weighted_mean(col(m), w)
                    sdr = col("SDR")
                    s[f"{src}_SDR_mean"] = float(sdr.mean()) if done else math.nan
                    s[f"{src}_SDR_median"] = float(np.median(sdr)) if done else math.nan
                else:
                    for m in METRICS["v4"]:
                        s[f"{src}_{m}"] = float(np.median(col(m))) if done else math.nan
            out[method] = s
        return out

    def to_markdown(self) -> str:
        """The summary as a Markdown table (v3: vocal GNSDR/GSIR/GSAR, accompaniment GNSDR;
        v4: vocal SDR/SIR/SAR, accompaniment SDR), plus a line per skipped row."""
        summary = self.summary()
        if self.protocol == "v3":
            title = ("BSS Eval v3 (mir_eval, whole clips, mono): means weighted by clip length, dB")
            cols = [("vocals GNSDR", "vocals_GNSDR"), ("vocals GSIR", "vocals_GSIR"),
                    ("vocals GSAR", "vocals_GSAR"), ("accompaniment GNSDR", "accompaniment_GNSDR")]
            unit = "clips"
        else:
            title = ("BSS Eval v4 (museval, 1-s frames): median over frames, then over tracks, dB")
            cols = [("vocals SDR", "vocals_SDR"), ("vocals SIR", "vocals_SIR"),
                    ("vocals SAR", "vocals_SAR"), ("accompaniment SDR", "accompaniment_SDR")]
            unit = "tracks"
        lines = [title, "", "| method | " + unit + " | " + " | ".join(c for c, _ in cols) + " |",
                 "|---|---:|" + "---:|" * len(cols)]
        for method, s in summary.items():
            cells = [f"{s[k]:.2f}" if abs(s[k]) < 100 else "—" for _, k in cols]  # ~inf: no artefacts
            lines.append(f"| {method} | {int(s['tracks'])} | " + " | ".join(cells) + " |")
        skipped = self.skipped()
        if skipped:
            lines.append("")
            lines.append(f"Skipped ({len(skipped)} rows, not in the table):")
            lines += [f"- {r.method} on {r.track}: {r.skipped}" for r in skipped[:20]]
            if len(skipped) > 20:
                lines.append(f"- ... and {len(skipped) - 20} more (see the CSV)")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """Per-track rows as CSV text (one row per track and method)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        names = self.metric_names
        w.writerow(["track", "method", "length", "rate", "seconds", *names, "skipped"])
        for r in self.rows:
            vals = [f"{r.metrics[n]:.4f}" if n in r.metrics else "" for n in names]
            w.writerow([r.track, r.method, r.length, r.rate, f"{r.seconds:.3f}", *vals, r.skipped or ""])
        return buf.getvalue()

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-track rows to ``path`` atomically; return the path."""
        return _write_atomic(path, self.to_csv())

    def write_markdown(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_markdown` to ``path`` atomically; return the path."""
        return _write_atomic(path, self.to_markdown())


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """``sum(w·x) / sum(w)``; NaN for no values."""
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    if values.size == 0 or weights.sum() <= 0:
        return math.nan
    return float(np.sum(values * weights) / np.sum(weights))


def oracle(track: Track, mask: Literal["ibm", "irm"] = "irm", n_fft: int = 2048,
           hop: int = 512) -> dict[str, np.ndarray]:
    """Oracle separation of ``track`` (each channel on its own): the ideal binary or ratio mask
    of the true stems' STFT magnitudes, applied to the complex mixture STFT and inverted;
    accompaniment = mixture − vocals. The ratio mask is the power-spectrum (Wiener-like) one,
    ``|V|²/(|V|²+|A|²)``, as in the project's reference table. Returns float32 ``(channels, n)``."""
    if mask not in ("ibm", "irm"):
        raise ValueError(f"mask must be 'ibm' or 'irm', not {mask!r}")
    mixture = track.mixture
    n = mixture.shape[1]
    pad = ((0, 0), (0, max(0, n_fft - n)))  # at least one full window
    v = torch.from_numpy(np.pad(track.vocals, pad).astype(np.float32))
    a = torch.from_numpy(np.pad(track.accompaniment, pad).astype(np.float32))
    V, A = stft(v, n_fft, hop).abs(), stft(a, n_fft, hop).abs()
    m = ideal_binary_mask(V, A) if mask == "ibm" else ideal_ratio_mask(V, A, power=2.0)
    vocals = istft(m * stft(v + a, n_fft, hop), v.shape[-1], n_fft, hop).numpy()[:, :n]
    return {"vocals": vocals.astype(np.float32), "accompaniment": (mixture - vocals).astype(np.float32)}


def evaluate(tracks: Sequence[Track], methods: Mapping[str, SeparationFn] | None = None,
             protocol: Protocol = "v3", baselines: bool = True,
             progress: Progress | None = None) -> EvalReport:
    """Score every method (and, with ``baselines``, the mixture and the IBM/IRM oracles) on
    every track with BSS Eval ``protocol`` (``"v3"`` or ``"v4"``, see the module docstring).

    Each method gets the track's mixture, float32 ``(channels, n)``, and its rate, and must
    return ``"vocals"`` (and ``"accompaniment"``; mixture − vocals if absent) of that shape.
    """
    if protocol not in METRICS:
        raise ValueError(f"protocol must be 'v3' or 'v4', not {protocol!r}")
    methods = dict(methods or {})
    if baselines and set(methods) & set(BASELINES):
        raise ValueError(f"method names {sorted(set(methods) & set(BASELINES))} clash with the baselines")
    names = list(methods) + (list(BASELINES) if baselines else [])
    if not names:
        raise ValueError("nothing to evaluate: no methods and baselines=False")
    rows: list[TrackResult] = []
    for i, track in enumerate(tracks):
        rows += _evaluate_track(track, methods, names, protocol)
        if progress is not None:
            progress(i + 1, len(tracks), track.name)
    return EvalReport(protocol, names, rows)


# --- one track ---------------------------------------------------------------------------

def _evaluate_track(track: Track, methods: dict[str, SeparationFn], names: list[str],
                    protocol: str) -> list[TrackResult]:
    mixture = track.mixture
    n = mixture.shape[1]
    row = lambda name, **kw: TrackResult(track.name, name, n, track.rate, **kw)
    refs = np.stack([track.vocals, track.accompaniment]).astype(np.float64)  # (2, ch, n)
    reason = _silent(refs, "reference")
    if reason is None and protocol == "v4" and n < track.rate:
        reason = "shorter than one 1-s frame"
    if reason is not None:
        return [row(name, skipped=reason) for name in names]

    scorer = _V3(refs) if protocol == "v3" else _V4(refs, track.rate)
    n_fft, hop = ORACLE_STFT[protocol]
    rows = []
    for name in names:
        t0 = time.perf_counter()
        if name in methods:
            est = _stems(methods[name](mixture.copy(), track.rate), mixture, name, track.name)
        elif name == MIXTURE:
            est = np.stack([mixture, mixture]).astype(np.float64)
        else:
            out = oracle(track, "ibm" if name == IBM else "irm", n_fft, hop)
            est = np.stack([out["vocals"], out["accompaniment"]]).astype(np.float64)
        seconds = time.perf_counter() - t0
        reason = _silent(est, "estimate")
        if reason is None and not np.isfinite(est).all():
            reason = "estimate has NaN or infinite samples"
        if reason is None:
            metrics, reason = scorer.score(est, is_mixture=name == MIXTURE)
        rows.append(row(name, metrics={} if reason else metrics, skipped=reason, seconds=seconds))
    return rows


def _stems(out: Mapping[str, np.ndarray], mixture: np.ndarray, method: str, track: str) -> np.ndarray:
    """A method's output as float64 ``(2, channels, n)``, checked against the mixture's shape."""
    if "vocals" not in out:
        raise ValueError(f"{method} on {track}: the output has no 'vocals'")
    v = np.asarray(out["vocals"], dtype=np.float64)
    a = np.asarray(out["accompaniment"], dtype=np.float64) if "accompaniment" in out else mixture - v
    for stem, x in (("vocals", v), ("accompaniment", a)):
        if x.shape != mixture.shape:
            raise ValueError(f"{method} on {track}: {stem} has shape {x.shape}, "
                             f"the mixture {mixture.shape}")
    return np.stack([v, a])


def _silent(x: np.ndarray, what: str) -> str | None:
    """Reason string if any source of ``(2, ch, n)`` is all zeros (BSS Eval undefined)."""
    for src, s in zip(SOURCES, x):
        if not np.any(s):
            return f"silent {what}: {src}"
    return None


class _V3:
    """mir_eval ``bss_eval_sources`` on channel-averaged signals; NSDR against the mixture."""

    def __init__(self, refs: np.ndarray):
        self.refs = refs.mean(axis=1)  # (2, n)
        mix = self.refs.sum(axis=0)
        self.mixture, self.mixture_reason = self._bss(np.stack([mix, mix]))

    def _bss(self, est: np.ndarray) -> tuple[dict[str, float], str | None]:
        import mir_eval.separation

        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", FutureWarning)  # deprecated in mir_eval 0.8
                sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(
                    self.refs, est, compute_permutation=False)
        except (ValueError, np.linalg.LinAlgError) as err:
            return {}, f"BSS Eval failed: {err}"
        out = {f"{s}_{m}": float(v[i]) for i, s in enumerate(SOURCES)
               for m, v in (("SDR", sdr), ("SIR", sir), ("SAR", sar))}
        if any(math.isnan(v) for v in out.values()):
            return {}, "BSS Eval gave NaN"
        return out, None

    def score(self, est: np.ndarray, is_mixture: bool = False) -> tuple[dict[str, float], str | None]:
        if self.mixture_reason:
            return {}, f"mixture: {self.mixture_reason}"
        m, reason = (dict(self.mixture), None) if is_mixture else self._bss(est.mean(axis=1))
        if reason:
            return {}, reason
        for s in SOURCES:
            m[f"{s}_NSDR"] = m[f"{s}_SDR"] - self.mixture[f"{s}_SDR"]
        return m, None


class _V4:
    """museval BSS Eval v4, 1-s frames at the track's rate, median over non-silent frames."""

    def __init__(self, refs: np.ndarray, rate: int):
        self.refs = refs.transpose(0, 2, 1)  # (2, n, ch)
        self.rate = rate

    def score(self, est: np.ndarray, is_mixture: bool = False) -> tuple[dict[str, float], str | None]:
        import museval

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            sdr, isr, sir, sar = museval.evaluate(self.refs, est.transpose(0, 2, 1),
                                                  win=self.rate, hop=self.rate)
        # museval marks a frame NaN where any reference or estimate is silent in it
        if np.isnan(sdr).all():
            return {}, "no 1-s frame where every reference and estimate is non-silent"
        out = {f"{s}_{m}": float(np.nanmedian(v[i])) for i, s in enumerate(SOURCES)
               for m, v in (("SDR", sdr), ("SIR", sir), ("ISR", isr), ("SAR", sar))}
        return out, None


def _write_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
