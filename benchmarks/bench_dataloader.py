"""Training-sample throughput of the windowed dataset on the PushT demos.

Measures samples/s for batches of 64 (To=2, Tp=16, 96x96 images randomly cropped to 84x84,
image + agent state + action) through ``torch.utils.data.DataLoader`` with 0 and 2 workers,
and, in the same run, a per-sample baseline (``__getitem__`` + default collate, the usual
Dataset pattern) so that the speed-up is a ratio on the same machine state. Peak RSS is the
high-water mark of this process plus its workers.

    python benchmarks/bench_dataloader.py [--store STORE] [--batches 150] [--repeats 3]

STORE defaults to ../shared/data/pusht/pusht_cchi_v7_replay_train.zarr.zip (converted to a
temporary df_policy store first, as users would).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from df_policy.data.dataset import DatasetConfig, identity_collate, make_datasets
from df_policy.data.ops import convert

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/pusht/pusht_cchi_v7_replay_train.zarr.zip"


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_loader(ds, batches: int, workers: int, per_sample: bool) -> tuple[float, int]:
    if per_sample:
        class PerSample(torch.utils.data.Dataset):  # hides __getitems__: one sample per call
            def __len__(self):
                return len(ds)

            def __getitem__(self, i):
                return ds[i]

        loader = torch.utils.data.DataLoader(PerSample(), batch_size=64, shuffle=True, num_workers=workers)
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers,
                                             collate_fn=identity_collate, persistent_workers=False)
    it = iter(loader)
    next(it)  # start-up (worker fork) is not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it)["action"])
    dt = time.perf_counter() - t0
    worker_hwm = sum(_hwm_kb(w.pid) for w in getattr(it, "_workers", []))
    del it
    return n / dt, worker_hwm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=str(DEFAULT))
    ap.add_argument("--batches", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    store = args.store
    tmp = None
    if store.endswith(".zip"):
        tmp = tempfile.TemporaryDirectory()
        t0 = time.perf_counter()
        convert(store, Path(tmp.name) / "pusht.zarr", fps=10, progress=False)
        print(f"converted {store} in {time.perf_counter() - t0:.1f} s")
        store = str(Path(tmp.name) / "pusht.zarr")
    cfg = DatasetConfig(lowdim_keys=["state"], n_obs_steps=2, horizon=16, crop_shape=(84, 84), cache="ram")
    t0 = time.perf_counter()
    train, _ = make_datasets(store, cfg, progress=False)
    load_s = time.perf_counter() - t0
    results = {"load_s": round(load_s, 2), "cores": os.cpu_count(), "dataset_bytes": train.arrays.nbytes}
    for name, workers, per_sample, batches in [
        ("batched_0_workers", 0, False, args.batches),
        ("batched_2_workers", 2, False, args.batches),
        ("per_sample_baseline_0_workers", 0, True, max(10, args.batches // 10)),
    ]:
        rates, hwm = [], 0
        for _ in range(args.repeats):
            r, h = run_loader(train, batches, workers, per_sample)
            rates.append(r)
            hwm = max(hwm, h)
        results[name] = {"samples_per_s_median": round(statistics.median(rates)), "runs": [round(r) for r in rates],
                         "worker_peak_rss_mb_sum": round(hwm / 1024)}
        print(name, results[name])
    results["main_peak_rss_mb"] = round(_hwm_kb(os.getpid()) / 1024)
    results["speedup_vs_per_sample"] = round(
        results["batched_0_workers"]["samples_per_s_median"]
        / results["per_sample_baseline_0_workers"]["samples_per_s_median"], 1)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    np.random.seed(0)
    main()
