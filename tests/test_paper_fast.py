"""The shared-work paper-CNN paths equal the per-window definition."""
from __future__ import annotations

import pytest
import torch

from vocalsep.models.base import ModelConfig
from vocalsep.models.paper import WINDOW, PaperCNN
from vocalsep.models.paper_fast import (naive_sliding_logits, shared_window_logits,
                                        sliding_logits)

TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(seed: int = 0) -> PaperCNN:
    """89 bins (n_fft 176): like 1025, 89 → 29 → 9 rows drops rows at both poolings."""
    torch.manual_seed(seed)
    config = ModelConfig(arch="paper", n_fft=176, params={"dropout": [0.25, 0.25, 0.5]})
    return PaperCNN(config).eval()


def features(*shape: int, seed: int = 1) -> torch.Tensor:
    """Random positive log1p-magnitude-like features."""
    return 4 * torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def windows(feats: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """``(bins, frames)`` → the ``count`` windows ``(count, bins, 100)`` from ``start``."""
    return feats.unfold(1, WINDOW, 1).permute(1, 0, 2)[start:start + count]


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 7, 50, 101, 250])
def test_sliding_matches_naive(frames: int) -> None:
    model = small_model()
    x = features(1, model.config.bins, frames)
    expected = naive_sliding_logits(model, x)
    for chunk in (50, 128):   # 50: several chunks, not a multiple of 3
        assert (sliding_logits(model, x, chunk=chunk) - expected).abs().max() < TOL


def test_sliding_batch_and_full_size() -> None:
    small = small_model()
    x = features(2, small.config.bins, 20)
    assert (sliding_logits(small, x) - naive_sliding_logits(small, x)).abs().max() < TOL
    torch.manual_seed(0)
    full = PaperCNN().eval()
    x = features(1, 1025, 5)
    assert (sliding_logits(full, x) - naive_sliding_logits(full, x)).abs().max() < TOL


def test_mask_uses_sliding() -> None:
    model = small_model()
    mag = torch.expm1(features(1, model.config.bins, 13))
    expected = torch.sigmoid(naive_sliding_logits(model, torch.log1p(mag)))
    assert (model.mask(mag) - expected).abs().max() < 1e-5


def test_sliding_refuses_train_mode() -> None:
    model = small_model().train()
    with pytest.raises(ValueError):
        sliding_logits(model, features(1, model.config.bins, 3))


@pytest.mark.parametrize("frames,start,count", [
    (100, 0, 1), (101, 1, 1), (102, 0, 3), (130, 7, 17), (203, 3, 101),
])
def test_shared_windows_match_model_in_eval(frames: int, start: int, count: int) -> None:
    model = small_model()
    feats = features(model.config.bins, frames)
    with torch.no_grad():
        got = shared_window_logits(model, feats, start, count)
        assert got.shape == (count, model.config.bins)
        assert (got - model(windows(feats, start, count))).abs().max() < TOL


def test_shared_windows_gradients_match_in_eval() -> None:
    model = small_model()
    feats = features(model.config.bins, 140)
    grads = []
    for forward in (lambda: model(windows(feats, 4, 20)),
                    lambda: shared_window_logits(model, feats, 4, 20)):
        model.zero_grad()
        (forward() ** 2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 1e-4 * grads[0].abs().max()


def test_shared_windows_train_mode_has_dropout_and_gradients() -> None:
    model = small_model()
    feats = features(model.config.bins, 120)
    with torch.no_grad():
        evaluated = shared_window_logits(model, feats, 2, 9)
    model.train()
    trained = shared_window_logits(model, feats, 2, 9)
    assert (trained - evaluated).abs().max() > 1e-3
    trained.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_shared_windows_rejects_out_of_range() -> None:
    model = small_model()
    feats = features(model.config.bins, 100)
    with pytest.raises(ValueError):
        shared_window_logits(model, feats, 0, 2)
    with pytest.raises(ValueError):
        shared_window_logits(model, feats, 0, 0)
