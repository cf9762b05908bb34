"""The spatial step (vocalsep.pipeline.spatial): one multichannel Wiener step on the mask's
estimates, window by window, on real stereo audio."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli, snr_db
from vocalsep.audio import read_audio
from vocalsep.filtering import wiener_from_mask
from vocalsep.live import live_separator
from vocalsep.pipeline.plan import SeparatorOptions, make_plan
from vocalsep.pipeline.spatial import SpatialISTFT, spatial_filter, window_frames
from vocalsep.pipeline.stft import StreamingISTFT, StreamingSTFT
from vocalsep.separate import Separator


@pytest.fixture(scope="module")
def stereo_frames(musdb_track):
    """Frames ``(2, k, bins)`` of 2 s of a real 44.1 kHz stereo MUSDB mixture and a mask per
    channel from each channel's own magnitudes (a soft mask that differs between channels)."""
    a = read_audio(musdb_track)
    x = np.ascontiguousarray(a.samples[:, a.rate: 3 * a.rate])
    stft = StreamingSTFT(4096, 1024, 2)
    frames = np.concatenate([stft.feed(x), stft.finish()], axis=1)
    mag = np.abs(frames)
    return frames, mag / (mag + mag.mean(axis=(1, 2), keepdims=True))


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_the_step_is_the_whole_song_filters_first_step(stereo_frames, power):
    """numpy, closed form for two channels = vocalsep.filtering's torch EM, one iteration, both
    in float64: every bin within 0.1 % of the mixture's magnitude there."""
    frames, masks = stereo_frames
    ours = spatial_filter(frames, masks, power)
    theirs = wiener_from_mask(torch.from_numpy(masks.swapaxes(1, 2).copy()),
                              torch.from_numpy(frames.swapaxes(1, 2).copy()), 1, sources=(0,),
                              power=power)[0].numpy().swapaxes(1, 2)
    assert (np.abs(ours - theirs) / (np.abs(frames).max(axis=0) + 1e-6)).max() < 1e-3
    # and it does something: the channels' combination is not the mask's
    assert np.abs(ours - masks * frames).max() > 1e-2 * np.abs(frames).max()


def test_identical_channels_keep_the_mask(stereo_frames):
    frames, masks = stereo_frames
    twice, mask = np.repeat(frames[:1], 2, axis=0), np.repeat(masks[:1], 2, axis=0)
    peak = np.abs(frames).max()
    assert np.abs(spatial_filter(twice, mask) - mask * twice).max() < 1e-4 * peak
    assert np.abs(spatial_filter(frames[:1], masks[:1]) - masks[:1] * frames[:1]).max() < 1e-5 * peak


def test_windows_lie_on_the_songs_grid_whatever_the_blocks(stereo_frames):
    """Windows of 16 frames from the first frame on, the last one 8 to 23 frames long, each
    filtered on its own below ``bins`` (above: the mask alone), then the iSTFT; blocks of any
    size give the same samples."""
    frames, masks = stereo_frames
    k, window, bins = frames.shape[1], 16, 600
    assert k % window < window // 2  # so the rest joins the last window: 87 = 4 × 16 + 23

    def run(cuts: list[int]) -> np.ndarray:
        out = SpatialISTFT(4096, 1024, 2, window, bins=bins)
        pieces = [out.feed(frames[:, a:b], masks[:, a:b]) for a, b in zip([0, *cuts], [*cuts, k])]
        return np.concatenate([*pieces, out.finish((k - 1) * 1024)], axis=1)

    expected = masks * frames
    starts = [0]
    while k - starts[-1] >= window + window // 2:
        starts.append(starts[-1] + window)
    for a, b in zip(starts, [*starts[1:], k]):
        expected[:, a:b, :bins] = spatial_filter(frames[:, a:b, :bins], masks[:, a:b, :bins])
    assert [b - a for a, b in zip(starts, [*starts[1:], k])][-1] == window + k % window
    istft = StreamingISTFT(4096, 1024, 2)
    reference = np.concatenate([istft.feed(expected), istft.finish((k - 1) * 1024)], axis=1)
    whole = run([])
    assert np.abs(whole - reference).max() < 1e-5 * np.abs(reference).max()
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(np.arange(1, k), size=9, replace=False).tolist())
    assert np.abs(run(cuts) - whole).max() < 1e-6
    # one window over all frames is another output: the windows matter
    assert np.abs(run_whole_song(frames, masks, bins) - whole).max() > 1e-3 * np.abs(whole).max()
    assert window_frames(44_100 / 1024) == 431  # 10 s


def run_whole_song(frames: np.ndarray, masks: np.ndarray, bins: int) -> np.ndarray:
    """The step over all frames at once (one window), then the iSTFT."""
    k = frames.shape[1]
    out = SpatialISTFT(4096, 1024, 2, k, bins=bins)
    return np.concatenate([out.feed(frames, masks), out.finish((k - 1) * 1024)], axis=1)


def test_a_voice_panned_apart_from_the_band_is_taken_from_where_it_is(mir1k_stems):
    """A real MIR-1K clip mixed in stereo, the voice left of the backing: the small model's
    mask is one for both channels, and the step takes the voice more from the left."""
    vocals, accompaniment, rate = mir1k_stems
    voice = np.stack([0.7 * vocals, 0.5 * vocals])
    mix = voice + np.stack([0.5 * accompaniment, 0.7 * accompaniment])
    on = Separator("small", SeparatorOptions(spatial=True)).separate(mix, rate)["vocals"]
    off = Separator("small", SeparatorOptions(spatial=False)).separate(mix, rate)["vocals"]
    assert snr_db(voice, on) > snr_db(voice, off) + 2  # measured: 16.1 against 12.1 dB
    # centred (both channels the same), the one mask stays as it was
    centred = np.stack([vocals + accompaniment] * 2)
    a = Separator("small", SeparatorOptions(spatial=True)).separate(centred, rate)["vocals"]
    b = Separator("small", SeparatorOptions(spatial=False)).separate(centred, rate)["vocals"]
    assert np.abs(a - b).max() < 1e-4 * np.abs(centred).max()


def test_who_gets_the_step():
    sep = Separator("default")
    cfg, heard = sep.backend.config, sep.backend.heard_bins

    def plan(options: SeparatorOptions, stereo_model: bool = True, rate: int = 44_100, channels: int = 2):
        return make_plan(cfg, stereo_model, rate, channels, options, heard)

    on = plan(SeparatorOptions())
    assert on.spatial_bins == heard  # the band the model hears, at its own STFT
    at48 = plan(SeparatorOptions(), rate=48_000)  # full band: the input's STFT, the same Hz
    assert abs(at48.spatial_bins * 48_000 / at48.n_fft - heard * 44_100 / cfg.n_fft) <= 48_000 / at48.n_fft
    for off in (plan(SeparatorOptions(), channels=1), plan(SeparatorOptions(mask="binary")),
                plan(SeparatorOptions(wiener=1)), plan(SeparatorOptions(reconstruct="griffinlim")),
                plan(SeparatorOptions(spatial=False)), plan(SeparatorOptions(), stereo_model=False)):
        assert off.spatial_bins == 0
    assert plan(SeparatorOptions(spatial=True), stereo_model=False).spatial_bins > 0
    assert plan(SeparatorOptions(spatial=True), channels=1).spatial_bins == 0  # nothing to combine
    for both in (SeparatorOptions(spatial=True, wiener=1), SeparatorOptions(spatial=True, reconstruct="griffinlim")):
        with pytest.raises(ValueError, match="not with --wiener"):
            Separator("default", both)
    live, _ = live_separator(None, 44_100, 2, 1024, 1.0)
    assert live.options.spatial is False


def test_the_cli_turns_it_off(example_song, tmp_path):
    mixture, _, rate = example_song
    sf.write(tmp_path / "song.wav", mixture.T, rate, subtype="FLOAT")
    for flag in ("--spatial", "--no-spatial"):
        r = run_cli("separate", tmp_path / "song.wav", "-o", tmp_path / flag, "--format", "wav",
                    "--bits", "float", flag)
        assert r.returncode == 0, r.stderr
    on, _ = sf.read(tmp_path / "--spatial" / "song" / "vocals.wav", dtype="float32", always_2d=True)
    off, _ = sf.read(tmp_path / "--no-spatial" / "song" / "vocals.wav", dtype="float32", always_2d=True)
    api = Separator("default", SeparatorOptions(spatial=False)).separate(mixture, rate)["vocals"]
    assert np.abs(off.T - api).max() < 1e-5
    assert np.abs(on.T - off.T).max() > 1e-3
