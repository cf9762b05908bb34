"""The stems of every shipped model and option stay what they were before the signal-path
redesign (issue #16): float32 within 1e-5 (RMS per second, see tests/regression.py)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from regression import CASES, FIXTURE, case_input, case_options, outputs, song, summary
from vocalsep.separate import Separator, SeparatorOptions

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def stored(stempeg_example) -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.mark.parametrize("name", list(CASES))
def test_api_gives_todays_stems(stored, name):
    x, stems, rate = outputs(name)
    assert stems["vocals"].shape == x.shape
    assert np.abs(stems["vocals"] + stems["accompaniment"] - x).max() < 1e-6
    got = summary(stems["vocals"], rate)
    assert got.shape == stored[name].shape
    assert np.abs(got - stored[name]).max() < TOLERANCE


@pytest.mark.parametrize("name", ["default-48k-stereo-fullband", "small-16k-mono",
                                  "spatial-default-48k-stereo-fullband"])
def test_files_give_todays_stems(stored, name, tmp_path):
    """The file path (block by block, as the CLI, batches and the server run it)."""
    x, rate = case_input(name, *song())
    sf.write(tmp_path / "song.wav", x.T, rate, subtype="FLOAT")
    written = Separator(CASES[name][0], SeparatorOptions(**case_options(name))).separate_file(
        tmp_path / "song.wav", tmp_path / "out", bits="float")
    vocals, got_rate = sf.read(written["vocals"], dtype="float32", always_2d=True)
    assert got_rate == rate
    assert np.abs(summary(vocals.T, rate) - stored[name]).max() < TOLERANCE
