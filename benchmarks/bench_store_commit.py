"""Cost of committing one episode (and of marking one) as the store grows, through the public API.

    python benchmarks/bench_store_commit.py [--episodes 3000] [--at 1 100 1000 3000] [--out runs/bench_store_commit.json]

A synthetic schema (8x8 image, 2-dim state and action); every episode has 3 steps, appended with
``EpisodeStore.append_episode`` (flush + fsync of data, ``episode_ends``, then the commit line of
the episode log); ``set_episode_meta`` is timed at the same sizes. Reported: median of 20 commits
(and 20 marks) around each store size, ms, and the size of the root ``zarr.json`` (constant with
the episode log; it held the whole episode list in schema version 1). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from df_policy.data.schema import EpisodeMeta
from df_policy.data.store import EpisodeStore
from df_policy.data.synthetic import synthetic_episode, synthetic_schema


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=3000)
    p.add_argument("--at", type=int, nargs="+", default=[1, 100, 1000, 3000])
    p.add_argument("--out", default="runs/bench_store_commit.json")
    a = p.parse_args()
    episode = synthetic_episode(np.random.default_rng(0), 3, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        with EpisodeStore.create(path, synthetic_schema(8)) as store:
            marks = sorted(set(a.at))
            while store.n_episodes < a.episodes:
                n = store.n_episodes
                timed = any(m - 10 <= n < m + 10 for m in marks)
                t0 = time.perf_counter()
                store.append_episode(episode, EpisodeMeta(task="pick the cube", notes="benchmark"))
                dt = time.perf_counter() - t0
                if timed:
                    t1 = time.perf_counter()
                    store.set_episode_meta(n // 2, notes="marked")
                    rows.append((n + 1, dt, time.perf_counter() - t1, (path / "zarr.json").stat().st_size))
    out = []
    for m in sorted(set(a.at)):
        near = [r for r in rows if abs(r[0] - m) <= 10]
        if near:
            out.append({"episodes": m, "commit_ms_median": round(1e3 * float(np.median([r[1] for r in near])), 2),
                        "mark_ms_median": round(1e3 * float(np.median([r[2] for r in near])), 2),
                        "root_zarr_json_bytes": near[-1][3]})
            print(json.dumps(out[-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
