#!/usr/bin/env bash
# The robot-side route of ROS 2 Humble / a Jetson: Python 3.10 with numpy < 2 (what Humble's and
# Jazzy's message packages are built against) and no zarr (zarr 3 needs Python >= 3.11). Creates
# .venv-py310 with `pip install -e ".[dev,onnx]" "numpy<2"`, as ros_ws/README.md tells Humble users,
# and runs the tests of what must work there: the model, checkpoints, features and the runtime
# (planners, safety filter, control loop). Recording and training stores are not part of it.
# Usage: bash scripts/test_py310.sh [pytest args]
# Environment: DFP_PYTHON310 (interpreter; default: python3.10 on PATH, else pyenv's 3.10.x),
#              DFP_TORCH (torch requirement, default torch==2.13.0; on Python 3.10 pip takes
#              PyPI's build of it, ~4.5 GB with its CUDA libraries, which run on the CPU too).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/find_python.sh
PY="$(find_python 3.10 DFP_PYTHON310)" || { echo "test_py310.sh: no Python 3.10 found (set DFP_PYTHON310)" >&2; exit 1; }
[ -x .venv-py310/bin/python ] || "$PY" -m venv .venv-py310
V=.venv-py310/bin/python
$V -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
$V -c 'import torch' 2>/dev/null || $V -m pip install -q "numpy<2" "${DFP_TORCH:-torch==2.13.0}" 2>&1 | grep -v "is ignored" || true
$V -m pip install -q -e ".[dev,onnx]" "numpy<2" 2>&1 | grep -v "is ignored" || true
$V - <<'EOF'
import sys, numpy, importlib.util
assert sys.version_info[:2] == (3, 10), sys.version
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__}: the Humble route pins numpy < 2"
assert importlib.util.find_spec("zarr") is None, "zarr must not be installed on Python 3.10 (the markers in pyproject.toml)"
print(f"Python {sys.version.split()[0]}, numpy {numpy.__version__}: the Humble / Jetson route")
EOF
DFP_REQUIRE_EXTRAS=1 exec $V -m pytest -p no:cacheprovider -m "not slow and not store" \
  tests/test_model_noise.py tests/test_model_schedules.py tests/test_model_denoiser.py tests/test_model_unet.py \
  tests/test_model_vision.py tests/test_model_policy.py tests/test_level_sampling.py tests/test_features.py \
  tests/test_runtime_runner.py tests/test_runtime_safety.py tests/test_runtime_streamer.py "$@"
