"""Separation: from a signal (or a file) to vocals and accompaniment.

The signal path, top to bottom (:meth:`Separator.separate`):

1. mix the input down to mono and resample it to the model's rate (a stereo input stays
   stereo for a model that takes stereo, ``model.stereo``: one mask per channel);
2. STFT, magnitude → the model's vocal mask (soft, or binary at ``threshold``);
3. the STFT the mask is applied to, per input channel:

   * **full band** (``full_band=True``, the default, for inputs above the model's rate): the
     STFT *at the input rate*, with ``n_fft``/``hop`` scaled by ``rate / model_rate`` (same
     window and hop in seconds, same Hz per bin, see :func:`full_band_stft`); the mask is
     mapped onto it by :func:`vocalsep.masks.full_band_mask` (interpolated over time and Hz;
     above the model's Nyquist the mean mask of its 5–7.5 kHz band, per frame). So the vocals
     keep their content above the model's Nyquist (8 kHz for a 16 kHz model);
   * otherwise (``full_band=False``, or an input at or below the model's rate): the STFT of
     each channel resampled to the model's rate; the vocals are band-limited to its Nyquist and
     everything above lands in the accompaniment;

4. optionally (``wiener=N``) multichannel Wiener filtering, N EM iterations, of the vocal
   ``|X|·m`` and accompaniment ``|X|·(1−m)`` estimates (:mod:`vocalsep.filtering`);
5. back to audio: ``istft`` applies the mask (or the Wiener filter) to the complex STFT and
   inverts it (the paper's 2nd experiment); ``griffinlim`` applies it to the magnitude and
   estimates a phase with Griffin-Lim (its 1st);
6. resample the vocals to the input rate if they are not at it already; accompaniment =
   input − vocals, so the two stems always add up to the input exactly.

The model runs in torch, or, for a model with an ONNX export on the CPU, in ONNX Runtime
(:mod:`vocalsep.runtime`, chosen by ``SeparatorOptions.runtime``). Block-by-block separation
of files (:meth:`Separator.separate_file`, :mod:`vocalsep.streaming`) then does not import
torch; this module imports it only where a torch model or the whole-song path needs it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import audio as audio_io
from .masks import binarize, full_band_mask
from .runtime import OnnxModel, choose_runtime, native_bfloat16, open_onnx

if TYPE_CHECKING:
    import torch

    from .models import SeparationModel

STEMS = ("vocals", "accompaniment")
#: ``SeparatorOptions.precision`` values (auto: see :func:`choose_precision`)
PRECISIONS = ("auto", "float32", "bfloat16")
RECONSTRUCTIONS = ("istft", "griffinlim")


@dataclass
class SeparatorOptions:
    """How masks become audio."""

    reconstruct: str = "istft"  # istft | griffinlim
    mask: str = "soft"  # soft | binary
    threshold: float = 0.5  # for binary masks
    griffin_lim_iterations: int = 32
    #: apply the mask at the input rate (vocals keep what lies above the model's Nyquist)
    full_band: bool = True
    #: multichannel Wiener filter EM iterations after masking (0 = off)
    wiener: int = 0
    #: number format of the model's arithmetic: float32, bfloat16 (models that offer it), or
    #: auto (bfloat16 where the model offers it and the CPU computes it natively, else float32)
    precision: str = "auto"
    #: what runs the model: torch, onnx (ONNX Runtime, for models shipped with an ONNX export),
    #: or auto (onnx where it can, see :func:`vocalsep.runtime.choose_runtime`)
    runtime: str = "auto"


def _without_grad(method: Callable) -> Callable:
    """``method`` under ``torch.no_grad()`` (torch imported when it is first called)."""
    @functools.wraps(method)
    def run(*args, **kwargs):
        import torch

        with torch.no_grad():
            return method(*args, **kwargs)
    return run


class Separator:
    """Keeps a loaded model; separates arrays or files.

    >>> sep = Separator("default")
    >>> stems = sep.separate(samples, 44100)   # samples: (channels, n) float32
    >>> stems["vocals"].shape == samples.shape
    """

    def __init__(self, model: str | os.PathLike | SeparationModel | None = None,
                 options: SeparatorOptions | None = None, device: str = "cpu",
                 threads: int | None = None):
        check_device(device)
        self.options = options or SeparatorOptions()
        self.model = _open_model(model, self.options, device, threads)
        self.model.eval()
        if self.options.reconstruct not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruct must be one of {RECONSTRUCTIONS}")
        if self.options.mask not in ("soft", "binary"):
            raise ValueError("mask must be 'soft' or 'binary'")
        if int(self.options.wiener) != self.options.wiener or self.options.wiener < 0:
            raise ValueError("wiener must be a whole number of iterations >= 0")
        self.device = device
        # the model is shared (e.g. by a server's threads): it holds the precision and its
        # inference copy, so separators over one model must agree on the precision
        self.model.set_precision(choose_precision(self.options.precision, self.model, device))
        self.model.prepare()

    def describe(self) -> str:
        """What separates, in one line: the model's architecture, the runtime, the precision and
        the CPU threads (e.g. ``"stemunet in ONNX Runtime, float32, 2 threads"``)."""
        if isinstance(self.model, OnnxModel):
            where, threads = "ONNX Runtime", self.model.threads
        else:
            import torch

            where, threads = f"torch on {self.device}", torch.get_num_threads()
        return f"{self.model.config.arch} in {where}, {self.model.precision}, {threads} threads"

    @property
    def rate(self) -> int:
        """The model's sample rate in Hz."""
        return self.model.config.sample_rate

    def model_input(self, samples: np.ndarray) -> np.ndarray:
        """What the model hears of ``(channels, n)`` samples: both channels of a stereo input
        for a stereo model, else the mono downmix ``(1, n)``."""
        if self.model.stereo and samples.shape[0] == 2:
            return samples
        return samples.mean(axis=0, keepdims=True)

    @_without_grad
    def vocal_mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Mask for a complex spectrogram ``(c, bins, frames)`` (c = 1, or 2 for a stereo model)
        → ``(c, bins, frames)``."""
        if isinstance(self.model, OnnxModel):
            import torch

            frames_first = self.mask_frames(spec.cpu().numpy().swapaxes(-1, -2))
            return torch.from_numpy(np.ascontiguousarray(frames_first.swapaxes(-1, -2))).to(spec.device)
        mask = self.model.mask(spec.abs())
        if self.options.mask == "binary":
            mask = binarize(mask, self.options.threshold)
        return mask

    def mask_frames(self, spec: np.ndarray) -> np.ndarray:
        """:meth:`vocal_mask` of complex64 frames as numpy arrays, frames first: ``(c, frames,
        bins)`` → ``(c, frames, bins)``, as the streaming STFT gives them (torch only for a torch
        model)."""
        if not isinstance(self.model, OnnxModel):
            import torch

            spec = torch.from_numpy(np.ascontiguousarray(spec.swapaxes(-1, -2))).to(self.device)
            return self.vocal_mask(spec).cpu().numpy().swapaxes(-1, -2)
        net_bins = self.model.net_bins  # only the network's band is needed (above: its mean)
        mask = self.model.masks_t(np.abs(spec[..., :net_bins]))
        if self.options.mask == "binary":
            mask = binarize(mask, self.options.threshold)
        return mask

    @_without_grad
    def separate(self, samples: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        """``samples`` float32 ``(channels, n)`` at ``rate`` Hz → ``{"vocals", "accompaniment"}``,
        each ``(channels, n)`` at ``rate`` Hz; vocals + accompaniment == samples.

        Raises ``ValueError`` (one line) for samples that are not a float ``(channels, n)``
        array of finite values within :data:`vocalsep.audio.MAX_LEVEL`, or a rate that is not
        a positive number of Hz."""
        import torch

        from .spectral import stft

        samples = check_samples(samples, rate)
        cfg = self.model.config
        n = samples.shape[1]
        # at least one full STFT window at the model's rate, so even one sample is handled
        min_len = int(np.ceil(cfg.n_fft * rate / cfg.sample_rate)) + 1
        padded = np.pad(samples, ((0, 0), (0, max(0, min_len - n))))
        if self.options.full_band and rate > cfg.sample_rate:
            heard = audio_io.resample(self.model_input(padded), rate, cfg.sample_rate)
            mask = self.vocal_mask(stft(torch.from_numpy(heard).to(self.device), cfg.n_fft, cfg.hop))
            n_fft, hop = full_band_stft(cfg.n_fft, cfg.hop, cfg.sample_rate, rate)
            spec = stft(torch.from_numpy(padded).to(self.device), n_fft, hop)
            mask = full_band_mask(mask.cpu().numpy(), cfg.sample_rate, cfg.n_fft, cfg.hop, rate,
                                  n_fft, hop, spec.shape[-1])
            mask = torch.from_numpy(np.ascontiguousarray(mask)).to(self.device)
            vocals = self._vocals(spec, mask, padded.shape[1], n_fft, hop)
            vocals = vocals.cpu().numpy().astype(np.float32)[:, :n]
        else:
            at_model_rate = torch.from_numpy(audio_io.resample(padded, rate, cfg.sample_rate)).to(self.device)
            length = at_model_rate.shape[1]
            spec = stft(at_model_rate, cfg.n_fft, cfg.hop)  # (channels, bins, frames)
            if self.model.stereo and at_model_rate.shape[0] == 2:
                mask = self.vocal_mask(spec)
            else:
                mask = self.vocal_mask(stft(at_model_rate.mean(0, keepdim=True), cfg.n_fft, cfg.hop))
            vocals = self._vocals(spec, mask, length, cfg.n_fft, cfg.hop)
            vocals = audio_io.resample(vocals.cpu().numpy().astype(np.float32), cfg.sample_rate, rate)
            vocals = _fit_length(vocals, padded.shape[1])[:, :n]
        return {"vocals": vocals, "accompaniment": samples - vocals}

    def _vocals(self, spec: torch.Tensor, mask: torch.Tensor, length: int, n_fft: int,
                hop: int) -> torch.Tensor:
        """Vocals ``(channels, length)`` from the complex STFT ``spec`` ``(channels, bins,
        frames)`` and the vocal mask ``(1 or channels, bins, frames)``: mask (or Wiener filter), invert."""
        from .filtering import wiener_from_mask
        from .spectral import griffin_lim, istft

        opts = self.options
        if opts.wiener:
            estimate = wiener_from_mask(mask, spec, int(opts.wiener), sources=(0,))[0]
            if opts.reconstruct == "istft":
                return istft(estimate, length, n_fft, hop)
            return griffin_lim(estimate.abs(), length, n_fft, hop, opts.griffin_lim_iterations)
        if opts.reconstruct == "istft":
            return istft(mask * spec, length, n_fft, hop)
        return griffin_lim(mask * spec.abs(), length, n_fft, hop, opts.griffin_lim_iterations)

    def separate_file(self, path: str | os.PathLike, out_dir: str | os.PathLike,
                      stems: tuple[str, ...] = STEMS, ext: str = "wav", bits: str = "16",
                      force: bool = False,
                      progress: Callable[[float], None] | None = None) -> dict[str, Path]:
        """Separate one file into ``out_dir/<input stem>/<stem>.<ext>``; return the written paths.

        Refuses to overwrite existing outputs unless ``force``. The song is decoded, separated
        and written block by block (:mod:`vocalsep.streaming`), so memory does not grow with its
        length; Griffin-Lim and the Wiener filter need the whole song at once. The stems appear
        all together, only when complete (:class:`vocalsep.audio.StemWriter`).
        ``progress(fraction)`` is called as the song's decoding advances (0 to 1).
        """
        from .streaming import SeparationStream

        path = Path(path)
        targets = output_paths(path, out_dir, stems, ext)
        existing = [p for p in targets.values() if p.exists()]
        if existing and not force:
            raise FileExistsError(f"{existing[0]}: already exists (use --force to overwrite)")
        if not self.streamable:
            audio = audio_io.read_audio(path)
            result = self.separate(audio.samples, audio.rate)
            audio_io.write_audio_files({target: result[stem] for stem, target in targets.items()},
                                       audio.rate, bits=bits)
            return targets
        source = audio_io.AudioSource(path)
        job = SeparationStream(self, source.rate, source.channels)
        with audio_io.StemWriter(targets, source.rate, source.channels, bits) as writer:
            for block in source.blocks():
                for vocals, acc in job.feed(block):
                    writer.write(_pick(stems, vocals, acc))
                if progress and source.length:
                    progress(min(1.0, source.samples / source.length))
            for vocals, acc in job.finish():
                writer.write(_pick(stems, vocals, acc))
            writer.finish()
        return targets

    @property
    def streamable(self) -> bool:
        """True if songs can be separated block by block with these options."""
        return self.options.reconstruct == "istft" and not self.options.wiener


def check_samples(samples: np.ndarray, rate: float) -> np.ndarray:
    """``samples`` as float32 ``(channels, n)``; ``ValueError`` saying what is wrong otherwise
    (``rate`` must be a positive whole number of Hz, as int or float)."""
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"samples must be shaped (channels, n), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"samples must be floating point (about ±1), got {x.dtype}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) \
            or not 0 < float(rate) < np.inf or float(rate) % 1:
        raise ValueError(f"rate must be a positive whole number of Hz, got {rate!r}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    if x.size and float(np.abs(x).max()) > audio_io.MAX_LEVEL:
        raise ValueError(f"samples up to {float(np.abs(x).max()):.3g}, more than 200 dB above full scale")
    return x


def check_device(device: str) -> None:
    """Raise ``ValueError`` (one line) unless ``device`` ('cpu', 'cuda', 'cuda:N') can be used."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ValueError(f"--device {device}: unknown device (cpu or cuda)")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device here (torch {torch.__version__}); use cpu")


def _open_model(model: str | os.PathLike | SeparationModel | None, options: SeparatorOptions,
                device: str, threads: int | None) -> SeparationModel | OnnxModel:
    """The model to separate with: ``model`` itself if it is one; else the named model in the
    runtime :func:`~vocalsep.runtime.choose_runtime` picks, with ``threads`` CPU threads."""
    if not isinstance(model, (str, os.PathLike, type(None))):
        if options.runtime == "onnx" and not isinstance(model, OnnxModel):
            raise ValueError("runtime onnx: give the model by name or .onnx path, not as a torch model")
        return model
    onnx = choose_runtime(options.runtime, model, device, options.precision)
    if onnx is not None:
        return open_onnx(onnx, model, threads)
    import torch

    from .models import load

    if threads:
        torch.set_num_threads(threads)
    return load(model, device)


def choose_precision(precision: str, model: SeparationModel, device: str = "cpu") -> str:
    """``precision`` itself, or for ``"auto"`` bfloat16 if ``model`` offers it and the CPU
    computes it natively (:func:`~vocalsep.runtime.native_bfloat16`), else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision}: one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device == "cpu" and "bfloat16" in model.precisions and native_bfloat16():
        return "bfloat16"
    return "float32"


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike,
                 stems: tuple[str, ...] = STEMS, ext: str = "wav") -> dict[str, Path]:
    """Where :meth:`Separator.separate_file` writes each stem of ``path``."""
    name = Path(path).name
    for suffix in (".stem.mp4",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return {s: Path(out_dir) / name / f"{s}.{ext}" for s in stems}


def full_band_stft(n_fft: int, hop: int, model_rate: int, rate: int) -> tuple[int, int]:
    """``(n_fft, hop)`` at ``rate`` matching a model's ``n_fft``/``hop`` at ``model_rate``: both
    scaled by ``rate / model_rate`` and rounded (``n_fft`` to an even number), so the window and
    the hop last the same time and a bin spans the same Hz, as closely as whole samples allow
    (1024/256 at 16 kHz → 2822/706 at 44.1 kHz, 3072/768 at 48 kHz)."""
    scale = rate / model_rate
    return max(2, 2 * round(n_fft * scale / 2)), max(1, round(hop * scale))


def _pick(stems: tuple[str, ...], vocals: np.ndarray, accompaniment: np.ndarray) -> dict:
    both = {"vocals": vocals, "accompaniment": accompaniment}
    return {s: both[s] for s in stems}


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


def separate(samples: np.ndarray, rate: int, model: str | SeparationModel | None = None,
             **options) -> dict[str, np.ndarray]:
    """One-call API: separate ``(channels, n)`` float32 samples at ``rate`` Hz."""
    return Separator(model, SeparatorOptions(**options)).separate(samples, rate)
