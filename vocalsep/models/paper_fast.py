"""Sliding the paper CNN over a song: one centred 100-frame window per frame.

``naive_sliding_logits`` is the definition (every window run through the network on its own,
in batches). ``sliding_logits`` is what inference uses: the same numbers (to float rounding)
with the work that overlapping windows share done once, ~30× faster. ``shared_window_logits``
does the same for training on a run of consecutive windows: block 1 is shared, the dropout
after it and everything later run per window.

Why sharing is exact. A window's convolutions use 'same' zero padding, so its conv outputs
equal those of one convolution over the whole sequence except near the window's two time
edges; the window-specific region grows by one column per side with every 3-wide conv. So
each conv runs once over the sequence, and only the few window-specific columns are
recomputed per window (``_edge_layer``): block 1's conv outputs 0, 1 and 98 (99 is dropped by
the pooling), block 2's 0..2 and 30..32. After a 3×3/stride-3 pooling, a window's columns
other than its first and last are every third column of one shared running 3-max
(``_Pooled``). Windows whose starts agree mod 3 read the same every-third sequence, so for
inference block 2 runs once per such phase over it, as one more run of windows.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: frames of one input window of the paper's CNN, and the frame it gives the mask of
WINDOW = 100
CENTRE = WINDOW // 2

# window-local time columns after the first pooling (100 // 3) and the second (33 // 3)
_COLS1 = WINDOW // 3
_COLS2 = _COLS1 // 3


def centred_windows(features: torch.Tensor) -> torch.Tensor:
    """``(bins, frames)`` → ``(frames, bins, 100)``: window ``t`` covers frames ``t-50 .. t+49``.

    Frames outside the song are zeros (``log1p(0) = 0``).
    """
    padded = F.pad(features, (CENTRE, WINDOW - CENTRE - 1))
    return padded.unfold(1, WINDOW, 1).permute(1, 0, 2)


@torch.no_grad()
def naive_sliding_logits(model: torch.nn.Module, features: torch.Tensor,
                         batch_size: int = 64) -> torch.Tensor:
    """Reference: ``features`` ``(batch, bins, frames)`` → logits of the same shape."""
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        windows = centred_windows(features[b])
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start:start + batch_size]
            out[b, :, start:start + chunk.shape[0]] = model(chunk).T
    return out


# ----------------------------------------------------------------------------------------------
# building blocks
#
# "Sequence form": a tensor ``(ch, rows, L)`` whose last axis is time (or window index). A run
# of ``n`` windows of width ``w`` over a global sequence ``x`` ``(ch, rows, L)``, ``L = n + w - 1``:
# window ``i`` sees ``x[..., i:i + w]`` except at the local columns listed in ``special``
# (``{col: (ch, rows, n)}``, one value per window) and sees zeros outside ``0 .. w-1``.


def _conv_block(block: nn.Sequential) -> tuple[nn.Conv2d, nn.Module, nn.Conv2d, nn.Module,
                                               nn.Sequential]:
    """Split ``conv, act, conv, act, MaxPool2d(3), *rest`` into its parts (rest: dropout)."""
    conv_a, act_a, conv_b, act_b, pool, *rest = block
    for conv in (conv_a, conv_b):
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) \
            and conv.padding == (1, 1) and conv.stride == (1, 1), conv
    assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 3 and pool.stride == 3, pool
    return conv_a, act_a, conv_b, act_b, nn.Sequential(*rest)


def _taps(conv: nn.Conv2d, terms: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """``sum_k W[..., k] * x_k`` for ``(time tap k, x_k (ch, rows, n))``: ``(out_ch, rows, n)``.

    Each term is one time column convolved over frequency ('same'), no bias; all terms run as
    one convolution over channel-stacked inputs.
    """
    x = torch.cat([t for _, t in terms])[None]
    weight = torch.cat([conv.weight[..., k:k + 1] for k, _ in terms], dim=1)
    return F.conv2d(x, weight, padding=(1, 0))[0]


def _edge_layer(conv: nn.Conv2d, act: nn.Module, x: torch.Tensor,
                special: dict[int, torch.Tensor], width: int, used: int
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One 'same' conv + activation over a run of windows (see "sequence form" above).

    Returns the global output ``act(conv(x))`` ``(out_ch, rows, L)`` and the windows' own
    output columns ``{col: (out_ch, rows, n)}`` (those among ``0 .. used-1`` whose inputs touch
    a special or padding column). Each is computed either directly from its inputs or as the
    global pre-activation plus the taps of its input deltas (window value − global value),
    whichever needs fewer taps.
    """
    n = x.shape[-1] - width + 1
    pre = conv(x[None])[0]
    padded = F.pad(x, (1, 1))

    def glob(col: int) -> torch.Tensor:      # global input at local ``col`` of every window
        return padded[..., col + 1:col + 1 + n]

    def value(col: int) -> torch.Tensor:     # the windows' own input at local ``col``
        return special[col] if col in special else glob(col)

    touched = set(special) | {-1, width}
    out: dict[int, torch.Tensor] = {}
    for j in sorted({d + e for d in touched for e in (-1, 0, 1)} & set(range(used))):
        inside = [(k, j + k - 1) for k in range(3) if 0 <= j + k - 1 < width]
        differ = [(k, j + k - 1) for k in range(3) if j + k - 1 in touched]
        if len(inside) <= len(differ):
            base = conv.bias[:, None, None]
            terms = [(k, value(d)) for k, d in inside]
        else:
            base = pre[..., j:j + n]
            terms = [(k, (value(d) if 0 <= d < width else 0) - glob(d)) for k, d in differ]
        out[j] = act(base + _taps(conv, terms))
    return act(pre), out


def _pool_rows(x: torch.Tensor) -> torch.Tensor:
    """Max over 3-row groups (stride 3, last incomplete group dropped): ``(ch, r, t)``."""
    rows = x.shape[-2] // 3
    return x[..., :3 * rows, :].unflatten(-2, (rows, 3)).amax(-2)


def _max3(x: torch.Tensor) -> torch.Tensor:
    """Running max of 3 consecutive time columns: ``(..., L)`` → ``(..., L - 2)``."""
    return torch.maximum(torch.maximum(x[..., :-2], x[..., 1:-1]), x[..., 2:])


class _Pooled(NamedTuple):
    """A block's pooled output for ``n`` consecutive windows of width ``w``, in shared form.

    ``shared``: ``(ch, rows, L - 2)``, the 3×3 max at every time step (stride 3 in rows):
    window ``i``'s pooled columns ``1 .. w//3 - 2`` are ``shared[..., i + 3k]``.
    ``first``/``last``: ``(ch, rows, n)``, each window's own first and last pooled column.
    """

    shared: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor

    def windows(self, cols: int) -> torch.Tensor:
        """Per-window pooled maps ``(n, ch, rows, cols)`` (what ``MaxPool2d(3)`` returns)."""
        n = self.first.shape[-1]
        middle = self.shared.unfold(-1, 3 * (cols - 3) + 1, 1)[..., 3:3 + n, ::3]
        return torch.cat([self.first[..., None], middle, self.last[..., None]],
                         dim=-1).permute(2, 0, 1, 3)


def _block_pooled(block: nn.Sequential, x: torch.Tensor, special: dict[int, torch.Tensor],
                  width: int) -> _Pooled:
    """Both convs of ``block`` and its 3×3/stride-3 max pooling for a run of windows."""
    conv_a, act_a, conv_b, act_b, _ = _conv_block(block)
    used = 3 * (width // 3)
    x, special = _edge_layer(conv_a, act_a, x, special, width, width)
    x, special = _edge_layer(conv_b, act_b, x, special, width, used)
    n = x.shape[-1] - width + 1
    assert all(j < 3 or j >= used - 3 for j in special), sorted(special)
    rows = _pool_rows(x)

    def pooled_col(k: int) -> torch.Tensor:  # the windows' own pooled column ``k``
        cols = [_pool_rows(special[j]) if j in special else rows[..., j:j + n]
                for j in range(3 * k, 3 * k + 3)]
        return torch.maximum(torch.maximum(cols[0], cols[1]), cols[2])

    return _Pooled(_max3(rows), pooled_col(0), pooled_col(used // 3 - 1))


def _block1_pooled(model: nn.Module, seg: torch.Tensor) -> _Pooled:
    """Block 1 up to its pooling for all windows of ``seg`` ``(bins, n + 99)``; exact."""
    return _block_pooled(model.block1, seg[None], {}, WINDOW)


def _block2_head_by_phase(model: nn.Module, pooled: _Pooled, phase: int) -> torch.Tensor:
    """Eval-mode logits ``(m, bins)`` of windows ``phase, phase + 3, ...`` (m of them).

    Those windows' pooled columns 1..31 all come from ``z = pooled.shared[..., phase::3]``
    (window ``q`` reads ``z[q + 1 .. q + 31]``), so they form a run of windows over ``z``.
    """
    first, last = pooled.first[..., phase::3], pooled.last[..., phase::3]
    z = pooled.shared[..., phase::3][..., :first.shape[-1] + _COLS1 - 1]
    block2 = _block_pooled(model.block2, z, {0: first, _COLS1 - 1: last}, _COLS1)
    return model.head(block2.windows(_COLS2))


# ----------------------------------------------------------------------------------------------
# public API


@torch.no_grad()
def sliding_logits(model: torch.nn.Module, features: torch.Tensor, batch_size: int = 64,
                   chunk: int = 128) -> torch.Tensor:
    """Centre-frame logits for every frame; ``(batch, bins, frames)`` → same shape.

    Equals :func:`naive_sliding_logits` up to float rounding. Eval mode only (dropout off).
    Frames are processed ``chunk`` at a time, which bounds memory whatever the song length
    (~300 MB peak at 1025 bins and the default; larger chunks were slower, not faster).
    ``batch_size`` is unused, kept so the signature matches the reference.
    """
    del batch_size
    if model.training:
        raise ValueError("sliding_logits needs model.eval() (dropout off)")
    n_frames = features.shape[-1]
    padded = F.pad(features, (CENTRE, WINDOW - CENTRE - 1))
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        for start in range(0, n_frames, chunk):
            n = min(chunk, n_frames - start)
            pooled = _block1_pooled(model, padded[b, :, start:start + n + WINDOW - 1])
            for phase in range(min(3, n)):
                logits = _block2_head_by_phase(model, pooled, phase)
                out[b, :, start + phase:start + n:3] = logits.T
    return out


def shared_window_logits(model: torch.nn.Module, features: torch.Tensor, start: int,
                         count: int) -> torch.Tensor:
    """``model(windows)`` for the ``count`` consecutive windows ``features[:, s:s + 100]``,
    ``s = start .. start + count - 1``, of one song ``features`` ``(bins, frames)``.

    Returns ``(count, bins)`` logits, differentiable. Block 1's convs are computed once for
    the whole run (exactly: each window's edge columns are recomputed with its own padding);
    the dropout after the first pooling and everything after it run per window, so training
    semantics (independent dropout masks per window) are those of the plain forward. One
    difference in the backward pass: where a 3×3 pooling window holds tied maxima (e.g. in
    all-zero padding), the gradient is split among them instead of going to the first.
    """
    if count < 1 or start < 0 or start + count - 1 + WINDOW > features.shape[-1]:
        raise ValueError(f"windows {start}..{start + count - 1} do not fit "
                         f"{features.shape[-1]} frames")
    pooled = _block1_pooled(model, features[:, start:start + count + WINDOW - 1])
    *_, after_pool = _conv_block(model.block1)
    return model.head(model.block2(after_pool(pooled.windows(_COLS1))))
