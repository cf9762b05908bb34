"""Training losses on waveforms: the signal-to-distortion ratio of masked estimates after the
inverse STFT (``vocalsep train --sdr-weight``). It is the plain ratio of the stem's energy to
the error's (as the MDX challenges score); BSS Eval, which ``vocalsep evaluate`` reports, first
lets a short filter distort the stem, so its SDR is a little higher.

The spectral losses (an L1 distance of magnitudes) live with their models; this one needs the
mixture's phase and the stems' samples, so it reads the examples' waveforms.
"""
from __future__ import annotations

import torch

from .spectral import istft, stft

#: power per sample added to both sides of the ratio (−50 dB of full scale): an example whose
#: stem is silent is scored on what leaks into it, not divided by zero. Being absolute, it
#: flattens the loss of quiet stems (20 dB below a loud voice, halving it scores 5.3 dB, not 6)
FLOOR = 1e-5


def negative_sdr(estimate: torch.Tensor, reference: torch.Tensor, floor: float = FLOOR) -> torch.Tensor:
    """−SDR in dB, ``−10·log10((‖s‖² + ε) / (‖s − ŝ‖² + ε))`` with ``ε = floor · samples``, for
    ``(..., samples)`` signals; one value per leading index, shape ``(...)``."""
    eps = floor * reference.shape[-1]
    signal = reference.pow(2).sum(-1) + eps
    error = (reference - estimate).pow(2).sum(-1) + eps
    return 10 * torch.log10(error / signal)


def masked_waveform_loss(mask: torch.Tensor, vocals: torch.Tensor, accompaniment: torch.Tensor,
                         n_fft: int, hop: int) -> torch.Tensor:
    """Mean −SDR (dB) of both stems as the mask separates them: ``mask · X`` and
    ``(1 − mask) · X`` (``X`` the STFT of ``vocals + accompaniment``) back through the iSTFT,
    against the stems. ``mask``: ``(..., bins, frames)`` over all bins of the STFT of the
    ``(..., samples)`` waveforms (``frames = samples // hop + 1``). Each example and channel
    counts once."""
    X = stft(vocals + accompaniment, n_fft, hop)
    if mask.shape[-2:] != X.shape[-2:]:
        raise ValueError(f"mask of {tuple(mask.shape[-2:])} (bins, frames), the STFT's is {tuple(X.shape[-2:])}")
    length = vocals.shape[-1]
    est_vocals = istft(mask * X, length, n_fft, hop)
    est_accompaniment = istft((1 - mask) * X, length, n_fft, hop)
    return (negative_sdr(est_vocals, vocals).mean() + negative_sdr(est_accompaniment, accompaniment).mean()) / 2
