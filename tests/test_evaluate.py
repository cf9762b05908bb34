"""vocalsep.evaluate on real audio: BSS Eval v3 (MIR-1K) and v4 (MUSDB18-7).

Needs the shared data (../shared/data/mir1k, ../shared/data/musdb18-7); skipped without it.
"""
from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
import torch

from vocalsep.data import Track, load_mir1k
from vocalsep.evaluate import (IBM, IRM, MIXTURE, EvalReport, TrackResult, evaluate, oracle,
                               weighted_mean)

torch.set_num_threads(1)

from conftest import IN_CI, MIR1K, MUSDB

MIR1K_TEST = MIR1K / "test"
CLIPS = ["ariel_4_03", "bobon_5_09", "Ani_5_06"]  # the shortest clip of three test singers

needs_musdb = pytest.mark.skipif(not (MUSDB / "train").is_dir() and not IN_CI, reason=f"{MUSDB} not found")


_OPENBLAS_SYMBOLS = [("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", "")]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """OpenBLAS threads spinning on cores busy with training slow BSS Eval's solves several
    times over (numpy is imported before this file, so OPENBLAS_NUM_THREADS is too late):
    set every loaded OpenBLAS to one thread for this module, then restore it."""
    restore = []
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:  # not Linux: leave the threads alone
        libs = set()
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _OPENBLAS_SYMBOLS:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                restore.append((set_, get()))
                set_(1)
                break
    yield
    for set_, n in restore:
        set_(n)


def db(x: float) -> float:
    return 10 * math.log10(x)


def energy(x: np.ndarray) -> float:
    return float(np.sum(np.asarray(x, np.float64) ** 2))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Track]:
    """Three real MIR-1K test clips, read with the project's loader."""
    if not MIR1K_TEST.is_dir():
        (pytest.fail if IN_CI else pytest.skip)(f"{MIR1K_TEST} not found")
    folder = tmp_path_factory.mktemp("mir1k")
    for name in CLIPS:
        (folder / f"{name}.flac").symlink_to(MIR1K_TEST / f"{name}.flac")
    tracks = load_mir1k(folder)
    return sorted(tracks, key=lambda t: CLIPS.index(t.name))


@pytest.fixture(scope="module")
def v3_baselines(clips) -> EvalReport:
    return evaluate(clips, {}, "v3", baselines=True)


# --- (a) a case computed by hand ----------------------------------------------------------

def constructed_case(clip: Track, stereo: bool = False):
    """Real vocals and accompaniment placed in time so that every error term is known exactly.

    Layout (samples): vocals in [0, 24000), accompaniment in [25024, 49024), silence after.
    BSS Eval v3 projects on the references delayed by 0..511 samples, so a signal whose support
    starts >= 512 samples after another's ends is orthogonal to all its delays. Hence for
    ``vocals_est = v + gi·a + gn·z`` (z: noise in the silent tail) the target is exactly v, the
    interference exactly gi·a and the artifacts exactly gn·z.
    """
    seg = slice(8000, 32000)
    v_part, a_part = clip.vocals[0, seg], clip.accompaniment[0, seg]
    n = 24000 + 1024 + 24000 + 1024 + 8000
    v = np.zeros(n, np.float64)
    a = np.zeros(n, np.float64)
    v[:24000] = v_part
    a[25024:49024] = a_part
    rng = np.random.default_rng(0)
    z1, z2 = np.zeros(n), np.zeros(n)
    z1[50048 + 512:] = rng.standard_normal(n - 50048 - 512)
    z2[50048 + 512:] = rng.standard_normal(n - 50048 - 512)
    ev, ea = energy(v), energy(a)
    gi = math.sqrt(ev / 10 / ea)             # interference 10 dB below the vocals
    gn = math.sqrt(ev / 10 / energy(z1))     # artifacts 10 dB below the vocals
    ga = math.sqrt(0.25 * ea / 10 ** 1.5 / energy(z2))  # 0.5·a with artifacts 15 dB below it
    est_v = v + gi * a + gn * z1
    est_a = 0.5 * a + ga * z2
    expected = {
        "vocals_SDR": db(ev / (gi ** 2 * ea + gn ** 2 * energy(z1))),  # 10·log10(5)
        "vocals_SIR": 10.0,
        "vocals_SAR": db((ev + gi ** 2 * ea) / (gn ** 2 * energy(z1))),  # 10·log10(11)
        "accompaniment_SDR": 15.0,
        "accompaniment_SAR": 15.0,
        # mixture v + a: interference only, SDR = SIR = energy ratio
        "vocals_NSDR": db(ev / (gi ** 2 * ea + gn ** 2 * energy(z1))) - db(ev / ea),
        "accompaniment_NSDR": 15.0 - db(ea / ev),
    }
    as_ch = (lambda x: np.stack([x, x])) if stereo else (lambda x: x[None])
    track = Track("constructed", as_ch(v).astype(np.float32), as_ch(a).astype(np.float32), 16000)
    stems = {"vocals": as_ch(est_v).astype(np.float32), "accompaniment": as_ch(est_a).astype(np.float32)}
    return track, stems, expected


def test_hand_computed_sdr_sir_sar(clips):
    track, stems, expected = constructed_case(clips[0])
    report = evaluate([track], {"fixed": lambda mix, rate: stems}, "v3", baselines=True)
    m = next(r for r in report.rows if r.method == "fixed").metrics
    assert abs(expected["vocals_SDR"] - db(5)) < 1e-3 and abs(expected["vocals_SAR"] - db(11)) < 1e-3
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=0.01), key  # observed: ~1e-8 dB
    assert m["accompaniment_SIR"] > 60  # no interference at all
    mix = next(r for r in report.rows if r.method == MIXTURE).metrics
    assert mix["vocals_SDR"] == pytest.approx(db(energy(track.vocals) / energy(track.accompaniment)), abs=0.1)


def test_stereo_is_channel_averaged(clips):
    mono, stems, _ = constructed_case(clips[0])
    stereo, stereo_stems, _ = constructed_case(clips[0], stereo=True)
    a = evaluate([mono], {"fixed": lambda mix, rate: stems}, "v3", baselines=False).rows[0].metrics
    b = evaluate([stereo], {"fixed": lambda mix, rate: stereo_stems}, "v3", baselines=False).rows[0].metrics
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-6), key


# --- (b) agreement with an independent BSS Eval v3 --------------------------------------

def _xcorr(x: np.ndarray, y: np.ndarray, L: int) -> np.ndarray:
    """``c[d + L - 1] = sum_u x[u]·y[u + d]`` for ``d`` in ``-(L-1)..L-1`` (direct, time domain)."""
    return np.correlate(np.pad(y, (L - 1, L - 1)), x, mode="valid")


def _project(refs: list[np.ndarray], e: np.ndarray, L: int) -> np.ndarray:
    """Least-squares projection of ``e`` on all delays 0..L-1 of ``refs`` (length n + L - 1)."""
    k = np.arange(L)
    lag = k[:, None] - k[None, :] + (L - 1)  # G[(i,k),(j,l)] = <x_i(t-k), x_j(t-l)> = c_ij[k-l]
    G = np.block([[_xcorr(xi, xj, L)[lag] for xj in refs] for xi in refs])
    D = np.concatenate([_xcorr(xi, e, L)[L - 1:] for xi in refs])  # <x_i(t-k), e(t)>
    c = np.linalg.solve(G, D).reshape(len(refs), L)
    return sum(np.convolve(xi, ci) for xi, ci in zip(refs, c))


def bss_v3_direct(refs: np.ndarray, est: np.ndarray, L: int = 512) -> dict[str, float]:
    """Vincent et al. (2006) SDR/SIR/SAR with L-tap time-invariant filters, written out."""
    out = {}
    for j, name in enumerate(("vocals", "accompaniment")):
        e = np.pad(est[j], (0, L - 1))
        s_target = _project([refs[j]], est[j], L)
        p_all = _project(list(refs), est[j], L)
        e_interf, e_artif = p_all - s_target, e - p_all
        out[f"{name}_SDR"] = db(energy(s_target) / energy(e_interf + e_artif))
        out[f"{name}_SIR"] = db(energy(s_target) / energy(e_interf))
        out[f"{name}_SAR"] = db(energy(s_target + e_interf) / energy(e_artif))
    return out


def test_v3_agrees_with_direct_implementation(clips, v3_baselines):
    for track in clips[:2]:
        refs = np.stack([track.vocals.mean(0), track.accompaniment.mean(0)]).astype(np.float64)
        stems = oracle(track, "irm", 2048, 512)
        est = np.stack([stems["vocals"].mean(0), stems["accompaniment"].mean(0)]).astype(np.float64)
        ours = next(r for r in v3_baselines.rows if r.track == track.name and r.method == IRM).metrics
        direct = bss_v3_direct(refs, est)
        for key, value in direct.items():
            assert ours[key] == pytest.approx(value, abs=0.01), (track.name, key)  # observed: ~1e-14 dB


# --- (c) baselines on real clips ---------------------------------------------------------

def test_mixture_nsdr_zero_and_oracles_high(v3_baselines):
    rows = [r for r in v3_baselines.rows if r.method == MIXTURE]
    assert len(rows) == 3 and not v3_baselines.skipped()
    for r in rows:
        assert r.metrics["vocals_NSDR"] == 0.0 and r.metrics["accompaniment_NSDR"] == 0.0
    s = v3_baselines.summary()
    assert s[MIXTURE]["vocals_GNSDR"] == 0.0
    for method in (IBM, IRM):
        assert s[method]["tracks"] == 3
        assert s[method]["vocals_GNSDR"] > 8 and s[method]["accompaniment_GNSDR"] > 8
        assert s[method]["vocals_GSIR"] > s[MIXTURE]["vocals_GSIR"]
    table = v3_baselines.to_markdown()
    assert "vocals GNSDR" in table and IRM in table and "| mixture | 3 | 0.00 |" in table


def test_oracle_stems_add_up(clips):
    for kind in ("ibm", "irm"):
        out = oracle(clips[0], kind)
        assert out["vocals"].shape == clips[0].mixture.shape
        assert np.allclose(out["vocals"] + out["accompaniment"], clips[0].mixture, atol=1e-6)


# --- (d) BSS Eval v4 on MUSDB18-7 -------------------------------------------------------

@needs_musdb
def test_v4_musdb_track():
    import musdb
    import museval

    mt = musdb.DB(root=str(MUSDB), subsets="train", split="valid").tracks[0]
    track = Track(mt.name, mt.targets["vocals"].audio.T.astype(np.float32),
                  mt.targets["accompaniment"].audio.T.astype(np.float32), int(mt.rate))
    report = evaluate([track], {}, "v4", baselines=True)
    s = report.summary()
    for method in (MIXTURE, IBM, IRM):
        assert s[method]["tracks"] == 1
        assert all(math.isfinite(s[method][f"{src}_{m}"])
                   for src in ("vocals", "accompaniment") for m in ("SDR", "SIR", "ISR", "SAR"))
    assert s[IRM]["vocals_SDR"] > s[MIXTURE]["vocals_SDR"] + 5
    assert s[IRM]["accompaniment_SDR"] > s[MIXTURE]["accompaniment_SDR"]
    # same numbers as museval's own track API and its median-over-frames convention
    stems = oracle(track, "irm", 4096, 1024)
    store = museval.eval_mus_track(mt, {k: v.T.astype(np.float64) for k, v in stems.items()})
    medians = store.df.groupby(["target", "metric"])["score"].median()
    for src in ("vocals", "accompaniment"):
        for m in ("SDR", "SIR", "ISR", "SAR"):
            assert s[IRM][f"{src}_{m}"] == pytest.approx(medians[(src, m)], abs=1e-3)
    assert "vocals SDR" in report.to_markdown()


# --- (e) aggregation and report files ---------------------------------------------------

def _row(track: str, length: int, nsdr: float, sdr: float, skipped: str | None = None) -> TrackResult:
    metrics = {} if skipped else {f"{s}_{m}": v for s in ("vocals", "accompaniment")
                                  for m, v in (("SDR", sdr), ("SIR", sdr + 5), ("SAR", sdr + 1), ("NSDR", nsdr))}
    return TrackResult(track, "m", length, 16000, metrics, skipped)


def test_gnsdr_is_length_weighted(tmp_path):
    report = EvalReport("v3", ["m"], [_row("a", 1000, 10.0, 11.0), _row("b", 3000, 2.0, 3.0),
                                      _row("c", 8000, 0.0, 0.0, skipped="silent estimate: vocals"),
                                      _row("d", 4000, 4.0, 4.0)])
    s = report.summary()["m"]
    assert s["vocals_GNSDR"] == pytest.approx((1000 * 10 + 3000 * 2 + 4000 * 4) / 8000)  # 4.0
    assert s["vocals_GSIR"] == pytest.approx((1000 * 16 + 3000 * 8 + 4000 * 9) / 8000)
    assert s["vocals_SDR_mean"] == pytest.approx(6.0) and s["vocals_SDR_median"] == 4.0
    assert s["tracks"] == 3 and s["skipped"] == 1
    assert math.isnan(weighted_mean(np.array([]), np.array([])))
    md = report.to_markdown()
    assert "| m | 3 | 4.00 |" in md and "m on c: silent estimate: vocals" in md
    path = report.write_csv(tmp_path / "out" / "scores.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("track,method,length,rate,seconds,vocals_SDR")
    assert len(lines) == 5 and lines[3].endswith("silent estimate: vocals")
    report.write_markdown(tmp_path / "out" / "summary.md")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.csv", "summary.md"]


# --- degenerate input -------------------------------------------------------------------

def test_degenerate_tracks_and_estimates_are_skipped(clips):
    clip = clips[0]
    short = Track("short", clip.vocals[:, :32000], clip.accompaniment[:, :32000], clip.rate)
    silent = Track("silent", np.zeros_like(short.vocals), short.accompaniment, clip.rate)
    methods = {
        "zeros": lambda mix, rate: {"vocals": np.zeros_like(mix), "accompaniment": mix},
        "nan": lambda mix, rate: {"vocals": np.full_like(mix, np.nan), "accompaniment": mix},
        "half": lambda mix, rate: {"vocals": mix / 2, "accompaniment": mix / 2},
    }
    for protocol in ("v3", "v4"):
        report = evaluate([short, silent], methods, protocol, baselines=False)
        why = {(r.track, r.method): r.skipped for r in report.rows}
        assert why[("short", "zeros")] == "silent estimate: vocals"
        assert why[("short", "nan")] == "estimate has NaN or infinite samples"
        assert why[("short", "half")] is None
        assert all(why[("silent", m)] == "silent reference: vocals" for m in methods)
        s = report.summary()
        assert s["half"]["tracks"] == 1 and s["zeros"]["tracks"] == 0
        assert math.isnan(s["zeros"]["vocals_GNSDR" if protocol == "v3" else "vocals_SDR"])
        assert "Skipped (5 rows" in report.to_markdown()


def test_bad_output_shape_and_names_raise(clips):
    clip = clips[0]
    short = Track("short", clip.vocals[:, :16000], clip.accompaniment[:, :16000], clip.rate)
    with pytest.raises(ValueError, match="shape"):
        evaluate([short], {"bad": lambda mix, rate: {"vocals": mix[:, :100]}}, "v3", baselines=False)
    with pytest.raises(ValueError, match="clash"):
        evaluate([short], {MIXTURE: lambda mix, rate: {"vocals": mix}}, "v3")
    with pytest.raises(ValueError, match="protocol"):
        evaluate([short], {}, "v5")  # type: ignore[arg-type]
