"""ONNX Runtime: the shipped default's ONNX export computes the torch model's masks, the CLI
separates with it without importing torch, and the runtime choice follows device, precision
and model."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli, snr_db
from vocalsep.config import ModelError, resolve
from vocalsep.models import build, load
from vocalsep.models.registry import sha256
from vocalsep.backends.onnx import OnnxModel, choose_runtime, onnx_twin
from vocalsep.separate import Separator, SeparatorOptions
from vocalsep.spectral import stft


@pytest.fixture(scope="module")
def default_onnx() -> OnnxModel:
    twin = onnx_twin("default")
    assert twin is not None, "the default model ships with an ONNX export"
    return OnnxModel(twin, threads=1)


@pytest.fixture(scope="module")
def song_clip(example_song, tmp_path_factory):
    """The first 8 s of the stempeg example song as a 16-bit WAV, and its samples."""
    mixture, _, rate = example_song
    path = tmp_path_factory.mktemp("runtime") / "song.wav"
    sf.write(path, mixture[:, : 8 * rate].T, rate, subtype="PCM_16")
    return path, sf.read(path, dtype="float32")[0].T, rate


def test_the_export_is_of_the_shipped_weights(default_onnx):
    """The .onnx names the sha256 of the .pt it was exported from: a stale export fails here."""
    torch_model = load("default")
    assert default_onnx.source_sha256 == sha256(resolve("default"))
    assert default_onnx.config == torch_model.config
    onnx = pytest.importorskip("onnx")
    stored = onnx.load(str(default_onnx.path)).graph.initializer
    halves = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in stored)
    assert halves >= 12  # the float16 weights of the .pt, stored as such (cast when loaded)


def test_onnx_masks_equal_torch_masks_on_a_real_song(default_onnx, example_song):
    mixture, _, _ = example_song
    torch_model = load("default")
    torch_model.set_precision("float32")
    mags = stft(torch.from_numpy(mixture), 4096, 1024).abs()  # (2, 2049, frames): not a multiple of 512
    for x in (mags, mags.mean(0, keepdim=True)):  # stereo pair (a mask each), mono song
        with torch.no_grad():
            expected = torch_model.mask(x).numpy()
        got = default_onnx.mask(x.numpy())
        assert got.shape == expected.shape
        # the two runtimes round differently; the ratio of the default's two masks carries it
        # further in a few values (mono, this song: 4 of 538,887 up to 0.003, at the band's top
        # bin in the last frames before the padding; all others within 1e-4)
        error = np.abs(got - expected).ravel()
        assert np.quantile(error, 0.9999) < 1e-4 and error.max() < 0.01
        assert expected.std() > 0.1  # real masks, not a constant


def test_cli_separates_without_torch_and_as_torch_does(song_clip, tmp_path):
    path, samples, rate = song_clip
    code = ("import sys; from vocalsep.cli import main; "
            f"code = main(['separate', {str(path)!r}, '-o', {str(tmp_path / 'onnx')!r}, '-q', "
            "'--runtime', 'onnx']); "
            "sys.exit(3 if 'torch' in sys.modules else code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    torch_run = run_cli("separate", path, "--runtime", "torch", "--precision", "float32",
                        "-o", tmp_path / "torch")
    assert torch_run.returncode == 0, torch_run.stderr
    stems = {}
    for stem in ("vocals", "accompaniment"):
        a, a_rate = sf.read(tmp_path / "onnx" / "song" / f"{stem}.wav", dtype="float32")
        b, _ = sf.read(tmp_path / "torch" / "song" / f"{stem}.wav", dtype="float32")
        assert a_rate == rate and a.shape == b.shape == samples.T.shape
        assert np.abs(a - b).max() <= 3 / 32768  # a few 16-bit steps
        stems[stem] = a.T
    assert np.abs(stems["vocals"] + stems["accompaniment"] - samples).max() <= 2 / 32768
    assert snr_db(samples, stems["accompaniment"]) < 20  # the vocals took something out


def test_whole_song_path_with_onnx_matches_torch(example_song):
    """Options that need the whole song (the Wiener filter) take the ONNX masks too."""
    mixture, vocals_true, rate = example_song
    clip = mixture[:, : 5 * rate]
    onnx = Separator("default", SeparatorOptions(runtime="onnx", wiener=1))
    torch_sep = Separator("default", SeparatorOptions(runtime="torch", wiener=1, precision="float32"))
    assert isinstance(onnx.model, OnnxModel) and not isinstance(torch_sep.model, OnnxModel)
    a, b = onnx.separate(clip, rate), torch_sep.separate(clip, rate)
    assert snr_db(b["vocals"], a["vocals"]) > 60
    assert np.abs(a["vocals"] + a["accompaniment"] - clip).max() < 1e-5


def test_runtime_choice(monkeypatch):
    """auto: the model's ONNX export in OpenVINO's bfloat16 where OpenVINO is installed and the
    CPU has bfloat16 natively, else in ONNX Runtime (float32), else torch; a runtime asked for
    insists."""
    import vocalsep.backends.onnx as backend

    twin = onnx_twin("default")
    have = {"onnxruntime", "openvino"}
    monkeypatch.setattr(backend, "installed", lambda package: package in have)
    monkeypatch.setattr(backend, "native_bfloat16", lambda: False)
    assert choose_runtime("auto", "default", "cpu", "auto") == (twin, "onnx", "float32")
    assert choose_runtime("auto", None, "cpu", "float32") == (twin, "onnx", "float32")  # None: the default
    assert choose_runtime("openvino", "default", "cpu", "auto") == (twin, "openvino", "float32")
    assert choose_runtime("torch", "default", "cpu", "auto") is None
    assert choose_runtime("auto", "default", "cpu", "bfloat16") is None  # emulated: torch
    with pytest.raises(ModelError, match=r"OpenVINO \(this CPU has no native bfloat16\)"):
        choose_runtime("openvino", "default", "cpu", "bfloat16")
    assert choose_runtime("auto", "default", "cuda", "auto") is None
    assert choose_runtime("auto", "small", "cpu", "auto") is None  # no export shipped
    assert choose_runtime("auto", resolve("default"), "cpu", "auto") is None  # a .pt path: torch
    assert choose_runtime("auto", twin, "cpu", "auto") == (twin, "onnx", "float32")  # an .onnx path

    monkeypatch.setattr(backend, "native_bfloat16", lambda: True)
    assert choose_runtime("auto", "default", "cpu", "auto") == (twin, "openvino", "bfloat16")
    assert choose_runtime("auto", "default", "cpu", "float32") == (twin, "onnx", "float32")
    assert choose_runtime("auto", "default", "cpu", "bfloat16") == (twin, "openvino", "bfloat16")
    assert choose_runtime("openvino", "default", "cpu", "float32") == (twin, "openvino", "float32")
    assert choose_runtime("onnx", "default", "cpu", "auto") == (twin, "onnx", "float32")
    with pytest.raises(ModelError, match="ONNX Runtime computes in float32, not bfloat16"):
        choose_runtime("onnx", "default", "cpu", "bfloat16")

    have.discard("openvino")  # the light install: ONNX Runtime in float32 on every CPU (it
    # beat torch's native bfloat16 too: docs/bench/runtime-choice.md)
    assert choose_runtime("auto", "default", "cpu", "auto") == (twin, "onnx", "float32")
    assert choose_runtime("auto", "default", "cpu", "bfloat16") is None  # asked for: torch
    with pytest.raises(ModelError, match=r"openvino is not installed \(pip install 'vocalsep\[openvino\]'\)"):
        choose_runtime("openvino", "default", "cpu", "auto")
    with pytest.raises(ModelError, match="no ONNX export.*not cuda"):
        choose_runtime("onnx", "small", "cuda", "auto")
    with pytest.raises(ValueError, match="runtime"):
        choose_runtime("tensorflow", "default", "cpu", "auto")
    # a model given as an .onnx file runs in ONNX Runtime or OpenVINO, or not at all
    assert choose_runtime("auto", twin, "cpu", "auto") == (twin, "onnx", "float32")
    with pytest.raises(ModelError, match="not torch"):
        choose_runtime("torch", twin, "cpu", "auto")
    with pytest.raises(ModelError, match="not cuda"):
        choose_runtime("auto", twin, "cuda", "auto")
    have.clear()
    assert choose_runtime("auto", "default", "cpu", "auto") is None
    with pytest.raises(ModelError, match=r"OpenVINO \(openvino is not installed .*\) or ONNX Runtime \(onnxruntime"):
        choose_runtime("auto", twin, "cpu", "auto")


def test_auto_takes_onnx_runtime_where_openvino_fails_to_start(monkeypatch):
    """An OpenVINO that cannot run (here: its compiler refuses) is no reason to fail: ``auto``
    takes ONNX Runtime; ``--runtime openvino`` says why in one line."""
    pytest.importorskip("openvino")
    import openvino
    import vocalsep.backends.onnx as backend

    monkeypatch.setattr(backend, "native_bfloat16", lambda: True)

    def refuse(*args, **kwargs):
        raise RuntimeError("Exception from src/plugin.cpp:1:\nno CPU plugin here")

    monkeypatch.setattr(openvino.Core, "compile_model", refuse)
    assert "ONNX Runtime, float32" in Separator("default").describe()
    with pytest.raises(ModelError, match=r"^OpenVINO could not compile the network \(no CPU plugin here\)$"):
        Separator("default", SeparatorOptions(runtime="openvino"))


def test_openvino_computes_onnx_runtimes_masks(default_onnx, example_song):
    """OpenVINO runs the same export: in float32 the same masks as ONNX Runtime's, in bfloat16
    (where this CPU has it natively) masks that differ only by its rounding."""
    pytest.importorskip("openvino")
    from vocalsep.backends import native_bfloat16

    mixture, _, _ = example_song
    song = torch.from_numpy(np.tile(mixture, (1, 3)))  # a whole 512-frame segment and a rest
    mags = stft(song, 4096, 1024).abs().transpose(-1, -2).numpy()  # (2, frames, bins)
    expected = default_onnx.masks(mags)
    assert expected.std() > 0.1
    for precision in ("float32", "bfloat16") if native_bfloat16() else ("float32",):
        model = OnnxModel(default_onnx.path, threads=1, runtime="openvino", precision=precision)
        assert model.describe() == f"stemunet in OpenVINO, {precision}, 1 threads"
        got = model.masks(mags)
        assert got.shape == expected.shape
        error = np.abs(got - expected)
        # bfloat16 (the two masks' ratio carries its rounding: on this song 0.07 at most, 0.0013
        # on average)
        largest, mean = (1e-4, 1e-6) if precision == "float32" else (0.1, 3e-3)
        assert error.max() < largest and error.mean() < mean, (precision, error.max(), error.mean())


def test_a_stale_export_is_refused(tmp_path, monkeypatch):
    """The twin of a shipped model must be the export of that model's current weights."""
    import shutil

    import vocalsep.config as config

    for name in ("default.pt", "default.onnx"):
        shutil.copy(config.PRETRAINED_DIR / name, tmp_path / name)
    monkeypatch.setattr(config, "PRETRAINED_DIR", tmp_path)
    assert isinstance(Separator("default").model, OnnxModel)  # the copies still match
    with open(tmp_path / "default.pt", "ab") as f:  # other weights (a changed file)
        f.write(b"\0")
    with pytest.raises(ModelError, match="export of other weights than default.pt"):
        Separator("default")


def test_verbose_names_the_runtime_precision_and_threads(song_clip, tmp_path):
    """``-v`` says what separates: the runtime :func:`choose_runtime` picks by default (OpenVINO
    or ONNX Runtime, whatever is installed), ONNX Runtime or torch when asked."""
    from vocalsep.backends.onnx import ENGINES

    path, _, _ = song_clip
    _, engine, precision = choose_runtime("auto", "default", "cpu", "auto")
    auto_run = run_cli("separate", path, "-v", "-o", tmp_path / "auto")
    assert auto_run.returncode == 0, auto_run.stderr
    assert f"default: stemunet in {ENGINES[engine]}, {precision}, " in auto_run.stderr
    onnx_run = run_cli("separate", path, "-v", "--runtime", "onnx", "-o", tmp_path / "a")
    assert onnx_run.returncode == 0, onnx_run.stderr
    assert "default: stemunet in ONNX Runtime, float32, " in onnx_run.stderr
    torch_run = run_cli("separate", path, "-v", "--runtime", "torch", "--precision", "float32",
                        "-o", tmp_path / "b")
    assert torch_run.returncode == 0, torch_run.stderr
    assert "default: stemunet in torch on cpu, float32, " in torch_run.stderr
    quiet = run_cli("separate", path, "-o", tmp_path / "c")
    assert "stemunet" not in quiet.stderr


def test_cli_runtime_errors_are_one_line(song_clip, tmp_path):
    path, _, _ = song_clip
    result = run_cli("separate", path, "-m", "small", "--runtime", "onnx", "-o", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "no ONNX export" in lines[0]
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model at all")
    result = run_cli("separate", path, "-m", bad, "-o", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert "broken.onnx" in lines[0] and "not a usable vocalsep ONNX model" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_export_of_a_narrow_network(tmp_path):
    """export_onnx of any stemunet (here a random quarter-width one, mono masks) gives the
    torch model's masks."""
    pytest.importorskip("onnx")
    from vocalsep.models.stemunet import export_onnx

    torch.manual_seed(0)
    model = build("stemunet", params={"width": 0.25, "segment": 128, "segments_per_batch": 2}).eval()
    path = export_onnx(model, tmp_path / "narrow.onnx", "0" * 64)
    onnx = OnnxModel(path, threads=1)
    assert onnx.config == model.config and not onnx.stereo and onnx.stream_block == 128
    mags = torch.rand(3, 2049, 300) * 3  # three mono songs, 3 segments each (the last padded)
    with torch.no_grad():
        expected = model.mask(mags).numpy()
    np.testing.assert_allclose(onnx.mask(mags.numpy()), expected, atol=1e-5)


def test_an_export_of_an_older_vocalsep_is_refused(tmp_path):
    """An export without this version's I/O (the graph took all bins, bins first, before)
    fails with one line saying to re-export, not with a shape error mid-song."""
    onnx = pytest.importorskip("onnx")
    from vocalsep.models.stemunet import export_onnx
    from vocalsep.backends.onnx import IO_KEY

    model = build("stemunet", params={"width": 0.25, "segment": 128}).eval()
    path = export_onnx(model, tmp_path / "old.onnx", "0" * 64)
    graph = onnx.load(str(path))
    kept = [p for p in graph.metadata_props if p.key != IO_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(path))
    with pytest.raises(ModelError, match="old.onnx: exported by an older vocalsep"):
        OnnxModel(path)
