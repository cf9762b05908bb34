"""The ``vocalsep`` command line, run as a subprocess exactly as a user would."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from badfiles import BAD_FILES
from conftest import run_cli
from vocalsep.audio import read_audio
from vocalsep.models.registry import PRETRAINED_DIR, SHIPPED


def _models_table():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        rows[fields[0]] = line
    return result, rows


def test_models_lists_default():
    from vocalsep.models import load

    result, rows = _models_table()
    assert "default" in rows
    assert "(default)" in rows["default"]
    count = load("default").parameter_count()
    assert f"{count:,}" in rows["default"]
    assert "Traceback" not in result.stderr


def test_models_lists_without_torch_and_says_what_auto_runs():
    code = ("import sys; from vocalsep.cli import main; code = main(['models']); "
            "sys.exit(3 if 'torch' in sys.modules else code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr or "torch was imported"
    from vocalsep.backends.onnx import ENGINES, choose_runtime

    default = next(line for line in result.stdout.splitlines() if line.startswith("default "))
    _, engine, precision = choose_runtime("auto", "default", "cpu", "auto")
    assert f"{ENGINES[engine]}, {precision}" in default


def test_models_lists_paper_with_its_parameter_count():
    if not (PRETRAINED_DIR / SHIPPED["paper"]).exists():
        pytest.skip("paper.pt is not shipped (yet)")
    _, rows = _models_table()
    assert "paper" in rows
    assert "5,378,465" in rows["paper"]


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "separate" in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and re.search(r"vocalsep \d+\.\d+", result.stdout)


@pytest.fixture(scope="module")
def mir1k_wav(mir1k_test_clip, tmp_path_factory):
    """A 16 kHz mono wav of a MIR-1K test clip's mixture (left + right)."""
    a = read_audio(mir1k_test_clip)
    mixture = a.samples[0] + a.samples[1]
    mixture = mixture / max(1.0, np.abs(mixture).max() / 0.5)  # headroom: no rescaling of stems
    path = tmp_path_factory.mktemp("cli_in") / "mir1k mixture.wav"
    sf.write(path, mixture, a.rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def stereo_mp3(stempeg_example, ffmpeg, tmp_path_factory):
    """About 5 s of the stempeg example's mixture as a 44.1 kHz stereo mp3."""
    path = tmp_path_factory.mktemp("cli_in") / "example.mp3"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-t", "5", "-i", str(stempeg_example),
                    "-map", "0:a:0", "-ac", "2", "-ar", "44100", "-af", "volume=0.5", str(path)],
                   check=True, timeout=120)
    return path


def _check_outputs(out_dir, source, tolerance):
    original = read_audio(source)
    stem = source.stem
    vocals = out_dir / stem / "vocals.wav"
    accompaniment = out_dir / stem / "accompaniment.wav"
    assert vocals.is_file() and accompaniment.is_file()
    v, a = read_audio(vocals), read_audio(accompaniment)
    assert v.rate == a.rate == original.rate
    assert v.samples.shape == a.samples.shape == original.samples.shape
    assert sf.info(str(vocals)).subtype == "PCM_16"
    assert np.abs(v.samples + a.samples - original.samples).max() < tolerance
    # neither stem is the mixture itself
    assert np.abs(v.samples - original.samples).max() > 1e-2
    assert np.abs(a.samples - original.samples).max() > 1e-2
    assert not [p for p in out_dir.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]


def test_separate_16k_wav_then_skip_then_force(tmp_path, mir1k_wav):
    out = tmp_path / "out"
    result = run_cli("separate", mir1k_wav, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    _check_outputs(out, mir1k_wav, 1e-3)
    assert sorted(p.name for p in (out / mir1k_wav.stem).iterdir()) == ["accompaniment.wav", "vocals.wav"]
    first = (out / mir1k_wav.stem / "vocals.wav").read_bytes()

    again = run_cli("separate", mir1k_wav, "-o", out)  # done already: skipped, not redone
    assert again.returncode == 0
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert "skipped" in lines[0] and "--force" in lines[0] and str(mir1k_wav) in lines[0]
    assert "Traceback" not in again.stderr
    assert (out / mir1k_wav.stem / "vocals.wav").read_bytes() == first

    forced = run_cli("separate", mir1k_wav, "-o", out, "--force")
    assert forced.returncode == 0, forced.stderr
    _check_outputs(out, mir1k_wav, 1e-3)


def test_separate_44k_stereo_mp3(tmp_path, stereo_mp3):
    out = tmp_path / "out"
    result = run_cli("separate", stereo_mp3, "-o", out)
    assert result.returncode == 0, result.stderr
    assert read_audio(stereo_mp3).channels == 2
    _check_outputs(out, stereo_mp3, 1e-3)


def test_separate_stems_option_and_flac_format(tmp_path, mir1k_wav):
    out = tmp_path / "out"
    result = run_cli("separate", mir1k_wav, "-o", out, "--stems", "vocals", "--format", "flac", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    files = sorted(p.name for p in (out / mir1k_wav.stem).iterdir())
    assert files == ["vocals.flac"]
    assert read_audio(out / mir1k_wav.stem / "vocals.flac").samples.shape == read_audio(mir1k_wav).samples.shape


#: the bad inputs the command line is tried on (names in badfiles.BAD_FILES)
BAD_INPUTS = ["missing", "empty", "corrupt_mp3", "text_wav", "directory_mp3", "nan_float"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_one_line_error_and_no_output(tmp_path, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = BAD_FILES[case](inputs)
    out = tmp_path / "out"
    result = run_cli("separate", bad, "-o", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert bad.name in lines[0]
    assert lines[0].startswith("vocalsep: error:")
    assert not (out / bad.stem).exists()
    assert not out.exists() or not list(out.rglob("*"))


def test_batch_with_one_good_and_one_bad_file(tmp_path, mir1k_wav):
    bad = BAD_FILES["text_wav"](tmp_path)
    out = tmp_path / "out"
    result = run_cli("separate", mir1k_wav, bad, "-o", out, "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and bad.name in lines[0], result.stderr
    _check_outputs(out, mir1k_wav, 1e-3)
    assert not (out / bad.stem).exists()


def test_skips_and_missing_files_need_no_model(tmp_path, mir1k_wav):
    """A rerun that skips everything, or a file that is not there, is settled before the model
    loads: even an unusable model file is never opened for them."""
    out = tmp_path / "out"
    assert run_cli("separate", mir1k_wav, "-o", out).returncode == 0
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    again = run_cli("separate", mir1k_wav, "-m", broken, "-o", out)
    assert again.returncode == 0 and "skipped" in again.stderr and "broken.pt" not in again.stderr
    missing = run_cli("separate", tmp_path / "nope.wav", "-m", broken, "-o", out)
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 1 and len(lines) == 1 and "nope.wav: no such file" in lines[0]
    assert "broken.pt" not in missing.stderr


@pytest.mark.parametrize("where", ["input", "output"])
def test_dash_is_refused_in_one_line(tmp_path, mir1k_wav, where):
    args = ("-", "-o", tmp_path / "out") if where == "input" else (mir1k_wav, "-o", "-")
    result = run_cli("separate", *args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "'-'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_demucs_and_spleeter_habits(tmp_path, mir1k_wav):
    """-n/-p (model), --two-stems vocals, --mp3 with --mp3-bitrate, -d, --filename: accepted
    with their meaning here; --shifts, --segment and --mwf refused in one line each."""
    import json

    out = tmp_path / "out"
    result = run_cli("separate", mir1k_wav, "-n", "default", "--two-stems", "vocals", "--mp3",
                     "--mp3-bitrate", "96", "-d", "cpu", "--filename", "{track}-{stem}.{ext}", "-o", out)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"{mir1k_wav.stem}-accompaniment.mp3", f"{mir1k_wav.stem}-vocals.mp3"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "json",
                            str(out / written[1])], capture_output=True, text=True)
    assert abs(int(json.loads(probe.stdout)["format"]["bit_rate"]) - 96_000) < 2_000
    spleeter_habit = run_cli("separate", mir1k_wav, "-p", "default", "-o", tmp_path / "p")
    assert spleeter_habit.returncode == 0 and (tmp_path / "p" / mir1k_wav.stem / "vocals.wav").exists()
    for bad, words in ((["--shifts", "2"], "--shifts: not offered"), (["--segment", "7"], "--segment: not offered"),
                       (["--mwf"], "--mwf: not offered"),
                       (["--filename", "{track}.{ext}"], "{stem} at least"),
                       (["--filename", "../{stem}.{ext}"], "below the output folder")):
        refused = run_cli("separate", mir1k_wav, *bad, "-o", tmp_path / "refused")
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and words in lines[0], refused.stderr
    assert not (tmp_path / "refused").exists()


def test_a_file_far_shorter_than_its_header_says_is_reported(tmp_path, ffmpeg):
    """20 kB of a 31-s mp3: separated as far as it decodes, with one warning line naming it."""
    full, cut = tmp_path / "full.mp3", tmp_path / "cut.mp3"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=31",
                    "-ac", "2", "-ar", "44100", str(full)], check=True)
    cut.write_bytes(full.read_bytes()[:20_000])
    result = run_cli("separate", cut, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("vocalsep: warning:")]
    assert len(warned) == 1 and str(cut) in warned[0] and "of the 31.03 s its header gives" in warned[0]
    assert (tmp_path / "out" / "cut" / "vocals.wav").exists()
    whole = run_cli("separate", full, "-o", tmp_path / "out")
    assert whole.returncode == 0 and "warning" not in whole.stderr


def test_one_song_shows_a_progress_bar_on_a_terminal(tmp_path, mir1k_wav):
    """On a terminal (a pseudo-terminal 100 columns wide) a single song draws its bar; in a pipe
    (the other tests) stderr holds no bar."""
    import fcntl
    import os
    import struct
    import termios

    main_fd, child_fd = os.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "vocalsep.cli", "separate", str(mir1k_wav),
                             "-o", str(tmp_path / "out")], stdin=child_fd, stdout=child_fd,
                            stderr=child_fd, close_fds=True)
    os.close(child_fd)
    seen = bytearray()
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen.extend(data)
    os.close(main_fd)
    text = seen.decode(errors="replace")
    assert proc.wait(timeout=120) == 0, text
    assert re.search(r"mir1k mixture\.wav: +\d+%\|", text), text[-500:]


def test_no_inputs_is_an_error(tmp_path):
    result = run_cli("separate", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_model_is_one_line_error(tmp_path, mir1k_wav):
    result = run_cli("separate", mir1k_wav, "-o", tmp_path / "out", "-m", tmp_path / "nope.pt")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.pt" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"not a model\n", b""], ids=["text", "empty"])
def test_unusable_model_file_is_one_line_error_naming_it(tmp_path, mir1k_wav, content):
    model = tmp_path / "broken.pt"
    model.write_bytes(content)
    result = run_cli("separate", mir1k_wav, "-o", tmp_path / "out", "-m", model)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "broken.pt" in lines[0]


def test_device_without_cuda_is_one_line_error(tmp_path, mir1k_wav):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run_cli("separate", mir1k_wav, "-o", tmp_path / "out", "--device", "cuda")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cuda" in r.stderr and "cpu" in r.stderr
    assert not (tmp_path / "out").exists()
    r = run_cli("separate", mir1k_wav, "-o", tmp_path / "out", "--device", "tpu")
    assert r.returncode == 1 and "unknown device" in r.stderr
