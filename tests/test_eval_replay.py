"""Replay evaluation: recorded episodes through the runtime, metrics, plots and report."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest

from df_policy.evaluation.replay import (EpisodeTrace, add_eval_commands, boundary_jump, run_replay,
                                         select_episodes)
from df_policy.runtime import PlannerConfig, RuntimeConfig

TINY = [
    "dataset.horizon=8", "dataset.crop_shape=[32, 32]", "dataset.val_ratio=0.2",
    "policy.n_action_steps=4", "policy.num_sampling_steps=4", "policy.num_train_levels=100",
    "policy.stabilization_level=1",
    "policy.vision={out_dim: 16, num_keypoints: 4, width: 8, stem: small}",
    "policy.denoiser={d_model: 32, n_layers: 1, n_heads: 2}",
    "train.batch_size=8", "train.warmup_steps=1", "train.log_every=1", "train.val_every=0",
    "train.val_batches=1", "train.ckpt_every=10", "train.steps=3", "train.device=cpu",
]
KEYS = ("action_mse", "action_mae", "per_episode", "per_dim", "boundary_jump", "boundary_jump_reference",
        "smoothness_ratio", "tick_latency_ms_p50", "tick_latency_ms_p99", "network_calls_per_action",
        "holds", "overruns", "violations", "dropped_late", "commands", "steps")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny checkpoint trained for 3 steps on a synthetic store (images cropped 40 -> 32)."""
    from df_policy.data.synthetic import make_synthetic_store
    from df_policy.training.config import load_run_config
    from df_policy.training.trainer import train

    root = tmp_path_factory.mktemp("replay")
    store = root / "synth.zarr"
    make_synthetic_store(store, n_episodes=5, length=20, image_size=40, seed=3)
    train(str(store), root / "run", load_run_config(None, TINY), progress=False)
    return root / "run", store


def test_replay_stream_writes_metrics_plots_and_report(trained, tmp_path):
    run, store = trained
    out = tmp_path / "stream"
    metrics = run_replay(run, store, out, episodes="0,2", config=RuntimeConfig(planner=PlannerConfig(mode="stream")))
    saved = json.loads((out / "metrics.json").read_text())
    for key in KEYS:
        assert key in saved, key
    assert saved["episodes"] == [0, 2] and sorted(saved["per_episode"]) == ["0", "2"]
    assert saved["steps"] == 40 and saved["commands"] == 40 and saved["overruns"] == 0
    assert len(saved["per_dim"]["action_mse"]) == 2 and len(saved["per_dim"]["action_mae"]) == 2
    assert np.isfinite(saved["action_mse"]) and saved["action_mse"] > 0
    per_ep = [saved["per_episode"][k]["action_mse"] for k in ("0", "2")]
    assert saved["action_mse"] == pytest.approx(np.mean(per_ep), rel=1e-5)  # equal-length episodes
    assert saved["action_mse"] == pytest.approx(np.mean(saved["per_dim"]["action_mse"]), rel=1e-5)
    # one call per tick, plus the priming calls that build the ramp: 7 future tokens, 4 committed
    # (default commit_steps), so a 2-token ramp and 1 extra call per episode
    assert saved["network_calls_per_action"] == pytest.approx((40 + 2 * 1) / 40)
    assert saved["boundary_jump_reference"] == "recorded" and saved["boundary_jump"] > 0
    assert saved["tick_latency_ms_p99"] >= saved["tick_latency_ms_p50"] > 0
    report = (out / "report.md").read_text()
    for ep in (0, 2):
        png = out / f"episode_{ep:04d}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 2000
        assert f"]({png.name})" in report
    assert metrics["action_mae"] == saved["action_mae"]


def test_replay_chunk_mode_cli_and_limits(trained, tmp_path):
    run, store = trained
    parser = argparse.ArgumentParser(prog="dfp")
    add_eval_commands(parser.add_subparsers(dest="cmd", required=True))
    out = tmp_path / "chunk"
    args = parser.parse_args(["eval", "replay", "--checkpoint", str(run), "--data", str(store), "--out", str(out),
                              "--episodes", "1", "--mode", "chunk", "--max-velocity", "0.5", "--no-plots"])
    assert args.func(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "chunk" and m["commands"] == 20
    assert m["network_calls_per_action"] == pytest.approx(1.0)  # S = 4 calls per Ta = 4 actions
    assert m["boundary_jump_reference"] == "inside_chunk" and m["boundary_jump"] is not None
    assert m["violations"]["velocity"] > 0  # 0.5 units/s is far below the synthetic motion
    assert not list(out.glob("*.png"))


def test_episode_selection():
    assert select_episodes("0,2-3", 5, {}, bad=[]) == [0, 2, 3]
    assert select_episodes("all", 5, {}, bad=[1]) == [0, 2, 3, 4]
    assert len(select_episodes("val", 5, {"val_ratio": 0.2, "split_seed": 0}, bad=[])) == 1
    with pytest.raises(IndexError, match="out of range"):
        select_episodes("7", 5, {}, bad=[])


def _trace(executed, recorded, plan_id):
    executed, recorded = np.asarray(executed, np.float32)[:, None], np.asarray(recorded, np.float32)[:, None]
    T = len(executed)
    return EpisodeTrace(0, recorded, executed, recorded, executed, np.asarray(plan_id), [""] * T,
                        np.zeros(T), np.zeros(T))


def test_boundary_jump_definition():
    # chunks of 3: steps of 0.1 inside, a jump of 0.4 at each boundary
    chunked = _trace([0, .1, .2, .6, .7, .8, 1.2], np.arange(7) * 0.1, [1, 1, 1, 2, 2, 2, 3])
    jump, ref, smooth = boundary_jump([chunked], "inside_chunk")
    assert ref == "inside_chunk" and jump == pytest.approx(4.0)
    assert smooth == pytest.approx((0.4 * 2 + 0.1 * 4) / 6 / 0.1)
    # stream: every action from its own tick; reference is the demonstration's motion
    streamed = _trace([0, .2, .4, .6], [0, .1, .2, .3], [1, 2, 3, 4])
    jump, ref, _ = boundary_jump([streamed], "recorded")
    assert ref == "recorded" and jump == pytest.approx(2.0)
    # a primed first tick (two actions from one call) does not change the stream reference
    primed = dataclasses.replace(streamed, plan_id=np.array([1, 1, 2, 3]))
    jump, ref, _ = boundary_jump([primed], "recorded")
    assert ref == "recorded" and jump == pytest.approx(2.0)
    # holds (NaN) break pairs
    held = dataclasses.replace(streamed, executed_norm=np.array([[0], [np.nan], [.4], [.6]], np.float32))
    jump, _, _ = boundary_jump([held], "recorded")
    assert jump == pytest.approx(2.0)


def _pusht_checkpoint(pusht_zip, out):
    """A random-weight checkpoint with the PushT schema: img 96x96 cropped to 84, agent_pos = state[0:2]."""
    from df_policy.data.dataset import DatasetConfig, derive_schema
    from df_policy.data.legacy import open_episodes
    from df_policy.data.normalizer import Normalizer
    from df_policy.training.checkpoint import save_checkpoint
    from df_policy.runtime.testing import make_policy, tiny_policy_config

    derived = {"agent_pos": "state[0:2]"}
    reader = open_episodes(pusht_zip, fps=10)
    schema = derive_schema(reader.schema, derived)
    ep = reader.episode(0, keys=["state", "action"])
    normalizer = Normalizer.fit({"agent_pos": ep["state"][:, :2], "action": ep["action"]})
    cfg = tiny_policy_config(image_shapes={"img": (3, 84, 84)})
    ds = DatasetConfig(image_keys=["img"], lowdim_keys=["agent_pos"], derived_keys=derived, n_obs_steps=2,
                       horizon=8, crop_shape=(84, 84), fps=10)
    run_config = {"dataset": dataclasses.asdict(ds), "policy": {}, "train": {}}
    return save_checkpoint(out, make_policy(cfg, seed=0), ema=None, normalizer=normalizer, schema=schema,
                           run_config=run_config, step=0)


def test_replay_on_pusht_diffusion_policy_zarr(pusht_zip, tmp_path):
    ckpt = _pusht_checkpoint(pusht_zip, tmp_path / "ckpt")
    out = tmp_path / "pusht"
    m = run_replay(ckpt, pusht_zip, out, episodes="0", max_steps=60,
                   config=RuntimeConfig(planner=PlannerConfig(mode="stream", delay_steps=1)))
    assert m["period_s"] == pytest.approx(0.1) and m["steps"] == 60
    # priming makes steps 0 and 1 clean on the first tick; every later tick plans step t + 1
    assert m["commands"] == 60 and sum(m["holds"].values()) == 0 and m["dropped_late"] == 0
    assert np.isfinite(m["action_mse"]) and len(m["per_dim"]["action_mae"]) == 2
    assert (out / "episode_0000.png").is_file() and "episode_0000.png" in (out / "report.md").read_text()
