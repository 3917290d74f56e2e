"""Control-tick latency side by side: LeRobot's DiffusionPolicy vs the df_policy runtime (issue 13).

    .venv-lerobot/bin/python benchmarks/bench_vs_lerobot_latency.py [--actions 64] [--threads 1]
        [--out runs/bench/vs_lerobot_latency.json]

Runs in ``.venv-lerobot`` (``bash scripts/install_lerobot.sh bench``: LeRobot with diffusers), so
both policies run in one process on the same torch build and thread count.
Both get PushT shapes (one 96x96 RGB camera, 2-dim state, 2-dim action, To 2, 84x84 crop) and
random weights (latency does not depend on the weights; nothing is downloaded: LeRobot's ResNet-18
backbone is built without pretrained weights).

* LeRobot: ``DiffusionPolicy.select_action`` at batch 1 with LeRobot's PushT settings (horizon 16,
  ``n_action_steps`` 8, ResNet-18 with group norm, 32 keypoints, U-Net down dims 512/1024/2048,
  DDPM with 100 steps), a DDIM-10 variant, and DDIM-10 with a small U-Net (64/128/256). One call = one executed action: most calls pop
  the action queue, every ``n_action_steps``-th runs the whole reverse diffusion. Its processor
  pipeline (normalisation) is left out, in LeRobot's favour.
* df_policy: ``PolicyRuntime`` with the ``pusht_cpu`` policy, per tick: push the observation,
  run inference, run the control tick (the safety filter included), as in
  ``benchmarks/bench_runtime.py``; ``stream`` (one network call per tick) and ``chunk``
  (DDIM-10 over the chunk every 8 ticks).

Reports p50 / p99 / max milliseconds per executed action, network calls per executed action,
parameter counts and the ratios LeRobot / ours. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import write_results  # noqa: E402  (same folder)
from bench_runtime import build, run_mode  # noqa: E402
from lerobot_policy import lerobot_diffusion_policy  # noqa: E402

LEROBOT_VARIANTS = (  # name, scheduler, inference steps, U-Net down dims
    ("lerobot DDPM-100", "DDPM", 100, (512, 1024, 2048)),
    ("lerobot DDIM-10", "DDIM", 10, (512, 1024, 2048)),
    ("lerobot DDIM-10 small", "DDIM", 10, (64, 128, 256)),
)


def lerobot_latency(policy: torch.nn.Module, actions: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    policy.reset()
    lat = []
    with torch.inference_mode():
        for _ in range(actions + warmup):
            batch = {"observation.image": torch.from_numpy(rng.random((1, 3, 96, 96), np.float32)),
                     "observation.state": torch.from_numpy(rng.standard_normal((1, 2)).astype(np.float32))}
            t0 = time.perf_counter()
            policy.select_action(batch)
            lat.append(time.perf_counter() - t0)
    ms = np.array(lat[warmup:]) * 1000
    cfg = policy.config
    return {
        "tick_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "tick_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "tick_ms_max": round(float(ms.max()), 2),
        "tick_ms_mean": round(float(ms.mean()), 2),
        "network_calls_per_action": round(cfg.num_inference_steps / cfg.n_action_steps, 3),
        "parameters": sum(p.numel() for p in policy.parameters()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--actions", type=int, default=64,
                   help="executed actions measured per policy (multiple of 8; DDPM-100 costs ~40 s per 8 on 1 thread)")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench/vs_lerobot_latency.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    for name, scheduler, steps, down_dims in LEROBOT_VARIANTS:
        results[name] = lerobot_latency(
            lerobot_diffusion_policy(down_dims, scheduler, steps, seed=0).eval(), args.actions, args.warmup)
        print(f"{name}: {results[name]}", file=sys.stderr)
    ours = SimpleNamespace(checkpoint=None, delay_steps=1, device="cpu", model="pusht_cpu", block_tokens=None,
                           ticks=args.actions, warmup=args.warmup, n_obs_steps=2)  # To 2, as LeRobot's
    from df_policy.runtime import FakeClock

    n_params = sum(p.numel() for p in build("stream", None, 1, FakeClock(), n_obs_steps=2)[0].policy.parameters())
    for mode in ("stream", "chunk"):
        r, _ = run_mode(mode, ours, "channels_last")
        results[f"df_policy {mode}"] = {k: r[k] for k in ("tick_ms_p50", "tick_ms_p99", "tick_ms_max",
                                                          "tick_ms_mean", "network_calls_per_action")}
        results[f"df_policy {mode}"]["parameters"] = n_params
        print(f"df_policy {mode}: {results[f'df_policy {mode}']}", file=sys.stderr)
    ratios = {
        f"{theirs} / df_policy {mode}": {q: round(results[theirs][f"tick_ms_{q}"] / results[f"df_policy {mode}"][f"tick_ms_{q}"], 1)
                                         for q in ("p50", "p99", "max")}
        for theirs, *_ in LEROBOT_VARIANTS for mode in ("stream", "chunk")
    }
    import lerobot

    meta = {"torch": torch.__version__, "lerobot": lerobot.__version__, "threads": args.threads,
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "actions": args.actions, "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(f"\n{'policy':<22} {'params':>11} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'calls/action':>13}")
    for name, r in results.items():
        print(f"{name:<22} {r['parameters']:>11,} {r['tick_ms_p50']:>9.2f} {r['tick_ms_p99']:>9.2f} "
              f"{r['tick_ms_max']:>9.2f} {r['network_calls_per_action']:>13}")
    for name, r in ratios.items():
        print(f"{name}: p50 {r['p50']}x, p99 {r['p99']}x, max {r['max']}x")
    write_results(args.out, meta, results, ratios=ratios)


if __name__ == "__main__":
    main()
