"""Replay evaluation: error per lookahead, the repeat-last / constant-velocity baselines, --fps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from df_policy.cli import main as dfp
from df_policy.evaluation.common import parse_planner_overrides, resolve_fps
from df_policy.evaluation.lookahead import baseline_prediction, lookahead_metrics, main_lookahead, verdict
from df_policy.evaluation.replay import run_replay
from df_policy.runtime import PlannerConfig, RuntimeConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

T, VELOCITY = 24, np.array([0.01, -0.02])


# ----------------------------------------------------------------------------- pure functions
def test_baselines_on_a_linear_ramp():
    v = np.array([0.1, -0.3])
    rec = np.arange(20)[:, None] * v
    for L in (0, 1, 3):
        targets = np.arange(L + 2, 20)
        t = targets - L
        cv = baseline_prediction(rec, targets, t, "constant_velocity")
        rl = baseline_prediction(rec, targets, t, "repeat_last")
        np.testing.assert_allclose(cv, rec[targets], atol=1e-12)  # a ramp is extrapolated exactly
        np.testing.assert_allclose(rec[targets] - rl, np.broadcast_to((L + 1) * v, rl.shape))  # a[t-1] is L+1 behind
    with pytest.raises(ValueError, match="obs step >= 2"):
        baseline_prediction(rec, np.array([2]), np.array([1]), "repeat_last")


def test_lookahead_metrics_scores_policy_and_baselines_on_the_same_actions():
    v = np.array([0.1, 0.2])
    rec = np.arange(12)[:, None] * v
    exe = rec + 0.05  # policy off by 0.05 everywhere
    exe[5] = np.nan  # a hold: not scored
    # chunks of 3 planned at steps 0, 3, 6, 9 with delay 1: lookaheads 1, 2, 3
    obs = np.array([-1, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9])
    la = lookahead_metrics([rec], [exe], [obs], curve_max=4)
    # obs steps 0 are not scored (t < 2); step 5 held -> scored: 4 (L1), 6 (L3), 7, 8, 9 (L1..3), 10, 11 (L1, 2)
    assert la["lookaheads"] == [1, 2, 3]
    rows = la["by_lookahead"]
    assert [rows[k]["count"] for k in ("1", "2", "3")] == [3, 2, 2]
    for L in (1, 2, 3):
        r = rows[str(L)]
        assert r["policy_mse"] == pytest.approx(0.05 ** 2)
        assert r["constant_velocity_mse"] == pytest.approx(0.0, abs=1e-20)
        assert r["repeat_last_mse"] == pytest.approx((((L + 1) * v) ** 2).mean())
    m = la["matched"]
    assert m["count"] == 7 and m["mean_lookahead"] == pytest.approx((3 * 1 + 2 * 2 + 2 * 3) / 7)
    assert m["repeat_last_mse"] == pytest.approx(sum(rows[str(L)]["count"] * rows[str(L)]["repeat_last_mse"]
                                                     for L in (1, 2, 3)) / 7)
    assert la["main_lookahead"] == 1
    assert la["verdict"].startswith("does not beat the baselines (repeat-last, constant-velocity) at lookahead 1")
    assert "(beats repeat-last only)" in la["verdict"] and "verdict_matched" in la
    curve = la["baseline_curve"]
    assert curve["lookahead"] == [0, 1, 2, 3, 4]
    assert curve["repeat_last_mse"][2] == pytest.approx(((3 * v) ** 2).mean())


def test_verdict_lines_and_main_lookahead():
    row = {"count": 10, "policy_mse": 0.001, "repeat_last_mse": 0.004, "constant_velocity_mse": 0.002}
    line = verdict(row, "at lookahead 1")
    assert line.startswith("beats the baselines (repeat-last, constant-velocity) at lookahead 1")
    row["policy_mse"] = 0.01
    line = verdict(row, "at lookahead 1")
    assert line.startswith("does not beat the baselines") and "only" not in line
    assert verdict({"count": 0, "policy_mse": None}, "at lookahead 1").startswith("n/a")
    assert main_lookahead({0: 2, 1: 100}) == 1 and main_lookahead({1: 25, 2: 25, 3: 24}) == 1
    assert main_lookahead({}) is None


def test_fps_resolution_and_planner_overrides():
    assert resolve_fps(None, 10.0, None) == 10.0 and resolve_fps(None, None, 5.0) == 5.0
    assert resolve_fps(10, None, None) == 10.0
    with pytest.raises(ValueError, match="--fps 10"):
        resolve_fps(None, None, None)
    with pytest.raises(ValueError, match="contradicts"):
        resolve_fps(5, 10.0, None)
    assert parse_planner_overrides(["ramp_tokens=8", "calls_per_tick=2", "prime=false", "schedule=pyramid"]) == {
        "ramp_tokens": 8, "calls_per_tick": 2, "prime": False, "schedule": "pyramid"}
    with pytest.raises(ValueError, match="not a planner setting"):
        parse_planner_overrides(["ramp=8"])
    with pytest.raises(ValueError, match="--mode"):
        parse_planner_overrides(["mode=chunk"], reserved=("mode",))
    with pytest.raises(ValueError, match="key=value"):
        parse_planner_overrides(["ramp_tokens"])


# ----------------------------------------------------------------------------- through the runtime
def _ramp_store(path, fps):
    """Two 24-step episodes whose actions are linear ramps (velocity ``VELOCITY`` per step)."""
    from df_policy.data.schema import EpisodeMeta
    from df_policy.data.store import EpisodeStore
    from df_policy.data.synthetic import render, synthetic_schema

    schema = dataclasses.replace(synthetic_schema(32), fps=fps)
    store = EpisodeStore.create(path, schema)
    for start in ([0.2, 0.8], [0.3, 0.7]):
        action = (np.asarray(start) + np.arange(T)[:, None] * VELOCITY).astype(np.float32)
        agent = np.vstack([action[:1], action[:-1]]).astype(np.float32)
        goal = np.array([0.5, 0.5])
        store.append_episode({"image": np.stack([render(a, goal, 32) for a in agent]), "agent_pos": agent,
                              "action": action}, EpisodeMeta(task="ramp"))
    return store, schema


def _checkpoint(store, schema, out, fps):
    """A random-weight checkpoint for the store's keys (``fps=None``: a checkpoint without a rate)."""
    from df_policy.data.dataset import DatasetConfig
    from df_policy.data.normalizer import Normalizer
    from df_policy.runtime.testing import make_policy, tiny_policy_config
    from df_policy.training.checkpoint import save_checkpoint

    eps = [store.episode(i, keys=["agent_pos", "action"]) for i in range(store.n_episodes)]
    normalizer = Normalizer.fit({k: np.concatenate([e[k] for e in eps]) for k in ("agent_pos", "action")})
    ds = DatasetConfig(image_keys=["image"], lowdim_keys=["agent_pos"], n_obs_steps=2, horizon=8, fps=fps)
    run_config = {"dataset": dataclasses.asdict(ds), "policy": {}, "train": {}}
    return save_checkpoint(out, make_policy(tiny_policy_config(), seed=0), ema=None, normalizer=normalizer,
                           schema=schema, run_config=run_config, step=0), normalizer


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ramp")
    store, schema = _ramp_store(root / "ramp.zarr", fps=10.0)
    ckpt, normalizer = _checkpoint(store, schema, root / "ckpt", fps=10.0)
    v_norm = np.diff(normalizer.normalize("action", np.stack([np.zeros(2), VELOCITY])), axis=0)[0]
    return ckpt, root / "ramp.zarr", v_norm


def _check_ramp_baselines(la, v_norm):
    for L, row in la["by_lookahead"].items():
        assert row["constant_velocity_mse"] == pytest.approx(0.0, abs=1e-9)
        assert row["repeat_last_mse"] == pytest.approx((((int(L) + 1) * v_norm) ** 2).mean(), rel=1e-4)
        assert row["count"] > 0 and row["policy_mse"] > 0


def test_replay_stream_reports_lookahead_and_baselines(ramp, tmp_path):
    ckpt, store, v_norm = ramp
    m = run_replay(ckpt, store, tmp_path, episodes="all",
                   config=RuntimeConfig(planner=PlannerConfig(mode="stream", commit_steps=0)))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    la = saved["lookahead"]
    # stream with nothing committed executes every action at lookahead delay_steps = 1 (the
    # priming tick's step 0 is not scored); with the default commit_steps=4 at lookahead 4
    committed = run_replay(ckpt, store, tmp_path / "committed", episodes="0", plots=False,
                           config=RuntimeConfig(planner=PlannerConfig(mode="stream")))
    assert committed["lookahead"]["lookaheads"] == [4]
    assert la["lookaheads"] == [1] and la["main_lookahead"] == 1
    assert la["by_lookahead"]["1"]["count"] == 2 * (T - 3)  # targets 3..T-1 (planned from t >= 2)
    _check_ramp_baselines(la, v_norm)
    assert saved["verdict"] == la["verdict"] and "at lookahead 1" in saved["verdict"]
    assert saved["fps"] == 10.0 and saved["planner"]["mode"] == "stream" and saved["planner"]["delay_steps"] == 1
    assert len(la["baseline_curve"]["lookahead"]) == 9  # 0 .. horizon
    report = (tmp_path / "report.md").read_text()
    assert "**Verdict:** stream mode " in report and "| lookahead |" in report and "](lookahead.png)" in report
    assert (tmp_path / "lookahead.png").read_bytes()[:4] == b"\x89PNG"
    assert m["action_mse"] == saved["action_mse"]  # the old metrics are still there


def test_replay_chunk_scores_every_lookahead(ramp, tmp_path):
    ckpt, store, v_norm = ramp
    m = run_replay(ckpt, store, tmp_path, episodes="0", plots=False,
                   config=RuntimeConfig(planner=PlannerConfig(mode="chunk", delay_steps=1)))
    la = m["lookahead"]
    assert la["lookaheads"] == [1, 2, 3, 4]  # Ta = 4 actions after each plan, starting one step ahead
    _check_ramp_baselines(la, v_norm)
    assert la["main_lookahead"] == 1 and "verdict_matched" in la
    assert not (tmp_path / "lookahead.png").exists()


def test_cli_compares_modes_at_equal_lookahead(ramp, tmp_path):
    ckpt, store, _ = ramp
    out = tmp_path / "modes"
    assert dfp(["eval", "replay", "--checkpoint", str(ckpt), "--data", str(store), "--out", str(out),
                "--episodes", "0", "--mode", "stream,chunk", "--no-plots", "--planner", "prime=false",
                "--planner", "commit_steps=0"]) == 0
    combined = json.loads((out / "metrics.json").read_text())
    assert combined["modes"] == ["stream", "chunk"] and combined["common_lookaheads"] == [1]
    assert set(combined["by_lookahead"]) == {"1", "2", "3", "4"}
    assert combined["by_lookahead"]["2"]["stream"] is None and combined["by_lookahead"]["2"]["chunk"] is not None
    for mode in ("stream", "chunk"):
        per = json.loads((out / mode / "metrics.json").read_text())
        assert per["mode"] == mode and per["planner"]["prime"] is False
        assert combined["matched_lookahead"][mode]["policy_mse"] == pytest.approx(
            per["lookahead"]["by_lookahead"]["1"]["policy_mse"])
    report = (out / "report.md").read_text()
    assert "stream/report.md" in report and "chunk/report.md" in report
    assert dfp(["eval", "replay", "--checkpoint", str(ckpt), "--data", str(store), "--out", str(out),
                "--mode", "stream", "--planner", "ramp_tokens=2", "--ramp-tokens", "3"]) == 2  # one or the other
    # a stream-only setting serves a comparison of modes: blocks for stream, ignored by chunk
    blocks = tmp_path / "blocks"
    assert dfp(["eval", "replay", "--checkpoint", str(ckpt), "--data", str(store), "--out", str(blocks),
                "--episodes", "0", "--mode", "stream,chunk", "--no-plots", "--planner", "block_tokens=2"]) == 0
    per = json.loads((blocks / "stream" / "metrics.json").read_text())
    assert per["planner"]["block_tokens"] == 2 and set(per["lookahead"]["by_lookahead"]) == {"1", "2"}


def test_checkpoint_and_store_without_fps_replay_with_fps_flag(tmp_path, capsys):
    store, schema = _ramp_store(tmp_path / "nofps.zarr", fps=None)
    ckpt, _ = _checkpoint(store, schema, tmp_path / "ckpt", fps=None)
    with pytest.raises(ValueError, match=r"`--fps 10`"):
        run_replay(ckpt, tmp_path / "nofps.zarr", tmp_path / "fail", episodes="0")
    out = tmp_path / "ok"
    args = ["eval", "replay", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nofps.zarr"), "--out", str(out),
            "--episodes", "0", "--max-steps", "10", "--no-plots"]
    assert dfp(args) == 2 and "--fps 10" in capsys.readouterr().err  # the error names the remedy
    assert dfp([*args, "--fps", "10"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["fps"] == 10.0 and m["period_s"] == pytest.approx(0.1) and m["commands"] == 10


def test_runtime_error_for_missing_rate_names_the_flag(tmp_path):
    from df_policy.runtime.runner import PolicyRuntime
    from df_policy.training.checkpoint import load_checkpoint

    store, schema = _ramp_store(tmp_path / "nofps.zarr", fps=None)
    ckpt, _ = _checkpoint(store, schema, tmp_path / "ckpt", fps=None)
    with pytest.raises(ValueError, match=r"--fps 10") as err:
        PolicyRuntime.from_loaded(load_checkpoint(ckpt))
    assert "set RuntimeConfig.period_s" not in str(err.value)


def test_state_checkpoint_from_a_diffusion_policy_zip_without_fps(pusht_zip, tmp_path, capsys):
    """The issue's case: trained on the PushT zip (no rate recorded) -> replayable with --fps 10."""
    from df_policy.data.dataset import DatasetConfig
    from df_policy.data.legacy import open_episodes
    from df_policy.data.normalizer import Normalizer
    from df_policy.runtime.testing import make_policy, tiny_policy_config
    from df_policy.training.checkpoint import save_checkpoint

    reader = open_episodes(pusht_zip)
    assert reader.schema.fps is None
    ep = reader.episode(0, keys=["state", "action"])
    cfg = tiny_policy_config(image_shapes={}, lowdim_shapes={"state": 5})
    ds = DatasetConfig(image_keys=[], lowdim_keys=["state"], n_obs_steps=2, horizon=8, fps=None)
    run_config = {"dataset": dataclasses.asdict(ds), "policy": {}, "train": {}}
    ckpt = save_checkpoint(tmp_path / "ckpt", make_policy(cfg), ema=None, normalizer=Normalizer.fit(ep),
                           schema=reader.schema, run_config=run_config, step=0)
    args = ["eval", "replay", "--checkpoint", str(ckpt), "--data", str(pusht_zip), "--out", str(tmp_path / "out"),
            "--episodes", "0", "--max-steps", "30", "--mode", "chunk", "--no-plots"]
    assert dfp(args) == 2 and "`--fps 10`" in capsys.readouterr().err
    assert dfp([*args, "--fps", "10"]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["fps"] == 10.0 and m["commands"] == 30 and m["lookahead"]["lookaheads"] == [1, 2, 3, 4]
