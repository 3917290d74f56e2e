#!/usr/bin/env bash
# Main job on a fresh machine: install df_policy, then run the quick-start pipeline on the
# embedded default (synthetic data / simulation, no hardware). Outputs go to outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,sim
. .venv/bin/activate
exec dfp demo --out outputs/demo "$@"
