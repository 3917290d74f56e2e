"""Training loop: one process per device; the same code runs single-process or under ``torchrun``.

    dfp train --data STORE --out RUN_DIR [--config pusht] [train.steps=2000 ...]
    torchrun --nproc_per_node=4 -m df_policy.training.trainer --data STORE --out RUN_DIR ...

Per optimiser step: ``grad_accum`` micro-batches of ``batch_size`` samples per process, AdamW,
linear warm-up + cosine decay, global-norm gradient clipping, EMA of the weights, bf16 autocast
on CUDA. Rank 0 shows a tqdm bar, writes TensorBoard scalars (loss, per-noise-level loss,
validation loss and sampled action error, learning rate) and ``metrics.jsonl``, and writes
checkpoints (:mod:`df_policy.training.checkpoint`). A run directory with ``checkpoints/last``
is resumed automatically.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from df_policy.data.dataset import WindowDataset, identity_collate, make_datasets
from df_policy.data.device_batches import DeviceBatcher
from df_policy.model.policy import DiffusionForcingConfig, DiffusionForcingPolicy
from df_policy.training.checkpoint import load_train_state, save_checkpoint
from df_policy.training.config import RunConfig, load_run_config
from df_policy.training.validation import describe, evaluate, plot_curves, spread_windows


# ---------------------------------------------------------------------------------- setup
def setup_distributed() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("DFP_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def policy_config_for(run: RunConfig, ds: WindowDataset) -> DiffusionForcingConfig:
    """Policy config: data-derived shapes (cameras, crop, low-dim sizes, action) + ``run.policy``."""
    schema = ds.schema
    image_shapes = {}
    for k in ds.image_keys:
        h, w, c = ds.arrays.step_shape(k)  # after resize_shape
        if run.dataset.crop_shape is not None:
            h, w = run.dataset.crop_shape
        image_shapes[k] = (c, h, w)
    derived = {
        "image_shapes": image_shapes,
        "lowdim_shapes": {k: ds.lowdim_dim(k) for k in ds.lowdim_keys},
        "action_dim": schema.keys[schema.action_key].dim,
        "n_obs_steps": run.dataset.n_obs_steps,
        "horizon": run.dataset.horizon,
    }
    clash = sorted(set(derived) & set(run.policy))
    if clash:
        raise ValueError(f"policy.{clash[0]} comes from the data/dataset config and cannot be set in policy")
    return DiffusionForcingConfig(**derived, **run.policy)


class BudgetSchedule:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` over the run's *progress*.

    Progress is ``step / steps``, or, with a wall-clock budget (``max_minutes``), the larger of
    that and ``elapsed / budget``: a time-budgeted run ends at the bottom of the cosine however
    many steps fit, instead of stopping at full learning rate. ``elapsed`` is the training time
    of this run including earlier segments of a resumed run. Used as a ``LambdaLR`` factor;
    call :meth:`set_elapsed` before ``scheduler.step()``.
    """

    def __init__(self, cfg: Any) -> None:
        # plain numbers only: LambdaLR.state_dict() saves this object's __dict__ (as JSON here)
        self.steps, self.warmup_steps, self.min_lr_ratio = int(cfg.steps), int(cfg.warmup_steps), cfg.min_lr_ratio
        self.budget_s = None if cfg.max_minutes is None else 60.0 * float(cfg.max_minutes)
        self.elapsed_s = 0.0

    def set_elapsed(self, seconds: float) -> None:
        self.elapsed_s = float(seconds)

    def progress(self, step: int) -> float:
        p = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        if self.budget_s is not None:
            p = max(p, self.elapsed_s / self.budget_s)
        return min(1.0, max(0.0, p))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / max(1, self.warmup_steps)
        p = self.progress(step)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embed" in name or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def infinite_batches(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        if isinstance(loader.sampler, torch.utils.data.distributed.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------------- main loop
def train(data: str, out: str | Path, run: RunConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train a policy on the store ``data``; returns a summary (also written to ``summary.json``)."""
    rank, world, local_rank = setup_distributed()
    tc = run.train
    device = pick_device(tc.device, local_rank)
    out = Path(out)
    is_main = rank == 0
    seed_everything(tc.seed)  # identical model init on every rank
    sharded = run.dataset.shard_by_rank and world > 1
    if sharded and tc.data_on_device:
        raise ValueError("dataset.shard_by_rank holds each rank's share in host RAM for the DataLoader; "
                         "train.data_on_device copies the whole store to every device: use one or the other")
    train_ds, val_ds = make_datasets(data, run.dataset, seed=tc.seed + 1000 * rank, progress=progress and is_main,
                                     shard=(rank, world) if sharded else None)
    if len(train_ds) == 0:
        raise ValueError(f"{data}: no training samples")
    policy_cfg = policy_config_for(run, train_ds)
    policy = DiffusionForcingPolicy(policy_cfg).to(device)
    policy.obs_encoder.set_channels_last(tc.channels_last)  # NHWC convolutions (train.channels_last)
    ema = copy.deepcopy(policy).requires_grad_(False) if tc.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(param_groups(policy, tc.weight_decay), lr=tc.lr, betas=tc.betas)
    budget = BudgetSchedule(tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, budget)
    ckpt_dir = out / "checkpoints"
    step, elapsed_before = 0, 0.0
    if resume and (ckpt_dir / "last" / "train_state.json").is_file():
        step = load_train_state(ckpt_dir / "last", policy, ema, optimizer, scheduler)
        state = json.loads((ckpt_dir / "last" / "train_state.json").read_text())
        elapsed_before = float(state.get("elapsed_s", 0.0))  # the time budget continues, not restarts
        if is_main:
            print(f"resuming {out} from step {step} ({elapsed_before / 60:.1f} training minutes spent)")
    else:
        torch.manual_seed(tc.seed + 7919 * rank)  # per-rank noise streams; a resume restores its RNG state
    budget.set_elapsed(elapsed_before)

    model: torch.nn.Module = policy
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[local_rank] if device.type == "cuda" else None)
    if tc.data_on_device:
        device_data = DeviceBatcher(train_ds, device)
        batch_gen = torch.Generator(device=device).manual_seed(tc.seed + 7919 * rank + step)
        if is_main:
            print(f"training data on {device}: {device_data.nbytes / 2**20:.0f} MiB, {len(device_data)} windows")
        batches = iter(lambda: device_data.sample(tc.batch_size, batch_gen), None)
    else:
        if world > 1 and not sharded:
            sampler = torch.utils.data.distributed.DistributedSampler(train_ds, world, rank, shuffle=True, seed=tc.seed)
        else:  # one process, or a rank's own episodes (shard_by_rank): a sampler of its own (rank 0: seed + step)
            sampler = torch.utils.data.RandomSampler(
                train_ds, generator=torch.Generator().manual_seed(tc.seed + 7919 * rank + step))
        loader = torch.utils.data.DataLoader(
            train_ds, batch_size=tc.batch_size, sampler=sampler,
            drop_last=len(train_ds) >= tc.batch_size * (1 if sharded else world),
            num_workers=tc.num_workers, collate_fn=identity_collate, pin_memory=device.type == "cuda",
            persistent_workers=tc.num_workers > 0)
        batches = infinite_batches(loader)
    val_batches = []
    if val_ds is not None and is_main:  # a fixed sample of windows from every validation episode
        chosen = spread_windows(val_ds.index.ep_start, tc.val_batches * tc.batch_size)
        val_batches = [val_ds.__getitems__(chosen[i:i + tc.batch_size].tolist())
                       for i in range(0, len(chosen), tc.batch_size)]

    amp = device.type == "cuda" and tc.mixed_precision in ("auto", "bf16")
    writer = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    metrics_f = open(out / "metrics.jsonl", "a") if is_main else None
    ckpt_args = dict(normalizer=train_ds.normalizer, schema=train_ds.schema, run_config=run.to_dict())

    def checkpoint(at: int) -> None:
        if not is_main:
            return
        path = save_checkpoint(ckpt_dir / f"step_{at:07d}", policy, ema=ema, step=at, optimizer=optimizer,
                               scheduler=scheduler, train_info={"elapsed_s": elapsed_before + time.perf_counter()
                                                                - t_start}, **ckpt_args)
        last = ckpt_dir / "last"
        tmp = ckpt_dir / "last.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(path, tmp)
        if last.exists():
            shutil.rmtree(last)
        tmp.rename(last)
        steps = sorted(ckpt_dir.glob("step_*"))
        for old in steps[: -tc.keep_checkpoints]:
            shutil.rmtree(old)

    def log(row: dict[str, float]) -> None:
        if not is_main:
            return
        for k, v in row.items():
            if k != "step":
                writer.add_scalar(k, v, row["step"])
        metrics_f.write(json.dumps(row) + "\n")
        metrics_f.flush()

    bar = tqdm(total=tc.steps, initial=step, desc="train", disable=not (progress and is_main), dynamic_ncols=True)
    t_start, samples, last_val = time.perf_counter(), 0, None
    policy.train()
    while step < tc.steps:
        optimizer.zero_grad(set_to_none=True)
        infos = []
        for micro in range(tc.grad_accum):
            batch = to_device(next(batches), device)
            sync = micro == tc.grad_accum - 1 or world == 1
            ctx = model.no_sync() if (world > 1 and not sync) else contextlib.nullcontext()
            with ctx, torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                loss, info = model(batch)
                (loss / tc.grad_accum).backward()
            infos.append(info)
            samples += len(batch["action"]) * world
        grad_norm = (torch.nn.utils.clip_grad_norm_(policy.parameters(), tc.grad_clip)
                     if tc.grad_clip else torch.tensor(0.0))
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"non-finite gradient norm at step {step}; lower train.lr or check the data")
        optimizer.step()
        elapsed = elapsed_before + time.perf_counter() - t_start
        if world > 1 and tc.max_minutes is not None:
            # one clock for all ranks: the same learning rate everywhere and the same stopping step
            clock = torch.tensor([elapsed], dtype=torch.float64, device=device)
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            elapsed = float(clock.item())
        budget.set_elapsed(elapsed)
        scheduler.step()
        if ema is not None:
            ema_update(ema, policy, tc.ema_decay, step)
        step += 1
        bar.update(1)
        out_of_time = tc.max_minutes is not None and elapsed > 60 * tc.max_minutes
        final = step == tc.steps or out_of_time
        if step % tc.log_every == 0 or final:
            row = {"step": step, "train/loss": float(np.mean([i["loss"] for i in infos])),
                   "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm),
                   "train/samples_per_s": samples / (time.perf_counter() - t_start)}
            for k in infos[-1]:
                if k.startswith("v_mse/"):
                    row[f"train/{k}"] = float(np.mean([i[k] for i in infos if k in i]))
            log(row)
            bar.set_postfix(loss=f"{row['train/loss']:.4f}", lr=f"{row['train/lr']:.1e}")
        if val_batches and ((tc.val_every and step % tc.val_every == 0) or final):
            last_val = evaluate(ema if ema is not None else policy, val_batches, device, tc.seed)
            policy.train()
            log({"step": step, **last_val})
            bar.write(f"step {step}: {describe(last_val)}")
        if step % tc.ckpt_every == 0 or final:
            checkpoint(step)
        if out_of_time:
            bar.write(f"train.max_minutes={tc.max_minutes} spent: stopping at step {step}")
            break
    bar.close()
    elapsed = time.perf_counter() - t_start
    summary = {"steps": step, "seconds": round(elapsed, 1), "samples_per_s": round(samples / max(elapsed, 1e-9), 1),
               "world_size": world, "device": str(device), "n_parameters": sum(p.numel() for p in policy.parameters()),
               "train_samples": len(train_ds), **(last_val or {})}
    if sharded:  # which episodes each rank trained on
        shares: list = [None] * world
        dist.all_gather_object(shares, list(train_ds.episodes))
        summary["train_episodes_per_rank"] = shares
    if world > 1:  # DDP must keep the replicas bit-identical; report how far apart they are
        flat = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        summary["replica_max_abs_diff"] = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if is_main:
        metrics_f.close()
        writer.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(out / "metrics.jsonl", out / "train_curves.png")
    if dist.is_initialized():
        dist.barrier()
    return summary


# ---------------------------------------------------------------------------------- CLI
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="episode store (ours or Diffusion Policy Zarr)")
    p.add_argument("--out", required=True, help="run directory (resumed if it has checkpoints/last)")
    p.add_argument("--config", default=None, help="YAML run config or a ready one: pusht, smoke")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.steps=500")


def run_from_args(args: argparse.Namespace) -> int:
    run = load_run_config(args.config, args.overrides)
    summary = train(args.data, args.out, run, resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m df_policy.training.trainer", description=__doc__.split("\n")[0])
    add_train_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
