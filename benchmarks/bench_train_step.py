"""What the image encoders' memory layout costs a training step: samples per second of a full
optimiser step (batch built on the training device, forward, backward, gradient clipping, AdamW,
EMA update) for a config's policy on the PushT store, with the convolutions in the default NCHW
layout and in ``channels_last`` (NHWC, ``train.channels_last``), in the same run; on CUDA with the
trainer's bf16 autocast.

Both variants start from the same initial weights and see the same batches; rounds alternate them
so drift of a shared machine hits both alike; the figure is the median of the rounds and the ratio
of medians. The losses of the first step are printed side by side (the two layouts compute the
same function; they differ only in floating-point summation order).

    python benchmarks/bench_train_step.py --store runs/pusht.zarr [--config pusht_cpu] [--steps 20] [--rounds 5] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from df_policy.data.dataset import make_datasets
from df_policy.data.device_batches import DeviceBatcher
from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.training.config import load_run_config
from df_policy.training.trainer import ema_update, param_groups, pick_device, policy_config_for


class Variant:
    """One policy, its EMA and optimiser, trained on the shared batches."""

    def __init__(self, policy: DiffusionForcingPolicy, channels_last: bool, lr: float, weight_decay: float,
                 amp: bool) -> None:
        self.amp = amp
        self.policy = copy.deepcopy(policy)
        self.policy.obs_encoder.set_channels_last(channels_last)
        self.ema = copy.deepcopy(self.policy).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(param_groups(self.policy, weight_decay), lr=lr)
        self.step_count = 0

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.policy.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, _ = self.policy(batch)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.optimizer.step()
        ema_update(self.ema, self.policy, 0.995, self.step_count)
        self.step_count += 1
        return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="a df_policy store of the PushT demos (dfp data convert)")
    ap.add_argument("--config", default="pusht_cpu")
    ap.add_argument("overrides", nargs="*", help="config overrides, as dfp train's (dataset.n_obs_steps=1 ...)")
    ap.add_argument("--steps", type=int, default=20, help="optimiser steps per round and variant")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the CPU configs train with 2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run_config(args.config, args.overrides)
    device = pick_device(args.device, 0)
    train, _ = make_datasets(args.store, run.dataset, progress=False)
    batcher = DeviceBatcher(train, device)
    torch.manual_seed(0)
    policy = DiffusionForcingPolicy(policy_config_for(run, train)).to(device).train()
    amp = device.type == "cuda" and run.train.mixed_precision in ("auto", "bf16")  # as the trainer
    variants = {name: Variant(policy, name == "channels_last", run.train.lr, run.train.weight_decay, amp)
                for name in ("contiguous", "channels_last")}
    generator = torch.Generator(device=device).manual_seed(0)
    batches = [batcher.sample(run.train.batch_size, generator) for _ in range(args.steps)]
    first_loss = {}
    for name, v in variants.items():  # warm-up step, same batch and noise for both
        torch.manual_seed(1)
        first_loss[name] = v.step(batches[0])
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, v in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for batch in batches:
                v.step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[name].append(len(batches) * run.train.batch_size / (time.perf_counter() - t0))
    med = {name: statistics.median(r) for name, r in rates.items()}
    results = {
        "config": args.config, "overrides": args.overrides, "device": str(device), "torch": torch.__version__, "torch_threads": args.threads,
        "bf16_autocast": amp,
        "batch_size": run.train.batch_size, "steps_per_round": args.steps, "rounds": args.rounds,
        "first_step_loss": {k: round(v, 6) for k, v in first_loss.items()},
        **{name: {"samples_per_s_median": round(med[name], 1),
                  "ms_per_step": round(1e3 * run.train.batch_size / med[name], 1),
                  "rounds": [round(r, 1) for r in rates[name]]} for name in rates},
        "channels_last_speedup": round(med["channels_last"] / med["contiguous"], 3),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
