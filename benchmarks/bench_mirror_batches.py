"""What ``dataset.mirror`` costs the image training path: batches per second of
:class:`~df_policy.data.device_batches.DeviceBatcher` (the ``train.data_on_device`` path that
``pusht_cpu`` trains with) on the PushT store, without and with the mirror, in the same run.

The dataset is ``pusht_cpu``'s (96x96 camera randomly cropped to 84x84, To 2, horizon 16,
agent position + action, batch 32); the mirror is session 15's: ``pusht_state_keypoints_cpu``'s
(the goal axis, probability 0.5) with the camera anti-transposed. Rounds alternate the two settings so drift of a shared
machine hits both alike; the figure is the median of the rounds and the ratio of medians.

    python benchmarks/bench_mirror_batches.py --store runs/pusht.zarr [--batches 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from df_policy.data.dataset import make_datasets
from df_policy.data.device_batches import DeviceBatcher
from df_policy.training.config import load_run_config


def batches_per_s(batcher: DeviceBatcher, batch_size: int, batches: int, generator: torch.Generator) -> float:
    n = len(batcher)
    batcher.batch(torch.randint(0, n, (batch_size,), generator=generator), generator)  # warm-up
    t0 = time.perf_counter()
    for _ in range(batches):
        batcher.batch(torch.randint(0, n, (batch_size,), generator=generator), generator)
    return batches / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="a df_policy store of the PushT demos (dfp data convert)")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = load_run_config("pusht_cpu")
    mirror = replace(load_run_config("pusht_state_keypoints_cpu").dataset.mirror, images={"img": "anti_transpose"})
    batch_size = run.train.batch_size
    batchers = {}
    for name, cfg in (("plain", run.dataset), ("mirror", replace(run.dataset, mirror=mirror))):
        train, _ = make_datasets(args.store, cfg, progress=False)
        batchers[name] = DeviceBatcher(train, "cpu")
    rates: dict[str, list[float]] = {name: [] for name in batchers}
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        for name, batcher in batchers.items():
            rates[name].append(batches_per_s(batcher, batch_size, args.batches, generator))
    med = {name: statistics.median(r) for name, r in rates.items()}
    results = {
        "batch_size": batch_size, "batches_per_round": args.batches, "rounds": args.rounds, "torch_threads": 1,
        **{name: {"batches_per_s_median": round(med[name], 1), "ms_per_batch": round(1e3 / med[name], 3),
                  "samples_per_s": round(med[name] * batch_size), "rounds": [round(r, 1) for r in rates[name]]}
           for name in rates},
        "mirror_over_plain_time": round(med["plain"] / med["mirror"], 3),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
