"""Validation during training: a fixed sample of windows from every validation episode.

Windows: ``n_windows`` in total, spread evenly over the validation episodes (evenly spaced in
time inside each episode), chosen once per run, so ``val/*`` curves are comparable across steps
and runs and no episode dominates.

Metrics (normalised action units, valid steps only):

* ``val/loss``: the training loss with fixed noise (level sampling as configured);
* ``val/action_mse_chunk``: future actions (steps ``>= To - 1``) sampled as the ``chunk``
  runtime does (full-sequence DDIM over every future token, executed past actions as context at
  ``stabilization_level``); ``val/action_mse`` is the same number (kept for old curves);
* ``val/action_mse_stream``: future actions sampled with the pyramid matrix that the ``stream``
  runtime runs over time (``S = R`` steps, each token one row behind the previous one, ``R`` =
  :data:`STREAM_VALIDATION_RAMP`), from one fixed observation;
* ``val/action_mae``: the mean absolute error of the chunk-style sample (kept for old curves);
* ``val/head_mse_chunk`` / ``val/head_mse_stream``: the same for the current step's action only
  (lookahead 0);
* ``val/head_mse_repeat_last``: the trivial baseline "repeat the last executed action" for the
  current step (needs ``To >= 2``), to read the two above against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.model.schedules import make_schedule

STREAM_VALIDATION_RAMP = 4
"""Ramp (tokens) of the stream-like validation matrix. Fixed so that curves stay comparable
across runs; the runtime's ``stream`` default is now the rest of the window behind 4 committed
actions (chosen in closed loop), which this offline proxy does not follow."""


def spread_windows(ep_start: np.ndarray, n_windows: int) -> np.ndarray:
    """Indices of ``n_windows`` windows spread over every episode (``ep_start`` per window)."""
    if len(ep_start) == 0:
        return np.zeros(0, dtype=np.int64)
    starts, first = np.unique(ep_start, return_index=True)
    counts = np.diff(np.append(first, len(ep_start)))
    per_ep = max(1, -(-n_windows // len(starts)))
    picks = [f + np.unique(np.linspace(0, c - 1, min(per_ep, c)).round().astype(np.int64))
             for f, c in zip(first, counts)]
    return np.concatenate(picks)


def _context(policy: DiffusionForcingPolicy, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Context (executed past actions, whole tokens) for ``sample``: values and mask ``(B, T)``."""
    cfg = policy.config
    B, T, _ = batch["action"].shape
    n_ctx = cfg.n_context_tokens * cfg.actions_per_token
    mask = torch.zeros(B, T, dtype=torch.bool, device=batch["action"].device)
    mask[:, :n_ctx] = True
    mask &= ~batch["action_is_pad"]
    # a context token must be whole: drop tokens with a padded action
    A = cfg.actions_per_token
    whole = mask.reshape(B, -1, A).all(-1, keepdim=True).expand(-1, -1, A).reshape(B, T)
    return batch["action"], whole


@torch.no_grad()
def evaluate(policy: DiffusionForcingPolicy, batches: list[dict[str, torch.Tensor]], device: torch.device,
             seed: int) -> dict[str, float]:
    """Validation metrics (see the module docstring) over ``batches`` (already collated)."""
    policy.eval()
    cfg = policy.config
    gen = torch.Generator(device=device).manual_seed(seed)
    n_tok = cfg.n_tokens
    ramp = max(1, min(STREAM_VALIDATION_RAMP, n_tok - cfg.n_context_tokens - 1))
    stream_matrix = make_schedule("pyramid", n_tok, ramp, 1.0)
    chunk_matrix = make_schedule("full_sequence", n_tok, cfg.num_sampling_steps)
    first = cfg.n_obs_steps - 1
    losses: list[float] = []
    sums = {k: 0.0 for k in ("chunk", "stream", "head_chunk", "head_stream", "repeat", "mae_chunk")}
    counts = {k: 0 for k in sums}
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        loss, _ = policy.compute_loss(b, generator=gen)
        losses.append(loss.item())
        obs = {k: v for k, v in b.items() if k.startswith("obs")}
        ctx, ctx_mask = _context(policy, b)
        encoded = policy.encode_observations(obs)
        preds = {
            "chunk": policy.sample(encoded, chunk_matrix, context_actions=ctx, context_mask=ctx_mask, generator=gen),
            "stream": policy.sample(encoded, stream_matrix, context_actions=ctx, context_mask=ctx_mask,
                                    generator=gen, schedule_steps=ramp),
        }
        valid = ~b["action_is_pad"][:, first:]
        truth = b["action"][:, first:]
        for name, pred in preds.items():
            err = (pred[:, first:] - truth).pow(2).mean(-1)
            sums[name] += float(err[valid].sum())
            counts[name] += int(valid.sum())
            sums[f"head_{name}"] += float(err[:, 0][valid[:, 0]].sum())
            counts[f"head_{name}"] += int(valid[:, 0].sum())
        sums["mae_chunk"] += float((preds["chunk"][:, first:] - truth).abs().mean(-1)[valid].sum())
        counts["mae_chunk"] += int(valid.sum())
        if first >= 1:
            last = b["action"][:, first - 1]
            ok = valid[:, 0] & ~b["action_is_pad"][:, first - 1] & ~b["obs_is_pad"][:, -1]
            sums["repeat"] += float((last - truth[:, 0]).pow(2).mean(-1)[ok].sum())
            counts["repeat"] += int(ok.sum())
    mean = {k: sums[k] / counts[k] for k in sums if counts[k]}
    out = {"val/loss": float(np.mean(losses))}
    names = {"chunk": "val/action_mse_chunk", "stream": "val/action_mse_stream", "head_chunk": "val/head_mse_chunk",
             "head_stream": "val/head_mse_stream", "repeat": "val/head_mse_repeat_last",
             "mae_chunk": "val/action_mae"}
    out.update({names[k]: v for k, v in mean.items()})
    if "chunk" in mean:
        out["val/action_mse"] = mean["chunk"]
    return out


def plot_curves(metrics_path: Path, out_png: Path) -> None:
    """Training loss, validation loss and sampled validation errors against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    tr = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    if tr:
        axes[0].plot(*zip(*tr), label="train loss", lw=1)
    va = [(r["step"], r["val/loss"]) for r in rows if "val/loss" in r]
    if va:
        axes[0].plot(*zip(*va), "o-", label="val loss")
    for key, label in (("val/action_mse_chunk", "chunk"), ("val/action_mse_stream", "stream")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            axes[1].plot(*zip(*pts), "o-", label=f"val action MSE ({label})")
    for key, label in (("val/head_mse_chunk", "chunk"), ("val/head_mse_stream", "stream"),
                       ("val/head_mse_repeat_last", "repeat last action")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            axes[2].plot(*zip(*pts), "o-", label=label)
    axes[2].set_title("current-step action MSE", fontsize=9)
    lr = [(r["step"], r["train/lr"]) for r in rows if "train/lr" in r]
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if lr:
        twin = axes[0].twinx()
        twin.plot(*zip(*lr), color="0.6", lw=0.8, ls="--")
        twin.set_ylabel("learning rate", color="0.5")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def describe(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in metrics.items())
