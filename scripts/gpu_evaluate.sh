#!/usr/bin/env bash
# Here, after a `device` run of scripts/gpu_pusht.sh: unpacks what came back (FILES_AT = the
# reply's files_at folder) into runs/gpu/ and scores the image checkpoint closed loop on this CPU,
# 100 episodes (seeds 0-99) in `stream` (the config's blocks of 6) and in `chunk`; the same for the
# run's intermediate checkpoint (image_mid) when one came back.
#   bash scripts/gpu_evaluate.sh FILES_AT      env: EPISODES (100), SEED (0), DEST (runs/gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${1:?usage: scripts/gpu_evaluate.sh FILES_AT (the files_at of the device reply)}
DEST=${DEST:-runs/gpu}; EPISODES=${EPISODES:-100}; SEED=${SEED:-0}
mkdir -p "$DEST"
if [ -f "$FROM/bench.tgz" ]; then mkdir -p "$DEST/bench"; tar -C "$DEST/bench" -xzf "$FROM/bench.tgz"; fi
cp "$FROM"/machine.txt "$DEST/" 2>/dev/null || true
if ! ls "$FROM"/gpu_runs.tgz.part* >/dev/null 2>&1; then echo "no training parts in $FROM (a PHASE=bench run)"; exit 0; fi
cat "$FROM"/gpu_runs.tgz.part* | tar -C "$DEST" -xzf -
PATH=$PWD/.venv/bin:$PATH
for run in image image_mid; do  # image_mid: the run's intermediate checkpoint (float16 weights), when it came
  [ -d "$DEST/$run" ] || continue
  for mode in stream chunk; do
    OMP_NUM_THREADS=1 dfp eval sim --checkpoint "$DEST/$run" --env pusht --episodes "$EPISODES" --seed "$SEED" \
      --mode "$mode" --workers 2 --accelerate onnx --videos 0 --out "$DEST/eval_${run}_$mode"
  done
done
