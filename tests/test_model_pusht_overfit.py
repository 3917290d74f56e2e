"""A tiny policy memorises a few real PushT windows (images + agent position) and reproduces
their actions under every scheduling matrix: the whole data -> model -> sampler path on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from df_policy.data.dataset import DatasetConfig, make_datasets
from df_policy.model import SCHEDULE_NAMES, DenoiserConfig, DiffusionForcingConfig, DiffusionForcingPolicy
from df_policy.model import VisionEncoderConfig

STEPS, MEAN_TOL, MAX_TOL = 300, 0.06, 0.35


@pytest.fixture(scope="module")
def trained(pusht_store, one_torch_thread):
    cfg = DatasetConfig(image_keys=["img"], lowdim_keys=["agent_pos"], derived_keys={"agent_pos": "state[0:2]"},
                        n_obs_steps=2, horizon=8, crop_shape=(84, 84), val_ratio=0.1, cache="stream")
    _, val = make_datasets(str(pusht_store), cfg, progress=False)
    # four windows from different episodes, in the middle of a push (actions vary)
    starts = [val.index.ep_start.searchsorted(s) for s in np.unique(val.index.ep_start)[:4]]
    batch = val.__getitems__([int(s) + 40 for s in starts])
    actions = batch["action"]
    assert actions.std(dim=1).mean() > 0.02, "chosen windows should move"
    torch.manual_seed(0)
    policy = DiffusionForcingPolicy(DiffusionForcingConfig(
        image_shapes={"img": (3, 84, 84)}, lowdim_shapes={"agent_pos": 2}, action_dim=2, n_obs_steps=2, horizon=8,
        n_action_steps=4, num_sampling_steps=5, history_dropout_prob=0.0, unconditional_prob=0.0,
        lowdim_embed_dim=32, vision=VisionEncoderConfig(out_dim=32, num_keypoints=8, width=4),
        denoiser=DenoiserConfig(d_model=64, n_layers=2, n_heads=4)))
    train_batch = {k: v.repeat(4, *[1] * (v.ndim - 1)) for k, v in batch.items()}
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=STEPS, pct_start=0.1)
    for _ in range(STEPS):
        loss, _ = policy.compute_loss(train_batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    obs = {k: v for k, v in batch.items() if k.startswith("obs")}
    return policy.eval(), obs, actions, batch["action_is_pad"]


@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_pusht_windows_are_reproduced_under_every_schedule(trained, schedule):
    policy, obs, actions, pad = trained
    out = policy.sample(obs, policy.make_schedule(schedule), generator=torch.Generator().manual_seed(0))
    error = (out - actions).abs()[~pad]
    assert error.mean() < MEAN_TOL, f"{schedule}: mean error {error.mean():.3f}"
    assert error.max() < MAX_TOL, f"{schedule}: max error {error.max():.3f}"
    nearest = torch.cdist(out.flatten(1), actions.flatten(1)).argmin(dim=1)
    assert torch.equal(nearest, torch.arange(len(actions)))
