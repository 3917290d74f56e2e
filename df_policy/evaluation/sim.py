"""Closed-loop evaluation in the real ``gym-pusht`` simulator, through the streaming runtime.

    dfp eval sim --checkpoint CKPT --env pusht --episodes 50 --seed 0 --out DIR [--mode stream|chunk]

Each episode: ``gym_pusht/PushT-v0`` with ``obs_type="pixels_agent_pos"`` (96x96 RGB + agent
position in pixels), reset with seed ``seed + i``. Every control step (10 Hz, the data's rate) the
observation goes into :class:`~df_policy.runtime.runner.PolicyRuntime` exactly as a robot's
would (``push_observation``), one inference runs (``run_inference_once``, synchronous, so the
result does not depend on this machine's speed), and the command that ``control_tick`` returns
(after the safety layer; a hold re-sends the last safe command) is applied to the simulator.
Metrics use the simulator's own definitions: ``coverage`` of the goal by the T block, success =
coverage ≥ 0.95 (``info["is_success"]``). Episodes run in parallel processes (one torch thread
each). Outputs: ``metrics.json``, ``report.md``, GIFs of the first ``--videos`` episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ENVS = ("pusht",)
_WORKER: dict[str, Any] = {}


@dataclass
class SimEvalConfig:
    """Closed-loop evaluation settings.

    Attributes:
        checkpoint: checkpoint or run directory.
        env: simulator (``pusht``).
        episodes: number of episodes (seeds ``seed .. seed + episodes - 1``).
        seed: first environment seed.
        mode: runtime planner mode (``stream``, ``chunk`` or ``autoregressive``).
        max_steps: control steps per episode (PushT: 300, as in Diffusion Policy / LeRobot).
        workers: parallel processes (``None`` = number of cores, at most ``episodes``).
        videos: how many episodes (the first ones) to save as GIF.
        planner: extra :class:`~df_policy.runtime.planning.PlannerConfig` fields.
    """

    checkpoint: str
    env: str = "pusht"
    episodes: int = 50
    seed: int = 0
    mode: str = "stream"
    max_steps: int = 300
    workers: int | None = None
    videos: int = 3
    planner: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.env not in ENVS:
            raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
        if self.episodes < 1 or self.max_steps < 1:
            raise ValueError("episodes and max_steps must be >= 1")


def _make_env(max_steps: int) -> Any:
    import gymnasium as gym
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

    return gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array",
                    max_episode_steps=max_steps)


def _init_worker(cfg: SimEvalConfig) -> None:
    import torch

    from df_policy.runtime.clock import FakeClock
    from df_policy.runtime.planning import PlannerConfig
    from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig

    torch.set_num_threads(1)
    clock = FakeClock()
    runtime = PolicyRuntime.from_checkpoint(
        cfg.checkpoint, RuntimeConfig(planner=PlannerConfig(mode=cfg.mode, **cfg.planner)), clock=clock)
    _WORKER.update(cfg=cfg, runtime=runtime, clock=clock, env=_make_env(cfg.max_steps))


def _run_episode(index: int) -> dict[str, Any]:
    from df_policy.runtime.safety import Command

    cfg, runtime, clock, env = _WORKER["cfg"], _WORKER["runtime"], _WORKER["clock"], _WORKER["env"]
    seed = cfg.seed + index
    obs, info = env.reset(seed=seed)
    t_base = clock.now() + 1.0  # the fake clock only moves forward: each episode starts later
    clock.set(t_base)
    runtime.reset(t0=t_base, initial_command=np.asarray(obs["agent_pos"], dtype=np.float64))
    period = runtime.period_s
    frames = [env.render()] if index < cfg.videos else None
    max_cov, cov, success, holds, steps, latencies = 0.0, 0.0, False, 0, 0, []
    for k in range(cfg.max_steps):
        raw = {"img": obs["pixels"], "agent_pos": np.asarray(obs["agent_pos"], np.float32)}
        result, inference_s, _ = runtime.step_synchronously(raw, t_base + k * period)
        latencies.append(inference_s)
        if isinstance(result, Command):
            action = result.action
        else:
            holds += 1
            action = result.action if result.action is not None else np.asarray(obs["agent_pos"], np.float64)
        obs, _, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        steps += 1
        cov = float(info.get("coverage", 0.0))
        max_cov = max(max_cov, cov)
        success = success or bool(info.get("is_success", False))
        if frames is not None:
            frames.append(env.render())
        if terminated or truncated:
            break
    out = {"episode": index, "seed": seed, "success": success, "max_coverage": max_cov, "final_coverage": cov,
           "steps": steps, "holds": holds, "inference_ms_p50": float(np.percentile(latencies, 50) * 1e3),
           "inference_ms_p99": float(np.percentile(latencies, 99) * 1e3)}
    if frames is not None:
        out["frames"] = np.stack(frames)
    return out


def evaluate_sim(cfg: SimEvalConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the episodes (in parallel processes) and write metrics, report and GIFs into ``out``."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or min(os.cpu_count() or 1, cfg.episodes)
    t0 = time.perf_counter()
    results = []
    if workers <= 1:
        _init_worker(cfg)
        for i in tqdm(range(cfg.episodes), desc=f"eval sim ({cfg.mode})", disable=not progress):
            results.append(_run_episode(i))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(cfg,)) as pool:
            for r in tqdm(pool.map(_run_episode, range(cfg.episodes)), total=cfg.episodes,
                          desc=f"eval sim ({cfg.mode})", disable=not progress):
                results.append(r)
    videos = []
    for r in results:
        frames = r.pop("frames", None)
        if frames is not None:
            path = out / f"episode_{r['episode']:03d}.gif"
            _save_gif(frames, path)
            videos.append(path.name)
    metrics = {
        "env": cfg.env, "mode": cfg.mode, "checkpoint": str(cfg.checkpoint), "n_episodes": len(results),
        "success_rate": float(np.mean([r["success"] for r in results])),
        "avg_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
        "avg_final_coverage": float(np.mean([r["final_coverage"] for r in results])),
        "holds_per_episode": float(np.mean([r["holds"] for r in results])),
        "inference_ms_p50": float(np.median([r["inference_ms_p50"] for r in results])),
        "seconds": round(time.perf_counter() - t0, 1), "config": asdict(cfg), "episodes": results, "videos": videos,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _write_report(metrics, out / "report.md")
    return metrics


def _save_gif(frames: np.ndarray, path: Path, fps: int = 10) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames[::2]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(2000 / fps), loop=0)


def _write_report(m: dict[str, Any], path: Path) -> None:
    lines = [
        f"# Closed-loop evaluation: {m['env']} ({m['mode']} mode)", "",
        f"checkpoint `{m['checkpoint']}`, {m['n_episodes']} episodes, seeds from {m['config']['seed']}", "",
        "| metric | value |", "|---|---|",
        f"| success rate (coverage ≥ 0.95) | {m['success_rate']:.3f} |",
        f"| mean max coverage | {m['avg_max_coverage']:.3f} |",
        f"| mean final coverage | {m['avg_final_coverage']:.3f} |",
        f"| holds per episode | {m['holds_per_episode']:.1f} |",
        f"| inference per tick, median p50 (ms) | {m['inference_ms_p50']:.1f} |", "",
        "| episode | seed | success | max coverage | steps | holds |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['episode']} | {r['seed']} | {r['success']} | {r['max_coverage']:.3f} | {r['steps']} | {r['holds']} |"
              for r in m["episodes"]]
    lines += ["", *[f"![episode]({v})" for v in m["videos"]]]
    path.write_text("\n".join(lines) + "\n")


def add_eval_sim_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="closed-loop evaluation in the simulator, through the streaming runtime")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", default="pusht", choices=ENVS)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="stream", choices=["stream", "chunk", "autoregressive"])
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--out", required=True)

    def run(a: argparse.Namespace) -> int:
        cfg = SimEvalConfig(a.checkpoint, a.env, a.episodes, a.seed, a.mode, a.max_steps, a.workers, a.videos)
        m = evaluate_sim(cfg, a.out)
        print(f"{m['n_episodes']} episodes ({m['mode']}): success rate {m['success_rate']:.3f}, "
              f"mean max coverage {m['avg_max_coverage']:.3f}; {a.out}/report.md")
        return 0

    p.set_defaults(func=run)
