"""Properties of the signal path for arbitrary lengths, values, block sizes (hypothesis).

STFT/iSTFT round trips, the streaming transforms against the whole-signal ones for any way of
cutting the signal into blocks, overlap-add against a plain loop, masks, mapping a mask to the
full band, windows, the audio reader and writer, and whole separations (shapes, finiteness,
stems adding up, silence, streaming = whole, bad arrays refused).

``VOCALSEP_PROPERTY_EXAMPLES`` sets the examples per property (default 25, derandomized so CI
is repeatable; ``python -m vocalsep.reliability run --full`` uses 500, random).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vocalsep import audio as audio_io
from vocalsep.masks import binarize, ideal_binary_mask, ideal_ratio_mask
from vocalsep.pipeline.bands import full_band_mask
from vocalsep.pipeline.plan import full_band_stft
from vocalsep.spectral import cut_windows, istft, join_windows, stft
from vocalsep.pipeline.stft import StreamingISTFT, StreamingSTFT, _overlap_add, hann

EXAMPLES = int(os.environ.get("VOCALSEP_PROPERTY_EXAMPLES", "25"))
FULL = "VOCALSEP_PROPERTY_EXAMPLES" in os.environ
SETTINGS = dict(deadline=None, database=None, derandomize=not FULL,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def examples(fraction: float = 1.0):
    return settings(max_examples=max(5, int(EXAMPLES * fraction)), **SETTINGS)


# --- signals ------------------------------------------------------------------------------------

@st.composite
def signals(draw, max_channels: int = 2, max_len: int = 6000, min_len: int = 1) -> np.ndarray:
    """float32 ``(channels, n)``: arbitrary values (short), or long noise, tones, DC, impulses,
    silence at any level from 1e-30 to 1e6."""
    channels = draw(st.integers(1, max_channels))
    if draw(st.booleans()):
        n = draw(st.integers(min_len, min(max_len, 300)))
        values = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)
        return draw(arrays(np.float32, (channels, n), elements=values))
    n = draw(st.integers(min_len, max_len))
    kind = draw(st.sampled_from(["noise", "tone", "dc", "impulse", "zeros", "square"]))
    level = draw(st.sampled_from([1e-30, 1e-6, 0.5, 1.0, 1e3, 1e6]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(n)
    x = {"noise": lambda: rng.standard_normal((channels, n)),
         "tone": lambda: np.sin(2 * np.pi * rng.uniform(0, 0.5) * t + rng.uniform(0, 6, (channels, 1))),
         "dc": lambda: np.ones((channels, n)),
         "impulse": lambda: np.eye(1, n, int(rng.integers(n))).repeat(channels, 0),
         "zeros": lambda: np.zeros((channels, n)),
         "square": lambda: np.tile(np.sign(np.sin(2 * np.pi * rng.uniform(0.001, 0.1) * t + 0.1)), (channels, 1)),
         }[kind]()
    return (x * level).astype(np.float32)


def peak(x) -> float:
    return float(np.abs(np.asarray(x, dtype=np.float64)).max(initial=0.0))


#: (n_fft, hop) pairs the code uses or could: powers of two, the full-band sizes (2822/706 for
#: 44.1 kHz from 1024/256 at 16 kHz), odd hops
FFT_SIZES = st.sampled_from([(16, 4), (16, 8), (64, 16), (100, 25), (256, 64), (1024, 256), (1024, 512),
                             (2048, 512), (2822, 706), (3072, 768), (512, 127)])


def partition(draw, n: int, sizes=(7, 64, 300, 4096)) -> list[int]:
    """Block sizes adding up to ``n``: all one size (from ``sizes``), or cut at up to 12
    arbitrary points (so blocks of any length, empty ones included)."""
    if draw(st.booleans()):
        size = draw(st.sampled_from(sizes))
        return [size] * (n // size) + ([n % size] if n % size else [])
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=12)))
    bounds = [0, *cuts, n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def blocks_of(x, sizes: list[int]):
    start = 0
    for size in sizes:
        yield x[..., start:start + size]
        start += size


# --- STFT / iSTFT --------------------------------------------------------------------------------

def round_trip_bound(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Per-sample bound on an iSTFT's error for ``x``: 1e-5 of the peak where the squared
    windows of the frames covering a sample add up to 1 or more, growing as 1/√(their sum) where
    it is less. The iSTFT divides each overlap-added sample by that sum, while float32 rounding
    in a frame enters weighted by the window alone: at the last samples of a signal whose length
    is just under a multiple of the hop only the far tail of the last window covers them (a sum
    of 1e-10 at n_fft 1024, hop 512), and there no float32 iSTFT can be more exact."""
    frames = x.shape[1] // hop + 1
    squares = np.broadcast_to(hann(n_fft) ** 2, (1, frames, n_fft))
    envelope = _overlap_add(squares, hop)[0, n_fft // 2: n_fft // 2 + x.shape[1]].astype(np.float64)
    return 1e-5 * peak(x) / np.sqrt(np.minimum(envelope, 1.0)) + 1e-35


@examples()
@given(x=signals(), fft=FFT_SIZES)
def test_stft_istft_round_trip(x, fft):
    n_fft, hop = fft
    spec = stft(torch.from_numpy(x), n_fft, hop)
    assert spec.shape == (x.shape[0], n_fft // 2 + 1, x.shape[1] // hop + 1)
    assert torch.isfinite(spec).all()
    y = istft(spec, x.shape[1], n_fft, hop).numpy()
    assert y.shape == x.shape
    assert (np.abs(y - x) <= round_trip_bound(x, n_fft, hop)).all()


@examples()
@given(data=st.data(), x=signals(max_len=9000), fft=FFT_SIZES)
def test_streaming_stft_equals_whole_for_any_blocks(data, x, fft):
    n_fft, hop = fft
    sizes = partition(data.draw, x.shape[1])
    s = StreamingSTFT(n_fft, hop, x.shape[0])
    frames = [s.feed(b) for b in blocks_of(x, sizes)] + [s.finish()]
    whole = stft(torch.from_numpy(x), n_fft, hop)
    streamed = torch.from_numpy(np.concatenate(frames, axis=1)).transpose(1, 2)  # frames first
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() <= 1e-5 * peak(x) * n_fft ** 0.5 + 1e-35


@examples()
@given(data=st.data(), x=signals(max_len=9000), fft=FFT_SIZES)
def test_streaming_istft_equals_whole_for_any_frames(data, x, fft):
    """Masked frames (as separation makes them) in any grouping give the whole iSTFT."""
    n_fft, hop = fft
    n = x.shape[1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    spec = stft(torch.from_numpy(x), n_fft, hop) * torch.from_numpy(
        rng.uniform(0, 1, (1, n_fft // 2 + 1, n // hop + 1)).astype(np.float32))
    whole = istft(spec, n, n_fft, hop)
    sizes = partition(data.draw, spec.shape[-1], (1, 3, 50))
    s = StreamingISTFT(n_fft, hop, x.shape[0])
    parts = [s.feed(f.transpose(1, 2).numpy()) for f in blocks_of(spec, sizes)] + [s.finish(n)]
    streamed = torch.from_numpy(np.concatenate(parts, axis=1))
    assert streamed.shape == whole.shape
    assert torch.isfinite(streamed).all()
    assert ((streamed - whole).abs().numpy() <= round_trip_bound(x, n_fft, hop)).all()


@examples()
@given(data=st.data(), x=signals(max_len=9000), fft=FFT_SIZES)
def test_streaming_round_trip_gives_the_input(data, x, fft):
    n_fft, hop = fft
    sizes = partition(data.draw, x.shape[1], (100, 4410))
    fwd, inv = StreamingSTFT(n_fft, hop, x.shape[0]), StreamingISTFT(n_fft, hop, x.shape[0])
    out = [inv.feed(fwd.feed(b)) for b in blocks_of(x, sizes)]
    out += [inv.feed(fwd.finish()), inv.finish(x.shape[1])]
    y = np.concatenate(out, axis=1)
    assert y.shape == x.shape
    assert (np.abs(y - x) <= round_trip_bound(x, n_fft, hop)).all()


@examples()
@given(channels=st.integers(1, 3), n_fft=st.integers(1, 64), k=st.integers(1, 40), hop=st.integers(1, 96),
       seed=st.integers(0, 2**32 - 1))
def test_overlap_add_equals_a_loop(channels, n_fft, k, hop, seed):
    chunks = np.random.default_rng(seed).standard_normal((channels, k, n_fft)).astype(np.float32)
    expected = np.zeros((channels, (k - 1) * hop + n_fft), dtype=np.float32)
    for j in range(k):
        expected[:, j * hop:j * hop + n_fft] += chunks[:, j]
    np.testing.assert_allclose(_overlap_add(chunks, hop), expected, atol=1e-5, rtol=1e-5)


@examples()
@given(bins=st.integers(1, 20), frames=st.integers(0, 500), width=st.integers(1, 150))
def test_cut_and_join_windows_round_trip(bins, frames, width):
    spec = torch.arange(bins * frames, dtype=torch.float32).reshape(bins, frames)
    windows = cut_windows(spec, width)
    assert windows.shape == (max(1, -(-frames // width)), bins, width)
    assert torch.equal(join_windows(windows, frames), spec)


# --- masks ---------------------------------------------------------------------------------------

MAGNITUDES = arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(1, 30)),
                    elements=st.one_of(st.just(0.0), st.floats(0, float(np.float32(1e13)), width=32)))


@examples()
@given(v=MAGNITUDES, seed=st.integers(0, 2**32 - 1), power=st.sampled_from([1.0, 2.0]))
def test_ideal_masks(v, seed, power):
    """Magnitudes up to 1e13: what the STFT of samples within ``audio.MAX_LEVEL`` can reach."""
    a = np.random.default_rng(seed).permutation(v.ravel()).reshape(v.shape)
    v, a = torch.from_numpy(v), torch.from_numpy(a)
    ibm = ideal_binary_mask(v, a)
    assert torch.equal(ibm, (v > a).float())
    irm = ideal_ratio_mask(v, a, power)
    assert torch.isfinite(irm).all() and (irm >= 0).all() and (irm <= 1).all()
    both = (v > 1e-3) | (a > 1e-3)  # where one is not negligible against EPS, the shares add up to 1
    assert torch.allclose((irm + ideal_ratio_mask(a, v, power))[both], torch.ones(1), atol=1e-4)
    assert torch.equal(binarize(irm, 0.5), (irm > 0.5).float())


@examples(0.5)
@given(data=st.data(), rates=st.sampled_from([(16000, 1024, 256, 44100), (16000, 1024, 256, 48000),
                                              (44100, 4096, 1024, 96000), (16000, 2048, 512, 192000),
                                              (16000, 1024, 256, 16000)]),
       model_frames=st.integers(1, 60), channels=st.integers(1, 2))
def test_full_band_mask_stays_a_mask(data, rates, model_frames, channels):

    model_rate, model_n_fft, model_hop, rate = rates
    n_fft, hop = full_band_stft(model_n_fft, model_hop, model_rate, rate)
    frames = data.draw(st.integers(1, int(model_frames * model_hop * rate / (model_rate * hop)) + 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mask = rng.uniform(0, 1, (channels, model_n_fft // 2 + 1, model_frames)).astype(np.float32)
    out = full_band_mask(mask, model_rate, model_n_fft, model_hop, rate, n_fft, hop, frames)
    assert out.shape == (channels, n_fft // 2 + 1, frames)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1 + 1e-6).all()
    c = float(rng.uniform(0, 1))
    flat = full_band_mask(np.full_like(mask, c), model_rate, model_n_fft, model_hop, rate, n_fft, hop, frames)
    np.testing.assert_allclose(flat, np.float32(c), rtol=1e-5, atol=1e-6)


# --- reading and writing -----------------------------------------------------------------------------

@examples(0.5)
@given(x=signals(max_channels=8, max_len=3000), rate=st.sampled_from([4000, 8000, 22050, 44100, 192000, 384000]),
       size=st.integers(1, 4000))
def test_float_wav_reads_back_exactly_in_any_blocks(tmp_path_factory, x, rate, size):
    path = tmp_path_factory.mktemp("prop") / "x.wav"
    sf.write(path, x.T, rate, subtype="FLOAT")
    source = audio_io.AudioSource(path)
    assert (source.rate, source.channels, source.length) == (rate, x.shape[0], x.shape[1])
    blocks = list(source.blocks(size))
    assert all(b.shape[1] <= size for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), x)


@examples(0.5)
@given(x=signals(max_len=2000), where=st.floats(0, 1), value=st.sampled_from([np.nan, np.inf, -np.inf, 3e38]))
def test_reader_refuses_non_finite_or_absurd_samples(tmp_path_factory, x, where, value):
    x = x.copy()
    x[-1, int(where * (x.shape[1] - 1))] = value
    path = tmp_path_factory.mktemp("prop") / "bad.wav"
    sf.write(path, x.T, 16000, subtype="FLOAT")
    with pytest.raises(audio_io.AudioError, match="NaN or infinite|200 dB") as info:
        audio_io.read_audio(path)
    assert str(path) in str(info.value)


@examples(0.5)
@given(data=st.data(), x=signals(max_len=5000), bits=st.sampled_from(["16", "24", "float"]))
def test_stem_writer_any_blocks_all_or_nothing(tmp_path_factory, data, x, bits):
    """Written in any blocks, a stem holds exactly the samples (rescaled only if louder than
    full scale, never clipped); the folder holds nothing else."""
    folder = tmp_path_factory.mktemp("prop")
    target = folder / "song" / "vocals.wav"
    sizes = partition(data.draw, x.shape[1], (1000, 3000))
    with audio_io.StemWriter({"vocals": target}, 16000, x.shape[0], bits) as writer:
        for block in blocks_of(x, sizes):
            writer.write({"vocals": block})
        writer.finish()
    assert sorted(p.name for p in target.parent.iterdir()) == ["vocals.wav"]
    y, rate = sf.read(target, dtype="float64", always_2d=True)
    assert rate == 16000 and y.T.shape == x.shape
    expected = x.astype(np.float64) / max(1.0, peak(x))
    # one quantization step (16/24 bits) plus float32 rounding of the rescaling
    tolerance = {"16": 2 ** -15, "24": 2 ** -22, "float": 2 ** -22}[bits] * max(1.0, peak(expected))
    assert np.abs(y.T - expected).max(initial=0) <= tolerance


# --- whole separations ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    from vocalsep.separate import Separator

    return Separator("small")


@examples(0.4)
@given(x=signals(max_channels=3, max_len=20000), rate=st.sampled_from([4000, 8000, 16000, 22050, 44100, 96000]))
def test_separation_shapes_finite_and_sum(small, x, rate):
    stems = small.separate(x, rate)
    for s in ("vocals", "accompaniment"):
        assert stems[s].shape == x.shape and stems[s].dtype == np.float32
        assert np.isfinite(stems[s]).all()
    assert np.abs(stems["vocals"] + stems["accompaniment"] - x).max(initial=0) <= 1e-6 * peak(x)
    if not x.any():
        assert not stems["vocals"].any() and not stems["accompaniment"].any()


@examples(0.4)
@given(data=st.data(), x=signals(max_channels=2, max_len=30000, min_len=1),
       rate=st.sampled_from([8000, 16000, 44100, 48000]))
def test_streaming_separation_equals_whole_for_any_blocks(small, data, x, rate):
    from vocalsep.pipeline.stream import separate_blocks

    assume(peak(x) > 0)
    sizes = partition(data.draw, x.shape[1], (1000, 7000, 30000))
    pieces = list(separate_blocks(small.stream(rate, x.shape[0]), blocks_of(x, sizes)))
    vocals = np.concatenate([p[0] for p in pieces], axis=1)
    acc = np.concatenate([p[1] for p in pieces], axis=1)
    whole = small.separate(x, rate)["vocals"]
    assert vocals.shape == acc.shape == x.shape
    assert np.abs(vocals - whole).max() <= 1e-5 * peak(x)
    assert np.abs(vocals + acc - x).max() <= 1e-6 * peak(x)


@examples(0.5)
@given(bad=st.sampled_from(["nan", "inf", "huge", "(n, channels)", "int16", "rate 0", "rate 1.5", "3-d"]),
       n=st.integers(1, 3000))
def test_separate_refuses_bad_arrays_with_one_line(small, bad, n):
    x = np.zeros((2, n), np.float32)
    rate = 16000
    if bad in ("nan", "inf", "huge"):
        x[1, n // 2] = {"nan": np.nan, "inf": -np.inf, "huge": 1e20}[bad]
    elif bad == "(n, channels)":  # soundfile's layout: refused with a hint, not n channels
        x = np.zeros((n + 40, 2), np.float32)
    elif bad == "3-d":
        x = x[None]
    elif bad == "int16":
        x = x.astype(np.int16)
    else:
        rate = {"rate 0": 0, "rate 1.5": 1.5}[bad]
    with pytest.raises(ValueError) as info:
        small.separate(x, rate)
    assert "\n" not in str(info.value) and str(info.value)
