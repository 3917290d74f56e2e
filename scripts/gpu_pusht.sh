#!/usr/bin/env bash
# One call on a lent GPU machine, within one `device` run (at most 10 minutes): measures the
# runtime's tick on the GPU (eager vs fast paths, issue 11; RUNTIME_BENCH=0 skips it) and the
# training step's memory layouts, then trains the PushT image policy (config pusht_gpu) with the
# GPU to itself for the time that is left of TOTAL_S, and packs the EMA checkpoint, curves and
# logs into $OUT for closed-loop evaluation on the CPU. LD_MIN > 0 also trains the
# low-dimensional ablation variants (benchmarks/pusht_ablation.py) beside it, sharing the GPU.
#   bash scripts/gpu_prepare.sh       # here: fills .gpu/ (data) and .whl/ (zarr wheels)
#   device run, carry [".gpu", ".whl"], timeout_s 600:  bash scripts/gpu_pusht.sh
# With a session's 15 device minutes (the start included), two runs on the same warm machine give
# training more time: PHASE=bench (timeout_s 300: the rows done by then come back), then PHASE=train
# (TOTAL_S 450 by default, timeout_s 540).
#   env: PHASE (all | bench | train), TOTAL_S (540; 450 for train: the whole script), IMG_MIN
#   (default: what TOTAL_S leaves), IMG_ARGS (more overrides for the image run), LD_MIN (0), DATA, OUT
set -uo pipefail
PY=${PY:-python3}
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
DATA=${DATA:-.gpu/pusht_cchi_v7_replay_train.zarr.zip}
PHASE=${PHASE:-all}; TOTAL_S=${TOTAL_S:-$([ "$PHASE" = train ] && echo 450 || echo 540)}; LD_MIN=${LD_MIN:-0}; VARIANTS=${VARIANTS:-}; T_BEGIN=$(date +%s)
if [ -d .whl ] && ! "$PY" -c 'import zarr' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TQDM_DISABLE=1 PYTHONUNBUFFERED=1
RUNS=${RUNS:-/tmp/gpu_runs}; rm -rf "$RUNS"; mkdir -p "$RUNS"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  "$PY" -c "import torch, zarr; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'zarr', zarr.__version__)"
  nproc; } | tee "$OUT/machine.txt"
if [ "$PHASE" != train ]; then
  # issue 11 first, on the idle GPU: tick latency eager vs channels_last vs compiled (CUDA graphs), fp32
  # and bf16; the training step's memory layouts. One process per path, so a slow compilation loses
  # only its own row; the results travel as one file, bench.tgz ($OUT brings back at most 8 files)
  BENCH=/tmp/gpu_bench; rm -rf "$BENCH"; mkdir -p "$BENCH"
  pack_bench() { tar -C "$BENCH" -czf "$OUT/bench.tgz" .; }  # after every step: a cut-off run keeps the rest
  runtime_rows() {  # $1 model: eager fp32, then channels_last and compile in fp32 and bf16
    [ "${RUNTIME_BENCH:-1}" = 1 ] || return 0
    for acc in off channels_last compile; do
      case $acc in off) prec=fp32; limit=60 ;; channels_last) prec="fp32 bf16"; limit=80 ;; *) prec="fp32 bf16"; limit=150 ;; esac
      timeout $limit "$PY" benchmarks/bench_runtime.py --device cuda --model "$1" --ticks 200 --warmup 10 \
        --modes stream chunk --delay-steps 1 --accelerate "$acc" --precision $prec > "$BENCH/bench_runtime_${1}_$acc.json" 2>&1
      pack_bench
    done
  }
  runtime_rows pusht_cpu
  timeout 60 "$PY" benchmarks/bench_train_step.py --store "$DATA" --config pusht_gpu --device cuda --steps 20 \
    --rounds 3 --json "$BENCH/bench_train_step_pusht_gpu.json" > "$BENCH/bench_train_step.log" 2>&1
  pack_bench
  runtime_rows gpu_sized
  if [ "$PHASE" = bench ]; then ls -la "$OUT"; exit 0; fi
fi
# the image run gets what is left, less ~75 s for its start, final validation and the packing
IMG_MIN=${IMG_MIN:-$("$PY" -c "print(round(max(1.0, ($TOTAL_S - ($(date +%s) - $T_BEGIN) - 75) / 60), 2))")}
echo "image training budget: $IMG_MIN min" | tee -a "$OUT/machine.txt"
t0=$(date +%s)
( "$PY" -m df_policy.training.trainer --data "$DATA" --out "$RUNS/image" --config pusht_gpu \
    train.max_minutes="$IMG_MIN" ${IMG_ARGS:-} > "$RUNS/image.log" 2>&1; echo "image trainer exit $?" >> "$RUNS/image.log" ) &
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
# and the image run's newest intermediate checkpoint (train.ckpt_every), to pick a checkpoint closed loop
mid=$(ls -d "$RUNS"/image/checkpoints/step_* 2>/dev/null | sort | tail -2 | head -1)
if [ -n "$mid" ] && [ "$(ls -d "$RUNS"/image/checkpoints/step_* | wc -l)" -ge 2 ]; then
  mkdir -p "$PACK/image_mid/checkpoints/last"
  cp "$mid/"{ema.safetensors,config.json,normalizer.json,schema.json} "$PACK/image_mid/checkpoints/last/"
  echo "$(basename "$mid")" > "$PACK/image_mid/step.txt"
fi
cp "$RUNS/image.log" "$RUNS"/ablation/*.log "$PACK/" 2>/dev/null
# the return channel holds 64 MiB: the ablation variants and image_mid travel as float16 weights (the
# final image policy as float32)
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
