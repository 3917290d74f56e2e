#!/usr/bin/env bash
# Install everything the tests need into .venv and run the default test suite (slow tests excluded).
# Usage: bash scripts/test.sh [pytest args]      (e.g. -m slow for the long tests)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,sim,ros,realsense,bags
. .venv/bin/activate
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
