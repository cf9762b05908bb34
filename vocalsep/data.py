"""Datasets: MIR-1K clip folders, MUSDB18 (through ``musdb``), plain folders of stems.

Every loader returns a list of :class:`Track` (vocals and accompaniment as float32
``(channels, samples)`` at one rate). :class:`RemixSampler` draws training examples from
tracks, optionally remixing the vocals of one track with the accompaniment of another.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from . import audio as audio_io
from .spectral import stft


@dataclass
class Track:
    """One song: ``vocals`` and ``accompaniment`` are float32 ``(channels, samples)`` at ``rate`` Hz."""

    name: str
    vocals: np.ndarray
    accompaniment: np.ndarray
    rate: int

    @property
    def mixture(self) -> np.ndarray:
        return self.vocals + self.accompaniment

    def converted(self, rate: int, mono: bool = True) -> "Track":
        """The same track resampled to ``rate`` Hz and (optionally) mixed down to mono."""
        def conv(x: np.ndarray) -> np.ndarray:
            x = audio_io.to_mono(x) if mono else x
            return audio_io.resample(x, self.rate, rate)
        return Track(self.name, conv(self.vocals), conv(self.accompaniment), rate)


def read_mir1k_clip(path: str | os.PathLike) -> Track:
    """One MIR-1K clip as shipped in shared/: stereo, left = accompaniment, right = vocals."""
    a = audio_io.read_audio(path)
    if a.channels != 2:
        raise audio_io.AudioError(path, "MIR-1K clips must have 2 channels (accompaniment, vocals)")
    return Track(Path(path).stem, a.samples[1:2].copy(), a.samples[0:1].copy(), a.rate)


def load_mir1k(folder: str | os.PathLike) -> list[Track]:
    """All MIR-1K clips (``*.flac`` / ``*.wav``) of a folder, sorted by name."""
    files = sorted(Path(folder).glob("*.flac")) + sorted(Path(folder).glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .flac or .wav clips found")
    return [read_mir1k_clip(f) for f in files]


def load_stem_folder(folder: str | os.PathLike) -> list[Track]:
    """A folder of ``<track>/{vocals,accompaniment}.wav`` (``mixture.wav`` optional, unused).

    Any format :func:`vocalsep.audio.read_audio` reads is accepted (vocals.flac, ...).
    """
    tracks = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        stems = {p.stem: p for p in sub.iterdir() if p.is_file()}
        if "vocals" not in stems or "accompaniment" not in stems:
            continue
        v = audio_io.read_audio(stems["vocals"])
        a = audio_io.read_audio(stems["accompaniment"])
        if v.rate != a.rate:
            raise audio_io.AudioError(stems["accompaniment"], f"rate {a.rate} Hz differs from vocals' {v.rate} Hz")
        n = min(v.samples.shape[1], a.samples.shape[1])
        tracks.append(Track(sub.name, v.samples[:, :n], a.samples[:, :n], v.rate))
    if not tracks:
        raise FileNotFoundError(f"{folder}: no <track>/vocals + accompaniment stems found")
    return tracks


def load_musdb(root: str | os.PathLike, subset: str = "train", split: str | None = None,
               is_wav: bool = False, names: list[str] | None = None) -> list[Track]:
    """MUSDB18 through the ``musdb`` package (``.stem.mp4``, or the HQ wav layout with ``is_wav``);
    ``names``: only these tracks (only they are decoded)."""
    import musdb

    db = musdb.DB(root=str(root), subsets=subset, split=split, is_wav=is_wav)
    chosen = [t for t in db.tracks if names is None or t.name in names]
    if not chosen:
        raise FileNotFoundError(f"{root}: no MUSDB18 tracks in subset {subset!r}"
                                + (f", split {split!r}" if split else "")
                                + (f" named {names}" if names is not None else ""))
    tracks = []
    for t in chosen:
        vocals = t.targets["vocals"].audio.T.astype(np.float32)
        acc = t.targets["accompaniment"].audio.T.astype(np.float32)
        tracks.append(Track(t.name, vocals, acc, int(t.rate)))
    return tracks


def is_musdb_root(folder: str | os.PathLike) -> bool:
    """True if ``folder`` looks like a MUSDB18 root (``train/`` or ``test/`` of stems or wavs)."""
    p = Path(folder)
    return any((p / s).is_dir() and (any((p / s).glob("*.stem.mp4")) or any((p / s).glob("*/vocals.wav")))
               for s in ("train", "test"))


def load_any(folder: str | os.PathLike, musdb_subset: str = "train", musdb_split: str | None = None) -> list[Track]:
    """Guess the layout of ``folder``: MUSDB18 root, folder of stem folders, or MIR-1K clips."""
    p = Path(folder)
    if is_musdb_root(p):
        is_wav = any((p / musdb_subset).glob("*/vocals.wav"))
        return load_musdb(p, musdb_subset, musdb_split, is_wav=is_wav)
    if any(c.is_dir() for c in p.iterdir()):
        return load_stem_folder(p)
    return load_mir1k(p)


def fit_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``(c, n)`` samples for examples of ``channels`` channels: 1-D (the mono mixdown) for
    ``channels`` = 1, else ``(channels, n)`` (a mono track repeated on every channel)."""
    if channels == 1:
        return x.mean(axis=0) if x.shape[0] > 1 else x[0]
    if x.shape[0] == 1:
        return np.repeat(x, channels, axis=0)
    if x.shape[0] != channels:
        raise ValueError(f"a {x.shape[0]}-channel track for {channels}-channel examples")
    return x


class RemixSampler:
    """Draws batches of magnitude spectrogram examples from tracks at the model's rate.

    Each example is ``frames`` STFT frames long. With ``remix`` the vocals and accompaniment
    come from independently chosen tracks and offsets, each scaled by a random gain of
    ``±gain_db``; without it, examples are the tracks' own mixtures. ``groups`` (one label per
    track, e.g. its original sample rate) restricts remixing to tracks of the same group, so
    band-limited voices are never laid over full-band accompaniments (which would teach a model
    that voices have nothing above the narrower band); ``balance_groups`` draws each group
    equally often, whatever its number of tracks, or, with ``group_weights`` (group label →
    weight, 1 for a group not named), in proportion to its weight.

    ``channels`` = 1 gives mono examples (tracks mixed down); 2 gives stereo ones (mono tracks
    on both channels), with the channels of each stem swapped at random when ``swap_channels``.

    ``speed`` (remixed examples only) plays each stem at its own random speed, a factor drawn
    from ``[1 - speed, 1 + speed]``: pitch and tempo change together, as on a turntable (0.1:
    up to about ±1.7 semitones), so the two stems of an example differ in key and tempo as
    remixed stems already differ in everything else.

    ``phase_sensitive``: the stems' magnitudes are taken along the mixture's phase
    (:func:`magnitudes`). ``waveforms``: each batch also carries the stems' samples
    (:func:`examples`), for ``train --sdr-weight``.

    ``cross_groups``: the share of remixed examples whose accompaniment may come from a track
    of another group, drawn as the voice's track is (by ``balance_groups`` / ``group_weights``)
    but independently, e.g. a 16 kHz MIR-1K voice over a MUSDB18 backing. Only for a model
    that hears no more than the narrowest group's band (the trainer checks it).
    """

    def __init__(self, tracks: list[Track], n_fft: int, hop: int, frames: int, remix: bool = True,
                 gain_db: float = 6.0, seed: int = 0, groups: list | None = None,
                 channels: int = 1, swap_channels: bool = False, balance_groups: bool = False,
                 speed: float = 0.0, group_weights: dict[int, float] | None = None,
                 phase_sensitive: bool = False, cross_groups: float = 0.0, waveforms: bool = False):
        if not 0 <= speed < 0.5:
            raise ValueError(f"speed {speed}: from 0 to below 0.5")
        groups = list(groups) if groups is not None else [0] * len(tracks)
        #: each track's group, and the groups of the examples of the last :meth:`batch`
        self.labels, self.drawn = groups, []
        self.partners = [np.flatnonzero([g == h for h in groups]) for g in groups]
        labels = list(dict.fromkeys(groups))  # each group once, in order of appearance
        self.groups = [np.flatnonzero([g == h for h in groups]) for g in labels]
        self.balance_groups = balance_groups
        unknown = set(group_weights or {}) - set(labels)
        if unknown or not all(np.isfinite(w) and w >= 0 for w in (group_weights or {}).values()):
            raise ValueError(f"group weights {group_weights}: for the groups {labels}, finite and "
                             f"not negative")
        weights = np.array([(group_weights or {}).get(g, 1.0) for g in labels], float)
        if not weights.sum() > 0:
            raise ValueError(f"group weights {group_weights}: all zero")
        #: the chance of each group (in the order of :attr:`groups`), or None: all equal
        self.group_chances = weights / weights.sum() if group_weights else None
        self.channels, self.swap_channels = channels, swap_channels
        #: per track: 1-D signals for mono examples, ``(channels, n)`` otherwise
        self.vocals = [fit_channels(t.vocals, channels) for t in tracks]
        self.accompaniment = [fit_channels(t.accompaniment, channels) for t in tracks]
        self.n_fft, self.hop, self.frames = n_fft, hop, frames
        self.length = (frames - 1) * hop
        self.remix, self.gain_db, self.speed = remix, gain_db, speed
        self.phase_sensitive = phase_sensitive
        #: batches also carry the stems' samples (for a loss on waveforms)
        self.waveforms = waveforms
        if not 0 <= cross_groups <= 1:
            raise ValueError(f"cross groups {cross_groups}: a share from 0 to 1")
        self.cross_groups = cross_groups
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _excerpt(self, rng: np.random.Generator, signal: np.ndarray,
                 offset: int | None = None, length: int | None = None) -> tuple[np.ndarray, int]:
        length = length or self.length
        n = signal.shape[-1]
        if offset is None:
            offset = int(rng.integers(0, max(1, n - length)))
        out = signal[..., offset:offset + length]
        if out.shape[-1] < length:
            out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
        return out, offset

    def _played(self, rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
        """An excerpt of ``self.length`` samples, played at a random speed when ``self.speed``."""
        if not self.speed:
            return self._excerpt(rng, signal)[0]
        factor = float(rng.uniform(1 - self.speed, 1 + self.speed))
        margin = 64  # output samples dropped at each end, where the resampler's filter is cut
        source, _ = self._excerpt(rng, signal, length=int(np.ceil((self.length + 2 * margin) * factor)) + 1)
        played = soxr.resample(source.T, factor, 1.0, quality="HQ").T  # factor x faster
        return self._excerpt(rng, np.ascontiguousarray(played), offset=margin)[0]

    def _swap(self, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
        if self.swap_channels and x.ndim == 2 and rng.random() < 0.5:
            return x[::-1]
        return x

    def _first_track(self, rng: np.random.Generator) -> int:
        if self.balance_groups:
            if self.group_chances is None:
                group = self.groups[int(rng.integers(len(self.groups)))]
            else:
                group = self.groups[int(rng.choice(len(self.groups), p=self.group_chances))]
            return int(group[rng.integers(len(group))])
        return int(rng.integers(len(self.vocals)))

    def example(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One (vocals, accompaniment) pair of ``(frames - 1) * hop`` samples (``(channels,
        samples)`` for stereo examples), drawn with ``rng`` (by default the sampler's own)."""
        rng = self.rng if rng is None else rng
        i = self._first_track(rng)
        self.drawn.append(self.labels[i])
        if not self.remix:
            v, off = self._excerpt(rng, self.vocals[i])
            a, _ = self._excerpt(rng, self.accompaniment[i], off)
            return v, a
        if self.cross_groups and rng.random() < self.cross_groups:
            j = self._first_track(rng)
        else:
            partners = self.partners[i]
            j = int(partners[rng.integers(len(partners))])
        v = self._played(rng, self.vocals[i])
        a = self._played(rng, self.accompaniment[j])
        gv, ga = 10 ** (rng.uniform(-self.gain_db, self.gain_db, size=2) / 20)
        return self._swap(rng, v) * gv, self._swap(rng, a) * ga

    def batch(self, size: int) -> tuple[torch.Tensor, ...]:
        """Magnitudes ``(mixture, vocals, accompaniment)`` (the stems' along the mixture's phase
        with :attr:`phase_sensitive`), each ``(size, bins, frames)``, or
        ``(size, channels, bins, frames)`` for stereo examples, drawn one after the other from
        the sampler's generator; :attr:`drawn` then holds the group of each example. With
        :attr:`waveforms`, then the vocals' and accompaniment's samples, each ``(size,
        samples)`` or ``(size, channels, samples)``."""
        self.drawn = []
        return self._magnitudes([self.example() for _ in range(size)])

    def batch_at(self, epoch: int, step: int, indices: range) -> tuple[torch.Tensor, ...]:
        """As :meth:`batch`, for examples ``indices`` of the batch of ``step`` in ``epoch``:
        example ``i`` is drawn from its own generator, seeded by ``(seed, epoch, step, i)``, so
        a batch is the same however it is shared among processes (each takes a range of
        indices) and a resumed run draws what an uninterrupted one would have."""
        self.drawn = []
        return self._magnitudes([self.example(np.random.default_rng([self.seed, epoch, step, i]))
                                 for i in indices])

    def _magnitudes(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
        v = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.float32))
        a = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))
        return examples(v, a, self.n_fft, self.hop, self.phase_sensitive, self.waveforms)


def examples(vocals: torch.Tensor, accompaniment: torch.Tensor, n_fft: int, hop: int,
             phase_sensitive: bool = False, waveforms: bool = False) -> tuple[torch.Tensor, ...]:
    """A training batch from ``(batch[, channels], samples)`` stems: :func:`magnitudes`, then,
    with ``waveforms``, the stems themselves (for a loss on the waveform)."""
    mags = magnitudes(vocals, accompaniment, n_fft, hop, phase_sensitive)
    return (*mags, vocals, accompaniment) if waveforms else mags


def magnitudes(vocals: torch.Tensor, accompaniment: torch.Tensor, n_fft: int, hop: int,
               phase_sensitive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``|STFT|`` of mixture, vocals and accompaniment for ``(..., samples)`` signals, each
    ``(..., bins, frames)``. With ``phase_sensitive`` the two stems' are instead their parts
    along the mixture's phase, ``|S| cos(∠S - ∠X)`` (Erdogan et al. 2015, "phase-sensitive"
    targets; they sum to ``|X|`` and may be negative): a mask fitted to them is scored on what
    the mixture's phase can give back, as the waveform's SDR scores it."""
    V = stft(vocals, n_fft, hop)
    A = stft(accompaniment, n_fft, hop)
    X = V + A
    mix = X.abs()
    if not phase_sensitive:
        return mix, V.abs(), A.abs()

    def along(S: torch.Tensor) -> torch.Tensor:
        return (S * X.conj()).real / mix.clamp_min(1e-8)

    return mix, along(V), along(A)
