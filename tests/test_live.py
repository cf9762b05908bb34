"""`vocalsep live`: raw samples through a pipe, separated at an exact, stated latency."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from vocalsep.separate import Separator, SeparatorOptions


def live(*args, data: bytes, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocalsep.cli", "live", *map(str, args)], input=data,
                          capture_output=True, timeout=timeout)


def stated_latency(stderr: bytes) -> tuple[int, int]:
    """(segment frames, latency samples) from the -v line."""
    m = re.search(r"(\d+)-frame segments; latency (\d+) samples", stderr.decode())
    assert m, stderr.decode()
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def song(example_song) -> tuple[np.ndarray, int]:
    mixture, _, rate = example_song
    return mixture, rate


def test_piped_song_equals_the_api_after_the_latency(song):
    """With ``-m default`` at 2 s: 64-frame segments, the API's stems after the latency."""
    mixture, rate = song
    r = live("-m", "default", "--rate", rate, "--channels", 2, "--latency", 2, "-v",
             data=mixture.T.astype("<f4").tobytes())
    assert r.returncode == 0, r.stderr.decode()
    assert "model default," in r.stderr.decode()
    segment, latency = stated_latency(r.stderr)
    assert segment == 64 and latency <= 2 * rate
    out = np.frombuffer(r.stdout, dtype="<f4").reshape(-1, 2).T
    assert out.shape[1] == mixture.shape[1] + latency and not out[:, :latency].any()
    # live leaves out the spatial step (its windows would add their length to the latency)
    api = Separator("default", SeparatorOptions(segment=segment, spatial=False)).separate(mixture, rate)
    np.testing.assert_allclose(out[:, latency:], api["accompaniment"], atol=1e-5)
    whole = Separator("default", SeparatorOptions(spatial=False)).separate(mixture, rate)  # longer segments, other masks
    assert np.abs(whole["accompaniment"] - api["accompaniment"]).max() > 1e-3


def test_the_stated_latency_is_exact(tmp_path):
    """An impulse at sample i comes out (vocals + accompaniment) at sample i + L, and nowhere
    else, in 16-bit integers too."""
    rate, i = 44_100, 100_003
    x = np.zeros((300_000, 1), "<i2")
    x[i] = 20_000
    r = live("--rate", rate, "--channels", 1, "--input-format", "s16le", "--latency", 3.5, "-v",
             "--vocals", tmp_path / "v.raw", "--accompaniment", tmp_path / "a.raw", data=x.tobytes())
    assert r.returncode == 0, r.stderr.decode()
    _, latency = stated_latency(r.stderr)
    total = sum(np.fromfile(tmp_path / f"{s}.raw", dtype="<i2").astype(np.int32) for s in ("v", "a"))
    assert len(total) == len(x) + latency and r.stdout == b""
    assert abs(total[i + latency] - 20_000) <= 1
    total[i + latency] = 0
    assert np.abs(total).max() <= 1  # rounding of the two stems only


@pytest.mark.parametrize("bad,words", [
    ("nan", "sample 7 is NaN, infinite or far above full scale"),
    ("half", "stopped in the middle of a sample"),
    ("wrong format", "is the input really f32le?"),
])
def test_bad_input_on_the_pipe_is_one_line(bad, words):
    x = np.zeros((5000, 2), "<f4")
    if bad == "nan":
        x[7, 1] = np.nan
        data = x.tobytes()
    elif bad == "half":
        data = x.tobytes()[:-3]
    else:  # 16-bit samples read as 32-bit floats
        data = (np.random.default_rng(0).integers(-30000, 30000, 20000).astype("<i2")).tobytes()
    r = live("--rate", 44_100, "--channels", 2, data=data)
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and words in lines[0], r.stderr.decode()


def test_a_latency_below_the_shortest_is_refused_in_one_line():
    r = live("--rate", 44_100, "--channels", 2, "--latency", 0.3, data=b"")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "the shortest here is 0.441 s (16-frame" in lines[0]


def test_segments_shorter_than_the_networks_window_are_piped_as_the_api_cuts_them(song):
    """Below 1.556 s: segments of 16 to 56 frames (steps of 8), and without ``-m`` the `live`
    model; the piped stream is the API's at that segment, after the stated latency; other
    short segments are refused."""
    mixture, rate = song
    r = live("--rate", rate, "--channels", 2, "--latency", 0.9, "-v", data=mixture.T.astype("<f4").tobytes())
    assert r.returncode == 0, r.stderr.decode()
    assert "model live," in r.stderr.decode()  # no -m: the model made for short segments
    segment, latency = stated_latency(r.stderr)
    assert segment == 32 and latency == 35839  # 31 hops of 1024 and a 4096-sample window, minus 1
    out = np.frombuffer(r.stdout, dtype="<f4").reshape(-1, 2).T
    api = Separator("live", SeparatorOptions(segment=32, spatial=False)).separate(mixture, rate)
    np.testing.assert_allclose(out[:, latency:], api["accompaniment"], atol=1e-5)
    with pytest.raises(ValueError, match="16 to 56 in steps of 8, or a multiple of 64"):
        Separator("default", SeparatorOptions(segment=50))


def test_a_short_segment_hears_the_past_filling_the_window(example_song):
    """A 24-frame segment goes through the network with the 40 frames before it (the past: no
    added latency): from the third on, every network input is 64 frames, the first 40 of them
    the previous input's last 40. Hearing the past makes the vocals of a song the models never saw
    (MUSDB18's stempeg example, a test track) much closer to the true ones than the same
    segments zero-padded to the window."""
    from conftest import snr_db

    mixture, vocals, rate = example_song
    heard = []
    sep = Separator("default", SeparatorOptions(segment=24))
    assert (sep.backend.stream_block, sep.backend.stream_history) == (24, 40)
    masks = sep.backend.masks
    sep.backend.masks = lambda mags: heard.append(mags.copy()) or masks(mags)
    with_past = sep.separate(mixture, rate)["vocals"]
    assert [h.shape[1] for h in heard[:2]] == [24, 48]  # a song's start: the past it has
    assert {h.shape[1] for h in heard[2:-1]} == {64}
    for before, after in zip(heard[2:-2], heard[3:-1]):
        np.testing.assert_array_equal(after[:, :40], before[:, -40:])
    sep.backend.masks, sep.backend.stream_history = masks, 0  # each segment alone, zero-padded
    alone = sep.separate(mixture, rate)["vocals"]
    assert snr_db(vocals, with_past) > snr_db(vocals, alone) + 1


def test_a_shared_torch_model_keeps_its_own_segment(song):
    """A loaded model (torch, or ONNX) given to a Separator with a segment (as `vocalsep live`
    and a server's threads do): that separator cuts short segments, the model and its other
    users do not."""
    from vocalsep.models import load

    mixture, rate = song
    excerpt = mixture[:, : 6 * rate]
    model = load("live")
    whole = Separator(model, SeparatorOptions(runtime="torch")).separate(excerpt, rate)["vocals"]
    short = Separator(model, SeparatorOptions(segment=32, runtime="torch"))
    assert model.segment == model.stream_block == 512 and short.backend.stream_block == 32
    assert model.stream_history == 0 and short.backend.stream_history == 32
    cut = short.separate(excerpt, rate)["vocals"]
    again = Separator(model, SeparatorOptions(runtime="torch")).separate(excerpt, rate)["vocals"]
    np.testing.assert_array_equal(again, whole)
    assert np.abs(cut - whole).max() > 1e-3
    onnx = Separator("live").backend  # the same for a loaded ONNX model
    assert Separator(onnx, SeparatorOptions(segment=32)).backend.stream_block == 32
    assert onnx.segment == onnx.stream_block == 512


def test_a_file_played_at_its_own_speed_is_the_piped_stream(tmp_path, song):
    """``vocalsep live FILE --realtime``: ffmpeg decodes it as it goes, the reading is paced
    at the file's own speed (no faster than real time), and the output is that of the same
    samples piped in raw."""
    import time

    import soundfile as sf

    mixture, rate = song
    part = mixture[:, : 6 * rate]
    path = tmp_path / "six.flac"
    sf.write(path, part.T, rate, subtype="PCM_24")
    decoded = sf.read(path, dtype="float32", always_2d=True)[0].T
    started = time.monotonic()
    played = live(path, "--realtime", "--latency", 2, "--stem", "vocals", data=b"")
    wall = time.monotonic() - started
    assert played.returncode == 0, played.stderr.decode()
    assert wall >= 6.0  # paced: the 6 s of the file take at least 6 s
    piped = live("--rate", rate, "--channels", 2, "--latency", 2, "--stem", "vocals",
                 data=decoded.T.astype("<f4").tobytes())
    assert piped.returncode == 0 and played.stdout == piped.stdout
    assert b"late" not in piped.stderr  # a pipe read faster than real time is never behind


def test_blocks_behind_real_time_are_counted_and_the_output_stays_whole(tmp_path, song):
    """Blocks of 64 samples (1.5 ms) at real time: a 64-frame segment's masks take longer than that,
    so the blocks that compute one are late. Reported (a warning, then a count), and not one
    sample is lost."""
    import soundfile as sf

    mixture, rate = song
    path = tmp_path / "song.wav"
    sf.write(path, mixture.T, rate, subtype="FLOAT")
    r = live(path, "--realtime", "--chunk", 64, "--latency", 2, "-v", data=b"")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stderr.decode().splitlines()
    assert any("warning: falling behind real time" in line for line in lines), lines
    report = [line for line in lines if "blocks were late" in line]
    assert len(report) == 1 and re.search(r"\d+ of \d+ blocks were late", report[0])
    _, latency = stated_latency(r.stderr)
    assert len(r.stdout) == (mixture.shape[1] + latency) * 2 * 4


def test_live_input_errors_are_one_line(tmp_path):
    cases = [(["--realtime", "--rate", "44100", "--channels", "2"], "paces an input file"),
             ([tmp_path / "missing.mp3"], "no such file"),
             (["--rate", "44100"], "give --rate and --channels")]
    (tmp_path / "text.mp3").write_text("not audio")
    cases.append(([tmp_path / "text.mp3"], "not a readable audio stream"))
    for args, words in cases:
        r = live(*args, data=b"")
        err = r.stderr.decode().strip().splitlines()
        assert r.returncode == 1 and len(err) == 1 and words in err[0], (args, err)


def test_real_time_clock_paces_and_counts_late_blocks():
    """``RealTime`` on a simulated clock: real time starts when the first block's output is
    out; pacing waits for each later block; a block whose output comes after the next one is
    due is late, by exactly how much."""
    from vocalsep.live import RealTime

    now = [100.0]
    clock = RealTime(1000, 100, pace=True, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    clock.arrived(100)
    now[0] += 0.5  # the first block warms up: not late
    assert clock.written() == 0.0 and clock.t0 == pytest.approx(100.4)
    clock.arrived(100)  # due at t0 + 0.2: paced until then
    assert now[0] == pytest.approx(100.6)
    now[0] += 0.05
    assert clock.written() == 0.0  # out before the next block is due (100.7)
    clock.arrived(100)
    assert now[0] == pytest.approx(100.7)
    now[0] += 0.13  # 30 ms after the next block was due
    assert clock.written() == pytest.approx(0.03)
    assert (clock.blocks, clock.late) == (3, 1) and "1 of 3 blocks were late" in clock.report()


def test_the_live_model_hears_short_segments_better_than_the_default(example_song):
    """``-m live`` (the default fine-tuned on 32-frame examples): through the pipe at 0.44 s
    (16 frames) and 0.81 s (32 frames), each segment heard with its past, its vocals are closer
    to the true ones of a song it never saw (MUSDB18's stempeg example, a test track) than the
    default's at the same segments."""
    from conftest import snr_db

    mixture, vocals, rate = example_song
    for seconds, frames, margin in ((0.5, 16, 0.75), (0.9, 32, 0.25)):
        r = live("-m", "live", "--stem", "vocals", "--rate", rate, "--channels", 2, "--latency", seconds,
                 "-v", data=mixture.T.astype("<f4").tobytes())
        assert r.returncode == 0, r.stderr.decode()
        segment, latency = stated_latency(r.stderr)
        assert segment == frames
        tuned = np.frombuffer(r.stdout, dtype="<f4").reshape(-1, 2).T[:, latency:]
        default = Separator("default", SeparatorOptions(segment=frames)).separate(mixture, rate)["vocals"]
        assert snr_db(vocals, tuned) > snr_db(vocals, default) + margin, frames
