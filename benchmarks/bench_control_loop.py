"""The runtime's control loop at a fixed rate with real threads: tick jitter, holds per minute.

    python benchmarks/bench_control_loop.py [--rate 100] [--seconds 30] [--accelerate channels_last]
        [--delay-steps 1] [--threads 1]

A ``pusht_cpu``-shaped policy (random weights, 96x96 frames cropped to 84) runs in ``stream`` mode:
a camera thread pushes one frame per period (stamped on receipt), the runtime's inference thread
plans from each, and a :class:`~df_policy.runtime.control_loop.ControlLoop` thread ticks at
``--rate`` on the monotonic clock. Reported: jitter p50/p99/max (|actual - scheduled start|,
ms), missed ticks, holds per minute by kind (an ``overrun`` = inference fell behind), commands
per second, inference p50/p99, tick p99 (the control tick alone). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time

import numpy as np
import torch

from df_policy.runtime import ControlLoop, MonotonicClock, PlannerConfig, RuntimeConfig
from df_policy.runtime.acceleration import ACCELERATE_MODES
from df_policy.runtime.safety import Hold
from df_policy.runtime.testing import make_policy, make_runtime, pusht_cpu_policy_config


def run(rate: float, seconds: float, accelerate: str, delay_steps: int) -> dict:
    period = 1.0 / rate
    policy = make_policy(pusht_cpu_policy_config(), seed=0)
    cfg = RuntimeConfig(planner=PlannerConfig(mode="stream", delay_steps=delay_steps), period_s=period,
                        accelerate=accelerate)
    rt = make_runtime(policy, cfg, MonotonicClock(), value_range=(0.0, 512.0), crop_shape=(84, 84))
    warmup_s = rt.warmup()
    rng = np.random.default_rng(0)
    frames = [{"img": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
               "agent_pos": rng.uniform(0, 512, 2).astype(np.float32)} for _ in range(8)]
    stop = threading.Event()

    def camera() -> None:
        k, next_t = 0, time.monotonic()
        while not stop.is_set():
            rt.push_observation(frames[k % len(frames)])
            k += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    holds: dict[str, int] = {}

    def sink(result) -> None:
        if isinstance(result, Hold):
            holds[result.kind] = holds.get(result.kind, 0) + 1

    cam = threading.Thread(target=camera, daemon=True)
    cam.start()
    time.sleep(3 * period)
    rt.start()
    loop = ControlLoop(rt, sink, period)
    settle = 1.0  # start-up holds (nothing planned yet) are excluded: count from here
    loop.start()
    time.sleep(settle)
    holds.clear()
    jitter_start, t0 = len(loop.jitter_s), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    loop.stop()
    rt.stop()
    stop.set()
    cam.join(1.0)
    jitter = np.abs(np.asarray(list(loop.jitter_s)[jitter_start:])) * 1000.0
    stats, rep = rt.stats(), loop.report()
    return {
        "rate_hz": rate, "seconds": round(elapsed, 1), "accelerate": rt.accelerate, "warmup_s": round(warmup_s, 2),
        "delay_steps": delay_steps, "ticks": rep["ticks"], "missed_ticks": rep["missed_ticks"],
        "jitter_ms_p50": round(float(np.percentile(jitter, 50)), 3),
        "jitter_ms_p99": round(float(np.percentile(jitter, 99)), 3), "jitter_ms_max": round(float(jitter.max()), 3),
        "holds_per_minute": {k: round(v * 60.0 / elapsed, 1) for k, v in sorted(holds.items())},
        "commands_per_s": round(stats["commands"] / (elapsed + settle), 1),
        "inference_ms_p50": stats["inference_ms_p50"] and round(stats["inference_ms_p50"], 2),
        "inference_ms_p99": stats["inference_ms_p99"] and round(stats["inference_ms_p99"], 2),
        "control_tick_ms_p99": stats["control_tick_ms_p99"] and round(stats["control_tick_ms_p99"], 3),
        "recommended_delay_steps": stats["recommended_delay_steps"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=100.0, help="control rate (Hz)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    p.add_argument("--accelerate", nargs="+", default=["channels_last"], choices=ACCELERATE_MODES)
    p.add_argument("--delay-steps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {acc: run(args.rate, args.seconds, acc, args.delay_steps) for acc in args.accelerate}
    meta = {"torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    print(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
