"""Multichannel Wiener filtering: post-processing of masked estimates (EM, as in norbert).

The model gives magnitude estimates of every source ``j`` per channel (for us the vocals
``|X|·m`` and the accompaniment ``|X|·(1−m)``). Each source is modelled as a zero-mean complex
Gaussian with covariance ``v_j(f, t) · R_j(f)`` per time-frequency bin: a power spectral
density ``v_j`` (channel-averaged power) and a spatial covariance matrix ``R_j`` (``C × C``,
one per frequency, shared by all frames). The multichannel Wiener filter of source ``j`` is

    ŷ_j(f, t) = v_j R_j (Σ_k v_k R_k + λ I)⁻¹ x(f, t),

with ``x`` the mixture STFT and ``λ`` a tiny regularisation. :func:`wiener` starts from the
magnitude estimates with the mixture's phase, then runs ``iterations`` EM steps, each: estimate
``v_j`` and ``R_j`` from the current ``ŷ_j`` (``v_j = mean_c |ŷ_jc|²``, ``R_j = Σ_t ŷ_j ŷ_jᴴ /
Σ_t v_j``), then filter the mixture again. For a mono signal ``R_j = 1`` and one step is the
power ratio mask ``|V|² / (|V|² + |A|²)`` applied to ``x``; ``iterations = 0`` returns the first
estimate (``magnitude · e^{i∠x}``, i.e. ``m·X`` for a mask).

Memory stays bounded for long songs: frames are processed in chunks of ``chunk_frames``; besides
the mixture and the returned sources only the PSDs ``(sources, bins, frames)`` (float32) and the
spatial covariances are kept whole. Arithmetic inside a chunk is in float64.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

#: magnitude estimates ``(sources, channels, bins, frames)``, or a function returning the
#: frames ``t0:t1`` of them (so that they need not exist in memory all at once)
Magnitudes = Union[torch.Tensor, Callable[[int, int], torch.Tensor]]

#: regularisation λ (and the floor of the covariance normalisation) relative to the mixture's
#: peak bin power: −100 dB, so it only matters in (near) silence, where it keeps the result 0
EPS = 1e-10
CHUNK_FRAMES = 256


def wiener(magnitudes: Magnitudes, mix: torch.Tensor, iterations: int = 1,
           sources: Sequence[int] | None = None, chunk_frames: int = CHUNK_FRAMES,
           eps: float = EPS, power: float = 2.0) -> torch.Tensor:
    """Multichannel Wiener filter of the sources whose magnitudes are estimated.

    ``magnitudes``: non-negative ``(sources, channels, bins, frames)`` (channels may be 1 and
    broadcast), or ``fn(t0, t1)`` giving those frames; ``mix``: complex mixture STFT
    ``(channels, bins, frames)``. Returns complex64 ``(len(sources), channels, bins, frames)``
    for the requested ``sources`` (indices; default all), after ``iterations`` EM steps
    (0: the magnitudes with the mixture's phase). ``power``: the PSD that weighs the sources
    is ``(mean_c |ŷ_jc|²)^(power/2)``: 2 is the Gaussian model's power, 1 the magnitude (for
    one channel a step then gives back a magnitude mask unchanged, and only the spatial
    covariances act).
    """
    if not power > 0:
        raise ValueError("power must be > 0")
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    if mix.dim() != 3 or not mix.is_complex():
        raise ValueError("mix must be a complex (channels, bins, frames) STFT")
    get = magnitudes if callable(magnitudes) else (lambda t0, t1: magnitudes[..., t0:t1])
    channels, bins, frames = mix.shape
    n_sources = get(0, min(1, frames)).shape[0]
    wanted = list(range(n_sources)) if sources is None else list(sources)
    out = torch.zeros(len(wanted), channels, bins, frames, dtype=torch.complex64, device=mix.device)
    chunks = [(t0, min(frames, t0 + chunk_frames)) for t0 in range(0, frames, max(1, chunk_frames))]
    if frames == 0:
        return out

    def first_estimate(t0: int, t1: int) -> torch.Tensor:  # (sources, channels, bins, t)
        x = mix[..., t0:t1].to(torch.complex128)
        mag = get(t0, t1).to(torch.float64).expand(n_sources, channels, bins, t1 - t0)
        return torch.polar(mag, x.angle().expand_as(mag))

    if iterations == 0:
        for t0, t1 in chunks:
            out[..., t0:t1] = first_estimate(t0, t1)[wanted].to(torch.complex64)
        return out

    peak = float(mix.abs().max()) ** 2
    lam = eps * peak + 1e-30  # never 0: silence gives a zero filter, not 0/0
    lam_psd = eps * peak ** (power / 2) + 1e-30  # in the PSD's units
    eye = torch.eye(channels, dtype=torch.complex128, device=mix.device)
    psd = torch.empty(n_sources, bins, frames, dtype=torch.float32, device=mix.device)
    cov_sum, psd_sum = _zero_stats(n_sources, channels, bins, mix.device)
    for t0, t1 in chunks:
        _accumulate(first_estimate(t0, t1), psd, cov_sum, psd_sum, t0, t1, power)

    for it in range(iterations):
        last = it == iterations - 1
        cov = cov_sum / (psd_sum + lam)[..., None, None]  # R_j: (sources, bins, C, C)
        if not last:
            cov_sum, psd_sum = _zero_stats(n_sources, channels, bins, mix.device)
        for t0, t1 in chunks:
            x = mix[..., t0:t1].to(torch.complex128).permute(1, 2, 0)  # (bins, t, C)
            v = psd[..., t0:t1].to(torch.float64)  # (sources, bins, t)
            mix_cov = torch.einsum("sft,sfcd->ftcd", v.to(torch.complex128), cov) + lam_psd * eye
            z = _solve(mix_cov, x)  # (Σ v_k R_k + λI)⁻¹ x: (bins, t, C)
            if last:
                y = torch.einsum("sft,sfcd,ftd->scft", v[wanted].to(torch.complex128), cov[wanted], z)
                out[..., t0:t1] = y.to(torch.complex64)
            else:
                y = torch.einsum("sft,sfcd,ftd->scft", v.to(torch.complex128), cov, z)
                _accumulate(y, psd, cov_sum, psd_sum, t0, t1, power)
    return out


def wiener_from_mask(mask: torch.Tensor, mix: torch.Tensor, iterations: int = 1,
                     sources: Sequence[int] = (0, 1), chunk_frames: int = CHUNK_FRAMES,
                     eps: float = EPS, power: float = 2.0) -> torch.Tensor:
    """Wiener filtering of two sources given a vocal mask: the vocals ``|X|·m`` and the
    accompaniment ``|X|·(1−m)``, per channel. ``mask``: ``(1 or channels, bins, frames)`` in
    [0, 1]; ``mix``: complex ``(channels, bins, frames)``. Returns complex64
    ``(len(sources), channels, bins, frames)`` (source 0 = vocals, 1 = accompaniment)."""
    def magnitudes(t0: int, t1: int) -> torch.Tensor:
        mag = mix[..., t0:t1].abs()
        m = mask[..., t0:t1].to(mag.dtype)
        return torch.stack([mag * m, mag * (1 - m)])

    return wiener(magnitudes, mix, iterations, sources, chunk_frames, eps, power)


def _zero_stats(n_sources: int, channels: int, bins: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.zeros(n_sources, bins, channels, channels, dtype=torch.complex128, device=device),
            torch.zeros(n_sources, bins, dtype=torch.float64, device=device))


def _accumulate(y: torch.Tensor, psd: torch.Tensor, cov_sum: torch.Tensor, psd_sum: torch.Tensor,
                t0: int, t1: int, power: float = 2.0) -> None:
    """Add a chunk of source estimates ``y`` ``(sources, C, bins, t)`` to the statistics: the
    PSD that weighs the sources (``power``) and the spatial covariances (from the powers)."""
    v = (y.real ** 2 + y.imag ** 2).mean(dim=1)  # (sources, bins, t)
    psd[..., t0:t1] = (v if power == 2 else v ** (power / 2)).to(psd.dtype)
    psd_sum += v.sum(dim=-1)
    cov_sum += torch.einsum("scft,sdft->sfcd", y, y.conj())


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a⁻¹ b`` for Hermitian positive definite ``a`` ``(..., C, C)`` and ``b`` ``(..., C)``;
    closed forms for one and two channels (the common cases, much faster than LAPACK loops)."""
    c = a.shape[-1]
    if c == 1:
        return b / a[..., 0]
    if c == 2:
        p, q, r, s = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
        det = p * s - q * r
        return torch.stack([s * b[..., 0] - q * b[..., 1], p * b[..., 1] - r * b[..., 0]], dim=-1) / det[..., None]
    return torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
