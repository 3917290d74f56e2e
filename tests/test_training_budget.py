"""Time-budgeted learning-rate schedule, resume of the budget, validation windows, on-device batches."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from df_policy.data.dataset import DatasetConfig, make_datasets
from df_policy.data.device_batches import DeviceBatcher
from df_policy.training.config import load_run_config
from df_policy.training.trainer import BudgetSchedule, train
from df_policy.training.validation import spread_windows

from tests.test_training import TINY


def test_budget_schedule_follows_time_when_it_runs_out_first():
    cfg = types.SimpleNamespace(steps=100_000, warmup_steps=10, min_lr_ratio=0.05, max_minutes=1.0)
    sched = BudgetSchedule(cfg)
    assert sched(0) == pytest.approx(0.1)  # warm-up by steps
    sched.set_elapsed(0.0)
    assert sched(10) == pytest.approx(1.0)
    sched.set_elapsed(30.0)  # half the budget: half-way down the cosine, whatever the step
    assert sched(200) == pytest.approx(0.05 + 0.95 * 0.5, abs=1e-3)
    sched.set_elapsed(60.0)
    assert sched(300) == pytest.approx(0.05)
    # without a budget, steps decide
    cfg.max_minutes = None
    steps_only = BudgetSchedule(cfg)
    steps_only.set_elapsed(1e9)
    assert steps_only(10) == pytest.approx(1.0)
    # the scheduler's saved state is plain JSON
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    json.dumps(torch.optim.lr_scheduler.LambdaLR(opt, sched).state_dict())


def test_time_budgeted_run_ends_at_the_bottom_and_resume_keeps_the_budget(synth_store, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    budget = ["train.steps=100000", "train.max_minutes=0.08", "train.warmup_steps=1", "train.ckpt_every=100000"]
    s1 = train(str(synth_store), out, load_run_config(None, TINY + budget), progress=False)
    assert 1 < s1["steps"] < 100000
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["train/lr"] for r in rows if "train/lr" in r]
    peak = load_run_config(None, TINY).train.lr
    assert lrs[-1] <= 0.1 * peak, "a time-budgeted run must end near min_lr, not at full learning rate"
    state = json.loads((out / "checkpoints" / "last" / "train_state.json").read_text())
    assert state["elapsed_s"] >= 0.08 * 60
    # resuming the same run: the budget is already spent, so it stops right away instead of restarting
    s2 = train(str(synth_store), out, load_run_config(None, TINY + budget), progress=False)
    assert s2["steps"] == s1["steps"] + 1


def test_validation_windows_cover_every_episode(synth_store):
    _, val = make_datasets(str(synth_store), DatasetConfig(horizon=8, crop_shape=None, val_ratio=0.5), progress=False)
    chosen = spread_windows(val.index.ep_start, 12)
    episodes = np.unique(val.index.ep_start)
    assert len(episodes) == 3
    assert set(np.unique(val.index.ep_start[chosen])) == set(episodes)
    assert len(chosen) == len(np.unique(chosen)) >= 12
    # the first episode alone (what an unshuffled loader gave) would be 1 of 3
    assert np.bincount(np.searchsorted(episodes, val.index.ep_start[chosen])).min() >= 4


def test_device_batches_match_the_dataset(synth_store):
    cfg = DatasetConfig(horizon=8, crop_shape=(24, 24), val_ratio=0.3, cache="ram")
    train_ds, val_ds = make_datasets(str(synth_store), cfg, progress=False)
    for ds in (val_ds,):  # centre crop: exactly the dataset's batch
        dev = DeviceBatcher(ds, "cpu")
        idx = [0, 3, len(ds) - 1]
        want = ds.__getitems__(idx)
        got = dev.batch(torch.as_tensor(idx))
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
            assert torch.equal(got[k], want[k]), k
    dev = DeviceBatcher(train_ds, "cpu")  # random crops: every crop is a window of the full frame
    batch = dev.sample(8, torch.Generator().manual_seed(0))
    full = DatasetConfig(horizon=8, crop_shape=None, val_ratio=0.3, cache="ram")
    ref_ds, _ = make_datasets(str(synth_store), full, progress=False)
    ref = ref_ds.__getitems__(batch["index"].tolist())
    for b in range(8):
        crop, frame = batch["obs.image"][b, -1], ref["obs.image"][b, -1]  # (C, 24, 24) inside (C, 32, 32)
        found = any(torch.equal(frame[:, y:y + 24, x:x + 24], crop) for y in range(9) for x in range(9))
        assert found
    assert torch.equal(batch["action"], ref["action"])
    with pytest.raises(ValueError, match="cache=ram"):
        stream_ds, _ = make_datasets(str(synth_store), DatasetConfig(horizon=8, crop_shape=None, cache="stream"),
                                     progress=False)
        DeviceBatcher(stream_ds, "cpu")


def test_data_on_device_training_runs(synth_store, tmp_path, one_torch_thread):
    s = train(str(synth_store), tmp_path / "run", load_run_config(None, TINY + ["train.steps=6", "train.data_on_device=true"]),
              progress=False)
    assert s["steps"] == 6 and np.isfinite(s["val/action_mse_stream"]) and np.isfinite(s["val/action_mse_chunk"])


def test_lowdim_noise_is_added_in_training_batches_only(synth_store):
    """dataset.lowdim_noise_std: training batches (host loader and on-device batcher) get Gaussian
    noise of that std on the low-dim observations; validation batches and actions are exact."""
    cfg = DatasetConfig(crop_shape=None, val_ratio=0.2, horizon=8, cache="ram", lowdim_noise_std=0.05)
    clean_cfg = DatasetConfig(crop_shape=None, val_ratio=0.2, horizon=8, cache="ram")
    train, val = make_datasets(str(synth_store), cfg, progress=False)
    clean_train, clean_val = make_datasets(str(synth_store), clean_cfg, progress=False)
    idx = list(range(0, len(train), 2))
    noisy, clean = train.__getitems__(idx), clean_train.__getitems__(idx)
    diff = (noisy["obs.agent_pos"] - clean["obs.agent_pos"]).numpy()
    assert 0.04 < diff.std() < 0.06 and abs(diff.mean()) < 0.01
    assert torch.equal(noisy["action"], clean["action"])
    assert torch.equal(val.__getitems__([0, 3])["obs.agent_pos"], clean_val.__getitems__([0, 3])["obs.agent_pos"])
    dev, clean_dev = DeviceBatcher(train, "cpu"), DeviceBatcher(clean_train, "cpu")
    samples = torch.arange(len(dev))
    d = dev.batch(samples, torch.Generator().manual_seed(0))["obs.agent_pos"] - clean_dev.batch(samples)["obs.agent_pos"]
    assert 0.04 < float(d.std()) < 0.06
    assert torch.equal(dev.batch(samples, train=False)["obs.agent_pos"], clean_dev.batch(samples, train=False)["obs.agent_pos"])
    with pytest.raises(ValueError, match="lowdim_noise_std"):
        DatasetConfig(lowdim_noise_std=-0.1)
