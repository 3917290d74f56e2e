"""Cost of the sharded image layout while recording (issue 12): flush time and bytes written per
frame, sharded (64 frames per file) vs one file per 4-frame chunk, in the same run.

    python benchmarks/bench_store_layout.py [--steps 300] [--flush-every 10] [--cameras 2] [--size 640x480]
        [--out runs/bench/store_layout.json]

One episode of ``--steps`` steps of ``--cameras`` moving-pattern frames (they compress like a busy
scene) is written through ``EpisodeWriter`` (``flush_every`` steps per flush, what the recorder's
writer thread does), then committed. Reported per layout: flush time p50 / p99 / max, bytes the
process wrote (``/proc/self/io`` ``write_bytes``, page-cache writes included) per stored byte
(the write amplification of rewriting the shard a flush ends in), files on disk, commit time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_io import write_results  # same folder (on sys.path when run as a script)

from df_policy.data.schema import KeySpec, StoreSchema
from df_policy.data.store import EpisodeStore


def _written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):  # bytes handed to write(): what the store asked the OS to write
            return int(line.split()[1])
    return 0


def run(path: Path, shard: int | None, steps: int, flush_every: int, cameras: int, size: tuple[int, int]) -> dict:
    w, h = size
    keys = {f"cam{i}": KeySpec("image", (h, w, 3), "uint8", unit="rgb", camera=f"cam{i}") for i in range(cameras)}
    keys.update(joint_pos=KeySpec("lowdim", (6,), "float32", unit="rad"), action=KeySpec("action", (6,), "float32"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    store = EpisodeStore.create(path, StoreSchema(keys=keys, fps=30.0), image_shard_frames=shard)
    flushes = []
    b0 = _written()
    writer = store.begin_episode()
    writer.flush_every = 10**9  # flushed below, every --flush-every steps, and timed
    with writer:
        for t in range(steps):
            step = {f"cam{i}": (((xx + 7 * t) // 16 + (yy + 3 * t * (i + 1)) // 16) % 2 * 150 + 50
                                + rng.integers(0, 8, (h, w))).astype(np.uint8)[:, :, None].repeat(3, 2)
                    for i in range(cameras)}
            step.update(joint_pos=rng.normal(size=(6,)).astype(np.float32), action=rng.normal(size=(6,)).astype(np.float32))
            writer.add_step(step)
            if (t + 1) % flush_every == 0:
                t0 = time.perf_counter()
                writer.flush()
                flushes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        writer.commit()
        commit_s = time.perf_counter() - t0
    written = _written() - b0
    stored = EpisodeStore.open(path)
    size_b = stored.size_on_disk()
    ms = np.asarray(flushes) * 1e3
    store.close()
    return {"flush_ms_p50": round(float(np.percentile(ms, 50)), 2), "flush_ms_p99": round(float(np.percentile(ms, 99)), 2),
            "flush_ms_max": round(float(ms.max()), 2), "commit_ms": round(commit_s * 1e3, 1),
            "bytes_written_per_stored_byte": round(written / size_b, 2), "stored_mb": round(size_b / 1e6, 1),
            "files": stored.file_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--flush-every", type=int, default=10)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--size", default="640x480")
    p.add_argument("--out", default="runs/bench/store_layout.json")
    a = p.parse_args()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shard in (("sharded, 64 frames per file", 64), ("one file per 4-frame chunk", None)):
            results[name] = run(Path(tmp) / f"s{shard}", shard, a.steps, a.flush_every, a.cameras, size)
    print(f"{'layout':<30} {'flush p50':>10} {'p99':>8} {'max':>8} {'commit':>8} {'written/stored':>15} {'files':>6}")
    for name, r in results.items():
        print(f"{name:<30} {r['flush_ms_p50']:>10.2f} {r['flush_ms_p99']:>8.2f} {r['flush_ms_max']:>8.2f} "
              f"{r['commit_ms']:>8.1f} {r['bytes_written_per_stored_byte']:>15.2f} {r['files']:>6}")
    write_results(a.out, {"steps": a.steps, "flush_every": a.flush_every, "cameras": a.cameras, "size": list(size)},
                  results)


if __name__ == "__main__":
    main()
