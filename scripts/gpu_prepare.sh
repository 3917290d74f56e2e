#!/usr/bin/env bash
# Prepares the two ignored folders that one `device` call of scripts/gpu_pusht.sh carries: .gpu/
# (the PushT demonstrations, since ../shared does not travel) and .whl/ (zarr and its needs as
# Python 3.12 x86-64 wheels; the GPU machine has torch, numpy, safetensors, tensorboard and
# matplotlib but not zarr). 41 MiB in all, inside the call's 64 MiB.
#   bash scripts/gpu_prepare.sh        then run, carrying [".gpu", ".whl"]: bash scripts/gpu_pusht.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/pusht/pusht_cchi_v7_replay_train.zarr.zip}
rm -rf .whl; mkdir -p .gpu .whl   # one version of each wheel
cp -u "$DATA" .gpu/
PIP=${PIP:-.venv/bin/pip}
[ -x "$PIP" ] || PIP="python3 -m pip"
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c  # packaging, typing-extensions: there already
du -sh .gpu .whl
