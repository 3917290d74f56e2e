"""Low-dimensional PushT ablation: training level sampling x context treatment x capacity, each
checkpoint evaluated closed loop in ``stream`` and ``chunk`` mode on the same seeds.

    # train every variant with the same wall-clock budget (in parallel processes)
    python benchmarks/pusht_ablation.py train --data ../shared/data/pusht/pusht_cchi_v7_replay_train.zarr.zip \
        --out runs/ablation --minutes 60 [--device cpu|cuda] [--variants uniform,mix_ctxdrop] [--parallel 1]
    # evaluate every trained variant (closed loop, gym-pusht state task, seeds 0..episodes-1)
    python benchmarks/pusht_ablation.py eval --runs runs/ablation --episodes 50 --seed 0 [--modes stream,chunk]

Every variant starts from ``df_policy/configs/pusht_state_cpu.yaml`` and sets what its name says
(:data:`VARIANTS`; the level sampling explicitly, so the variants do not move with the shipped
config). ``eval`` writes ``ablation.json`` and ``ablation.md`` (success rate
and mean max coverage per variant and mode) into ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BASE_CONFIG = "pusht_state_cpu"
MIX = "{uniform: 0.25, stream: 0.5, shared: 0.25}"

VARIANTS: dict[str, list[str]] = {
    # the paper's independent uniform levels, nothing else (the code before issue 9)
    "uniform": ["policy.level_sampling={mixture: {uniform: 1.0}, context_dropout: 0.0}"],
    # mixture of uniform, stream-like pyramids and shared-level chunks
    "mix": [f"policy.level_sampling={{mixture: {MIX}, context_dropout: 0.0}}"],
    # the same plus dropout of the executed-action context
    "mix_ctxdrop": [f"policy.level_sampling={{mixture: {MIX}, context_dropout: 0.2}}"],
    # only the stream pattern
    "stream_only": ["policy.level_sampling={mixture: {stream: 1.0}, context_dropout: 0.2}"],
    # stronger context dropout
    "mix_ctxdrop50": [f"policy.level_sampling={{mixture: {MIX}, context_dropout: 0.5}}"],
    # non-causal attention among the future tokens
    "mix_ctxdrop_full": [f"policy.level_sampling={{mixture: {MIX}, context_dropout: 0.2}}",
                         "policy.denoiser={d_model: 128, n_layers: 4, n_heads: 4, future_attention: full}"],
    # more capacity
    "mix_ctxdrop_big": [f"policy.level_sampling={{mixture: {MIX}, context_dropout: 0.2}}",
                        "policy.denoiser={d_model: 256, n_layers: 6, n_heads: 8}"],
}


def train_variants(args: argparse.Namespace) -> int:
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
    pending, running, done = list(names), {}, {}
    t0 = time.time()
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            cmd = [sys.executable, "-m", "df_policy.training.trainer", "--data", args.data, "--out", str(out / name),
                   "--config", BASE_CONFIG, *VARIANTS[name], f"train.max_minutes={args.minutes}",
                   f"train.device={args.device}", f"train.seed={args.seed}", *args.overrides]
            log = open(out / f"{name}.log", "w")
            print(f"[{time.time() - t0:6.0f} s] start {name}: {' '.join(cmd[2:])}", flush=True)
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(2)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                done[name] = proc.returncode
                del running[name]
                print(f"[{time.time() - t0:6.0f} s] {name} exited {proc.returncode}", flush=True)
    failed = {n: rc for n, rc in done.items() if rc}
    for n in failed:
        print(f"--- {n} failed, last lines of {out / f'{n}.log'}:\n" + "".join(open(out / f"{n}.log").readlines()[-15:]))
    return 1 if failed else 0


def eval_variants(args: argparse.Namespace) -> int:
    from df_policy.evaluation.common import parse_planner_overrides
    from df_policy.evaluation.sim import SimEvalConfig, evaluate_sim

    runs = Path(args.runs)
    names = args.variants.split(",") if args.variants else [n for n in VARIANTS if (runs / n / "checkpoints").is_dir()]
    results = {}
    path = runs / "ablation.json"
    if path.is_file():
        results = json.loads(path.read_text())
    planner = parse_planner_overrides(args.planner, reserved=("mode", "delay_steps"))
    for name in names:
        summary = json.loads((runs / name / "summary.json").read_text()) if (runs / name / "summary.json").is_file() else {}
        for mode in args.modes.split(","):
            key = f"{name}/{mode}" + "".join(f"/{k}={v}" for k, v in planner.items())
            cfg = SimEvalConfig(str(runs / name), "pusht", args.episodes, args.seed, mode, workers=args.workers,
                                videos=0, obs="state", delay_steps=args.delay_steps, planner=planner)
            m = evaluate_sim(cfg, runs / name / f"eval_{key.split('/', 1)[1].replace('/', '_')}", progress=False)
            results[key] = {"variant": name, "mode": mode, "planner": planner, "success_rate": m["success_rate"],
                            "avg_max_coverage": m["avg_max_coverage"], "episodes": m["n_episodes"],
                            "seeds": f"{args.seed}..{args.seed + args.episodes - 1}",
                            "delay_steps": args.delay_steps, "train_steps": summary.get("steps"),
                            "train_seconds": summary.get("seconds")}
            print(f"{key:40s} success {m['success_rate']:.2f}  coverage {m['avg_max_coverage']:.3f}", flush=True)
            path.write_text(json.dumps(results, indent=2))
            write_table(results, runs / "ablation.md")
    print(write_table(results, runs / "ablation.md"))
    return 0


def write_table(results: dict, path: Path) -> str:
    """``ablation.md``: one row per evaluated (variant, mode, planner settings)."""
    lines = ["| variant | mode | planner | success | mean max coverage | episodes (seeds) | train steps |",
             "|---|---|---|---|---|---|---|"]
    for r in results.values():
        planner = " ".join(f"{k}={v}" for k, v in r["planner"].items()) or "defaults"
        lines.append(f"| {r['variant']} | {r['mode']} | {planner} | {r['success_rate']:.2f} | "
                     f"{r['avg_max_coverage']:.3f} | {r['episodes']} ({r['seeds']}) | {r['train_steps']} |")
    path.write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--device", default="auto")
    t.add_argument("--variants", default=None, help=f"comma-separated subset of {list(VARIANTS)}")
    t.add_argument("--parallel", type=int, default=1, help="variants trained at once")
    t.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("overrides", nargs="*", help="extra section.key=value overrides for every variant")
    e = sub.add_parser("eval")
    e.add_argument("--runs", required=True)
    e.add_argument("--variants", default=None)
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--modes", default="stream,chunk")
    e.add_argument("--delay-steps", type=int, default=0)
    e.add_argument("--planner", action="append", default=[], help="key=value PlannerConfig override")
    e.add_argument("--workers", type=int, default=None)
    a = p.parse_args(argv)
    return train_variants(a) if a.cmd == "train" else eval_variants(a)


if __name__ == "__main__":
    sys.exit(main())
