"""What a song's separation does, decided once from the options, the model and the input.

:class:`SeparatorOptions` are the user's choices; :func:`make_plan` turns them, with the model's
configuration and the input's rate and channels, into a :class:`Plan`: what the model hears,
whether its mask is mapped onto the input's own STFT (full band), the STFT the mask is applied
to, and the shortest input the path handles (shorter ones are zero-padded to it). The signal
path (:mod:`vocalsep.pipeline.stream`) only follows the plan. numpy-free and torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ModelConfig

#: ``SeparatorOptions.precision`` values (auto: see :func:`vocalsep.backends.choose_precision`)
PRECISIONS = ("auto", "float32", "bfloat16")
#: ``SeparatorOptions.runtime`` values (auto: see :func:`vocalsep.backends.onnx.choose_runtime`)
RUNTIMES = ("auto", "torch", "onnx", "openvino")
RECONSTRUCTIONS = ("istft", "griffinlim")
MASKS = ("soft", "binary")
#: segments shorter than the U-Net's 64-frame grid, for live streams (a shorter wait); like
#: every segment shorter than the model's own, each is separated with its past
#: (:func:`vocalsep.backends.cut_segments`), at window / segment times the work per frame
SHORT_SEGMENTS = tuple(range(16, 64, 8))


@dataclass
class SeparatorOptions:
    """How masks become audio, and what computes them."""

    reconstruct: str = "istft"  # istft | griffinlim
    mask: str = "soft"  # soft | binary
    threshold: float = 0.5  # for binary masks
    griffin_lim_iterations: int = 32
    #: apply the mask at the input rate (vocals keep what lies above the model's Nyquist)
    full_band: bool = True
    #: multichannel Wiener filter EM iterations after masking, on the whole song (0 = off)
    wiener: int = 0
    #: the spatial step on a stereo song, streamed (:mod:`vocalsep.pipeline.spatial`); None:
    #: where the model gives a soft mask per channel; not with ``wiener`` or Griffin-Lim
    spatial: bool | None = None
    #: number format of the model's arithmetic: float32, bfloat16 (OpenVINO, torch models that
    #: offer it), or auto (bfloat16 where the CPU computes it natively and the runtime can; float32
    #: in ONNX Runtime)
    precision: str = "auto"
    #: what runs the model: torch, onnx (ONNX Runtime) or openvino (OpenVINO) for models shipped
    #: with an ONNX export, or auto (:func:`vocalsep.backends.onnx.choose_runtime`)
    runtime: str = "auto"
    #: frames per segment of a segment model (a multiple of 64, or one of ``SHORT_SEGMENTS``),
    #: replacing the model's own: shorter segments, less latency when the song arrives as it
    #: plays, each heard with its past (:func:`vocalsep.backends.cut_segments`; None: the model's)
    segment: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` (one line) for an option outside its values."""
        for name, value, allowed in (("reconstruct", self.reconstruct, RECONSTRUCTIONS),
                                     ("mask", self.mask, MASKS), ("precision", self.precision, PRECISIONS),
                                     ("runtime", self.runtime, RUNTIMES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        if int(self.wiener) != self.wiener or self.wiener < 0:
            raise ValueError("wiener must be a whole number of iterations >= 0")
        if self.spatial not in (None, True, False):
            raise ValueError(f"spatial must be None (the model's choice), True or False, not {self.spatial!r}")
        if self.spatial and self.post_filter:
            raise ValueError("the spatial step goes with the iSTFT of the streamed frames: not with "
                             "--wiener (whose EM over the whole song replaces it) or Griffin-Lim")
        if self.segment is not None and self.segment not in SHORT_SEGMENTS \
                and (self.segment < 64 or self.segment % 64):
            raise ValueError(f"segment {self.segment}: 16 to 56 in steps of 8, or a multiple of 64 frames")

    @property
    def post_filter(self) -> bool:
        """True if the vocals need the whole song's masked frames at once (the Wiener filter,
        Griffin-Lim): the stream then collects them and reconstructs at its end."""
        return self.reconstruct != "istft" or bool(self.wiener)


def full_band_stft(n_fft: int, hop: int, model_rate: int, rate: int) -> tuple[int, int]:
    """``(n_fft, hop)`` at ``rate`` matching a model's ``n_fft``/``hop`` at ``model_rate``: both
    scaled by ``rate / model_rate`` and rounded (``n_fft`` to an even number), so the window and
    the hop last the same time and a bin spans the same Hz, as closely as whole samples allow
    (1024/256 at 16 kHz → 2822/706 at 44.1 kHz, 3072/768 at 48 kHz)."""
    scale = rate / model_rate
    return max(2, 2 * round(n_fft * scale / 2)), max(1, round(hop * scale))


@dataclass(frozen=True)
class Plan:
    """The decisions of one song's separation (rates in Hz, lengths in samples)."""

    rate: int  #: the input's rate
    channels: int  #: the input's channels
    model_rate: int
    #: the model's mask is mapped onto the STFT of the input at its own rate (for inputs above
    #: the model's rate); otherwise applied to the STFT at the model's rate
    full_band: bool
    #: the model hears both channels of a stereo input and gives a mask per channel; otherwise
    #: it hears the mono downmix
    stereo: bool
    #: channels resampled to the model's rate: the heard signal (full band), else every channel
    #: (the mask is applied there; the downmix's STFT is their mean)
    model_channels: int
    #: the STFT the mask is applied to (the model's, or its match at the input's rate)
    n_fft: int
    hop: int
    #: the shortest input handled as it is (one model window at the input's rate, plus one)
    min_len: int
    #: the masked frames go through the spatial step (:mod:`vocalsep.pipeline.spatial`) below
    #: ``spatial_bins`` (the band the model hears), window by window; 0: not
    spatial_bins: int = 0

    @property
    def frame_rate(self) -> float:
        """Frames per second of the STFT the mask is applied to."""
        return (self.rate if self.full_band else self.model_rate) / self.hop


def make_plan(config: ModelConfig, stereo_model: bool, rate: int, channels: int,
              options: SeparatorOptions, heard_bins: int | None = None) -> Plan:
    """The :class:`Plan` for a model (its ``config``; ``stereo_model``: it gives a mask per
    channel of a stereo input; ``heard_bins``: the lowest bins it reads, default all), an input
    of ``channels`` at ``rate`` Hz and the user's ``options``."""
    full = bool(options.full_band) and rate > config.sample_rate
    stereo = bool(stereo_model) and channels == 2
    if full:
        n_fft, hop = full_band_stft(config.n_fft, config.hop, config.sample_rate, rate)
    else:
        n_fft, hop = config.n_fft, config.hop
    spatial = channels == 2 and not options.post_filter and (
        (stereo and options.mask == "soft") if options.spatial is None else options.spatial)
    spatial_bins = 0
    if spatial:  # the band the model hears, in bins of the STFT the mask is applied to
        heard_hz = (config.bins if heard_bins is None else heard_bins) * config.sample_rate / config.n_fft
        spatial_bins = min(n_fft // 2 + 1, math.ceil(heard_hz * n_fft / (rate if full else config.sample_rate)))
    return Plan(rate=rate, channels=channels, model_rate=config.sample_rate, full_band=full,
                stereo=stereo, model_channels=channels if (stereo or not full) else 1,
                n_fft=n_fft, hop=hop,
                min_len=math.ceil(config.n_fft * rate / config.sample_rate) + 1,
                spatial_bins=spatial_bins)
