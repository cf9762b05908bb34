"""Throw-away experiment (session 13, issue #15): fine-tune the default with a loss measured
after the spatial step. Patches StemUNetModel.training_loss; run as `python runs/spatial_train.py
train stemunet ... --sdr-weight 1e-9` (the tiny weight only makes the batches carry the stems'
samples; the patched loss ignores it)."""
import sys

import torch

import vocalsep.filtering as filtering
from vocalsep.filtering import wiener_from_mask


def _accumulate(y, psd, cov_sum, psd_sum, t0, t1, power=2.0):  # a sqrt with a finite gradient at 0
    v = (y.real ** 2 + y.imag ** 2).mean(dim=1)
    psd[..., t0:t1] = (v + 1e-12) ** (power / 2)
    psd_sum += v.sum(dim=-1)
    cov_sum += torch.einsum("scft,sdft->sfcd", y, y.conj())


filtering._accumulate = _accumulate


def _mag(z):
    return (z.real ** 2 + z.imag ** 2 + 1e-12).sqrt()
from vocalsep.models.stemunet import model as M
from vocalsep.spectral import stft


def training_loss(self, mix_mag, vocals_mag, accompaniment_mag, vocals=None, accompaniment=None,
                  sdr_weight=0.0):
    b = self.net_bins
    full = self.channel_masks(mix_mag)  # (batch, 2, bins, frames)
    mask, mix = full[..., :b, :], mix_mag[..., :b, :]
    plain = ((mask * mix - vocals_mag[..., :b, :]).abs().mean()
             + ((1 - mask) * mix - accompaniment_mag[..., :b, :]).abs().mean())
    cfg = self.config
    V = stft(vocals, cfg.n_fft, cfg.hop)[..., :b, :]
    A = stft(accompaniment, cfg.n_fft, cfg.hop)[..., :b, :]
    X = V + A
    est = torch.stack([wiener_from_mask(mask[i], X[i], 1, sources=(0,), power=1.0,
                                        chunk_frames=1 << 20)[0] for i in range(X.shape[0])])
    spatial = _mag(est - V).mean() + _mag((X - est) - A).mean()
    return plain + spatial


M.StemUNetModel.training_loss = training_loss
from vocalsep.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
