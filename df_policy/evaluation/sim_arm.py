"""Closed-loop evaluation on the simulated SO-101 arm through the streaming runtime.

Each episode: ``env.reset(seed)``, then ``env.config.max_steps`` control steps. At step ``k``
the policy sees the observation keys its checkpoint was trained on, taken from
:meth:`SimArmEnv.observation` (camera images by camera name, ``joint_pos``...), stamped
``t0 + k * period``; :meth:`PolicyRuntime.step_synchronously` runs inference and one control
tick on a simulated clock, so results do not depend on this machine's speed. A tick that holds
(no action ready, or a safety hold) keeps the last commanded target. The runtime's safety layer
gets the arm's joint limits and velocity limit. An episode succeeds when
:meth:`SimArmEnv.success` (cube at rest on the target, released) has held for
``solved_hold_s`` seconds of simulated time in a row, which also ends it early; otherwise it
runs to the time limit (``env.config.max_steps`` steps) and fails.

Baselines on the same seeds:

* ``hold``: commands the start configuration for the whole episode;
* ``replay``: replays, open loop, the actions of a recorded demonstration (episode
  ``i % n`` of the given store). It moves like an expert but ignores where the cube is, so
  it scores only when the cube happens to lie where that demonstration's cube was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArmEpisodeResult", "evaluate_arm", "save_gif"]


@dataclass
class ArmEpisodeResult:
    """One episode: ``success`` at the end, task ``progress`` in [0, 1] (see
    :meth:`SimArmEnv.progress`), first step at which the task was solved (or ``None``), and
    runtime counters for the policy (holds, safety interventions)."""

    who: str
    seed: int
    success: bool
    progress: float
    first_success_step: int | None
    holds: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def _policy_obs(obs: dict[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in obs]
    if missing:
        raise KeyError(f"the checkpoint needs observation keys {missing} that the simulated arm does not provide "
                       f"(it provides {sorted(obs)})")
    return {k: obs[k] for k in keys}


def _run_episode(env: Any, seed: int, who: str, act: Callable[[int, dict[str, np.ndarray]], np.ndarray | None],
                 hold_steps: int, frames: list[np.ndarray] | None, images: bool) -> ArmEpisodeResult:
    env.reset(seed)
    obs = env.observation(images=images)
    last = np.asarray(obs["joint_pos"], dtype=np.float64)
    first_success: int | None = None
    solved_for = 0
    holds = 0
    for k in range(env.config.max_steps):
        if frames is not None:
            frames.append(obs[env.camera_names[0]])
        action = act(k, obs)
        if action is None:
            holds += 1
        else:
            last = np.asarray(action, dtype=np.float64)
        result = env.step(last)
        solved_for = solved_for + 1 if result.success else 0
        if result.success and first_success is None:
            first_success = k
        if solved_for >= hold_steps:
            break
        obs = env.observation(images=images)
    return ArmEpisodeResult(who, seed, solved_for >= hold_steps, float(env.progress()), first_success, holds)


def evaluate_arm(checkpoint: str | Path, env_config: Any = None, episodes: int = 20, seed: int = 10_000,
                 baselines: Sequence[str] = ("hold", "replay"), demo_store: str | Path | None = None,
                 gif_path: str | Path | None = None, runtime_config: Any = None, solved_hold_s: float = 1.0,
                 progress: bool = True, planner: Any = None) -> dict[str, Any]:
    """Policy and baselines on seeds ``seed .. seed + episodes - 1``; returns a summary dict.

    ``env_config``: a :class:`SimArmConfig` (``None`` = default). ``demo_store``: the episode
    store whose actions the ``replay`` baseline plays back. ``gif_path``: a GIF of the policy's
    first episode. ``runtime_config``: the runtime's settings; ``None`` = defaults with the
    simulated arm's limits and ``planner`` (a :class:`PlannerConfig`, ``None`` = the default;
    give one or the other). The summary has, per policy/baseline, ``success_rate``,
    ``mean_progress`` and the per-episode results; the policy entry adds runtime counters.
    """
    from tqdm import tqdm

    from df_policy.sim.gl import select_gl_backend

    select_gl_backend()
    from df_policy.sim import SimArmEnv
    from df_policy.runtime.clock import FakeClock
    from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig
    from df_policy.runtime.safety import SafetyConfig

    unknown = sorted(set(baselines) - {"hold", "replay"})
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from ['hold', 'replay']")
    if not solved_hold_s > 0:
        raise ValueError(f"solved_hold_s must be > 0, got {solved_hold_s!r}")
    if "replay" in baselines and demo_store is None:
        raise ValueError("the 'replay' baseline needs demo_store (the recorded demonstrations)")
    if runtime_config is not None and planner is not None:
        raise ValueError("give runtime_config or planner, not both (the planner is part of the runtime config)")
    env = SimArmEnv(env_config)
    try:
        if runtime_config is None:
            runtime_config = RuntimeConfig(safety=SafetyConfig(
                low=env.lower.tolist(), high=env.upper.tolist(), max_velocity=env.config.velocity_max_rad_s))
            if planner is not None:
                runtime_config = replace(runtime_config, planner=planner)
        hold_steps = max(1, round(solved_hold_s * env.config.control_hz))
        clock = FakeClock()
        runtime = PolicyRuntime.from_checkpoint(checkpoint, runtime_config, clock=clock)
        keys = runtime.preprocessor.source_keys()
        demo_actions: list[np.ndarray] = []
        if "replay" in baselines:
            from df_policy.data.store import EpisodeStore

            store = EpisodeStore.open(demo_store, "r")
            demo_actions = [store.episode(i, keys=["action"])["action"] for i in range(store.n_episodes)]
            if not demo_actions:
                raise ValueError(f"{demo_store}: no episodes to replay")

        results: dict[str, list[ArmEpisodeResult]] = {w: [] for w in ("policy", *baselines)}
        frames: list[np.ndarray] | None = [] if gif_path is not None else None
        for i in tqdm(range(episodes), desc="closed loop", disable=not progress):
            s = seed + i
            t0 = clock.now() + 1.0
            clock.set(t0)

            def policy_act(k: int, obs: dict[str, np.ndarray], t0: float = t0) -> np.ndarray | None:
                res, _, _ = runtime.step_synchronously(_policy_obs(obs, keys), t0 + k * runtime.period_s)
                return getattr(res, "action", None)

            env.reset(s)
            start = np.asarray(env.observation(images=False)["joint_pos"], dtype=np.float64)
            runtime.reset(t0=t0, initial_command=start)
            before = dict(runtime.counters)
            r = _run_episode(env, s, "policy", policy_act, hold_steps, frames if i == 0 else None, images=True)
            r.counters = {k: int(v - before.get(k, 0)) for k, v in runtime.counters.items() if v != before.get(k, 0)}
            results["policy"].append(r)
            if "hold" in baselines:
                results["hold"].append(_run_episode(env, s, "hold", lambda k, obs, a=start: a, hold_steps, None, False))
            if "replay" in baselines:
                demo = demo_actions[i % len(demo_actions)]
                results["replay"].append(_run_episode(
                    env, s, "replay", lambda k, obs, d=demo: d[min(k, len(d) - 1)], hold_steps, None, False))
    finally:
        env.close()
    if gif_path is not None and frames:
        save_gif(frames, gif_path, fps=env.config.control_hz)
    summary: dict[str, Any] = {"episodes": episodes, "seed": seed, "solved_hold_s": solved_hold_s}
    for who, rs in results.items():
        summary[who] = {
            "success_rate": float(np.mean([r.success for r in rs])),
            "mean_progress": float(np.mean([r.progress for r in rs])),
            "mean_solve_s": (float(np.mean([r.first_success_step + 1 for r in rs if r.success])) / env.config.control_hz
                             if any(r.success for r in rs) else None),
            "episodes": [r.__dict__ for r in rs],
        }
    pol = results["policy"]
    summary["policy"]["hold_ticks"] = int(sum(r.holds for r in pol))
    totals: dict[str, int] = {}
    for r in pol:
        for k, v in r.counters.items():
            totals[k] = totals.get(k, 0) + v
    summary["policy"]["runtime_counters"] = totals
    return summary


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0, scale: int = 3) -> None:
    """Write ``uint8 (H, W, 3)`` frames as a looping GIF, each pixel enlarged ``scale`` times."""
    from PIL import Image

    imgs = [Image.fromarray(np.kron(f, np.ones((scale, scale, 1), np.uint8))) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
