"""Closed-loop evaluation in the real ``gym-pusht`` simulator, through the streaming runtime.

    dfp eval sim --checkpoint CKPT --env pusht --episodes 50 --seed 0 --out DIR
                 [--mode stream|chunk|autoregressive] [--obs auto|pixels|state] [--delay-steps 0]
                 [--fps 10] [--planner KEY=VALUE ...]

Each episode: ``gym_pusht/PushT-v0``, reset with seed ``seed + i`` (seeds ``seed .. seed +
episodes - 1``), with one of two observation types (``--obs``):

* ``pixels``: ``obs_type="pixels_agent_pos"``, fed to the runtime as raw keys ``img`` (96x96
  RGB) and ``agent_pos`` (pixels): the image task.
* ``state``: ``obs_type="state"``, the 5-dim ``[agent x, agent y, block x, block y, block
  angle]`` (the ``state`` key of the PushT zarr data), fed as raw key ``state`` (and
  ``agent_pos = state[:2]``): the low-dimensional task of Diffusion Policy's table.
* ``auto`` (default): ``state`` when the checkpoint uses no image, else ``pixels``.

The initial command (for the safety layer's velocity limits) is the agent position. Every
control step (10 Hz, the simulator's rate; the runtime's period is ``1 / fps`` of the checkpoint,
``--fps``, or the simulator's 10 Hz) the observation goes into
:class:`~df_policy.runtime.runner.PolicyRuntime` exactly as a robot's would
(``step_synchronously``: push, one inference, one control tick), and the command that
``control_tick`` returns (after the safety layer; a hold re-sends the last safe command) is
applied to the simulator.

Latency: the simulator waits while inference runs (inference takes no simulated time), as in
the published Diffusion Policy and LeRobot PushT evaluations, so ``delay_steps = 0`` (the
default) is the comparable setting: the action for the observation's own step is planned and
executed. ``--delay-steps N`` plans ``N`` steps ahead as on a robot whose inference takes ``N``
periods, i.e. it adds ``N`` steps of latency the simulator does not have; report both where it
matters. ``--planner key=value`` sets any other :class:`~df_policy.runtime.planning.PlannerConfig`
field (ablations: ``--planner ramp_tokens=8 --planner calls_per_tick=2``).

Metrics use the simulator's own definitions: ``coverage`` of the goal by the T block, success =
coverage ≥ 0.95 (``info["is_success"]``). Episodes run in parallel processes (one torch thread
each). Outputs: ``metrics.json`` (``success_rate``, ``avg_max_coverage``, ``frozen_episodes``
(failed episodes whose agent stayed within :data:`FREEZE_TOLERANCE` of one point for the last
:data:`FREEZE_STEPS` steps: the policy settled on a fixed point), ``obs``, ``delay_steps``, ``fps``, ``planner``, ``seeds``, per episode),
``report.md``, GIFs of the first ``--videos`` episodes.
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
ENV_FPS = {"pusht": 10.0}
OBS_TYPES = ("auto", "pixels", "state")
GYM_OBS_TYPE = {"pixels": "pixels_agent_pos", "state": "state"}
OBS_PROVIDES = {"pixels": ("img", "agent_pos"), "state": ("state", "agent_pos")}
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
        planner: extra :class:`~df_policy.runtime.planning.PlannerConfig` fields (not ``mode``
            or ``delay_steps``, which have their own fields): a mapping, or ``KEY=VALUE``
            strings (values parsed as YAML, as ``--planner`` gives them); stored as a mapping.
        obs: ``"pixels"``, ``"state"`` or ``"auto"`` (module docstring).
        delay_steps: control steps planned ahead for inference latency; 0 (default) matches the
            simulator, which waits for inference (module docstring).
        fps: control rate for the runtime (``None``: the checkpoint's, else the simulator's).
        accelerate: the runtime's inference path (``RuntimeConfig.accelerate``; ``onnx`` makes
            long evaluations of large denoisers faster, each worker exports once).
        precision: ``RuntimeConfig.precision`` (``bf16``: for a GPU; not with ``onnx``).
    """

    checkpoint: str
    env: str = "pusht"
    episodes: int = 50
    seed: int = 0
    mode: str = "stream"
    max_steps: int = 300
    workers: int | None = None
    videos: int = 3
    planner: dict[str, Any] | list[str] = field(default_factory=dict)
    obs: str = "auto"
    delay_steps: int = 0
    fps: float | None = None
    accelerate: str = "channels_last"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from df_policy.evaluation.common import parse_planner_overrides
        from df_policy.runtime.acceleration import ACCELERATE_MODES, check_precision
        from df_policy.runtime.planning import MODES

        if self.accelerate not in ACCELERATE_MODES:
            raise ValueError(f"accelerate must be one of {ACCELERATE_MODES}, got {self.accelerate!r}")
        check_precision(self.precision, self.accelerate)

        if self.env not in ENVS:
            raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.episodes < 1 or self.max_steps < 1:
            raise ValueError("episodes and max_steps must be >= 1")
        if self.obs not in OBS_TYPES:
            raise ValueError(f"obs must be one of {OBS_TYPES}, got {self.obs!r}")
        if isinstance(self.delay_steps, bool) or int(self.delay_steps) != self.delay_steps or self.delay_steps < 0:
            raise ValueError(f"delay_steps must be an integer >= 0, got {self.delay_steps!r}")
        self.delay_steps = int(self.delay_steps)
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        self.planner = parse_planner_overrides(self.planner or {}, reserved=("mode", "delay_steps"))


def _make_env(max_steps: int, obs: str = "pixels") -> Any:
    import gymnasium as gym
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

    return gym.make("gym_pusht/PushT-v0", obs_type=GYM_OBS_TYPE[obs], render_mode="rgb_array",
                    max_episode_steps=max_steps)


def set_pusht_state(env: Any, state: Any) -> Any:
    """Put a gym-pusht env (reset once) at ``state`` = agent x, y, block x, y, angle (PushT units,
    rad) with the agent at rest, and return its observation. The angle is set before the block
    position: gym-pusht's own ``reset_to_state`` sets them the other way round, which turns the T
    about its centre of gravity by an amount that depends on the previous angle."""
    u = env.unwrapped
    u.agent.position = [float(state[0]), float(state[1])]
    u.agent.velocity = (0.0, 0.0)
    u.block.angle = float(state[4])
    u.block.position = [float(state[2]), float(state[3])]
    u.space.step(u.dt)
    return u.get_obs()


def _raw_observation(obs: Any, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(raw observation for the runtime, agent position)`` from a gym-pusht observation."""
    if kind == "state":
        state = np.asarray(obs, np.float32).reshape(-1)
        return {"state": state, "agent_pos": state[:2].copy()}, state[:2].astype(np.float64)
    agent = np.asarray(obs["agent_pos"], np.float32)
    return {"img": obs["pixels"], "agent_pos": agent}, agent.astype(np.float64)


def resolve_obs(obs: str, loaded: Any) -> str:
    """The observation type for ``--obs`` (``auto``: ``state`` when the checkpoint uses no
    image, else ``pixels``), checked against the raw keys the checkpoint needs."""
    from df_policy.data.dataset import parse_slice

    cfg = loaded.policy.config
    derived = dict((loaded.run_config.get("dataset") or {}).get("derived_keys") or {})
    kind = obs if obs != "auto" else ("pixels" if cfg.image_shapes else "state")
    provides = set(OBS_PROVIDES[kind])
    missing = [k for k in cfg.image_shapes if k not in provides]
    missing += [k for k in cfg.lowdim_shapes
                if k not in provides and not (k in derived and parse_slice(derived[k])[0] in provides)]
    if missing:
        other = "state" if kind == "pixels" else "pixels"
        raise ValueError(f"--obs {kind} gives the runtime {sorted(provides)} but the checkpoint needs {missing} "
                         f"(images {list(cfg.image_shapes)}, low-dim {list(cfg.lowdim_shapes)}); try --obs {other}")
    return kind


def resolve_setup(cfg: SimEvalConfig) -> SimEvalConfig:
    """``cfg`` with ``obs`` and ``fps`` resolved from the checkpoint (loads it once)."""
    import dataclasses
    import sys

    from df_policy.evaluation.common import resolve_fps
    from df_policy.training.checkpoint import load_checkpoint

    loaded = load_checkpoint(cfg.checkpoint)
    obs = resolve_obs(cfg.obs, loaded)
    trained = loaded.fps
    env_fps = ENV_FPS[cfg.env]
    if cfg.fps is not None:
        fps = resolve_fps(cfg.fps, trained, None)
    else:
        fps = trained or env_fps
    if abs(fps - env_fps) > 1e-6:
        print(f"warning: the runtime runs at {fps:g} fps but {cfg.env} steps at {env_fps:g} Hz", file=sys.stderr)
    return dataclasses.replace(cfg, obs=obs, fps=fps)


def _init_worker(cfg: SimEvalConfig) -> None:
    import torch

    from df_policy.runtime.clock import FakeClock
    from df_policy.runtime.planning import PlannerConfig
    from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig

    torch.set_num_threads(1)
    clock = FakeClock()
    planner = PlannerConfig(mode=cfg.mode, delay_steps=cfg.delay_steps, **cfg.planner)
    period = 1.0 / cfg.fps if cfg.fps else None
    runtime = PolicyRuntime.from_checkpoint(
        cfg.checkpoint, RuntimeConfig(planner=planner, period_s=period, accelerate=cfg.accelerate,
                                     precision=cfg.precision), clock=clock)
    _WORKER.update(cfg=cfg, runtime=runtime, clock=clock, env=_make_env(cfg.max_steps, cfg.obs))


# A freeze: the agent stays within FREEZE_TOLERANCE (PushT units, 512 across; 2 % of the workspace,
# less than the agent's 15-unit radius) of where it ends for the last FREEZE_STEPS steps (5 s at
# 10 Hz) of a failed episode. Frozen policies dither by 1-9 units per step around a fixed point
# (PushT state checkpoints, docs/BENCHMARKS.md), so "exactly still" would miss them.
FREEZE_TOLERANCE = 10.0
FREEZE_STEPS = 50


def trailing_still_steps(positions: np.ndarray, tolerance: float = FREEZE_TOLERANCE) -> int:
    """Steps at the end of a ``(T, 2)`` agent trajectory during which the agent stayed within
    ``tolerance`` of its final position (``0`` when it moved on the last step)."""
    positions = np.asarray(positions, dtype=np.float64)
    if len(positions) < 2:
        return 0
    away = np.linalg.norm(positions - positions[-1], axis=-1) > tolerance
    last_away = np.flatnonzero(away)
    return int(len(positions) - 1 - (last_away[-1] + 1 if len(last_away) else 0))


def _run_episode(index: int) -> dict[str, Any]:
    from df_policy.runtime.safety import Command

    cfg, runtime, clock, env = _WORKER["cfg"], _WORKER["runtime"], _WORKER["clock"], _WORKER["env"]
    seed = cfg.seed + index
    obs, info = env.reset(seed=seed)
    t_base = clock.now() + 1.0  # the fake clock only moves forward: each episode starts later
    clock.set(t_base)
    raw, agent = _raw_observation(obs, cfg.obs)
    runtime.reset(t0=t_base, initial_command=agent)
    period = runtime.period_s
    frames = [env.render()] if index < cfg.videos else None
    max_cov, cov, success, holds, steps, latencies = 0.0, 0.0, False, 0, 0, []
    positions = [np.asarray(agent, dtype=np.float64)]
    for k in range(cfg.max_steps):
        if k:
            raw, agent = _raw_observation(obs, cfg.obs)
            positions.append(np.asarray(agent, dtype=np.float64))
        result, inference_s, _ = runtime.step_synchronously(raw, t_base + k * period)
        latencies.append(inference_s)
        if isinstance(result, Command):
            action = result.action
        else:
            holds += 1
            action = result.action if result.action is not None else agent
        obs, _, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        steps += 1
        cov = float(info.get("coverage", 0.0))
        max_cov = max(max_cov, cov)
        success = success or bool(info.get("is_success", False))
        if frames is not None:
            frames.append(env.render())
        if terminated or truncated:
            break
    positions.append(np.asarray(_raw_observation(obs, cfg.obs)[1], dtype=np.float64))
    still = trailing_still_steps(np.stack(positions))
    block = info.get("block_pose") if steps else None  # gym-pusht: block x, y, angle after the last step
    out = {"episode": index, "seed": seed, "success": success, "max_coverage": max_cov, "final_coverage": cov,
           "steps": steps, "holds": holds, "still_steps_at_end": still,
           # where the episode ended (agent x, y, block x, y, angle): e.g. how far from any demonstrated
           # state a freeze sits (benchmarks/pusht_freeze_ood.py)
           "end_state": [float(v) for v in positions[-1]] + ([float(v) for v in block] if block is not None else []),
           "frozen": bool(not success and still >= FREEZE_STEPS), "accelerate": runtime.accelerate,  # the path in effect
           "schedule": runtime.planner.describe(),
           "inference_ms_p50": float(np.percentile(latencies, 50) * 1e3),
           "inference_ms_p99": float(np.percentile(latencies, 99) * 1e3)}
    if frames is not None:
        out["frames"] = np.stack(frames)
    return out


def evaluate_sim(cfg: SimEvalConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the episodes (in parallel processes) and write metrics, report and GIFs into ``out``."""
    from tqdm import tqdm

    cfg = resolve_setup(cfg)
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
        "obs": cfg.obs, "delay_steps": cfg.delay_steps, "fps": cfg.fps, "planner": dict(cfg.planner),
        "schedule": results[0]["schedule"] if results else None,
        "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1],
        "success_rate": float(np.mean([r["success"] for r in results])),
        "avg_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
        "avg_final_coverage": float(np.mean([r["final_coverage"] for r in results])),
        "holds_per_episode": float(np.mean([r["holds"] for r in results])),
        "frozen_episodes": int(sum(r["frozen"] for r in results)),
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
        f"checkpoint `{m['checkpoint']}`, {m['n_episodes']} episodes, seeds {m['seeds'][0]}..{m['seeds'][1]}, "
        f"observation `{m['obs']}` ({GYM_OBS_TYPE[m['obs']]}), {m['fps']:g} fps", "",
        f"- **delay_steps = {m['delay_steps']}**: " + (
            "the simulator waits while inference runs, as in the published Diffusion Policy / LeRobot PushT "
            "evaluations (comparable with their figures)" if m["delay_steps"] == 0 else
            f"actions are planned {m['delay_steps']} step(s) ahead, adding latency the simulator does not have "
            "(the published figures use none)"),
        f"- **planner overrides**: `{m['planner'] or {}}`; schedule in effect: {m.get('schedule')}", "",
        "| metric | value |", "|---|---|",
        f"| success rate (coverage ≥ 0.95) | {m['success_rate']:.3f} |",
        f"| mean max coverage | {m['avg_max_coverage']:.3f} |",
        f"| mean final coverage | {m['avg_final_coverage']:.3f} |",
        f"| holds per episode | {m['holds_per_episode']:.1f} |",
        f"| frozen (failed, agent within {FREEZE_TOLERANCE:g} units for the last ≥ {FREEZE_STEPS} steps) "
        f"| {m['frozen_episodes']} |",
        f"| inference per tick, median p50 (ms) | {m['inference_ms_p50']:.1f} |", "",
        "| episode | seed | success | max coverage | steps | holds | still at end |", "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['episode']} | {r['seed']} | {r['success']} | {r['max_coverage']:.3f} | {r['steps']} | {r['holds']} "
              f"| {r['still_steps_at_end']} |" for r in m["episodes"]]
    lines += ["", *[f"![episode]({v})" for v in m["videos"]]]
    path.write_text("\n".join(lines) + "\n")


def add_eval_sim_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="closed-loop evaluation in the simulator, through the streaming runtime")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", default="pusht", choices=ENVS)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="stream", choices=["stream", "chunk", "autoregressive"])
    p.add_argument("--obs", default="auto", choices=OBS_TYPES,
                   help="pixels: obs_type pixels_agent_pos (img + agent_pos, the image task); state: obs_type state "
                        "(5-dim agent x, y, block x, y, angle = the zarr's state key, the low-dim task); auto "
                        "(default): state if the checkpoint uses no image, else pixels")
    p.add_argument("--delay-steps", type=int, default=0,
                   help="steps planned ahead to cover inference latency (default 0: the simulator waits while "
                        "inference runs, as in the published Diffusion Policy / LeRobot evaluations; N > 0 adds "
                        "N steps of latency the simulator does not have)")
    p.add_argument("--fps", type=float, default=None,
                   help="runtime control rate (default: the checkpoint's, else the simulator's 10 Hz)")
    p.add_argument("--planner", action="append", default=[], metavar="KEY=VALUE",
                   help="any other PlannerConfig field, value parsed as YAML (repeatable), e.g. "
                        "--planner ramp_tokens=8 --planner calls_per_tick=2")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--accelerate", default="channels_last",
                   help="inference path: off, channels_last (default), compile, onnx (CPU, the onnx extra)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="inference precision: bf16 = encoder and denoiser under bf16 autocast (GPUs; not with onnx)")
    p.add_argument("--out", required=True)

    def run(a: argparse.Namespace) -> int:
        cfg = SimEvalConfig(a.checkpoint, a.env, a.episodes, a.seed, a.mode, a.max_steps, a.workers, a.videos,
                            planner=a.planner,  # KEY=VALUE strings, parsed and checked by SimEvalConfig
                            obs=a.obs, delay_steps=a.delay_steps, fps=a.fps, accelerate=a.accelerate,
                            precision=a.precision)
        m = evaluate_sim(cfg, a.out)
        print(f"{m['n_episodes']} episodes ({m['mode']}, obs {m['obs']}, delay_steps {m['delay_steps']}, seeds "
              f"{m['seeds'][0]}..{m['seeds'][1]}): success rate {m['success_rate']:.3f}, "
              f"mean max coverage {m['avg_max_coverage']:.3f}; {a.out}/report.md")
        return 0

    p.set_defaults(func=run)
