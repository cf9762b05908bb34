"""Sound devices for `vocalsep live`, through PortAudio (the ``live`` extra: ``sounddevice``,
and the PortAudio library, e.g. Debian's ``libportaudio2``).

A device is opened as a file-like object of raw interleaved samples, so the live loop reads
and writes it as it does a pipe: :class:`DeviceInput` gives ``f32le`` bytes from ``read(n)``
(blocking until they are recorded), :class:`DeviceOutput` plays the bytes given to
``write``. Devices are named as PortAudio lists them (``vocalsep live --list-devices``): by
index, or by a part of their name.
"""
from __future__ import annotations

from typing import Any

#: what to install when sounddevice or PortAudio is missing
INSTALL = ('pip install "vocalsep[live]" (sounddevice) and the PortAudio library '
           "(Debian: apt-get install libportaudio2)")


class DeviceError(Exception):
    """A sound device that cannot be used (missing, wrong kind, PortAudio absent)."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the module is there, PortAudio is not
        raise DeviceError(f"sound devices need {INSTALL} ({err})") from None
    return sounddevice


def list_devices() -> str:
    """PortAudio's devices, one per line: index, name, host API, input and output channels."""
    return str(_sounddevice().query_devices())


def device_key(device: str) -> int | str:
    """What PortAudio is given for ``device``: an index, or a part of a name."""
    return int(device) if device.isdigit() else device


def device_info(device: str, kind: str) -> dict:
    """``query_devices`` of ``device`` (an index or a part of a name) for ``kind`` ``"input"``
    or ``"output"``: its name, channels and default sample rate. DeviceError if none fits."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device_key(device), kind)
    except (ValueError, sd.PortAudioError) as err:
        raise DeviceError(f"sound device {device!r}: {str(err).splitlines()[0]} "
                          f"(vocalsep live --list-devices lists them)") from None
    return dict(info)


class _Device:
    """One open PortAudio stream of ``kind`` (``"input"`` or ``"output"``); its errors are
    :class:`DeviceError` naming the device; :attr:`glitches` counts the blocks PortAudio
    reported lost (input overflow, output underflow)."""

    def __init__(self, device: str, kind: str, rate: int, channels: int, dtype: str,
                 blocksize: int = 0):
        sd = _sounddevice()
        self._error = sd.PortAudioError
        info = device_info(device, kind)
        self.name, self.glitches = info["name"], 0
        self.width = channels * (4 if dtype == "float32" else 2)  # bytes per frame
        opener = sd.RawInputStream if kind == "input" else sd.RawOutputStream
        self.stream = None
        try:
            self.stream = opener(samplerate=rate, channels=channels, dtype=dtype, device=device_key(device),
                                 blocksize=blocksize)
            self.stream.start()
        except self._error as err:
            self.close()
            raise DeviceError(f"sound device {self.name!r}: cannot open it for {channels} channels "
                              f"of {dtype} at {rate} Hz ({err})") from None

    def _failed(self, err: Exception) -> DeviceError:
        return DeviceError(f"sound device {self.name!r}: {err}")

    def close(self) -> None:
        """Stop the stream (an output plays what it holds first), then close it."""
        if self.stream is not None:
            try:
                if self.stream.active:
                    self.stream.stop()
            finally:
                self.stream.close()
                self.stream = None


class DeviceInput(_Device):
    """A recording ``device`` as a raw stream: ``read(n)`` returns ``n`` bytes of float32
    samples, ``channels`` interleaved, at ``rate`` Hz, waiting until they are recorded."""

    def __init__(self, device: str, rate: int, channels: int, blocksize: int):
        super().__init__(device, "input", rate, channels, "float32", blocksize)

    def read(self, n: int) -> bytes:
        try:
            data, overflowed = self.stream.read(n // self.width)
        except self._error as err:
            raise self._failed(err) from None
        self.glitches += bool(overflowed)
        return bytes(data)


class DeviceOutput(_Device):
    """A playing ``device`` as a raw sink: ``write`` plays bytes of ``dtype`` samples
    (``"float32"`` or ``"int16"``), ``channels`` interleaved, at ``rate`` Hz."""

    def __init__(self, device: str, rate: int, channels: int, dtype: str):
        super().__init__(device, "output", rate, channels, dtype)

    def write(self, data: bytes) -> None:
        try:
            underflowed = self.stream.write(data)
        except self._error as err:
            raise self._failed(err) from None
        self.glitches += bool(underflowed)

    def flush(self) -> None:
        """Nothing to do here: :meth:`write` returns once PortAudio holds the samples, and
        :meth:`close` waits until they are played."""
