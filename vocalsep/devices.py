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


def device_info(device: str, kind: str) -> dict:
    """``query_devices`` of ``device`` (an index or a part of a name) for ``kind`` ``"input"``
    or ``"output"``: its name, channels and default sample rate. DeviceError if none fits."""
    sd = _sounddevice()
    key: int | str = int(device) if device.isdigit() else device
    try:
        info = sd.query_devices(key, kind)
    except (ValueError, sd.PortAudioError) as err:
        raise DeviceError(f"sound device {device!r}: {str(err).splitlines()[0]} "
                          f"(vocalsep live --list-devices lists them)") from None
    return dict(info)


class DeviceInput:
    """A recording ``device`` as a raw stream: ``read(n)`` returns ``n`` bytes of float32
    samples, ``channels`` interleaved, at ``rate`` Hz; recorded samples lost because the reader
    fell behind are counted in :attr:`overflows`."""

    def __init__(self, device: str, rate: int, channels: int, blocksize: int):
        sd = _sounddevice()
        info = device_info(device, "input")
        self.name, self.width, self.overflows = info["name"], 4 * channels, 0
        try:
            self.stream = sd.RawInputStream(samplerate=rate, channels=channels, dtype="float32",
                                            device=info["index"], blocksize=blocksize)
            self.stream.start()
        except sd.PortAudioError as err:
            raise DeviceError(f"sound device {self.name!r}: cannot record {channels} channels at "
                              f"{rate} Hz ({err})") from None

    def read(self, n: int) -> bytes:
        data, overflowed = self.stream.read(n // self.width)
        self.overflows += bool(overflowed)
        return bytes(data)

    def close(self) -> None:
        self.stream.close()


class DeviceOutput:
    """A playing ``device`` as a raw sink: ``write`` plays bytes of ``dtype`` samples
    (``"float32"`` or ``"int16"``), ``channels`` interleaved, at ``rate`` Hz."""

    def __init__(self, device: str, rate: int, channels: int, dtype: str):
        sd = _sounddevice()
        info = device_info(device, "output")
        self.name = info["name"]
        try:
            self.stream = sd.RawOutputStream(samplerate=rate, channels=channels, dtype=dtype,
                                             device=info["index"])
            self.stream.start()
        except sd.PortAudioError as err:
            raise DeviceError(f"sound device {self.name!r}: cannot play {channels} channels at "
                              f"{rate} Hz ({err})") from None

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def flush(self) -> None:
        """Nothing to do: :meth:`write` returns once PortAudio holds the samples."""

    def close(self) -> None:
        self.stream.close()
