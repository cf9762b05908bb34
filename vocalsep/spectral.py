"""Spectral front end: STFT/iSTFT, log1p magnitude, and cutting a spectrogram into windows.

Shapes: signals are ``(channels, samples)``; spectrograms are ``(channels, bins, frames)``
with ``bins = n_fft // 2 + 1``. Frame ``k`` is centred on sample ``k * hop`` (``center=True``),
so a signal of ``n`` samples has ``n // hop + 1`` frames.
"""
from __future__ import annotations

import torch

_WINDOWS: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}


def hann(n_fft: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Periodic Hann window of ``n_fft`` samples (cached)."""
    key = (n_fft, str(device), dtype)
    if key not in _WINDOWS:
        _WINDOWS[key] = torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)
    return _WINDOWS[key]


def stft(x: torch.Tensor, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Complex STFT. ``x``: ``(..., samples)`` → ``(..., n_fft//2+1, samples//hop+1)``."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    spec = torch.stft(
        flat, n_fft=n_fft, hop_length=hop, window=hann(n_fft, x.device, x.dtype),
        center=True, pad_mode="constant", return_complex=True,
    )
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def istft(spec: torch.Tensor, length: int, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Inverse of :func:`stft`. ``spec``: ``(..., bins, frames)`` → ``(..., length)`` samples."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    y = torch.istft(
        flat, n_fft=n_fft, hop_length=hop, window=hann(n_fft, flat.device, real_dtype),
        center=True, length=length,
    )
    return y.reshape(*lead, length)


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """The paper's input feature: ``log1p(|STFT|)``, same shape as ``spec``."""
    return torch.log1p(spec.abs())


def griffin_lim(magnitude: torch.Tensor, length: int, n_fft: int = 2048, hop: int = 512,
                iterations: int = 32, init_phase: torch.Tensor | None = None) -> torch.Tensor:
    """Signal whose STFT magnitude approximates ``magnitude`` ``(..., bins, frames)``.

    Plain Griffin-Lim (the paper's first experiment): start from random phase (or
    ``init_phase``), then alternate iSTFT and STFT, keeping the target magnitude.
    Returns ``(..., length)`` samples.
    """
    if init_phase is None:
        gen = torch.Generator().manual_seed(0)
        phase = torch.rand(magnitude.shape, generator=gen, dtype=magnitude.dtype) * (2 * torch.pi)
        phase = phase.to(magnitude.device)
    else:
        phase = init_phase
    spec = torch.polar(magnitude, phase)
    for _ in range(iterations):
        y = istft(spec, length, n_fft, hop)
        rebuilt = stft(y, n_fft, hop)
        spec = magnitude * torch.exp(1j * torch.angle(rebuilt))
    return istft(spec, length, n_fft, hop)


def cut_windows(spec: torch.Tensor, width: int = 100) -> torch.Tensor:
    """Cut ``(bins, frames)`` into ``(windows, bins, width)``, zero-padding the last window.

    This is the paper's framing: the spectrogram is padded to a multiple of ``width`` frames.
    """
    bins, frames = spec.shape
    n = max(1, -(-frames // width))
    padded = torch.nn.functional.pad(spec, (0, n * width - frames))
    return padded.reshape(bins, n, width).permute(1, 0, 2).contiguous()


def join_windows(windows: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of :func:`cut_windows`: ``(windows, bins, width)`` → ``(bins, frames)``."""
    n, bins, width = windows.shape
    return windows.permute(1, 0, 2).reshape(bins, n * width)[:, :frames]
