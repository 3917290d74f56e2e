"""Per-tick latency of the streaming runtime: ``stream`` vs ``chunk`` (and ``autoregressive``).

    python benchmarks/bench_runtime.py [--ticks 80] [--threads 1] [--checkpoint RUN_OR_CKPT]
        [--device cpu|cuda] [--model pusht_cpu|gpu_sized] [--accelerate off channels_last compile onnx]
        [--precision fp32 bf16]

Without ``--checkpoint`` the model is the policy of ``df_policy/configs/pusht_cpu.yaml`` with
random weights and PushT shapes (img 96x96 centre-cropped to 84, agent_pos 2, action 2, To=2,
Tp=16, S=10); ``--model gpu_sized`` is the same with a larger network (vision width 64, 32
keypoints; denoiser d_model 256, 8 layers, 8 heads). ``--device`` places the policy (and the
runtime's inference) on that torch device; on CUDA each tick ends with
``torch.cuda.synchronize()`` before the clock is read, so GPU work is inside the timing.
Each tick is what the runtime does per control period: push one raw observation (robot
units), run inference synchronously (preprocessing + planner), run the control tick
(queue + safety filter). Timing is wall clock (``time.perf_counter``), on a fake control clock
so no tick is ever late. The first ``--warmup`` ticks (the stream mode's priming tick among
them) are reported separately. ``--accelerate`` runs each mode once per inference path
(``RuntimeConfig.accelerate``; ``off`` is the eager code as it was before the fast paths) in
the same process, after :meth:`PolicyRuntime.warmup` (compilation, reported as ``warmup_s``),
and adds ``speedup_vs_off`` ratios (p50, p99). ``--precision fp32 bf16`` runs each path in both
(``RuntimeConfig.precision``; rows ``mode/path/bf16``) from the same seed, and reports for bf16
the largest difference of the commanded actions to fp32 (``max_abs_action_diff_vs_fp32``, in
normalised action units). Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np
import torch
import yaml

from df_policy.model.policy import DiffusionForcingConfig
from df_policy.runtime import FakeClock, PlannerConfig, PolicyRuntime, RuntimeConfig
from df_policy.runtime.acceleration import ACCELERATE_MODES, PRECISIONS
from df_policy.runtime.testing import make_policy, make_runtime, pusht_cpu_policy_config

MODELS = ("pusht_cpu", "gpu_sized")


def gpu_sized_policy_config() -> DiffusionForcingConfig:
    """``pusht_cpu_policy_config`` with a larger network: vision width 64, 32 keypoints;
    denoiser d_model 256, 8 layers, 8 heads (built from ``pusht_cpu.yaml`` the same way)."""
    from df_policy.training.config import resolve_config_path

    run = yaml.safe_load(resolve_config_path("pusht_cpu").read_text())
    ds, policy = run["dataset"], dict(run["policy"])
    policy["vision"] = {**policy["vision"], "width": 64, "num_keypoints": 32}
    policy["denoiser"] = {**policy["denoiser"], "d_model": 256, "n_layers": 8, "n_heads": 8}
    return DiffusionForcingConfig(
        image_shapes={"img": (3, *ds["crop_shape"])}, lowdim_shapes={"agent_pos": 2}, action_dim=2,
        n_obs_steps=ds["n_obs_steps"], horizon=ds["horizon"], **policy)


def build(mode: str, checkpoint: str | None, delay: int, clock: FakeClock, device: str = "cpu",
          model: str = "pusht_cpu", accelerate: str = "channels_last", block_tokens: int | None = None,
          precision: str = "fp32", n_obs_steps: int | None = None) -> tuple[PolicyRuntime, dict]:
    planner = PlannerConfig(mode=mode, delay_steps=delay, block_tokens=block_tokens)
    cfg = RuntimeConfig(planner=planner, device=device, accelerate=accelerate, precision=precision)
    if checkpoint:
        rt = PolicyRuntime.from_checkpoint(checkpoint, cfg, clock)
        pcfg = rt.policy.config
        crop = rt.preprocessor.crop_shape
        sizes = {k: (crop or (h, w)) for k, (c, h, w) in pcfg.image_shapes.items()}
        if crop:  # raw frames at the store size when the checkpoint knows it
            from df_policy.training.checkpoint import load_checkpoint

            schema = load_checkpoint(checkpoint).schema
            sizes = {k: tuple(schema.keys[k].shape[:2]) for k in pcfg.image_shapes}
        return rt, sizes
    pcfg = gpu_sized_policy_config() if model == "gpu_sized" else pusht_cpu_policy_config(n_obs_steps)
    policy = make_policy(pcfg, seed=0).to(device)
    cfg = dataclasses.replace(cfg, period_s=0.1)
    return make_runtime(policy, cfg, clock, value_range=(0.0, 512.0), crop_shape=(84, 84)), {"img": (96, 96)}


def run_mode(mode: str, args: argparse.Namespace, accelerate: str = "channels_last",
             precision: str = "fp32") -> tuple[dict, np.ndarray]:
    """The row of one (mode, path, precision), and the commanded actions (normalised)."""
    clock = FakeClock()
    rt, sizes = build(mode, args.checkpoint, args.delay_steps, clock, args.device, args.model, accelerate,
                      args.block_tokens, precision, getattr(args, "n_obs_steps", None))
    warmup_s = rt.warmup()
    torch.manual_seed(0)  # the same noise for every precision
    cuda = torch.device(args.device).type == "cuda"
    rng = np.random.default_rng(0)
    pcfg = rt.policy.config
    lat, calls, actions = [], [], []
    for k in range(args.ticks + args.warmup):
        now = k * rt.period_s
        clock.set(now)
        obs = {key: rng.integers(0, 256, (*sizes[key], c), dtype=np.uint8) for key, (c, _, _) in pcfg.image_shapes.items()}
        obs.update({key: rng.uniform(0, 512, d).astype(np.float32) for key, d in pcfg.lowdim_shapes.items()})
        rt.push_observation(obs, stamp=now)
        t0 = time.perf_counter()
        report = rt.run_inference_once()
        result = rt.control_tick(now)
        if hasattr(result, "action"):
            actions.append(rt.preprocessor.normalize_action(result.action))
        if cuda:
            torch.cuda.synchronize()
        lat.append(time.perf_counter() - t0)
        calls.append(report.network_calls if report else 0)
    lat_ms, steady = np.array(lat) * 1000, slice(args.warmup, None)
    s = rt.stats()
    return {
        "tick_ms_p50": round(float(np.percentile(lat_ms[steady], 50)), 2),
        "tick_ms_p99": round(float(np.percentile(lat_ms[steady], 99)), 2),
        "tick_ms_max": round(float(lat_ms[steady].max()), 2),
        "tick_ms_mean": round(float(lat_ms[steady].mean()), 2),
        "first_tick_ms": round(float(lat_ms[0]), 2),
        "network_calls_per_action": round(float(np.sum(calls[steady]) / args.ticks), 3),
        "network_calls_per_tick": sorted(set(calls[steady])),
        "control_tick_ms_p99": s["control_tick_ms_p99"] and round(s["control_tick_ms_p99"], 3),
        "commands": s["commands"], "overruns": s["overruns"], "warmup_s": round(warmup_s, 2),
        "schedule": rt.planner.describe(),
    }, np.array(actions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint or run directory (default: random pusht_cpu model)")
    p.add_argument("--ticks", type=int, default=80, help="measured ticks per mode")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--delay-steps", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["stream", "chunk", "autoregressive"])
    p.add_argument("--block-tokens", type=int, default=None, help="stream schedule: blocks of this many tokens, "
                   "0 = the per-token pyramid (default: the model's policy.stream_block_tokens)")
    p.add_argument("--device", default="cpu", help="torch device for the policy and inference (cpu, cuda, cuda:1, ...)")
    p.add_argument("--accelerate", nargs="+", default=["channels_last"], choices=ACCELERATE_MODES,
                   help="inference paths to compare (RuntimeConfig.accelerate); off = eager")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS,
                   help="precisions to run each path in (RuntimeConfig.precision); bf16 rows report their "
                        "difference to fp32")
    p.add_argument("--model", choices=MODELS, default="pusht_cpu",
                   help="random-weight model when no --checkpoint: pusht_cpu or gpu_sized (ignored with --checkpoint)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for mode in args.modes:
        for acc in args.accelerate:
            fp32_actions = None
            for precision in args.precision:
                key = f"{mode}/{acc}" + ("" if precision == "fp32" else f"/{precision}")
                results[key], actions = run_mode(mode, args, acc, precision)
                if precision == "fp32":
                    fp32_actions = actions
                elif fp32_actions is not None and fp32_actions.shape == actions.shape and actions.size:
                    results[key]["max_abs_action_diff_vs_fp32"] = float(np.abs(actions - fp32_actions).max())
        base = results.get(f"{mode}/off")  # eager fp32: the code before the fast paths
        for key, r in results.items():
            if base is not None and r is not base and key.split("/")[0] == mode:
                r["speedup_vs_off"] = {q: round(base[f"tick_ms_{q}"] / r[f"tick_ms_{q}"], 2) for q in ("p50", "p99")}
    dev = torch.device(args.device)
    device_name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                   else platform.processor() or platform.machine())
    meta = {"model": args.checkpoint or f"{args.model} config, random weights", "torch": torch.__version__,
            "device": args.device, "device_name": device_name,
            "threads": args.threads, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "ticks": args.ticks, "delay_steps": args.delay_steps,
            "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    print(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
