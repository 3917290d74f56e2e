"""Training throughput side by side: LeRobot's DiffusionPolicy vs df_policy on the PushT demos (issue 13).

    .venv-lerobot/bin/python benchmarks/bench_vs_lerobot_training.py [--store runs/pusht.zarr]
        [--lerobot-data runs/pusht_lerobot] [--batch 32] [--threads 2] [--out runs/bench/vs_lerobot_training.json]

Runs in ``.venv-lerobot`` (``bash scripts/install_lerobot.sh bench``). The same
demonstrations for both: the PushT store (``dfp data convert ... --fps 10``), and the same store
exported to a LeRobotDataset v3 with LeRobot's writer (``dfp data export``, AV1 video; made here
when ``--lerobot-data`` does not exist). Each policy with its own data path:

* LeRobot: ``LeRobotDataset`` with DiffusionPolicy's ``delta_timestamps`` (2 observations, 16
  actions), video decoded by its loader (``torch.utils.data.DataLoader``, ``--workers``), then
  ``DiffusionPolicy.forward`` + backward + AdamW; its PushT size (ResNet-18, U-Net
  512/1024/2048) and a small U-Net (64/128/256). Inputs are not normalised (its processors are
  left out; the cost is negligible).
* df_policy: ``dfp train --config pusht_cpu`` (image + agent position, episode store in RAM,
  batches built on the training device) for ``--our-steps`` steps, samples/s from its metrics
  after the first ``--skip`` steps.

Samples/s are measured after ``--skip`` warm-up steps, all in this process's run of the machine
(run nothing else meanwhile). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import write_results  # noqa: E402  (same folder)
from lerobot_policy import lerobot_diffusion_policy  # noqa: E402

FPS = 10


def lerobot_throughput(data: Path, down_dims: tuple[int, ...], batch: int, steps: int, skip: int,
                       workers: int) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    obs = [-1 / FPS, 0.0]
    ds = LeRobotDataset("local/pusht", root=data, video_backend="pyav", delta_timestamps={
        "observation.images.img": obs, "observation.state": obs, "action": [i / FPS for i in range(-1, 15)]})
    policy = lerobot_diffusion_policy(down_dims, "DDPM", 100, image_key="observation.images.img", state_dim=5,
                                      seed=0).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    it = iter(loader)
    t_load = t_step = 0.0
    for s in range(steps + skip):
        t0 = time.perf_counter()
        b = next(it)
        t1 = time.perf_counter()
        loss, _ = policy.forward({k: v for k, v in b.items() if isinstance(v, torch.Tensor)})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if s >= skip:
            t_load += t1 - t0
            t_step += t2 - t1
    return {"samples_per_s": round(steps * batch / (t_load + t_step), 2),
            "loader_share": round(t_load / (t_load + t_step), 3),
            "parameters": sum(p.numel() for p in policy.parameters()), "steps": steps, "workers": workers}


def our_throughput(store: Path, batch: int, steps: int, skip: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "df_policy.cli", "train", "--data", str(store), "--out", f"{tmp}/run",
               "--config", "pusht_cpu", "--no-resume", f"train.steps={steps + skip}", "train.max_minutes=null",
               f"train.batch_size={batch}", "train.log_every=1", "train.val_every=100000",
               "train.ckpt_every=100000", "dataset.n_obs_steps=2"]  # To 2, as LeRobot's
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    rows = [r for r in rows if "train/samples_per_s" in r]
    # train/samples_per_s is cumulative from the loop's start: t(step) = step * batch / rate
    t = {r["step"]: r["step"] * batch / r["train/samples_per_s"] for r in rows}
    return {"samples_per_s": round(steps * batch / (t[steps + skip] - t[skip]), 2),
            "parameters": summary["n_parameters"], "steps": steps, "workers": 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", default="runs/pusht.zarr", help="PushT episode store (dfp data convert ... --fps 10)")
    p.add_argument("--lerobot-data", default="runs/pusht_lerobot", help="the store as a LeRobotDataset (made if absent)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads for both")
    p.add_argument("--workers", type=int, default=0, help="LeRobot DataLoader workers")
    p.add_argument("--skip", type=int, default=2, help="warm-up steps left out")
    p.add_argument("--lerobot-steps", type=int, default=6)
    p.add_argument("--our-steps", type=int, default=40)
    p.add_argument("--out", default="runs/bench/vs_lerobot_training.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    store, data = Path(args.store), Path(args.lerobot_data)
    meta: dict = {}
    if not data.exists():
        from df_policy.data.lerobot_format import export_lerobot

        t0 = time.perf_counter()
        export_lerobot(store, data)
        meta["export_s"] = round(time.perf_counter() - t0, 1)
    results = {}
    for name, dims, steps in (("lerobot, PushT size", (512, 1024, 2048), args.lerobot_steps),
                              ("lerobot, small U-Net", (64, 128, 256), 3 * args.lerobot_steps)):
        results[name] = lerobot_throughput(data, dims, args.batch, steps, args.skip, args.workers)
        print(f"{name}: {results[name]}", file=sys.stderr)
    results["df_policy pusht_cpu"] = our_throughput(store, args.batch, args.our_steps, args.skip, args.threads)
    print(f"df_policy: {results['df_policy pusht_cpu']}", file=sys.stderr)
    import lerobot

    meta.update({"torch": torch.__version__, "lerobot": lerobot.__version__, "threads": args.threads,
                 "batch": args.batch, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                 "load_avg_1min": round(os.getloadavg()[0], 2)})
    ours = results["df_policy pusht_cpu"]["samples_per_s"]
    print(f"\n{'policy':<22} {'params':>11} {'samples/s':>10} {'ours / it':>10}")
    for name, r in results.items():
        print(f"{name:<22} {r['parameters']:>11,} {r['samples_per_s']:>10.2f} {ours / r['samples_per_s']:>9.1f}x")
    write_results(args.out, meta, results)


if __name__ == "__main__":
    main()
