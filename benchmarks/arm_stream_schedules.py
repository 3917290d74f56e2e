"""The simulated-arm demo policy in closed loop with each planner schedule, on the same seeds.

Runs ``evaluate_arm`` (the closed loop ``dfp demo`` reports, without the baselines) once per
schedule on one checkpoint: ``stream`` as the per-token pyramid (``block_tokens=0``), ``stream``
in blocks (``block_tokens=B``) and ``chunk``, with the demo's safety limits and
``delay_steps = 1`` (the runtime default). Prints and writes success rate and mean progress.

    python benchmarks/arm_stream_schedules.py --checkpoint runs/demo16/run --episodes 50 --seed 20000 \\
        [--blocks 6] [--out runs/arm_schedules.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a dfp demo run (e.g. outputs/demo/run)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=20_000, help="first seed (dfp demo evaluates 10000..)")
    p.add_argument("--blocks", type=int, nargs="+", default=[6], help="block sizes to run besides the pyramid")
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args()
    import torch

    from df_policy.evaluation.sim_arm import evaluate_arm
    from df_policy.runtime.planning import PlannerConfig
    from df_policy.sim.tasks import demo_task_config

    torch.set_num_threads(1)
    task = demo_task_config()
    schedules = {"stream, pyramid": PlannerConfig(mode="stream", block_tokens=0)}
    schedules.update({f"stream, blocks of {b}": PlannerConfig(mode="stream", block_tokens=b) for b in a.blocks})
    schedules["chunk"] = PlannerConfig(mode="chunk")
    out = {"checkpoint": a.checkpoint, "seeds": [a.seed, a.seed + a.episodes - 1], "schedules": {}}
    print(f"| schedule ({a.episodes} episodes, seeds {a.seed}..{a.seed + a.episodes - 1}) | success | mean progress |")
    print("|---|---|---|")
    for name, planner in schedules.items():
        s = evaluate_arm(a.checkpoint, task, episodes=a.episodes, seed=a.seed, baselines=(), progress=False,
                         planner=planner)["policy"]  # the demo's safety limits, as dfp demo evaluates
        out["schedules"][name] = {"success_rate": s["success_rate"], "mean_progress": s["mean_progress"]}
        print(f"| {name} | {s['success_rate']:.2f} | {s['mean_progress']:.3f} |", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
