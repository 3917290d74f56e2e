"""Planners: the streaming pyramid buffer (levels, clean head, frozen context) and chunk mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from df_policy.runtime.chunking import ChunkPlanner
from df_policy.runtime.planning import ObsWindow, PlannerConfig, make_planner
from df_policy.runtime.streamer import ActionStreamer, block_pattern, pyramid_pattern
from df_policy.runtime.testing import make_policy, tiny_policy_config

K = 100


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def policy():
    return make_policy(tiny_policy_config(), seed=0)


class CallSpy:
    """Wraps ``policy.denoise_step``: records every call and checks the bit-identity contract."""

    def __init__(self, policy, monkeypatch):
        self.calls = []
        original = policy.denoise_step

        def spy(x, from_levels, to_levels, obs, **kw):
            out = original(x, from_levels, to_levels, obs, **kw)
            self.calls.append((x.clone(), from_levels.clone(), to_levels.clone(), out.clone()))
            return out

        monkeypatch.setattr(policy, "denoise_step", spy)

    def reset(self):
        self.calls.clear()


def window(t, rng, executed=None, period=0.1):
    obs = {"obs.image": torch.from_numpy(rng.integers(0, 256, (1, 2, 3, 32, 32), dtype=np.uint8)),
           "obs.agent_pos": torch.from_numpy(rng.uniform(-1, 1, (1, 2, 2)).astype(np.float32)),
           "obs_is_pad": torch.zeros(1, 2, dtype=torch.bool)}
    return ObsWindow(obs, t, t * period, dict(executed or {}))


def test_pyramid_pattern_formula():
    np.testing.assert_array_equal(pyramid_pattern(7, 0, 6, 100), [0, 17, 33, 50, 67, 83, 100])
    np.testing.assert_array_equal(pyramid_pattern(7, 2, 4, 100), [0, 0, 0, 25, 50, 75, 100])
    np.testing.assert_array_equal(pyramid_pattern(7, 0, 1, 100), [0, 100, 100, 100, 100, 100, 100])
    assert pyramid_pattern(15, 0, 14, 1000)[7] == 500
    with pytest.raises(ValueError):
        pyramid_pattern(3, 3, 1, 100)


def test_stream_levels_follow_pyramid_every_tick(policy, monkeypatch):
    spy = CallSpy(policy, monkeypatch)
    assert ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, commit_steps=0), 0.1).ramp_tokens == 6
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, context_level=0, commit_steps=0,
                                                    ramp_tokens=4), period_s=0.1)
    g = streamer.geometry
    assert (g.N, g.C, g.F) == (8, 1, 7) and streamer.ramp_tokens == 4
    expected = pyramid_pattern(g.F, 0, 4, K)
    np.testing.assert_array_equal(streamer.level_pattern, [0, 25, 50, 75, 100, 100, 100])
    np.testing.assert_array_equal(streamer.level_pattern, expected)
    rng = np.random.default_rng(0)
    executed = {}
    for t in range(12):
        spy.reset()
        result = streamer.update(window(t, rng, executed))
        # the future tokens sit exactly on the pyramid after every tick
        np.testing.assert_array_equal(streamer.levels[g.C:], expected)
        # context: the executed action of step t-1 at level 0 (unknown before the first tick: K)
        assert streamer.levels[0] == (K if t == 0 else 0)
        # a fixed number of calls per tick (priming builds the pyramid on the first tick)
        assert result.network_calls == (4 if t == 0 else 1) == len(spy.calls)
        # exactly the head (step t) is emitted, clean, stamped at the observation time
        assert [a.step for a in result.actions] == [t]
        head = result.actions[0]
        assert head.time == pytest.approx(t * 0.1)
        assert streamer.levels[g.C] == 0
        np.testing.assert_array_equal(head.action, streamer.buffer()[0, g.C].numpy())
        for x_in, lv_from, lv_to, x_out in spy.calls:
            assert (lv_to <= lv_from).all()
            same = (lv_from == lv_to)[0]
            assert torch.equal(x_out[0, same], x_in[0, same]), "tokens that do not move must be bit-identical"
            assert not torch.equal(x_out[0, ~same], x_in[0, ~same])
        if t >= 1:
            # the executed action (here: perturbed, as if the safety layer clipped it) is the context
            np.testing.assert_array_equal(streamer.buffer()[0, 0].numpy(), executed[t - 1])
            last_in = spy.calls[-1][0]
            np.testing.assert_array_equal(last_in[0, 0].numpy(), executed[t - 1])
        executed[t] = (head.action + 0.05).astype(np.float32)


def test_stream_frozen_actions_cover_latency(policy, monkeypatch):
    spy = CallSpy(policy, monkeypatch)
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=2, context_level=0, commit_steps=0), period_s=0.1)
    np.testing.assert_array_equal(streamer.level_pattern, [0, 0, 0, 25, 50, 75, 100])
    rng = np.random.default_rng(1)
    first = streamer.update(window(0, rng))
    assert [a.step for a in first.actions] == [0, 1, 2]  # primed: steps 0..2 clean at once
    planned = {a.step: a.action for a in first.actions}
    for t in range(1, 6):
        spy.reset()
        before = streamer.buffer()
        result = streamer.update(window(t, rng))
        # the new action is D=2 steps ahead, stamped obs time + 2 periods
        assert [a.step for a in result.actions] == [t + 2]
        assert result.actions[0].time == pytest.approx((t + 2) * 0.1)
        (x_in, lv_from, lv_to, x_out), = spy.calls
        # the two actions executed while this call runs (steps t, t+1) are frozen at level 0
        assert lv_from[0, 1:3].tolist() == [0, 0] and lv_to[0, 1:3].tolist() == [0, 0]
        assert torch.equal(x_out[0, 1:3], before[0, 2:4])
        np.testing.assert_array_equal(x_out[0, 1].numpy(), planned[t])
        np.testing.assert_array_equal(x_out[0, 2].numpy(), planned[t + 1])
        planned.update({a.step: a.action for a in result.actions})


def test_whole_window_ramp(policy):
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, ramp_tokens=6, commit_steps=0), period_s=0.1)
    np.testing.assert_array_equal(streamer.level_pattern, [0, 17, 33, 50, 67, 83, 100])
    rng = np.random.default_rng(9)
    assert streamer.update(window(0, rng)).network_calls == 6  # priming: one call per ramp token
    for t in range(1, 4):
        assert streamer.update(window(t, rng)).network_calls == 1
        np.testing.assert_array_equal(streamer.levels[1:], streamer.level_pattern)


def test_stream_skipped_ticks_jump_to_the_same_pattern(policy):
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, commit_steps=0), period_s=0.1)
    rng = np.random.default_rng(2)
    for t in (0, 1, 2):
        streamer.update(window(t, rng))
    result = streamer.update(window(5, rng))  # inference fell behind: steps 3, 4 were never planned
    assert streamer.last_tick["shift"] == 3 and result.network_calls == 1
    np.testing.assert_array_equal(streamer.levels[1:], streamer.level_pattern)
    assert [a.step for a in result.actions] == [5]


@pytest.mark.parametrize("calls_per_tick", [1, 2])
def test_autoregressive_and_multi_call_ticks(policy, monkeypatch, calls_per_tick):
    spy = CallSpy(policy, monkeypatch)
    auto = make_planner(policy, PlannerConfig(mode="autoregressive", delay_steps=0), 0.1)
    assert isinstance(auto, ActionStreamer) and auto.calls_per_tick == 4
    np.testing.assert_array_equal(auto.level_pattern, [0] + [K] * 6)
    rng = np.random.default_rng(3)
    for t in range(3):
        assert auto.update(window(t, rng)).network_calls == 4
        np.testing.assert_array_equal(auto.levels[1:], auto.level_pattern)
    stream = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, calls_per_tick=calls_per_tick, commit_steps=0), 0.1)
    stream.update(window(0, rng))
    spy.reset()
    assert stream.update(window(1, rng)).network_calls == calls_per_tick
    # intermediate targets descend monotonically to the pattern
    levels = [c[1][0, 1:].numpy() for c in spy.calls] + [spy.calls[-1][2][0, 1:].numpy()]
    assert all((b <= a).all() for a, b in zip(levels, levels[1:]))
    np.testing.assert_array_equal(levels[-1], stream.level_pattern)


def test_chunk_mode_replans_every_ta_with_frozen_boundary(policy, monkeypatch):
    spy = CallSpy(policy, monkeypatch)
    planner = make_planner(policy, PlannerConfig(mode="chunk", delay_steps=2, context_level=0), 0.1)
    assert isinstance(planner, ChunkPlanner) and planner.replan_every == 4
    rng = np.random.default_rng(4)
    r0 = planner.update(window(0, rng))
    assert [a.step for a in r0.actions] == list(range(0, 6)) and r0.network_calls == 4  # full_sequence, S=4
    planned = {a.step: a.action for a in r0.actions}
    executed = {}
    for t in range(1, 4):
        assert planner.update(window(t, rng)).network_calls == 0  # nothing between plans
        executed[t - 1] = planned[t - 1]
    executed[3] = planned[3]
    spy.reset()
    r1 = planner.update(window(4, rng, executed))
    # steps 4, 5 run while this plan is computed: frozen (level 0, bit-identical) and not re-emitted
    assert [a.step for a in r1.actions] == list(range(6, 10))
    assert planner.last_plan["frozen_tokens"] == 2
    for x_in, lv_from, lv_to, x_out in spy.calls:
        assert lv_from[0, 1:3].tolist() == [0, 0] == lv_to[0, 1:3].tolist()
        np.testing.assert_array_equal(x_out[0, 1].numpy(), planned[4])
        np.testing.assert_array_equal(x_out[0, 2].numpy(), planned[5])
        np.testing.assert_array_equal(x_out[0, 0].numpy(), executed[3])  # context (level 0)
    assert len({a.plan_id for a in r1.actions}) == 1 and r1.actions[0].plan_id != r0.actions[0].plan_id


def test_chunk_mode_accepts_any_schedule(policy):
    pyr = make_planner(policy, PlannerConfig(mode="chunk", schedule="pyramid"), 0.1)
    free = pyr.schedule[:, 1:]  # column 0 is the (fixed) context token
    moves = int((np.diff(free, axis=0) != 0).any(axis=1).sum())
    assert moves < len(pyr.schedule) - 1
    assert pyr.update(window(0, np.random.default_rng(5))).network_calls == moves
    matrix = np.array([[4] * 8, [2] * 8, [0] * 8])
    custom = make_planner(policy, PlannerConfig(mode="chunk", schedule=matrix), 0.1)
    assert custom.update(window(0, np.random.default_rng(5))).network_calls == 2
    with pytest.raises(ValueError, match="columns"):
        make_planner(policy, PlannerConfig(mode="chunk", schedule=np.array([[4, 4], [0, 0]])), 0.1)
    with pytest.raises(ValueError, match="must fit"):
        make_planner(policy, PlannerConfig(mode="chunk", delay_steps=4, replan_every=4), 0.1)
    with pytest.raises(ValueError, match="mode"):
        PlannerConfig(mode="sideways")


def test_commit_steps_freeze_a_committed_plan(policy):
    """``commit_steps`` keeps that many planned actions clean and fixed ahead of the current step
    (the default for ``stream``), independent of ``delay_steps``; tokens past them ramp up."""
    from df_policy.runtime.planning import DEFAULT_COMMIT_STEPS

    default = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0), period_s=0.1)
    assert default.commit_steps == DEFAULT_COMMIT_STEPS
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, commit_steps=3, ramp_tokens=2),
                              period_s=0.1)
    assert streamer.frozen_tokens == 3 and streamer.level_pattern[:4].tolist() == [0, 0, 0, 0]
    rng = np.random.default_rng(3)
    first = streamer.update(window(0, rng))
    assert [a.step for a in first.actions] == [0, 1, 2, 3]  # primed: the committed plan and the next action
    planned = {a.step: a.action for a in first.actions}
    for t in range(1, 4):
        result = streamer.update(window(t, rng, executed={t - 1: planned[t - 1]}))
        assert [a.step for a in result.actions] == [t + 3]   # one new action per tick, 3 steps ahead of now
        x = streamer.buffer()[0]
        for u in range(t, t + 3):  # the committed actions stay exactly what was emitted for them
            np.testing.assert_array_equal(x[1 + u - t].numpy(), planned[u])
        planned.update({a.step: a.action for a in result.actions})
    assert ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=2, commit_steps=1), 0.1).commit_steps == 2
    with pytest.raises(ValueError, match="commit_steps"):
        PlannerConfig(commit_steps=-1)
    g = streamer.geometry
    with pytest.raises(ValueError, match="frozen"):
        ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, commit_steps=g.F * g.A), period_s=0.1)


def test_block_pattern_formula():
    np.testing.assert_array_equal(block_pattern(7, 0, 4, 0, 100), [0, 0, 0, 75, 75, 75, 75])
    np.testing.assert_array_equal(block_pattern(7, 0, 4, 1, 100), [0, 0, 50, 50, 50, 50, 100])
    np.testing.assert_array_equal(block_pattern(7, 0, 4, 3, 100), [0, 0, 0, 0, 100, 100, 100])
    np.testing.assert_array_equal(block_pattern(7, 1, 3, 0, 100), [0, 0, 0, 67, 67, 67, 100])
    for bad in [(7, 0, 4, 4), (7, 0, 5, 0), (7, 1, 4, 0), (7, 0, 0, 0)]:
        with pytest.raises(ValueError, match="block pattern"):
            block_pattern(*bad, 100)


@pytest.mark.parametrize("delay", [0, 1])
def test_block_stream_denoises_each_block_jointly_over_its_ticks(policy, monkeypatch, delay):
    """``block_tokens=B``: one call per tick; a block of B tokens shares one level that falls by
    K/B per tick and is emitted whole when clean, covering the steps the robot needs next;
    committed actions never change; the first tick builds a block in B calls."""
    spy = CallSpy(policy, monkeypatch)
    B = 3
    streamer = ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=delay, block_tokens=B, context_level=0),
                              period_s=0.1)
    g = streamer.geometry
    rng = np.random.default_rng(11)
    planned, executed = {}, {}
    for t in range(10):
        spy.reset()
        result = streamer.update(window(t, rng, executed))
        phase = (B - 1 + t) % B
        np.testing.assert_array_equal(streamer.levels[g.C:], block_pattern(g.F, delay, B, phase, K))
        np.testing.assert_array_equal(streamer.level_pattern, block_pattern(g.F, delay, B, phase, K))
        assert result.network_calls == (B if t == 0 else 1) == len(spy.calls)
        steps = [a.step for a in result.actions]
        if t == 0:
            assert steps == list(range(0, delay + B))        # primed: frozen steps and a whole block
        elif phase == B - 1:
            assert steps == list(range(t + delay, t + delay + B))  # a whole block, just in time
        else:
            assert steps == []
        assert set(range(t, t + delay + 1)) <= set(planned) | set(steps)  # the robot never runs dry
        for x_in, lv_from, lv_to, x_out in spy.calls:
            same = (lv_from == lv_to)[0]
            assert torch.equal(x_out[0, same], x_in[0, same])
            moving = lv_from[0, g.C:] != lv_to[0, g.C:]
            assert len(set(lv_to[0, g.C:][moving].tolist())) == 1  # the moving tokens share one level
        x = streamer.buffer()[0]
        for u in [u for u in planned if t <= u < t + g.F]:      # committed actions stay as emitted
            np.testing.assert_array_equal(x[g.C + u - t].numpy(), planned[u])
        planned.update({a.step: a.action for a in result.actions})
        executed[t] = planned[t]
    skipped = streamer.update(window(12, rng, executed))  # two ticks lost: the pattern of that tick's phase
    np.testing.assert_array_equal(streamer.levels[g.C:], block_pattern(g.F, delay, B, (B - 1 + 12) % B, K))
    assert skipped.network_calls == 1


def test_block_tokens_config_errors(policy):
    chunk = make_planner(policy, PlannerConfig(mode="chunk", block_tokens=4), 0.1)  # ignored, as ramp_tokens is
    assert isinstance(chunk, ChunkPlanner) and chunk.describe().startswith("chunk: full_sequence")
    with pytest.raises(ValueError, match="block_tokens replaces commit_steps"):
        PlannerConfig(mode="stream", block_tokens=4, commit_steps=2)
    with pytest.raises(ValueError, match="block_tokens must be >= 0"):
        PlannerConfig(mode="stream", block_tokens=-1)
    with pytest.raises(ValueError, match="use block_tokens <= 4"):
        ActionStreamer(policy, PlannerConfig(mode="stream", delay_steps=0, block_tokens=5), period_s=0.1)


def test_block_size_default_comes_from_the_policy():
    """``stream_block_tokens`` in the policy config is the ``stream`` default (capped to fit the
    window and delay); ``block_tokens=0`` or pyramid settings choose the pyramid; explicit wins."""
    policy = make_policy(tiny_policy_config(stream_block_tokens=8), seed=0)  # F = 7 future tokens
    def planner(**kw):
        return ActionStreamer(policy, PlannerConfig(mode="stream", **kw), period_s=0.1)
    assert planner(delay_steps=0).block_tokens == 4 and planner(delay_steps=1).block_tokens == 3
    assert planner(delay_steps=0, block_tokens=2).block_tokens == 2
    assert planner(delay_steps=0, block_tokens=0).block_tokens is None
    assert planner(delay_steps=0, commit_steps=2).block_tokens is None
    assert "blocks of 4" in planner(delay_steps=0).describe()
    assert "pyramid" in planner(delay_steps=0, block_tokens=0).describe()
    assert make_planner(policy, PlannerConfig(mode="autoregressive"), 0.1).block_tokens is None
    assert "chunk" in make_planner(policy, PlannerConfig(mode="chunk"), 0.1).describe()
    with pytest.raises(ValueError, match="stream_block_tokens"):
        tiny_policy_config(stream_block_tokens=0)


@pytest.mark.parametrize("mode", ["stream", "chunk"])
def test_eta_samples_fresh_noise_per_move_reproducibly(policy, mode):
    """eta > 0 (stochastic DDIM): other actions than deterministic DDIM from the same seed and
    observations, the same ones again after reset (the planner's generator); eta outside [0, 1]
    is refused."""
    from df_policy.runtime.planning import make_planner

    def run(eta):
        planner = make_planner(policy, PlannerConfig(mode=mode, delay_steps=0, eta=eta), period_s=0.1)
        planner.reset()
        rng = np.random.default_rng(4)
        return np.stack([np.asarray(a.action) for t in range(4) for a in planner.update(window(t, rng)).actions])

    deterministic, stochastic = run(0.0), run(1.0)
    assert deterministic.shape == stochastic.shape and np.isfinite(stochastic).all()
    assert not np.allclose(deterministic, stochastic, atol=1e-4)
    np.testing.assert_array_equal(stochastic, run(1.0))
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        PlannerConfig(eta=1.5)
