"""Cutting a song's frames into the segment network's pieces: whole segments, then a rest padded
only to a multiple of 64 frames; each piece's mask depends on its own frames alone (so the
streaming path, which feeds one segment at a time, gives the whole song's masks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocalsep.models import build
from vocalsep.pipeline.bands import FRAME_MULTIPLE, extension_bins, segment_spans
from vocalsep.spectral import stft


@pytest.mark.parametrize("frames,segment", [(1, 512), (64, 512), (300, 128), (7752, 512), (1024, 512)])
def test_spans_cover_the_song_and_pad_the_rest_little(frames, segment):
    spans = segment_spans(frames, segment)
    assert spans[0][0] == 0 and spans[-1][1] == frames
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
    assert all(stop - start == segment == padded for start, stop, padded in spans[:-1])
    start, stop, padded = spans[-1]
    assert padded % FRAME_MULTIPLE == 0 and 0 <= padded - (stop - start) < FRAME_MULTIPLE


def test_a_3_minute_song_runs_less_padding():
    """7,752 frames (3 min at 44.1 kHz, hop 1024): 15 segments and 128 frames, not 16 segments."""
    spans = segment_spans(7752, 512)
    assert sum(padded for _, _, padded in spans) == 15 * 512 + 128


def test_each_piece_is_masked_on_its_own(example_song):
    """The masks of a real song equal those of its pieces masked separately, the shorter last
    piece included (a random quarter-width U-Net with 128-frame segments)."""
    mixture, _, _ = example_song
    torch.manual_seed(0)
    model = build("stemunet", params={"width": 0.25, "segment": 128, "stereo": True}).eval()
    mags = stft(torch.from_numpy(mixture), 4096, 1024).abs()  # (2, 2049, 259 frames)
    assert mags.shape[-1] % 128 != 0 and mags.shape[-1] > 256
    with torch.no_grad():
        whole = model.mask(mags)
        tail = model.mask(mags[..., 256:])  # the 3-frame rest alone
        middle = model.mask(mags[..., 128:256])
    torch.testing.assert_close(whole[..., 256:], tail, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole[..., 128:256], middle, atol=1e-5, rtol=0)
    assert not torch.allclose(whole[..., 256:], model.mask(mags[..., 200:])[..., 56:], atol=1e-3)


def test_the_network_gets_whole_segments_then_the_rest_padded_to_64(tmp_path):
    """What the network is given for 300 frames with 128-frame segments, in torch and in ONNX
    Runtime alike: the two whole segments as one batch, then the 44-frame rest as 64 frames."""
    model = build("stemunet", params={"width": 0.25, "segment": 128, "segments_per_batch": 2}).eval()
    mags = torch.rand(1, 2049, 300)
    seen = []
    net = model.inference_net()

    def recording() -> torch.nn.Module:
        def run(x: torch.Tensor) -> torch.Tensor:  # x: (batch, 2, frames, bins)
            seen.append((x.shape[0], x.shape[2]))
            return net(x)
        return run

    model.inference_net = recording
    with torch.no_grad():
        model.mask(mags)
    assert seen == [(2, 128), (1, 64)]

    pytest.importorskip("onnx")
    from vocalsep.models.stemunet import export_onnx
    from vocalsep.backends.onnx import OnnxModel

    del model.inference_net
    onnx = OnnxModel(export_onnx(model, tmp_path / "m.onnx", "0" * 64), threads=1)
    given, run = [], onnx._run
    onnx._run = lambda pieces: given.append((pieces.shape[0], pieces.shape[2])) or run(pieces)
    onnx.mask(mags.numpy())
    assert given == [(2, 128), (1, 64)]

def test_extension_band_must_hold_network_bins():
    band = extension_bins(44100, 4096, 640, (5000.0, 6890.625))
    hz = band * 44100 / 4096
    assert hz.min() >= 5000 and hz.max() <= 6890.625 and band.max() == 639
    with pytest.raises(ValueError, match="holds none of the network's 640 bins"):
        extension_bins(44100, 4096, 640, (7000.0, 11000.0))
    assert np.array_equal(extension_bins(44100, 4096, 1024, (7000.0, 11000.0)),
                          np.arange(651, 1022))


def test_segment_batches_group_whole_segments_then_the_rests():
    """One plan for both runtimes: every song's whole segments, ``per_batch`` at a time (song
    by song), then all songs' rests together, each padded to a multiple of 64 frames."""
    from vocalsep.pipeline.bands import segment_batches

    groups = segment_batches(songs=2, frames=2 * 512 + 70, segment=512, per_batch=3)
    assert groups == [[(0, 0, 512, 512), (0, 512, 1024, 512), (1, 0, 512, 512)],
                      [(1, 512, 1024, 512)],
                      [(0, 1024, 1094, 128), (1, 1024, 1094, 128)]]
    assert segment_batches(1, 512, 512, 4) == [[(0, 0, 512, 512)]]
    assert segment_batches(1, 0, 512, 4) == []
