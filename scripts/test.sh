#!/usr/bin/env bash
# Install everything the tests need into .venv and run the default test suite (slow tests excluded),
# then, without arguments, the LeRobot interop tests in .venv-lerobot (Python 3.12; they fail
# there rather than skip), and the model/runtime tests on the Humble / Jetson route (Python 3.10,
# numpy < 2, no zarr: scripts/test_py310.sh). DFP_SKIP_LEROBOT=1 / DFP_SKIP_PY310=1 leave those
# parts out. Every extra is installed,
# so a test that skips for a missing dependency fails (DFP_REQUIRE_EXTRAS=1, tests/conftest.py);
# DFP_REQUIRE_EXTRAS=0 allows such skips (e.g. a machine without a headless OpenGL backend).
# Usage: bash scripts/test.sh [pytest args]      (e.g. -m slow for the long tests)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,sim,ros,realsense,bags,s3,onnx
. .venv/bin/activate
set +e
DFP_REQUIRE_EXTRAS="${DFP_REQUIRE_EXTRAS:-1}" python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
if [ "$#" = 0 ] && [ -z "${DFP_SKIP_LEROBOT:-}" ]; then
  bash scripts/install_lerobot.sh
  set +e
  DFP_REQUIRE_LEROBOT=1 .venv-lerobot/bin/python -m pytest -p no:cacheprovider -m lerobot tests/test_lerobot_interop.py
  lrc=$?
  set -e
  [ "$rc" != 0 ] || rc=$lrc
fi
if [ "$#" = 0 ] && [ -z "${DFP_SKIP_PY310:-}" ]; then
  set +e
  bash scripts/test_py310.sh -q
  prc=$?
  set -e
  [ "$rc" != 0 ] || rc=$prc
fi
exit "$rc"
