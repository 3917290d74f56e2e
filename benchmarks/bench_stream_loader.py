"""Streaming loader at a real rig's size (issue 12): two 480x640 cameras, frames read from the
store per batch (``cache="stream"``, nothing held in RAM), resized on load to the model's input,
batch 64, DataLoader workers 0 / 2 / 4, from local disk and from a local S3 server (moto on
127.0.0.1, the store uploaded with s3fs).

    python benchmarks/bench_stream_loader.py [--episodes 6] [--length 60] [--batches 20] \
        [--workers 0 2 4] [--no-s3] [--json runs/bench/stream_loader.json]

The store is synthetic (moving shapes over a textured background, so it compresses like camera
frames, not like noise), written with the recorder's layout (sharded image arrays).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from df_policy.data.dataset import DatasetConfig, identity_collate, make_datasets
from df_policy.data.schema import KeySpec, StoreSchema
from df_policy.data.store import EpisodeStore

H, W = 480, 640


def make_schema() -> StoreSchema:
    return StoreSchema(keys={
        "cam_front": KeySpec("image", (H, W, 3), "uint8", unit="rgb", camera="front"),
        "cam_wrist": KeySpec("image", (H, W, 3), "uint8", unit="rgb", camera="wrist"),
        "joint_pos": KeySpec("lowdim", (6,), "float32", unit="rad"),
        "action": KeySpec("action", (6,), "float32", unit="rad"),
    }, fps=30.0)


def make_episode(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    """One episode of the rig: two textured camera streams with a moving patch, 6 joints."""
    yy, xx = np.mgrid[0:H, 0:W]
    texture = ((np.sin(xx / 17.0) + np.cos(yy / 23.0)) * 40 + 120).astype(np.uint8)
    q = np.cumsum(rng.normal(0, 0.02, (length, 6)), axis=0).astype(np.float32)
    frames = {}
    for cam in ("cam_front", "cam_wrist"):
        imgs = np.repeat(texture[None, :, :, None], 3, axis=3).repeat(length, axis=0)
        for t in range(length):
            cy, cx = int(H / 2 + 150 * np.sin(t / 9 + q[t, 0])), int(W / 2 + 200 * np.cos(t / 11 + q[t, 1]))
            imgs[t, max(cy - 40, 0):cy + 40, max(cx - 40, 0):cx + 40] = (200, 60, 40)
        imgs += rng.integers(0, 6, imgs.shape, dtype=np.uint8)  # sensor noise
        frames[cam] = imgs
    return {**frames, "joint_pos": q, "action": np.roll(q, -1, axis=0)}


def make_store(path: Path, episodes: int, length: int, seed: int = 0) -> EpisodeStore:
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, make_schema(), overwrite=True) as store:
        for _ in range(episodes):
            store.append_episode(make_episode(rng, length))
    return EpisodeStore.open(path)


def start_local_s3(bucket: str) -> tuple[Any, Any]:
    """``(server, s3fs filesystem)``: a moto S3 server on 127.0.0.1 in this process holding an
    empty ``bucket``, with ``DFP_STORAGE_OPTIONS`` pointing df_policy at it (``server.stop()``)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    creds = {"key": "bench", "secret": "bench", "client_kwargs": {"region_name": "eu-west-1"}}
    fs = s3fs.S3FileSystem(endpoint_url=f"http://{host}:{port}", **creds)
    fs.mkdir(bucket)
    os.environ["DFP_STORAGE_OPTIONS"] = json.dumps({"endpoint_url": f"http://{host}:{port}", **creds})
    return server, fs


def samples_per_s(data: str, workers: int, batches: int) -> float:
    cfg = DatasetConfig(cache="stream", resize_shape=(96, 128), crop_shape=(88, 120), val_ratio=0.0,
                        n_obs_steps=2, horizon=16)
    train, _ = make_datasets(data, cfg, progress=False)
    # drawn with replacement: a small store still gives every batch asked for
    sampler = torch.utils.data.RandomSampler(train, replacement=True, num_samples=64 * (batches + 1))
    loader = torch.utils.data.DataLoader(train, batch_size=64, sampler=sampler, num_workers=workers,
                                         collate_fn=identity_collate)
    it = iter(loader)
    next(it)  # start-up (worker start, store open) is not throughput; the workers' prefetch of up to
    # 2 batches each overlaps it, so ask for many more batches than 2 x workers
    t0 = time.perf_counter()
    n = sum(len(next(it)["action"]) for _ in range(batches))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--length", type=int, default=60)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "rig.zarr"
        t0 = time.perf_counter()
        store = make_store(local, a.episodes, a.length)
        info = {"steps": store.n_steps, "mb_on_disk": round(store.size_on_disk() / 1e6, 1),
                "files": sum(1 for f in local.rglob("*") if f.is_file()), "write_s": round(time.perf_counter() - t0, 1)}
        print(f"store: {info}")
        sources = {"local": str(local)}
        server = None
        if not a.no_s3:
            server, fs = start_local_s3("bench")
            fs.put(str(local), "bench/rig.zarr", recursive=True)
            sources["s3 (moto, 127.0.0.1)"] = "s3://bench/rig.zarr"
        try:
            for name, data in sources.items():
                for workers in a.workers:
                    rate = samples_per_s(data, workers, a.batches)
                    results.append({"source": name, "workers": workers, "samples_per_s": round(rate, 1)})
                    print(f"{name:>22}  workers {workers}: {rate:8.1f} samples/s")
        finally:
            if server is not None:
                server.stop()
    print("\n| source | workers | samples/s |\n|---|---|---|")
    for r in results:
        print(f"| {r['source']} | {r['workers']} | {r['samples_per_s']} |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"store": info, "results": results, "batch": 64,
                                            "resize": [96, 128], "crop": [88, 120]}, indent=1))


if __name__ == "__main__":
    main()
