#!/usr/bin/env bash
# Create .venv-lerobot: Python 3.12 with df_policy and the `lerobot` extra (LeRobotDataset v3
# import/export, tests marked `lerobot`). LeRobot pins torch < 2.12 and takes PyPI's CUDA build
# (~5 GB in the venv), so it lives apart from .venv.
# Usage: bash scripts/install_lerobot.sh [bench]   (bench: also LeRobot's DiffusionPolicy (diffusers) and
#        gym-pusht, for benchmarks/bench_vs_lerobot_*.py)
# Environment: DFP_PYTHON312 (interpreter; default: python3.12 on PATH, else pyenv's 3.12.x).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/find_python.sh
PY="$(find_python 3.12 DFP_PYTHON312)" || { echo "install_lerobot.sh: no Python 3.12 found (set DFP_PYTHON312)" >&2; exit 1; }
[ -x .venv-lerobot/bin/python ] || "$PY" -m venv .venv-lerobot
.venv-lerobot/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv-lerobot/bin/python -m pip install -q -e ".[lerobot,dev]" 2>&1 | grep -v "is ignored" || true
if [ "${1:-}" = bench ]; then
  .venv-lerobot/bin/python -m pip install -q "lerobot[dataset,diffusion]>=0.5,<0.7" "gym-pusht>=0.1.5" 2>&1 | grep -v "is ignored" || true
fi
.venv-lerobot/bin/python -c 'import df_policy, lerobot, torch; print(f"lerobot {lerobot.__version__} ready in .venv-lerobot (torch {torch.__version__})")'
