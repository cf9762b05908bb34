"""`vocalsep live` with sound devices (PortAudio through ``sounddevice``, the ``live`` extra).

CI machines have no sound card, so the devices are ALSA's own plugins, declared in an
``.asoundrc`` in a temporary HOME: a recorder whose samples come from a file of noise, and a
player that writes what it is given to a file. Both are real PortAudio devices to vocalsep;
the recorder is not paced by a clock and drops whole periods when it runs ahead of the reader,
which the test allows for (each block that arrives must be a block of the file, in order).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import IN_CI

RATE, BLOCK = 44_100, 1024


def _have_portaudio() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """A HOME whose ALSA configuration has ``vs_in`` (records ``noise.raw``) and ``vs_out``
    (plays into ``played.raw``), both 16-bit stereo at 44.1 kHz; the environment to run in."""
    if not _have_portaudio():
        (pytest.fail if IN_CI else pytest.skip)("sounddevice or PortAudio is missing "
                                                "(pip install sounddevice; apt-get install libportaudio2)")
    home = tmp_path_factory.mktemp("home")
    noise = np.random.default_rng(7).uniform(-0.5, 0.5, (RATE * 90, 2))
    np.rint(noise * 32768).astype("<i2").tofile(home / "noise.raw")
    (home / ".asoundrc").write_text(f"""
pcm.vs_null {{ type null }}
pcm.vs_file_in {{ type file; slave.pcm "vs_null"; file "/dev/null"; infile "{home}/noise.raw"; format "raw" }}
pcm.vs_in {{ type plug; slave {{ pcm "vs_file_in"; format S16_LE; rate {RATE}; channels 2 }} }}
pcm.vs_file_out {{ type file; slave.pcm "vs_null"; file "{home}/played.raw"; format "raw" }}
pcm.vs_out {{ type plug; slave {{ pcm "vs_file_out"; format S16_LE; rate {RATE}; channels 2 }} }}
""")
    return home, dict(os.environ, HOME=str(home))


def live(env, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocalsep.cli", "live", *map(str, args)],
                          capture_output=True, env=env, timeout=300, **kwargs)


def test_devices_are_listed_and_a_wrong_one_is_one_line(devices):
    _, env = devices
    r = live(env, "--list-devices")
    assert r.returncode == 0 and "vs_in" in r.stdout.decode() and "vs_out" in r.stdout.decode()
    r = live(env, "--input-device", "no such card")
    assert r.returncode == 1 and "Traceback" not in r.stderr.decode()
    assert r.stderr.decode().count("\n") == 1 and "'no such card'" in r.stderr.decode()
    r = live(env, "--input-device", "vs_in", "--realtime")
    assert r.returncode == 1 and "--input-device" in r.stderr.decode()


def test_recorded_from_one_device_played_on_another_until_ctrl_c(devices):
    """Record from ``vs_in``, play the accompaniment on ``vs_out`` and write both stems to files;
    Ctrl-C after 3 s of output: exit 130 with everything flushed. What was played is the
    accompaniment file; vocals + accompaniment, from the stated latency on, are the recorded
    blocks: each a block of the noise file, in order."""
    home, env = devices
    vocals, acc = home / "vocals.f32", home / "accompaniment.f32"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vocalsep.cli", "live", "--input-device", "vs_in", "--output-device",
         "vs_out", "--latency", "1", "--vocals", vocals, "--accompaniment", acc, "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if acc.exists() and acc.stat().st_size > 3 * RATE * 2 * 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "model live" in err, err
    latency = int(err.split("latency ")[1].split(" samples")[0])

    v = np.fromfile(vocals, "<f4").reshape(-1, 2)
    a = np.fromfile(acc, "<f4").reshape(-1, 2)
    played = np.fromfile(home / "played.raw", "<i2").reshape(-1, 2) / 32768
    assert len(v) == len(a) > latency + 3 * RATE and len(played) >= len(a) - BLOCK
    n = min(len(played), len(a))
    assert np.abs(played[:n] - np.clip(a[:n], -1, 1 - 2**-15)).max() < 1.01 / 32768

    noise = np.fromfile(home / "noise.raw", "<i2").reshape(-1, 2) / 32768
    starts = {tuple(np.round(noise[k] * 32768).astype(int)): k for k in range(0, len(noise), BLOCK)}
    mix = (v + a)[latency:]
    last = -1
    for b in range(len(mix) // BLOCK - 1):  # the last block may be the flushed tail
        block = mix[b * BLOCK:(b + 1) * BLOCK]
        k = starts.get(tuple(np.round(block[0] * 32768).astype(int)))
        assert k is not None and k > last, f"block {b} is not the next block of the recording"
        np.testing.assert_allclose(block, noise[k:k + BLOCK], atol=1e-4)
        last = k
