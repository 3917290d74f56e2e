"""``dfp demo``: the quick-start pipeline on the embedded default (no hardware, no downloads).

Steps (progress is printed throughout; everything lands under ``--out``):
1. record scripted demonstrations of the synthetic reaching task into an episode store
   (incremental, crash-safe writer) and validate it;
2. train a small Diffusion Forcing policy on it (``smoke`` config, time-boxed);
3. offline replay evaluation of the checkpoint on the held-out episodes (streaming runtime);
4. closed-loop evaluation in the reaching simulator through the streaming runtime, against a
   trivial baseline that holds the start position; a GIF of one rollout;
5. ``report.md`` + ``summary.json`` with the figures of every stage.
The simulated arm and the teleop recorder replace step 1 once they land.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from df_policy.data.ops import store_info, validate_store
from df_policy.data.schema import EpisodeMeta
from df_policy.data.store import EpisodeStore
from df_policy.data.synthetic import ReachEnv, synthetic_episode, synthetic_schema


def record_demos(path: Path, episodes: int, seed: int) -> EpisodeStore:
    """Scripted expert demos written step by step through :class:`EpisodeWriter` (as a recorder does)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, synthetic_schema(32), overwrite=True)
    for _ in tqdm(range(episodes), desc="record", leave=False):
        ep = synthetic_episode(rng, 40, 32)
        with store.begin_episode() as writer:
            for t in range(len(ep["action"])):
                writer.add_step({k: v[t] for k, v in ep.items()})
            writer.commit(EpisodeMeta(task="reach the green goal", success=True))
    return store


def closed_loop(checkpoint: Path, episodes: int, seed: int, gif: Path | None) -> dict[str, Any]:
    """Policy vs hold-still baseline in :class:`ReachEnv`, same seeds, through the runtime."""
    from df_policy.runtime.clock import FakeClock
    from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig

    clock = FakeClock()
    runtime = PolicyRuntime.from_checkpoint(checkpoint, RuntimeConfig(), clock=clock)
    env = ReachEnv(image_size=32, max_steps=40)
    results: dict[str, list[float]] = {"policy": [], "hold_baseline": [], "policy_dist": [], "baseline_dist": []}
    frames = []
    for i in range(episodes):
        for who in ("policy", "hold_baseline"):
            obs = env.reset(seed + i)
            start = obs["agent_pos"].astype(np.float64)
            t_base = clock.now() + 1.0
            clock.set(t_base)
            runtime.reset(t0=t_base, initial_command=start)
            done = False
            for k in range(env.max_steps):
                if who == "hold_baseline":
                    action = start
                else:
                    res, _, _ = runtime.step_synchronously(obs, t_base + k * runtime.period_s)
                    action = res.action if res.action is not None else start
                    if gif is not None and i == 0:
                        frames.append(np.kron(obs["image"], np.ones((4, 4, 1), np.uint8)))
                obs, done = env.step(action)
                if done:
                    break
            results[who].append(float(env.success()))
            results["policy_dist" if who == "policy" else "baseline_dist"].append(env.distance())
    if gif is not None and frames:
        from PIL import Image

        imgs = [Image.fromarray(f) for f in frames]
        imgs[0].save(gif, save_all=True, append_images=imgs[1:], duration=100, loop=0)
    return {"episodes": episodes, "policy_success_rate": float(np.mean(results["policy"])),
            "baseline_success_rate": float(np.mean(results["hold_baseline"])),
            "policy_final_distance": float(np.mean(results["policy_dist"])),
            "baseline_final_distance": float(np.mean(results["baseline_dist"]))}


def run_demo(out: Path, episodes: int = 40, seed: int = 0, train_minutes: float = 4.0,
             eval_episodes: int = 20, train_steps: int = 600) -> dict[str, Any]:
    from df_policy.evaluation.replay import run_replay
    from df_policy.training.config import load_run_config
    from df_policy.training.trainer import train

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    store_path = out / "demos.zarr"
    print(f"[1/5] recording {episodes} scripted demonstrations -> {store_path}", flush=True)
    store = record_demos(store_path, episodes, seed)
    problems = validate_store(store_path)
    if problems:
        raise RuntimeError("freshly recorded store is invalid: " + "; ".join(problems))
    info = store_info(store)
    (out / "info.json").write_text(json.dumps(info, indent=2))
    timings["record_s"] = time.perf_counter() - t0

    print(f"[2/5] training a small policy (at most {train_minutes} min)", flush=True)
    run_dir = out / "run"
    run = load_run_config("smoke", [f"train.max_minutes={train_minutes}", f"train.steps={train_steps}",
                                    f"train.val_every={max(1, train_steps // 2)}"])
    summary_train = train(str(store_path), run_dir, run, resume=False)
    timings["train_s"] = time.perf_counter() - t0 - sum(timings.values())

    print("[3/5] offline replay evaluation on the held-out episodes", flush=True)
    replay = run_replay(run_dir, store_path, out / "replay", episodes="val")
    timings["replay_s"] = time.perf_counter() - t0 - sum(timings.values())

    print(f"[4/5] closed-loop evaluation: {eval_episodes} episodes, policy vs hold-still baseline", flush=True)
    loop = closed_loop(run_dir, eval_episodes, seed + 10_000, out / "rollout.gif")
    timings["closed_loop_s"] = time.perf_counter() - t0 - sum(timings.values())

    print("[5/5] report", flush=True)
    summary = {
        "store": {"episodes": info["episodes"], "steps": info["steps"]},
        "train": {k: summary_train[k] for k in ("steps", "seconds", "samples_per_s", "n_parameters")} | {
            "val_action_mse": summary_train.get("val/action_mse")},
        "replay": {k: replay[k] for k in ("action_mse", "action_mae", "boundary_jump", "tick_latency_ms_p50",
                                          "tick_latency_ms_p99", "network_calls_per_action")},
        "closed_loop": loop,
        "seconds": {k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - t0, 1)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(out, summary)
    print(f"policy success {loop['policy_success_rate']:.2f} vs hold-still baseline "
          f"{loop['baseline_success_rate']:.2f}; done in {summary['seconds']['total']} s; see {out}/report.md")
    return summary


def _write_report(out: Path, s: dict[str, Any]) -> None:
    c, r, t = s["closed_loop"], s["replay"], s["train"]
    lines = [
        "# df_policy demo", "",
        f"{s['store']['episodes']} scripted demonstrations ({s['store']['steps']} steps) of the synthetic reaching task.", "",
        "## Closed loop (streaming runtime, reaching simulator)", "",
        "| | success rate | final distance to goal |", "|---|---|---|",
        f"| trained policy | {c['policy_success_rate']:.2f} | {c['policy_final_distance']:.3f} |",
        f"| hold-still baseline | {c['baseline_success_rate']:.2f} | {c['baseline_final_distance']:.3f} |", "",
        "![rollout](rollout.gif)", "",
        "## Offline replay (held-out episodes)", "",
        f"action MSE {r['action_mse']:.4f} (normalised), MAE {r['action_mae']:.4f}, boundary jump "
        f"{r['boundary_jump']}, tick latency p50/p99 {r['tick_latency_ms_p50']:.1f}/{r['tick_latency_ms_p99']:.1f} ms, "
        f"{r['network_calls_per_action']:.2f} network calls per action; details in [replay/report.md](replay/report.md).", "",
        "## Training", "",
        f"{t['steps']} steps in {t['seconds']} s ({t['samples_per_s']} samples/s), {t['n_parameters']} parameters; "
        "curves in `run/train_curves.png`.", "",
        "Time per stage (s): " + ", ".join(f"{k} {v}" for k, v in s["seconds"].items()),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quick-start: record, train, evaluate on the embedded simulator (no hardware)")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--episodes", type=int, default=40, help="demonstrations to record")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-minutes", type=float, default=4.0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--train-steps", type=int, default=600, help="optimiser steps (the time budget may stop earlier)")
    p.set_defaults(func=lambda a: (run_demo(Path(a.out), a.episodes, a.seed, a.train_minutes, a.eval_episodes,
                                            a.train_steps), 0)[1])
