"""Is a PushT freeze the policy's history or its answer at that state? Restart it there.

For every frozen episode of a ``dfp eval sim --env pusht --obs state`` result (``metrics.json``:
failed, the agent still for the last 50 steps; ``end_state`` = agent x, y, block x, y, angle),
put gym-pusht at the end state with the agent at rest, start a fresh runtime there (no committed
plan, no executed-action history: what ``runtime.reset`` gives at an episode start) and run
``--steps`` steps in each ``--modes`` mode. Reported per mode: the share of restarts that escape
(the agent moves more than 20 units, beyond the freeze tolerance of 10), the median largest
displacement, the coverage gained, and how many reach success. If a fresh ``stream`` escapes
where the frozen one did not, the freeze came from the episode's history; if it freezes again
while ``chunk`` escapes, it is how ``stream`` samples at that state.

    python benchmarks/pusht_freeze_restart.py --checkpoint runs/pusht_state_kp_mirror \
        runs/eval_mirror/stream_s0_500 [--modes stream chunk stream:block_tokens=8] [--steps 100] \
        [--out runs/freeze_restart.json]

A mode may carry planner settings after a colon, comma-separated (``stream:block_tokens=8``,
``stream:calls_per_tick=2,commit_steps=6``), as ``dfp eval sim --planner`` takes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from df_policy.evaluation.common import parse_planner_overrides
from df_policy.evaluation.sim import FREEZE_TOLERANCE, _raw_observation, set_pusht_state

ESCAPE_UNITS = 2 * FREEZE_TOLERANCE


def restart(checkpoint: str, end_states: list[list[float]], mode: str, steps: int, seed: int,
            fps: float) -> dict[str, float]:
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    from df_policy.runtime.clock import FakeClock
    from df_policy.runtime.planning import PlannerConfig
    from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig
    from df_policy.runtime.safety import Command

    name, _, settings = mode.partition(":")
    overrides = parse_planner_overrides([s for s in settings.split(",") if s], reserved=("mode", "delay_steps", "seed"))
    clock = FakeClock()
    period = 1.0 / fps
    planner = PlannerConfig(mode=name, delay_steps=0, seed=seed, **overrides)
    runtime = PolicyRuntime.from_checkpoint(checkpoint, RuntimeConfig(planner=planner, period_s=period), clock=clock)
    env = gym.make("gym_pusht/PushT-v0", obs_type="state", max_episode_steps=steps + 1)
    displacement, gain, solved = [], [], 0
    for state in end_states:
        env.reset(seed=0)
        raw, start = _raw_observation(set_pusht_state(env, state), "state")
        t0 = clock.now() + 1.0
        clock.set(t0)
        runtime.reset(t0=t0, initial_command=start)
        far, first_cov, max_cov, success = 0.0, None, 0.0, False
        for k in range(steps):
            result, _, _ = runtime.step_synchronously(raw, t0 + k * period)
            if isinstance(result, Command) or result.action is not None:  # a command, or a hold of the last one
                action = result.action
            else:  # a hold before anything was sent: stay
                action = start
            obs, _, terminated, _, info = env.step(np.asarray(action, np.float32))
            raw, agent = _raw_observation(obs, "state")
            cov = float(info["coverage"])
            first_cov = cov if first_cov is None else first_cov
            max_cov, far = max(max_cov, cov), max(far, float(np.linalg.norm(agent - start)))
            success = success or bool(info["is_success"])
            if terminated:
                break
        displacement.append(far)
        gain.append(max_cov - first_cov)
        solved += success
    env.close()
    d, g = np.asarray(displacement), np.asarray(gain)
    return {"restarts": len(end_states), "escaped": float(np.mean(d > ESCAPE_UNITS)),
            "median_max_displacement": float(np.median(d)), "mean_coverage_gain": float(g.mean()),
            "median_coverage_gain": float(np.median(g)), "solved": int(solved)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", help="a dfp eval sim output folder (its metrics.json), state observations")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--modes", nargs="+", default=["stream", "chunk"],
                   help="MODE or MODE:KEY=VALUE[,KEY=VALUE] (planner settings), e.g. stream:block_tokens=8")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="planner noise seed")
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    metrics = json.loads((Path(a.result) / "metrics.json").read_text())
    if metrics.get("obs") != "state":
        raise SystemExit(f"{a.result}: needs a state-observation result (obs: state), got {metrics.get('obs')!r}")
    frozen = [e for e in metrics["episodes"] if e["frozen"]]
    print(f"{len(frozen)} frozen episodes of {len(metrics['episodes'])} in {a.result} ({metrics['mode']}); "
          f"restarting each for {a.steps} steps")
    out = {"result": a.result, "checkpoint": a.checkpoint, "frozen_seeds": [e["seed"] for e in frozen],
           "modes": {}}
    print("| restarted in | escaped (> 20 units) | median largest displacement | coverage gain mean / median "
          "| solved |")
    print("|---|---|---|---|---|")
    for mode in a.modes:
        r = restart(a.checkpoint, [e["end_state"] for e in frozen], mode, a.steps, a.seed, metrics["fps"])
        out["modes"][mode] = r
        print(f"| {mode} | {r['escaped']:.2f} | {r['median_max_displacement']:.1f} | "
              f"{r['mean_coverage_gain']:.3f} / {r['median_coverage_gain']:.3f} | {r['solved']} / {r['restarts']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
