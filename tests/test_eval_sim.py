"""Closed-loop evaluation in the real gym-pusht simulator through the streaming runtime."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gym_pusht")

from df_policy.evaluation.sim import SimEvalConfig, evaluate_sim  # noqa: E402
from df_policy.training.config import load_run_config  # noqa: E402
from df_policy.training.trainer import train  # noqa: E402

TINY_PUSHT = [
    "dataset.image_keys=[img]", "dataset.lowdim_keys=[agent_pos]", "dataset.derived_keys={agent_pos: 'state[0:2]'}",
    "dataset.horizon=8", "dataset.crop_shape=[84, 84]", "dataset.val_ratio=0.05", "dataset.cache=stream",
    "policy.n_action_steps=4", "policy.num_sampling_steps=4", "policy.num_train_levels=100",
    "policy.stabilization_level=1", "policy.vision={out_dim: 16, num_keypoints: 4, width: 4}",
    "policy.denoiser={d_model: 32, n_layers: 1, n_heads: 2}", "train.batch_size=8", "train.steps=2",
    "train.val_every=0", "train.val_batches=1",
]


@pytest.fixture(scope="module")
def pusht_checkpoint(pusht_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht_ckpt") / "run"
    train(str(pusht_zip), out, load_run_config(None, [*TINY_PUSHT, "dataset.fps=10"]), progress=False)
    return out


@pytest.mark.parametrize("mode,workers", [("stream", 1), ("chunk", 2)])
def test_eval_sim_runs_real_pusht_episodes(pusht_checkpoint, tmp_path, mode, workers):
    cfg = SimEvalConfig(str(pusht_checkpoint), episodes=2, seed=7, mode=mode, max_steps=12, workers=workers, videos=1)
    m = evaluate_sim(cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n_episodes"] == 2 and saved["mode"] == mode
    assert saved["obs"] == "pixels" and saved["delay_steps"] == 0 and saved["seeds"] == [7, 8]  # --obs auto: an image
    assert [e["seed"] for e in saved["episodes"]] == [7, 8]
    assert all(e["steps"] == 12 for e in saved["episodes"])  # 12 control steps, none lost
    assert 0.0 <= saved["success_rate"] <= 1.0 and 0.0 <= saved["avg_max_coverage"] <= 1.0
    for e in saved["episodes"]:
        assert e["max_coverage"] >= e["final_coverage"] >= 0.0
    assert (tmp_path / "episode_000.gif").read_bytes()[:3] == b"GIF"
    assert "episode_000.gif" in (tmp_path / "report.md").read_text()
    again = evaluate_sim(cfg, tmp_path / "again", progress=False)  # seeded: the same rollouts
    assert [e["max_coverage"] for e in again["episodes"]] == [e["max_coverage"] for e in m["episodes"]]
