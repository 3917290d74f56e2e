#!/usr/bin/env bash
# Create .venv and install df_policy with the given extras (default: dev,sim).
# Usage: bash scripts/install.sh [EXTRAS]     e.g. bash scripts/install.sh dev,sim,ros,realsense
# Environment: DFP_PYTHON (interpreter, default python3.11 if present, else python3),
#              DFP_TORCH  (torch requirement installed first, default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,sim}"
PY="${DFP_PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "df_policy stores need Python >= 3.11 (zarr 3)"'

# System libraries: OpenGL/EGL/OSMesa for headless simulator rendering, libusb for pyrealsense2.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  need=""
  for pkg in libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libusb-1.0-0; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need) >/dev/null \
      || echo "warning: could not apt-get install$need"
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first, so that the range in pyproject.toml is already satisfied (a CPU build here).
python -c 'import torch' 2>/dev/null || python -m pip install -q "${DFP_TORCH:-torch==2.13.0}" 2>&1 | grep -v "is ignored" || true
python -m pip install -q -e ".[${EXTRAS}]" 2>&1 | grep -v "is ignored" || true
python -c 'import df_policy, torch, zarr; print(f"df_policy ready: torch {torch.__version__}, zarr {zarr.__version__}")'
