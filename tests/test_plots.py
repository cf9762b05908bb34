"""Figures for one separated song: valid, non-blank PNGs, written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from matplotlib.image import imread

from vocalsep import plots
from vocalsep.audio import write_audio
from vocalsep.models import build, save
from vocalsep.train import write_history

torch.set_num_threads(1)

from conftest import IN_CI, MIR1K

CLIP = MIR1K / "test" / "Ani_1_01.flac"
SECONDS = 3.0
pytestmark = pytest.mark.skipif(not CLIP.exists() and not IN_CI, reason=f"{CLIP} not available")

HISTORY = [
    {"epoch": 1, "train_loss": 0.608546, "valid_loss": 0.555622, "seconds": 44.0, "examples": 688},
    {"epoch": 2, "train_loss": 0.47774, "valid_loss": 0.58148, "seconds": 89.0, "examples": 1376},
    {"epoch": 3, "train_loss": 0.428428, "valid_loss": 0.51215, "seconds": 132.3, "examples": 2064},
]


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray, int]:
    """(mixture, vocals, rate): the first 3 s of a MIR-1K clip (left = accompaniment, right = vocals)."""
    data, rate = sf.read(str(CLIP), dtype="float32", always_2d=True, frames=int(SECONDS * 16000))
    assert rate == 16000
    accompaniment, vocals = data[:, 0], data[:, 1]
    return accompaniment + vocals, vocals, rate


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("unet")  # untrained: the figures must not depend on the shipped weights


@pytest.fixture(scope="module")
def song(tmp_path_factory, clip) -> Path:
    mixture, _, rate = clip
    path = tmp_path_factory.mktemp("song") / "clip.wav"
    write_audio(path, mixture[None], rate, bits="float", clip="none")
    return path


def assert_png(path: Path, min_size: tuple[int, int] = (200, 300)) -> np.ndarray:
    assert path.is_file() and path.suffix == ".png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    assert float(image[..., :3].std()) > 0.0, "blank image"
    assert not list(path.parent.glob(".*part*")), "temporary file left behind"
    return image


def test_plot_spectrograms(tmp_path, clip):
    mixture, vocals, rate = clip
    out = plots.plot_spectrograms(mixture, vocals, rate, tmp_path / "sub" / "spec.png")
    assert out == tmp_path / "sub" / "spec.png"
    assert_png(out)


def test_plot_spectrograms_options_and_stereo(tmp_path, clip):
    mixture, vocals, rate = clip
    stereo = np.stack([mixture, mixture])  # (channels, samples) is mixed down
    out = plots.plot_spectrograms(stereo, vocals[None], rate, tmp_path / "s.png", frames=20,
                                  n_fft=512, hop=128)
    assert_png(out)
    with pytest.raises(ValueError):
        plots.plot_spectrograms(mixture, vocals[:-1], rate, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_log_spectrogram_first_frames_match_full(clip):
    mixture, _, _ = clip
    full = plots.log_spectrogram(mixture, 2048, 512)
    first = plots.log_spectrogram(mixture, 2048, 512, frames=40)
    assert full.shape == (1025, mixture.size // 512 + 1)
    assert first.shape == (1025, 40)
    np.testing.assert_allclose(first, full[:, :40], atol=1e-5)
    assert first.min() >= 0.0
    assert plots.log_spectrogram(mixture, 2048, 512, frames=10_000).shape == full.shape


def test_plot_waveform_difference(tmp_path, clip):
    mixture, vocals, rate = clip
    out = plots.plot_waveform_difference(mixture, vocals, rate, tmp_path / "wave.png")
    assert_png(out)
    short = plots.plot_waveform_difference(mixture[:1000], vocals[:1000], rate, tmp_path / "short.png")
    assert_png(short)  # few samples: plotted as lines, not as an envelope


def test_overwrite_is_atomic_and_replaces(tmp_path, clip):
    mixture, vocals, rate = clip
    path = tmp_path / "wave.png"
    path.write_bytes(b"old")
    plots.plot_waveform_difference(mixture, vocals, rate, path)
    assert_png(path)


def test_read_history_round_trip(tmp_path):
    write_history(HISTORY, tmp_path)
    rows = plots.read_history(tmp_path / "history.csv")
    assert rows == HISTORY
    assert isinstance(rows[0]["epoch"], int) and isinstance(rows[0]["examples"], int)
    assert isinstance(rows[0]["seconds"], float) and isinstance(rows[0]["valid_loss"], float)
    assert plots.read_history(tmp_path) == HISTORY  # a run folder works too
    with pytest.raises(FileNotFoundError):
        plots.read_history(tmp_path / "missing.csv")


def test_song_figures(tmp_path, song, model):
    written = plots.song_figures(song, tmp_path / "figs", model=model)
    assert written == [tmp_path / "figs" / "spectrograms.png", tmp_path / "figs" / "waveforms.png"]
    for p in written:
        assert_png(p)


def test_song_figures_with_history(tmp_path, song, model):
    run = tmp_path / "run"
    run.mkdir()
    write_history(HISTORY, run)
    for i, history in enumerate([run / "history.csv", run]):
        out = tmp_path / f"figs{i}"
        written = plots.song_figures(song, out, model=model, history=history)
        assert [p.name for p in written] == ["spectrograms.png", "waveforms.png", "loss.png"]
        for p in written:
            assert p.parent == out
            assert_png(p)


def test_song_figures_bad_history_writes_nothing(tmp_path, song, model):
    with pytest.raises(FileNotFoundError):
        plots.song_figures(song, tmp_path / "figs", model=model, history=tmp_path / "nope.csv")
    assert not (tmp_path / "figs").exists()


def test_cli_plot(tmp_path, song, model, capsys):
    from vocalsep.cli import main

    weights = save(model, tmp_path / "untrained.pt")
    write_history(HISTORY, tmp_path)
    out = tmp_path / "cli"
    assert main(["plot", str(song), "-o", str(out), "-m", str(weights),
                 "--history", str(tmp_path / "history.csv")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / n) for n in ("spectrograms.png", "waveforms.png", "loss.png")]
    for p in printed:
        assert_png(Path(p))
