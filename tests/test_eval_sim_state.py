"""Closed-loop gym-pusht evaluation: --obs state|pixels|auto, --delay-steps, --planner, --fps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from df_policy.evaluation.sim import SimEvalConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY_STATE = [
    "dataset.image_keys=[]", "dataset.lowdim_keys=[state]", "dataset.horizon=8", "dataset.crop_shape=null",
    "dataset.val_ratio=0.05", "dataset.cache=stream",
    "policy.n_action_steps=4", "policy.num_sampling_steps=4", "policy.num_train_levels=100",
    "policy.stabilization_level=1", "policy.denoiser={d_model: 32, n_layers: 1, n_heads: 2}",
    "policy.stream_block_tokens=2",
    "train.batch_size=8", "train.steps=2", "train.val_every=0", "train.val_batches=1", "train.device=cpu",
]


def test_sim_config_validation():
    cfg = SimEvalConfig("ckpt", planner={"ramp_tokens": 8})
    assert cfg.obs == "auto" and cfg.delay_steps == 0 and cfg.fps is None  # 0: the simulator waits for inference
    with pytest.raises(ValueError, match="obs must be one of"):
        SimEvalConfig("ckpt", obs="rgb")
    with pytest.raises(ValueError, match="delay_steps"):
        SimEvalConfig("ckpt", delay_steps=-1)
    with pytest.raises(ValueError, match="delay_steps"):
        SimEvalConfig("ckpt", delay_steps=1.5)
    with pytest.raises(ValueError, match="fps"):
        SimEvalConfig("ckpt", fps=0)
    with pytest.raises(ValueError, match="mode must be"):
        SimEvalConfig("ckpt", mode="fast")
    with pytest.raises(ValueError, match="not a planner setting"):
        SimEvalConfig("ckpt", planner={"ramps": 8})
    with pytest.raises(ValueError, match="--delay-steps"):
        SimEvalConfig("ckpt", planner={"delay_steps": 1})
    with pytest.raises(ValueError, match="accelerate must be one of"):
        SimEvalConfig("ckpt", accelerate="tensorrt")


@pytest.fixture(scope="module")
def state_checkpoint(pusht_zip, tmp_path_factory):
    """Trained 2 steps on the PushT ``state`` key, without dataset.fps (the zip records no rate)."""
    from df_policy.training.config import load_run_config
    from df_policy.training.trainer import train

    out = tmp_path_factory.mktemp("pusht_state") / "run"
    train(str(pusht_zip), out, load_run_config(None, TINY_STATE), progress=False)
    return out


def test_obs_resolution_from_checkpoint_keys(state_checkpoint):
    from df_policy.evaluation.sim import resolve_obs
    from df_policy.training.checkpoint import load_checkpoint

    loaded = load_checkpoint(state_checkpoint)
    assert resolve_obs("auto", loaded) == "state" and resolve_obs("state", loaded) == "state"
    with pytest.raises(ValueError, match="try --obs state"):
        resolve_obs("pixels", loaded)  # pixels_agent_pos has no block pose


def test_eval_sim_state_runs_real_pusht(state_checkpoint, tmp_path):
    pytest.importorskip("gym_pusht")
    from df_policy.evaluation.sim import evaluate_sim

    cfg = SimEvalConfig(str(state_checkpoint), episodes=2, seed=3, max_steps=10, workers=1, videos=1)
    m = evaluate_sim(cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["obs"] == "state" and saved["delay_steps"] == 0 and saved["seeds"] == [3, 4]
    assert saved["fps"] == 10.0  # no rate in the checkpoint: the simulator's
    assert [e["seed"] for e in saved["episodes"]] == [3, 4] and all(e["steps"] == 10 for e in saved["episodes"])
    assert all(e["holds"] == 0 for e in saved["episodes"])  # delay 0 executes the step's own action
    assert 0.0 <= saved["avg_max_coverage"] <= 1.0
    for e in saved["episodes"]:  # 10 steps: too short to count as a freeze, whatever the agent did
        assert 0 <= e["still_steps_at_end"] <= 10 and e["frozen"] is False
        end = np.asarray(e["end_state"])  # agent x, y, block x, y, angle: inside the 512-unit workspace
        assert end.shape == (5,) and np.isfinite(end).all() and (0 <= end[:4]).all() and (end[:4] <= 512).all()
    assert saved["frozen_episodes"] == 0
    # the checkpoint's stream default (policy.stream_block_tokens, saved by training) is what ran
    assert saved["schedule"] == "stream: blocks of 2 token(s), 1 call(s) per tick"
    report = (tmp_path / "report.md").read_text()
    assert "seeds 3..4" in report and "frozen (failed" in report and "delay_steps = 0" in report and "observation `state`" in report
    assert (tmp_path / "episode_000.gif").read_bytes()[:3] == b"GIF"
    again = evaluate_sim(cfg, tmp_path / "again", progress=False)  # seeded: the same rollouts
    assert [e["max_coverage"] for e in again["episodes"]] == [e["max_coverage"] for e in m["episodes"]]


def test_eval_sim_cli_delay_and_planner_overrides(state_checkpoint, tmp_path):
    pytest.importorskip("gym_pusht")
    from df_policy.cli import main as dfp

    out = tmp_path / "cli"
    assert dfp(["eval", "sim", "--checkpoint", str(state_checkpoint), "--env", "pusht", "--obs", "state",
                "--episodes", "1", "--seed", "5", "--max-steps", "6", "--workers", "1", "--videos", "0",
                "--delay-steps", "1", "--fps", "10", "--planner", "ramp_tokens=2", "--planner", "calls_per_tick=2",
                "--accelerate", "onnx", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["delay_steps"] == 1 and m["planner"] == {"ramp_tokens": 2, "calls_per_tick": 2}
    # pyramid settings choose the pyramid over the checkpoint's block default
    assert m["schedule"] == "stream: pyramid, 4 committed step(s), 2-token ramp, 2 call(s) per tick"
    assert m["config"]["accelerate"] == "onnx" and m["episodes"][0]["accelerate"] == "onnx"  # no silent fallback
    assert m["config"]["planner"] == m["planner"] and m["seeds"] == [5, 5] and m["episodes"][0]["steps"] == 6
    assert "adding latency the simulator does not have" in (out / "report.md").read_text()
    assert dfp(["eval", "sim", "--checkpoint", str(state_checkpoint), "--obs", "pixels", "--episodes", "1",
                "--out", str(tmp_path / "bad")]) == 2  # the checkpoint needs the state key


def test_trailing_still_steps_counts_the_steps_the_agent_stood_still_at_the_end():
    from df_policy.evaluation.sim import trailing_still_steps

    moving = np.cumsum(np.full((20, 2), 10.0), axis=0)  # 14 units per step
    assert trailing_still_steps(moving) == 0  # moved on the last step
    parked = np.concatenate([moving, np.repeat(moving[-1:], 60, axis=0) + np.random.default_rng(0).normal(0, 1.5, (60, 2))])
    assert trailing_still_steps(parked) in (59, 60)  # dithering within 10 units of where it ends, 60 steps
    assert trailing_still_steps(np.zeros((30, 2))) == 29 and trailing_still_steps(np.zeros((1, 2))) == 0
    assert trailing_still_steps(parked, tolerance=0.5) < 5  # the dither counts as motion at a tiny tolerance
