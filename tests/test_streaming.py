"""Streaming separation equals whole-song separation (every shipped model, every path: same
rate, resampled, full band), for any block size; short inputs; what cannot stream."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import snr_db
from vocalsep import audio as audio_io
from vocalsep.separate import Separator, SeparatorOptions
from vocalsep.pipeline.stream import separate_blocks


def _streamed(sep: Separator, x: np.ndarray, rate: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    pieces = list(separate_blocks(sep.stream(rate, x.shape[0]),
                                  (x[:, i:i + block] for i in range(0, x.shape[1], block))))
    return (np.concatenate([p[0] for p in pieces], axis=1),
            np.concatenate([p[1] for p in pieces], axis=1))


@pytest.fixture(scope="module")
def song(example_song):
    """The example song twice (13.5 s, longer than one 11.9-s segment of the default)."""
    mixture, _, rate = example_song
    return np.tile(mixture, (1, 2)), rate


@pytest.mark.parametrize("model,rate,channels,block", [
    ("default", 44_100, 2, 7777),    # the model's rate: no resampling, a mask per channel
    ("default", 48_000, 2, 50_000),  # full band: masks mapped onto the 48 kHz STFT
    ("default", 16_000, 1, 1000),    # resampled up and back down
    ("small", 44_100, 2, 12_345),    # full band from a 16 kHz model
    ("small", 16_000, 1, 3),
    ("paper", 16_000, 1, 4000),
])
def test_streaming_equals_whole_song(song, model, rate, channels, block):
    mixture, native = song
    x = audio_io.resample(mixture, native, rate)
    if model == "paper":
        x = x[:, : 4 * rate]  # the paper's CNN is slow; 4 s cover several of its blocks
    x = x[:channels] if channels == 2 else x.mean(axis=0, keepdims=True)
    sep = Separator(model)
    whole = sep.separate(x, rate)
    vocals, acc = _streamed(sep, x, rate, block)
    assert vocals.shape == acc.shape == x.shape
    assert np.abs(vocals - whole["vocals"]).max() < 1e-5
    assert snr_db(whole["vocals"], vocals) > 100
    assert np.abs(vocals + acc - x).max() < 1e-6


@pytest.mark.parametrize("n", [0, 1, 100, 2800])
def test_short_inputs_are_padded_to_one_window(n):
    """Shorter than one model window: separated as the song zero-padded to it, then cut."""
    sep = Separator("small")
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32) * 0.1
    job = sep.stream(44_100, 2)
    pieces = list(separate_blocks(job, [x[:, : n // 2], x[:, n // 2:]]))
    if n == 0:
        assert pieces == []
        return
    vocals = np.concatenate([p[0] for p in pieces], axis=1)
    assert vocals.shape == x.shape and n < job.plan.min_len
    padded = np.pad(x, ((0, 0), (0, job.plan.min_len - n)))
    np.testing.assert_allclose(vocals, sep.separate(padded, 44_100)["vocals"][:, :n], atol=1e-6)


def test_silence_gives_silence():
    sep = Separator("default")
    vocals, acc = _streamed(sep, np.zeros((2, 100_000), np.float32), 44_100, 10_000)
    assert vocals.shape == (2, 100_000) and not vocals.any() and not acc.any()


@pytest.mark.parametrize("options", [{"reconstruct": "griffinlim", "griffin_lim_iterations": 4},
                                     {"wiener": 1}])
def test_post_filters_end_the_stream(song, options):
    """Griffin-Lim and the Wiener filter need the whole song: the stream collects its frames
    and reconstructs at the end, whatever the blocks."""
    mixture, rate = song
    x = mixture[:, : 3 * rate]
    sep = Separator("small", SeparatorOptions(**options))
    job = sep.stream(rate, 2)
    assert job.feed(x[:, : rate]) == [] and job.feed(x[:, rate:]) == []  # nothing before the end
    vocals, acc = job.finish()[0]
    assert vocals.shape == x.shape
    np.testing.assert_allclose(vocals, sep.separate(x, rate)["vocals"], atol=1e-5)
    assert np.abs(vocals + acc - x).max() < 1e-6


def test_blocks_of_the_wrong_shape_are_refused():
    job = Separator("small").stream(16_000, 1)
    with pytest.raises(ValueError, match="expected"):
        job.feed(np.zeros((2, 10), np.float32))
