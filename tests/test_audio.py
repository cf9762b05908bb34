"""Reading and writing audio: formats, rates, channels, errors, atomic writes, resampling."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from badfiles import BAD_FILES
from conftest import tone
from vocalsep import audio
from vocalsep.audio import AudioError, StemWriter, prepare_output, read_audio, resample, write_audio

RATES = [8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000]


@pytest.mark.parametrize("ext,tolerance", [("wav", 1e-4), ("flac", 1e-4), ("ogg", 0.05)])
@pytest.mark.parametrize("rate", RATES)
def test_read_rates(tmp_path, ext, tolerance, rate):
    x = tone(rate, 2, seconds=0.05)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x.T, rate, subtype="VORBIS" if ext == "ogg" else "PCM_16")
    a = read_audio(path)
    assert a.rate == rate
    assert a.samples.dtype == np.float32
    assert a.samples.shape == x.shape
    assert a.channels == 2
    assert a.duration == pytest.approx(x.shape[1] / rate)
    assert np.abs(a.samples - x).max() < tolerance


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_read_channels(tmp_path, ext, channels):
    x = tone(16000, channels, seconds=0.05)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x.T, 16000, subtype="VORBIS" if ext == "ogg" else "PCM_24")
    a = read_audio(path)
    assert a.samples.shape == (channels, x.shape[1])
    assert np.abs(a.samples - x).max() < (0.05 if ext == "ogg" else 1e-5)


def test_read_float_wav_exact(tmp_path):
    x = tone(22050, 2) * 1.7  # float wavs may exceed full scale; nothing is clipped on reading
    sf.write(tmp_path / "f.wav", x.T, 22050, subtype="FLOAT")
    a = read_audio(tmp_path / "f.wav")
    np.testing.assert_array_equal(a.samples, x)


def _make_mp3(tmp_path, ffmpeg, rate=44100, channels=2):
    x = tone(rate, channels, seconds=1.0)
    sf.write(tmp_path / "src.wav", x.T, rate)
    mp3 = tmp_path / "tone.mp3"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(tmp_path / "src.wav"), str(mp3)],
                   check=True, timeout=60)
    return mp3, x


@pytest.fixture()
def mp3_tone(tmp_path, ffmpeg):
    return _make_mp3(tmp_path, ffmpeg)


@pytest.mark.parametrize("rate,channels", [(8000, 1), (22050, 2), (44100, 2), (48000, 1)])
def test_read_mp3(tmp_path, ffmpeg, rate, channels):
    path, x = _make_mp3(tmp_path, ffmpeg, rate, channels)
    a = read_audio(path)
    assert a.rate == rate and a.channels == channels
    assert a.samples.dtype == np.float32
    assert abs(a.samples.shape[1] - x.shape[1]) <= 2048  # encoder padding at most
    # still a 440 Hz tone
    spectrum = np.abs(np.fft.rfft(a.samples[0]))
    freqs = np.fft.rfftfreq(a.samples.shape[1], 1 / rate)
    assert abs(freqs[spectrum.argmax()] - 440) < 3


def test_read_mp3_with_wrong_suffix_falls_back_to_ffmpeg(mp3_tone, tmp_path):
    path, _ = mp3_tone
    renamed = tmp_path / "tone.audio"
    renamed.write_bytes(path.read_bytes())
    a = read_audio(renamed)
    assert a.rate == 44100 and a.channels == 2 and a.samples.shape[1] > 40000


def test_stempeg_example_reads_as_stereo_mixture(stempeg_example):
    stempeg = pytest.importorskip("stempeg")
    a = read_audio(stempeg_example)
    assert a.rate == 44100
    assert a.channels == 2
    assert a.duration > 5
    stems, rate = stempeg.read_stems(str(stempeg_example), dtype=np.float32)
    assert rate == 44100
    n = min(stems.shape[1], a.samples.shape[1])
    assert abs(stems.shape[1] - a.samples.shape[1]) < 2048
    # the first stream is the mixture: identical to stempeg's stem 0, unlike any single source
    assert np.abs(a.samples[:, :n] - stems[0, :n].T).max() < 1e-4
    for k in range(1, stems.shape[0]):
        assert np.abs(a.samples[:, :n] - stems[k, :n].T).max() > 0.1


def test_musdb_stem_file_reads(musdb_track):
    a = read_audio(musdb_track)
    assert a.rate == 44100 and a.channels == 2 and a.duration > 5


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unreadable_inputs_raise_audio_error_naming_the_file(tmp_path, case):
    path = BAD_FILES[case](tmp_path)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_permission_denied_on_read(tmp_path):
    p = tmp_path / "secret.wav"
    sf.write(p, tone(16000).T, 16000)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: chmod does not stop reading")
        with pytest.raises(AudioError, match="secret.wav"):
            read_audio(p)
    finally:
        p.chmod(0o644)


# ---------------------------------------------------------------- writing
@pytest.mark.parametrize("ext,bits", [("wav", "16"), ("wav", "24"), ("wav", "float"), ("flac", "16"),
                                      ("flac", "24"), ("ogg", "16")])
def test_write_read_round_trip(tmp_path, ext, bits):
    x = tone(22050, 2, seconds=0.1)
    path = write_audio(tmp_path / f"out.{ext}", x, 22050, bits=bits)
    assert path == tmp_path / f"out.{ext}"
    a = read_audio(path)
    assert a.rate == 22050 and a.samples.shape == x.shape
    tolerance = {"16": 1e-4, "24": 1e-6, "float": 1e-7}[bits] if ext != "ogg" else 0.05
    assert np.abs(a.samples - x).max() < tolerance
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_16_bit_samples_are_rounded_not_wrapped(tmp_path, ext, example_song):
    """16-bit files get the nearest int16 (we convert, not libsndfile, which floors in WAV):
    a real song reads back within half a step; full scale and beyond hold at the int16 range
    (clip mode none writes what it is given, held, never wrapped around)."""
    mixture, _, rate = example_song
    song = mixture[:, : rate] * np.float32(0.9)
    a = read_audio(write_audio(tmp_path / f"song.{ext}", song, rate, bits="16")).samples
    assert np.abs(a - song).max() <= 0.5 / 32768 + 1e-7
    edges = np.array([[1.0, -1.0, 1.5, -1.5, 0.5 / 32768 + 1e-6, -1.6 / 32768]], np.float32)
    path = write_audio(tmp_path / f"edges.{ext}", edges, 8000, bits="16", clip="none")
    ints = sf.read(path, dtype="int16")[0]
    assert ints.tolist() == [32767, -32768, 32767, -32768, 1, -2]
    # a stem over full scale is rescaled at the end (through a float file): rounded the same way
    loud = song * np.float32(1.2 / np.abs(song).max())
    path = write_audio(tmp_path / f"loud.{ext}", loud, rate, bits="16", clip="rescale")
    ints = sf.read(path, dtype="int16", always_2d=True)[0].T.astype(np.float64)
    expected = np.clip(np.rint(loud.astype(np.float64) / 1.2 * 32768), -32768, 32767)
    assert np.abs(ints - expected).max() <= 1 and np.mean(ints == expected) > 0.99


def test_write_mp3(tmp_path, ffmpeg):
    x = tone(44100, 2, seconds=0.5)
    path = write_audio(tmp_path / "out.mp3", x, 44100)
    a = read_audio(path)
    assert a.rate == 44100 and a.channels == 2
    assert abs(a.samples.shape[1] - x.shape[1]) <= 2048
    assert not list(tmp_path.glob(".*part"))


def test_write_mp3_never_changes_the_rate_silently(tmp_path, ffmpeg):
    x = tone(96000, 1, seconds=0.2)
    try:
        path = write_audio(tmp_path / "out.mp3", x, 96000)
    except AudioError as err:  # refusing is fine
        assert "out.mp3" in str(err)
        assert not list(tmp_path.iterdir())
        return
    assert read_audio(path).rate == 96000


def test_write_creates_folders_and_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_audio(tmp_path / "a" / "b" / "out.wav", tone(8000), 8000)
    finally:
        os.umask(old)
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_failure_is_atomic(tmp_path):
    target = tmp_path / "out.wav"
    write_audio(target, tone(16000), 16000)
    before = target.read_bytes()
    with pytest.raises(AudioError) as info:
        write_audio(target, tone(16000) * 0.1, 0)  # libsndfile refuses a rate of 0
    assert str(target) in str(info.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_write_interrupted_midway_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    write_audio(target, tone(16000), 16000)
    before = target.read_bytes()

    def half_write(self, data):
        with open(self.name, "ab") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio.sf.SoundFile, "write", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_audio(target, tone(16000) * 0.2, 16000)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_write_os_error_becomes_audio_error(tmp_path, monkeypatch):
    target = tmp_path / "new.flac"

    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio.sf.SoundFile, "write", disk_full)
    with pytest.raises(AudioError, match="No space left"):
        write_audio(target, tone(16000), 16000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("samples,problem", [
    (np.array([[0.0, np.nan, 0.1]], np.float32), "NaN"),
    (np.array([[0.0, np.inf]], np.float32), "NaN"),
])
def test_write_refuses_non_finite(tmp_path, samples, problem):
    target = tmp_path / "out.wav"
    with pytest.raises(AudioError, match=problem):
        write_audio(target, samples, 16000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,kwargs,match", [
    ("out.xyz", {}, "unknown output format"),
    ("out.wav", {"bits": "8"}, "bit depth"),
])
def test_write_rejects_bad_options(tmp_path, name, kwargs, match):
    with pytest.raises(AudioError, match=match):
        write_audio(tmp_path / name, tone(8000), 8000, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_into_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod 0o500 does not stop writing")
        target = folder / "out.wav"
        with pytest.raises(AudioError) as info:
            write_audio(target, tone(8000), 8000)
        assert str(target) in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_write_permission_denied_is_an_audio_error(tmp_path, monkeypatch):
    """The same path as an unwritable folder, simulated so that it also runs as root."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio.tempfile, "mkstemp", denied)
    target = tmp_path / "out.wav"
    with pytest.raises(AudioError) as info:
        write_audio(target, tone(8000), 8000)
    assert str(target) in str(info.value) and "Permission denied" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_write_below_a_file_is_an_audio_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "out.wav"
    with pytest.raises(AudioError) as info:
        write_audio(target, tone(8000), 8000)
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    assert blocker.read_text() == "x"


# ---------------------------------------------------------------- prepare_output
def test_prepare_output_leaves_safe_signals_alone():
    x = np.array([[0.5, -1.0, 0.25]], np.float32)
    for clip in ("rescale", "clamp", "none"):
        np.testing.assert_array_equal(prepare_output(x, clip), x)


def test_prepare_output_rescale_divides_by_peak():
    x = np.array([[0.5, -2.0, 1.0], [4.0, 0.0, -1.0]], np.float32)
    out = prepare_output(x, "rescale")
    np.testing.assert_allclose(out, x / 4.0)
    assert np.abs(out).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(prepare_output(x), out)  # the default


def test_prepare_output_clamp_clips():
    x = np.array([[0.5, -2.0, 1.5, -0.3]], np.float32)
    np.testing.assert_array_equal(prepare_output(x, "clamp"), np.array([[0.5, -1.0, 1.0, -0.3]], np.float32))


def test_prepare_output_none_passes_through():
    x = np.array([[3.0, -2.0]], np.float32)
    np.testing.assert_array_equal(prepare_output(x, "none"), x)


def test_prepare_output_unknown_mode_on_loud_signal():
    with pytest.raises(ValueError, match="unknown clip mode"):
        prepare_output(np.array([[2.0]], np.float32), "wrap")


def test_prepare_output_unknown_mode_on_quiet_signal():
    with pytest.raises(ValueError, match="unknown clip mode"):
        prepare_output(np.array([[0.5]], np.float32), "wrap")


def test_write_applies_clip_modes(tmp_path):
    x = np.array([[0.5, -2.0, 1.0, 0.0]], np.float32)
    rescaled = read_audio(write_audio(tmp_path / "r.wav", x, 8000)).samples
    np.testing.assert_allclose(rescaled, x / 2, atol=1e-4)
    clamped = read_audio(write_audio(tmp_path / "c.wav", x, 8000, clip="clamp")).samples
    np.testing.assert_allclose(clamped, np.clip(x, -1, 1), atol=1e-4)
    floats = read_audio(write_audio(tmp_path / "f.wav", x, 8000, bits="float", clip="none")).samples
    np.testing.assert_array_equal(floats, x)


@pytest.mark.parametrize("ext,bits,clip", [("wav", "16", "rescale"), ("flac", "24", "rescale"),
                                           ("wav", "float", "rescale"), ("wav", "16", "clamp"),
                                           ("wav", "float", "none"), ("aiff", "16", "rescale"),
                                           ("mp3", "16", "rescale")])
@pytest.mark.parametrize("at", [25_000, 5])
def test_stem_writer_rescales_a_song_that_goes_over_full_scale(tmp_path, ext, bits, clip, at):
    """Blocks are written straight into the final format while they stay within full scale;
    a later block over it makes the whole song be rescaled by its peak all the same (or
    clamped, or kept as float), and a stem that stays within full scale is written as given."""
    rng = np.random.default_rng(0)
    quiet = (rng.uniform(-0.9, 0.9, (2, 30_000))).astype(np.float32)
    loud = quiet.copy()
    loud[:, at] = [1.6, -0.4]  # the peak arrives in the last block, or the first
    paths = {"loud": tmp_path / f"loud.{ext}", "quiet": tmp_path / f"quiet.{ext}"}
    with StemWriter(paths, 16_000, 2, bits, clip) as writer:
        for i in range(0, 30_000, 10_000):
            writer.write({"loud": loud[:, i:i + 10_000], "quiet": quiet[:, i:i + 10_000]})
        writer.finish()
    expected = {"rescale": loud / 1.6, "clamp": np.clip(loud, -1, 1), "none": loud}[clip]
    step = {"16": 2 / 2 ** 15, "24": 2 / 2 ** 23, "float": 1e-7}[bits]
    got, quiet_got = (read_audio(paths[k]).samples for k in ("loud", "quiet"))
    if ext == "mp3":  # lossy, with a codec delay: compare levels only (rescaled: 1/1.6 = -4 dB)
        def rms(x):
            return float(np.sqrt(np.mean(np.square(x))))
        assert rms(got) == pytest.approx(rms(expected), rel=0.1)
        assert rms(quiet_got) == pytest.approx(rms(quiet), rel=0.1)
        return
    assert got.shape == loud.shape
    np.testing.assert_allclose(got, expected, atol=step)
    np.testing.assert_allclose(quiet_got, quiet, atol=step)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_a_playlist_disguised_as_audio_cannot_make_ffmpeg_read_other_files(tmp_path, ffmpeg):
    """An HLS playlist named .mp3 that points at a real local file is refused, not decoded (it
    would hand that file's content back as "vocals + accompaniment")."""
    secret = write_audio(tmp_path / "secret.wav", tone(16_000, 1), 16_000)
    playlist = tmp_path / "song.mp3"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1,\nfile://{secret}\n"
                        "#EXT-X-ENDLIST\n")
    with pytest.raises(AudioError, match="song.mp3"):
        read_audio(playlist)


def test_a_corrupt_file_that_makes_ffmpeg_log_a_lot_does_not_hang(tmp_path, ffmpeg):
    """A large garbage .mp3 makes ffmpeg log far more than a pipe holds; decoding must end
    (with samples or with an error), not wait forever on a full pipe."""
    rng = np.random.default_rng(1)
    head = write_audio(tmp_path / "tone.mp3", tone(16_000, 1, seconds=1.0), 16_000).read_bytes()
    # 3,000 frame headers with random payloads: one error line each, ~540 KB of log
    frames = b"".join(b"\xff\xfb\x90\x64" + rng.integers(0, 256, 413, dtype=np.uint8).tobytes()
                      for _ in range(3000))
    bad = tmp_path / "garbage.mp3"
    bad.write_bytes(head[:4000] + frames)
    code = ("import sys; from vocalsep.audio import read_audio, AudioError\n"
            "try:\n    read_audio(sys.argv[1])\nexcept AudioError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert "garbage.mp3" in result.stdout and "could not be decoded" in result.stdout


# ---------------------------------------------------------------- resampling
@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (16000, 44100), (48000, 22050), (8000, 192000)])
def test_resample_keeps_a_440_hz_tone(rate_in, rate_out):
    x = tone(rate_in, 2, seconds=1.0)
    y = resample(x, rate_in, rate_out)
    assert y.dtype == np.float32
    assert y.shape[0] == 2
    assert abs(y.shape[1] - rate_out) <= 1
    for ch in range(2):
        spectrum = np.abs(np.fft.rfft(y[ch] * np.hanning(y.shape[1])))
        freqs = np.fft.rfftfreq(y.shape[1], 1 / rate_out)
        assert abs(freqs[spectrum.argmax()] - 440) <= 1.5
    # level is kept (away from the edges)
    mid = y[:, y.shape[1] // 4: 3 * y.shape[1] // 4]
    assert np.abs(mid).max() == pytest.approx(0.5, abs=0.02)


def test_resample_same_rate_is_identity():
    x = tone(16000, 1)
    assert resample(x, 16000, 16000) is x


def test_to_mono():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    np.testing.assert_allclose(audio.to_mono(x), [[0.5, 0.5]])
