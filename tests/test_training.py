"""Training loop, checkpoints, resume and DDP (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from df_policy.data.schema import KeySpec, StoreSchema
from df_policy.training.checkpoint import CheckpointError, load_checkpoint
from df_policy.training.config import load_run_config
from df_policy.training.trainer import train

TINY = [
    "dataset.horizon=8", "dataset.crop_shape=null", "dataset.val_ratio=0.2",
    "policy.n_action_steps=4", "policy.num_sampling_steps=4", "policy.num_train_levels=100",
    "policy.stabilization_level=1",
    "policy.vision={out_dim: 16, num_keypoints: 4, width: 8, stem: small}",
    "policy.denoiser={d_model: 32, n_layers: 1, n_heads: 2}",
    "train.batch_size=16", "train.warmup_steps=2", "train.log_every=5", "train.val_every=0",
    "train.val_batches=1", "train.ckpt_every=10",
]


def test_ready_configs_and_overrides():
    from df_policy.model.policy import DiffusionForcingConfig

    for name in ("pusht", "smoke", "pusht_cpu", "pusht_state_cpu", "pusht_gpu", "arm_demo"):
        run = load_run_config(name)
        if "level_sampling" in run.policy:  # validated the way the trainer will
            DiffusionForcingConfig(lowdim_shapes={"state": 5}, **run.policy)
        assert run.train.steps > 0 and run.dataset.horizon >= run.dataset.n_obs_steps
    run = load_run_config("smoke", ["train.steps=7", "policy.denoiser={d_model: 48}", "dataset.crop_shape=[12, 12]"])
    assert run.train.steps == 7 and run.policy["denoiser"] == {"d_model": 48}
    assert run.dataset.crop_shape == (12, 12)
    with pytest.raises(ValueError, match="unexpected keyword argument 'stepz'"):
        load_run_config("smoke", ["train.stepz=3"])
    with pytest.raises(ValueError, match="train.lr must be > 0"):
        load_run_config(None, ["train.lr=0"])
    with pytest.raises(FileNotFoundError, match="ready configs"):
        load_run_config("nope")


def test_train_checkpoint_load_and_resume(synth_store, tmp_path):
    out = tmp_path / "run"
    s1 = train(str(synth_store), out, load_run_config(None, TINY + ["train.steps=10"]), progress=False)
    assert s1["steps"] == 10 and np.isfinite(s1["val/action_mse"])
    last = out / "checkpoints" / "last"
    for f in ("model.safetensors", "ema.safetensors", "config.json", "normalizer.json", "schema.json"):
        assert (last / f).is_file(), f
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 5 and any(k.startswith("train/v_mse/levels_") for k in rows[0])
    assert (out / "train_curves.png").stat().st_size > 1000 and list((out / "tb").iterdir())

    loaded = load_checkpoint(out)
    assert loaded.step == 10
    obs = {"obs.image": torch.zeros(2, 2, 3, 32, 32, dtype=torch.uint8), "obs.agent_pos": torch.zeros(2, 2, 2)}
    actions = loaded.policy.predict_action_chunk(obs)
    assert actions.shape == (2, 8, 2) and torch.isfinite(actions).all()

    # resume continues from step 10 with the optimiser state restored
    s2 = train(str(synth_store), out, load_run_config(None, TINY + ["train.steps=15"]), progress=False)
    assert s2["steps"] == 15
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [5, 10, 15]
    assert load_checkpoint(out).step == 15


def test_checkpoint_refuses_mismatched_schema(synth_store, tmp_path):
    out = tmp_path / "run"
    train(str(synth_store), out, load_run_config(None, TINY + ["train.steps=2"]), progress=False)
    loaded = load_checkpoint(out)
    good = loaded.schema
    load_checkpoint(out, schema=good)  # same schema: fine
    keys = dict(good.keys)
    keys["agent_pos"] = KeySpec("lowdim", (3,), "float32")
    bad = StoreSchema(keys=keys, fps=good.fps)
    with pytest.raises(CheckpointError, match=r"does not match this data/robot: key 'agent_pos': shape \(3,\)"):
        load_checkpoint(out, schema=bad)
    keys = {k: v for k, v in good.keys.items() if k != "image"}
    with pytest.raises(CheckpointError, match="key 'image' is missing"):
        load_checkpoint(out, schema=StoreSchema(keys=keys, fps=good.fps))
    with pytest.raises(CheckpointError, match="fps 30.0 != expected 10.0"):
        load_checkpoint(out, schema=StoreSchema(keys=dict(good.keys), fps=30.0))
    (out / "checkpoints" / "last" / "normalizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="normaliser"):
        load_checkpoint(out)


def test_channels_last_training_is_the_same_model_and_checkpoints_load_either_way(synth_store, tmp_path):
    """``train.channels_last`` changes the memory layout of the image encoders, not the function:
    the same loss and gradients on the same batch and noise; a run trained either way writes a
    checkpoint that loads into an NCHW model and resumes into NHWC."""
    import copy

    from df_policy.data.dataset import make_datasets
    from df_policy.data.device_batches import DeviceBatcher
    from df_policy.model.policy import DiffusionForcingPolicy
    from df_policy.training.trainer import policy_config_for

    run = load_run_config(None, TINY)
    train_ds, _ = make_datasets(str(synth_store), run.dataset, progress=False)
    batch = DeviceBatcher(train_ds, "cpu").sample(8, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    nchw = DiffusionForcingPolicy(policy_config_for(run, train_ds)).train()
    nhwc = copy.deepcopy(nchw)
    nhwc.obs_encoder.set_channels_last(True)
    conv = nhwc.obs_encoder.cameras["image"].backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    losses, grads = [], []
    for model in (nchw, nhwc):
        torch.manual_seed(1)  # the same levels and noise
        loss, _ = model(batch)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)

    out = tmp_path / "run"
    s1 = train(str(synth_store), out, load_run_config(None, TINY + ["train.steps=3", "train.channels_last=true"]),
               progress=False)
    s2 = train(str(synth_store), out, load_run_config(None, TINY + ["train.steps=5", "train.channels_last=false"]),
               progress=False)  # resumed across layouts
    assert (s1["steps"], s2["steps"]) == (3, 5) and np.isfinite(s2["val/action_mse"])
    loaded = load_checkpoint(out)
    assert loaded.policy.obs_encoder.cameras["image"].backbone.conv1.weight.is_contiguous()


@pytest.mark.parametrize("shard", [False, True], ids=["shared_sampler", "shard_by_rank"])
def test_ddp_two_cpu_processes_keep_replicas_identical(synth_store, tmp_path, shard):
    out = tmp_path / "ddp"
    env = dict(os.environ, DFP_DDP_BACKEND="gloo", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           "--master_port", str(29500 + os.getpid() % 1000 + int(shard)), "-m", "df_policy.training.trainer",
           "--data", str(synth_store), "--out", str(out), *TINY, "train.steps=6", "train.device=cpu",
           "train.max_minutes=5",  # the LR follows the time budget: one clock for both ranks keeps them identical
           f"dataset.shard_by_rank={str(shard).lower()}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert summary["replica_max_abs_diff"] == 0.0
    assert load_checkpoint(out).step == 6
    if shard:  # each rank trained on its own episodes, together all of them
        a, b = summary["train_episodes_per_rank"]
        assert a and b and not set(a) & set(b)
    else:
        assert "train_episodes_per_rank" not in summary
