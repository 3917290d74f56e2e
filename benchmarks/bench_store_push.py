"""`dfp data push` (issue 12): a rig-sized store uploaded to a local S3 server (moto on
127.0.0.1), first in full, then again after one more episode was recorded (incremental), beside
s3fs's recursive `put` of the whole directory (what a generic sync tool does, in no particular
order), all in the same run.

    python benchmarks/bench_store_push.py [--episodes 6] [--length 60] [--json runs/bench/store_push.json]

The store is bench_stream_loader's: two 480x640 cameras (sharded, 64 frames per file), 6 joints,
synthetic frames that compress like camera frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_stream_loader import make_episode, make_store, start_local_s3
from df_policy.data.remote import push_store
from df_policy.data.store import EpisodeStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--length", type=int, default=60)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server, fs = start_local_s3("bench")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "rig.zarr"
            store = make_store(local, a.episodes, a.length)
            mb = store.size_on_disk() / 1e6
            print(f"store: {store.n_episodes} episodes, {store.n_steps} steps, {mb:.1f} MB")

            def timed(name, fn):
                t0 = time.perf_counter()
                report = fn()
                s = time.perf_counter() - t0
                sent = report.bytes_sent / 1e6 if report is not None else mb
                files = len(report.uploaded) if report is not None else sum(1 for f in local.rglob("*") if f.is_file())
                rows.append({"upload": name, "seconds": round(s, 2), "mb_sent": round(sent, 1), "files": files})
                print(f"{name:>55}: {s:6.2f} s, {sent:7.1f} MB, {files} files")

            timed("s3fs put -r of the directory (generic sync, any order)",
                  lambda: fs.put(str(local), "bench/put.zarr", recursive=True) and None)
            timed("dfp data push, first (everything, commit order)", lambda: push_store(local, "s3://bench/rig.zarr"))
            with EpisodeStore.open(local, mode="r+") as w:
                w.append_episode(make_episode(np.random.default_rng(99), a.length))
            timed("dfp data push after one more episode (incremental)", lambda: push_store(local, "s3://bench/rig.zarr"))
            remote = EpisodeStore.open("s3://bench/rig.zarr")
            assert remote.n_episodes == a.episodes + 1
    finally:
        server.stop()
    full, inc = rows[1], rows[2]
    print(f"\nincremental / first push: {inc['seconds'] / full['seconds']:.2f}x the time, "
          f"{inc['mb_sent'] / full['mb_sent']:.2f}x the bytes")
    print("\n| upload | seconds | MB sent | files |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['upload']} | {r['seconds']} | {r['mb_sent']} | {r['files']} |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"episodes": a.episodes, "length": a.length, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
