"""``dfp demo``: the quick-start pipeline on the embedded default (simulated arm, no hardware,
no downloads).

Steps (progress is shown throughout; everything lands under ``--out``):

1. **record** ``--episodes`` demonstrations of the simulated SO-101 arm's pick-and-place task
   (:data:`~df_policy.sim.tasks.DEMO_TASK_KWARGS`) through the real recording path: :class:`~data_collection.recorder.Recorder`
   over the arm's ``Robot`` and ``Camera`` adapters, the scripted expert as teleoperator, the
   crash-safe episode writer; then validate the store;
2. **train** a small Diffusion Forcing policy on it (``arm_demo`` config, time-boxed by
   ``--train-minutes``);
3. **offline replay** evaluation of the checkpoint on the held-out episodes (streaming runtime);
4. **closed loop** in the simulator through the streaming runtime
   (:func:`~df_policy.evaluation.sim_arm.evaluate_arm`), against two baselines on the same
   seeds: holding the start pose, and open-loop replay of a recorded demonstration;
5. **report**: ``report.md`` (tables, plots, a GIF of a rollout) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from df_policy.sim.tasks import DEMO_TASK_KWARGS, demo_task_config

__all__ = ["DEMO_TASK_KWARGS", "demo_task_config", "run_demo"]


def _stage(n: int, text: str) -> None:
    print(f"[{n}/5] {text}", flush=True)


def run_demo(out: Path, episodes: int = 60, seed: int = 0, train_minutes: float = 7.0,
             eval_episodes: int = 20, train_steps: int | None = None, ros: bool = False) -> dict[str, Any]:
    """Run the five stages (see the module docstring); returns the summary (also in ``summary.json``).
    ``ros``: also run the closed-loop episodes through ROS 2 (policy node and simulated-arm node
    as separate processes, :func:`~df_policy.evaluation.sim_arm_ros.evaluate_arm_ros`), same seeds."""
    from data_collection.sim.record import record_sim
    from df_policy.data.ops import store_info, validate_store
    from df_policy.data.store import EpisodeStore
    from df_policy.evaluation.replay import run_replay
    from df_policy.evaluation.sim_arm import evaluate_arm
    from df_policy.training.config import load_run_config
    from df_policy.training.trainer import train

    if episodes < 2:
        raise ValueError(f"--episodes must be >= 2 (one is held out for validation), got {episodes}")
    if eval_episodes < 1:
        raise ValueError(f"--eval-episodes must be >= 1, got {eval_episodes}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    store_path = out / "demos.zarr"
    _stage(1, f"recording {episodes} scripted demonstrations on the simulated arm -> {store_path}")
    if store_path.exists():
        import shutil

        shutil.rmtree(store_path)
    record = record_sim(store_path, episodes, seed, env_config=demo_task_config(), status=True,
                        task="carry the cube to the green square")
    problems = validate_store(store_path)
    if problems:
        raise RuntimeError("freshly recorded store is invalid: " + "; ".join(problems))
    store = EpisodeStore.open(store_path)
    info = store_info(store)
    (out / "info.json").write_text(json.dumps(info, indent=2))
    expert_success = [m.success for m in store.episode_meta]
    lap("record_s")

    _stage(2, f"training a small policy (at most {train_minutes} min)")
    overrides = [f"train.max_minutes={train_minutes}"]
    if train_steps is not None:
        overrides += [f"train.steps={train_steps}", f"train.val_every={max(1, train_steps // 2)}"]
    run_dir = out / "run"
    summary_train = train(str(store_path), run_dir, load_run_config("arm_demo", overrides), resume=False)
    lap("train_s")

    _stage(3, "offline replay evaluation on the held-out episodes")
    replay = run_replay(run_dir, store_path, out / "replay", episodes="val", progress=True)
    lap("replay_s")

    _stage(4, f"closed loop in the simulator: {eval_episodes} episodes, policy vs baselines (same seeds)")
    loop = evaluate_arm(run_dir, demo_task_config(), episodes=eval_episodes, seed=seed + 10_000,
                        demo_store=store_path, gif_path=out / "rollout.gif")
    lap("closed_loop_s")
    loop_ros = None
    if ros:
        from df_policy.evaluation.sim_arm_ros import evaluate_arm_ros

        _stage(4, f"closed loop through ROS 2: {eval_episodes} episodes, policy node + simulated arm node")
        loop_ros = evaluate_arm_ros(run_dir, episodes=eval_episodes, seed=seed + 10_000, log_dir=out / "ros_logs")
        (out / "closed_loop_ros.json").write_text(json.dumps(loop_ros, indent=2))
        lap("closed_loop_ros_s")

    _stage(5, "report")
    summary = {
        "task": "simulated SO-101: carry the cube to the green square (demo variant)",
        "store": {"episodes": info["episodes"], "steps": info["steps"], "dropped_steps": record["dropped_steps"],
                  "expert_success_rate": sum(bool(s) for s in expert_success) / len(expert_success),
                  "record_loop_hz": round(record["mean_loop_hz"], 1)},
        "train": {k: summary_train[k] for k in ("steps", "seconds", "samples_per_s", "n_parameters")} | {
            "val_action_mse": summary_train.get("val/action_mse")},
        "replay": {k: replay[k] for k in ("action_mse", "action_mae", "boundary_jump", "tick_latency_ms_p50",
                                          "tick_latency_ms_p99", "network_calls_per_action")},
        "closed_loop": {who: {k: loop[who][k] for k in ("success_rate", "mean_progress", "mean_solve_s")}
                        for who in ("policy", "hold", "replay")}
        | {"episodes": eval_episodes, "runtime_counters": loop["policy"]["runtime_counters"],
           "hold_ticks": loop["policy"]["hold_ticks"]},
    }
    if loop_ros is not None:
        summary["closed_loop"]["policy_ros"] = {k: loop_ros[k] for k in ("success_rate", "mean_progress", "mean_solve_s")}
        summary["closed_loop_ros"] = {k: v for k, v in loop_ros.items() if k != "per_episode"}
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    summary["seconds"] = timings
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "closed_loop.json").write_text(json.dumps(loop, indent=2))
    _plot_closed_loop(out / "closed_loop.png", summary["closed_loop"])
    _write_report(out, summary)
    c = summary["closed_loop"]
    through_ros = f", through ROS 2 {c['policy_ros']['success_rate']:.2f}" if "policy_ros" in c else ""
    print(f"policy success {c['policy']['success_rate']:.2f}{through_ros} vs baselines: hold "
          f"{c['hold']['success_rate']:.2f}, demo replay {c['replay']['success_rate']:.2f}; done in "
          f"{timings['total_s']} s; see {out}/report.md")
    return summary


def _plot_closed_loop(path: Path, c: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["policy", "hold", "replay"]
    labels = ["trained policy", "hold start pose", "open-loop demo replay"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [c[n]["success_rate"] for n in names], 0.4, label="success rate")
    ax.bar([i + 0.2 for i in x], [c[n]["mean_progress"] for n in names], 0.4, label="mean task progress")
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"closed loop, {c['episodes']} episodes, same seeds")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_report(out: Path, s: dict[str, Any]) -> None:
    c, r, t, st = s["closed_loop"], s["replay"], s["train"], s["store"]

    def solve(who: str) -> str:
        v = c[who]["mean_solve_s"]
        return "-" if v is None else f"{v:.1f} s"

    lines = [
        "# df_policy demo", "",
        f"Task: {s['task']}. {st['episodes']} scripted demonstrations ({st['steps']} steps, expert success "
        f"{st['expert_success_rate']:.2f}, {st['dropped_steps']} dropped steps) recorded through the recorder.", "",
        f"## Closed loop ({c['episodes']} episodes, streaming runtime, same seeds for all rows)", "",
        "| | success rate | mean task progress | mean time to solve |", "|---|---|---|---|",
        f"| trained policy | {c['policy']['success_rate']:.2f} | {c['policy']['mean_progress']:.2f} | {solve('policy')} |",
        f"| baseline: hold the start pose | {c['hold']['success_rate']:.2f} | {c['hold']['mean_progress']:.2f} | "
        f"{solve('hold')} |",
        f"| baseline: open-loop replay of a demonstration | {c['replay']['success_rate']:.2f} | "
        f"{c['replay']['mean_progress']:.2f} | {solve('replay')} |",
        *([f"| trained policy **through ROS 2** (policy node + simulated-arm node, separate processes, real time) | "
           f"{c['policy_ros']['success_rate']:.2f} | {c['policy_ros']['mean_progress']:.2f} | {solve('policy_ros')} |"]
          if "policy_ros" in c else []), "",
        "An episode succeeds when the cube rests on the green square, released, for 1 s. The policy held "
        f"{c['hold_ticks']} ticks; runtime counters: {c['runtime_counters']}.", "",
        "![closed loop](closed_loop.png)", "",
        "First evaluation episode (scene camera, policy in control):", "",
        "![rollout](rollout.gif)", "",
        "## Offline replay (held-out episodes)", "",
        f"action MSE {r['action_mse']:.4f} (normalised), MAE {r['action_mae']:.4f}, boundary jump "
        f"{r['boundary_jump']:.2f}, tick latency p50/p99 {r['tick_latency_ms_p50']:.1f}/{r['tick_latency_ms_p99']:.1f} ms, "
        f"{r['network_calls_per_action']:.2f} network calls per action; details in [replay/report.md](replay/report.md).",
        "",
        "## Training", "",
        f"{t['steps']} steps in {t['seconds']} s ({t['samples_per_s']} samples/s), {t['n_parameters']} parameters, "
        "validation action MSE " + ("-" if t["val_action_mse"] is None else f"{t['val_action_mse']:.4f}") + ".", "",
        "![training curves](run/train_curves.png)", "",
        "Time per stage (s): " + ", ".join(f"{k} {v}" for k, v in s["seconds"].items()),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quick-start: record, train, evaluate on the simulated arm (no hardware)")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--episodes", type=int, default=60, help="demonstrations to record")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-minutes", type=float, default=7.0, help="training time budget")
    p.add_argument("--train-steps", type=int, default=None,
                   help="optimiser steps (default: the arm_demo config's; the time budget may stop earlier)")
    p.add_argument("--eval-episodes", type=int, default=20, help="closed-loop episodes per policy/baseline")
    p.add_argument("--ros", action="store_true",
                   help="also run the closed-loop episodes through ROS 2 (policy node + simulated-arm node as "
                        "separate processes, loopback DDS) and report them beside the in-process figure")
    p.set_defaults(func=lambda a: (run_demo(Path(a.out), a.episodes, a.seed, a.train_minutes, a.eval_episodes,
                                            a.train_steps, a.ros), 0)[1])
