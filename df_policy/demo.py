"""``dfp demo``: the quick-start pipeline on the embedded default (no hardware, no downloads).

Steps (each prints progress; outputs under ``--out``):
1. record synthetic demonstrations into an episode store and validate it;
2. summarise the store (``info.json``).
Later stages (training, replay and closed-loop evaluation) are added as they land.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from df_policy.data.ops import store_info, validate_store
from df_policy.data.synthetic import make_synthetic_store


def run_demo(out: Path, episodes: int = 30, seed: int = 0) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store_path = out / "demos.zarr"
    print(f"[1/2] recording {episodes} synthetic demonstrations -> {store_path}")
    store = make_synthetic_store(store_path, n_episodes=episodes, seed=seed, overwrite=True)
    problems = validate_store(store_path)
    if problems:
        raise RuntimeError("freshly recorded store is invalid: " + "; ".join(problems))
    print("[2/2] store summary")
    info = store_info(store)
    (out / "info.json").write_text(json.dumps(info, indent=2))
    print(f"      {info['episodes']} episodes, {info['steps']} steps, keys {sorted(info['keys'])}")
    summary = {"store": str(store_path), "episodes": info["episodes"], "steps": info["steps"],
               "seconds": round(time.perf_counter() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done in {summary['seconds']} s; outputs in {out}")
    return summary


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quick-start pipeline on synthetic data (no hardware)")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: (run_demo(Path(a.out), a.episodes, a.seed), 0)[1])
