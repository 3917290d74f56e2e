#!/usr/bin/env bash
# One call on a lent GPU machine, within one `device` run (at most 10 minutes): measures the
# runtime's tick on the GPU (eager vs fast paths, issue 11; RUNTIME_BENCH=0 skips it) and the
# training step's memory layouts, then trains the PushT image policy (config pusht_gpu) with the
# GPU to itself for the time that is left of TOTAL_S, and packs the EMA checkpoint, curves and
# logs into $OUT for closed-loop evaluation on the CPU. LD_MIN > 0 also trains the
# low-dimensional ablation variants (benchmarks/pusht_ablation.py) beside it, sharing the GPU.
#   bash scripts/gpu_prepare.sh       # here: fills .gpu/ (data) and .whl/ (zarr wheels)
#   device run, carry [".gpu", ".whl"], timeout_s 600:  bash scripts/gpu_pusht.sh
#   env: TOTAL_S (540: the whole script), IMG_MIN (default: what TOTAL_S leaves), LD_MIN (0), DATA, OUT
set -uo pipefail
PY=${PY:-python3}
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
DATA=${DATA:-.gpu/pusht_cchi_v7_replay_train.zarr.zip}
TOTAL_S=${TOTAL_S:-540}; LD_MIN=${LD_MIN:-0}; VARIANTS=${VARIANTS:-}; T_BEGIN=$(date +%s)
if [ -d .whl ] && ! "$PY" -c 'import zarr' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TQDM_DISABLE=1 PYTHONUNBUFFERED=1
RUNS=${RUNS:-/tmp/gpu_runs}; rm -rf "$RUNS"; mkdir -p "$RUNS"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  "$PY" -c "import torch, zarr; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'zarr', zarr.__version__)"
  nproc; } | tee "$OUT/machine.txt"
# issue 11 first, on the idle GPU: tick latency eager vs channels_last vs compiled (CUDA graphs)
if [ "${RUNTIME_BENCH:-1}" = 1 ]; then
  for model in pusht_cpu gpu_sized; do
    timeout 110 "$PY" benchmarks/bench_runtime.py --device cuda --model "$model" --ticks 200 --warmup 10 \
      --modes stream chunk --delay-steps 1 --accelerate off channels_last compile > "$OUT/bench_runtime_$model.json" 2>&1
  done
fi
timeout 60 "$PY" benchmarks/bench_train_step.py --store "$DATA" --config pusht_gpu --device cuda --steps 20 --rounds 3 \
  --json "$OUT/bench_train_step_pusht_gpu.json" > "$OUT/bench_train_step.log" 2>&1
# the image run gets what is left, less ~75 s for its start, final validation and the packing
IMG_MIN=${IMG_MIN:-$("$PY" -c "print(round(max(1.0, ($TOTAL_S - ($(date +%s) - $T_BEGIN) - 75) / 60), 2))")}
echo "image training budget: $IMG_MIN min" | tee -a "$OUT/machine.txt"
t0=$(date +%s)
( "$PY" -m df_policy.training.trainer --data "$DATA" --out "$RUNS/image" --config pusht_gpu \
    train.max_minutes="$IMG_MIN" > "$RUNS/image.log" 2>&1; echo "image trainer exit $?" >> "$RUNS/image.log" ) &
if [ "$LD_MIN" != 0 ]; then
  "$PY" benchmarks/pusht_ablation.py train --data "$DATA" --out "$RUNS/ablation" --minutes "$LD_MIN" --device auto \
    --parallel 8 --threads 1 ${VARIANTS:+--variants $VARIANTS} 2>&1 | tee "$OUT/ablation_train.txt"
fi
wait
echo "all training done after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/machine.txt"
tail -5 "$RUNS/image.log" | tee -a "$OUT/machine.txt"
# keep only what inference needs (EMA weights + JSON) and the curves; one tar, split in 15 MiB parts
PACK=/tmp/pack; rm -rf $PACK; mkdir -p $PACK
for run in "$RUNS/image" "$RUNS"/ablation/*/; do
  run=${run%/}; name=$(basename "$run"); [ -d "$run/checkpoints/last" ] || continue
  mkdir -p "$PACK/$name/checkpoints/last"
  cp "$run/checkpoints/last/"{ema.safetensors,config.json,normalizer.json,schema.json} "$PACK/$name/checkpoints/last/" 2>/dev/null
  cp "$run/"{summary.json,metrics.jsonl,train_curves.png,config.yaml} "$PACK/$name/" 2>/dev/null
done
cp "$RUNS/image.log" "$RUNS"/ablation/*.log "$PACK/" 2>/dev/null
# the return channel holds 64 MiB: the ablation variants travel as float16 weights (the image policy as float32)
"$PY" - "$PACK" <<'PYEOF'
import sys, pathlib, torch
from safetensors.torch import load_file, save_file
for f in pathlib.Path(sys.argv[1]).glob("*/checkpoints/last/ema.safetensors"):
    if f.parts[-4] != "image":
        save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f))
PYEOF
tar -C $PACK -czf /tmp/gpu_runs.tgz .
split -b 15m -d /tmp/gpu_runs.tgz "$OUT/gpu_runs.tgz.part"
ls -la "$OUT"
for s in "$PACK"/*/summary.json; do echo "$s: $("$PY" -c "import json,sys; d=json.load(open('$s')); print({k: d[k] for k in ('steps','samples_per_s','val/action_mse_chunk','val/action_mse_stream') if k in d})")"; done
