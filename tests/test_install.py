"""The base install is light: the package's wheel, installed into a fresh virtual environment
without torch, separates a real song with the shipped default (ONNX Runtime), and a command
that needs an extra says which in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest
import soundfile as sf

from conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_installs_without_torch_and_separates(tmp_path, example_song):
    mixture, _, rate = example_song
    song = tmp_path / "song.wav"
    sf.write(song, mixture.T, rate, subtype="PCM_16")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(wheels), str(REPO_ROOT)], capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(wheels.glob("vocalsep-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", str(wheel)], capture_output=True, text=True,
                         timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "vocalsep")
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    run = subprocess.run([cli, "separate", str(song), "-o", str(tmp_path / "out"), "-v"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ONNX Runtime" in run.stderr
    for stem in ("vocals", "accompaniment"):
        out, out_rate = sf.read(tmp_path / "out" / "song" / f"{stem}.wav")
        assert out_rate == rate and out.shape == mixture.T.shape
    need = subprocess.run([cli, "separate", str(song), "-m", "small", "-o", str(tmp_path / "small")],
                          capture_output=True, text=True, timeout=300)
    lines = need.stderr.strip().splitlines()
    assert need.returncode == 1 and len(lines) == 1 and "pip install 'vocalsep[torch]'" in lines[0]
