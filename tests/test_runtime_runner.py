"""PolicyRuntime: masking, watchdogs, adversarial outputs, non-blocking control, overruns."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from df_policy.runtime import (Command, ControlLoop, FakeClock, Hold, MonotonicClock, ObservationError,
                               PlannerConfig, RuntimeConfig, SafetyConfig)
from df_policy.runtime.testing import make_policy, make_runtime, random_observation, tiny_policy_config

PERIOD = 0.1


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture
def policy():
    return make_policy(tiny_policy_config(), seed=0)


def config(mode="stream", delay=0, **safety):
    return RuntimeConfig(planner=PlannerConfig(mode=mode, delay_steps=delay, commit_steps=0), safety=SafetyConfig(**safety),
                         period_s=PERIOD)


def spy_windows(runtime, monkeypatch):
    windows = []
    original = runtime.planner.update

    def update(window):
        windows.append(window)
        return original(window)

    monkeypatch.setattr(runtime.planner, "update", update)
    return windows


def test_preprocessing_crops_derives_and_normalises(policy):
    rt = make_runtime(policy, config(), FakeClock(), crop_shape=(32, 32), derived_keys={"agent_pos": "state[0:2]"})
    img = np.arange(40 * 40 * 3, dtype=np.uint32).reshape(40, 40, 3).astype(np.uint8)
    out = rt.preprocessor.observation({"image": img, "state": np.array([25.0, 100.0, 7.0])})
    np.testing.assert_array_equal(out["obs.image"], img[4:36, 4:36].transpose(2, 0, 1))
    np.testing.assert_allclose(out["obs.agent_pos"], [-0.5, 1.0])  # range 0..100 -> [-1, 1]
    with pytest.raises(ObservationError, match=r"lacks low-dim key 'agent_pos' \(or its source 'state'\)"):
        rt.preprocessor.observation({"image": img})
    with pytest.raises(ObservationError, match="must be"):
        rt.preprocessor.observation({"image": img[..., :1], "state": np.zeros(3)})
    np.testing.assert_allclose(rt.preprocessor.unnormalize_action(rt.preprocessor.normalize_action([10.0, 90.0])),
                               [10.0, 90.0], rtol=1e-5)


def test_missing_frame_is_masked_and_stale_observation_holds(policy, monkeypatch):
    clock = FakeClock()
    rt = make_runtime(policy, config(max_obs_age_s=0.35), clock)
    windows = spy_windows(rt, monkeypatch)
    rng = np.random.default_rng(0)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)
    rt.run_inference_once()
    assert windows[-1].obs["obs_is_pad"].tolist() == [[True, False]]  # before the first frame
    assert isinstance(rt.control_tick(0.0), Command)
    clock.set(0.2)  # the frame of step 1 never arrived
    rt.push_observation(random_observation(policy.config, rng), stamp=0.2)
    rt.run_inference_once()
    w = windows[-1]
    assert w.step == 2 and w.obs["obs_is_pad"].tolist() == [[True, False]]
    assert int(w.obs["obs.image"][0, 0].abs().sum()) == 0  # zero-filled and masked, not a repeated frame
    assert isinstance(rt.control_tick(0.2), Command)
    # no new frame: once the newest is older than max_obs_age_s the runtime holds
    clock.set(0.5)
    assert rt.run_inference_once() is None
    held = rt.control_tick(0.6)
    assert isinstance(held, Hold) and held.kind == "stale_observation" and held.action is not None
    assert rt.stats()["holds"]["stale_observation"] == 1


def test_nan_observation_holds_and_never_reaches_the_model(policy, monkeypatch):
    clock = FakeClock()
    rt = make_runtime(policy, config(delay=3), clock)
    windows = spy_windows(rt, monkeypatch)
    rng = np.random.default_rng(1)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)
    rt.run_inference_once()
    assert isinstance(rt.control_tick(0.0), Command)
    clock.set(0.1)
    bad = random_observation(policy.config, rng)
    bad["agent_pos"][1] = np.nan
    rt.push_observation(bad, stamp=0.1)
    assert rt.run_inference_once() is None
    for now in (0.1, 0.2):  # clean actions are queued for steps 1..3, yet nothing is sent
        clock.set(now)
        out = rt.control_tick(now)
        assert isinstance(out, Hold) and out.kind == "invalid_observation"
    clock.set(0.3)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.3)
    rt.run_inference_once()
    assert isinstance(rt.control_tick(0.3), Command)
    assert rt.stats()["invalid_observations"] == 1 and rt.stats()["holds"]["invalid_observation"] == 2
    for w in windows:
        assert all(torch.isfinite(v.float()).all() for k, v in w.obs.items())


@pytest.mark.parametrize("mode", ["stream", "chunk"])
def test_limits_hold_for_adversarial_model_outputs(policy, monkeypatch, mode):
    def explode(x, from_levels, to_levels, obs, **kw):  # moving tokens jump to +-1e9 (normalised)
        moved = (from_levels != to_levels).repeat_interleave(policy.config.actions_per_token, 1)[..., None]
        signs = torch.where(torch.rand_like(x) > 0.5, 1.0, -1.0)
        return torch.where(moved, signs * 1e9, x)

    monkeypatch.setattr(policy, "denoise_step", explode)
    clock = FakeClock()
    limits = dict(low=[10.0, 20.0], high=[90.0, 80.0], max_velocity=50.0, max_acceleration=400.0)
    rt = make_runtime(policy, config(mode, **limits), clock)
    rng = np.random.default_rng(2)
    sent = []
    for k in range(12):
        clock.set(k * PERIOD)
        rt.push_observation(random_observation(policy.config, rng), stamp=k * PERIOD)
        rt.run_inference_once()
        out = rt.control_tick(k * PERIOD)
        assert isinstance(out, Command)
        sent.append(out.action)
    sent = np.array(sent)
    assert (sent >= [10.0, 20.0]).all() and (sent <= [90.0, 80.0]).all()
    v = np.diff(sent, axis=0) / PERIOD
    assert np.abs(v).max() <= 50.0 + 1e-6
    assert np.abs(np.diff(v, axis=0) / PERIOD).max() <= 400.0 + 1e-6
    stats = rt.stats()
    assert stats["violations"]["position"] >= 1 and stats["violations"]["velocity"] >= 1
    assert stats["violations"]["acceleration"] >= 1


def test_nan_model_outputs_are_never_sent(policy, monkeypatch):
    monkeypatch.setattr(policy, "denoise_step", lambda x, f, t, obs, **kw: torch.full_like(x, float("nan")))
    clock = FakeClock()
    rt = make_runtime(policy, config(), clock)
    rng = np.random.default_rng(3)
    for k in range(5):
        clock.set(k * PERIOD)
        rt.push_observation(random_observation(policy.config, rng), stamp=k * PERIOD)
        rt.run_inference_once()
        out = rt.control_tick(k * PERIOD)
        assert isinstance(out, Hold) and out.kind == "non_finite_action" and out.action is None
    assert rt.stats()["holds"]["non_finite_action"] == 5 and rt.stats()["commands"] == 0


def test_control_tick_never_waits_for_a_stuck_model_and_reports_overrun(policy, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    release.set()
    original = policy.denoise_step

    def gated(*args, **kwargs):
        entered.set()
        assert release.wait(10.0), "test never released the model"
        return original(*args, **kwargs)

    monkeypatch.setattr(policy, "denoise_step", gated)
    clock = FakeClock()
    rt = make_runtime(policy, config(delay=3), clock)
    rng = np.random.default_rng(4)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)
    report = rt.run_inference_once()  # primed: clean actions for steps 0..3 queued
    assert report.queued == 4
    results = [rt.control_tick(0.0)]
    release.clear()
    entered.clear()
    rt.start()
    try:
        clock.set(PERIOD)
        rt.push_observation(random_observation(policy.config, rng), stamp=PERIOD)
        assert entered.wait(5.0), "inference thread did not start"
        durations = []
        for k in range(1, 7):
            clock.set(k * PERIOD)
            rt.push_observation(random_observation(policy.config, rng), stamp=k * PERIOD)
            t0 = time.perf_counter()
            results.append(rt.control_tick(k * PERIOD))
            durations.append(time.perf_counter() - t0)
        assert max(durations) < 0.5  # the model is stuck; a blocking tick would wait forever
        kinds = ["cmd" if isinstance(r, Command) else r.kind for r in results]
        assert kinds == ["cmd"] * 4 + ["overrun"] * 3  # buffered actions keep playing, then overrun
        assert all(isinstance(r, Hold) and r.action is not None for r in results[4:])
        np.testing.assert_array_equal(results[-1].action, results[3].action)  # holds the last safe command
        release.set()
        deadline = time.time() + 10
        while rt.stats()["inferences"] < 2 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        rt.stop()
    stats = rt.stats()
    assert stats["overruns"] == 3
    assert stats["dropped_late"] >= 1  # the late plan (for step 4, due at 0.4 s) was never executed


def test_control_loop_keeps_its_period_while_the_model_is_slow(policy, monkeypatch):
    original = policy.denoise_step

    def slow(*args, **kwargs):
        time.sleep(0.06)
        return original(*args, **kwargs)

    monkeypatch.setattr(policy, "denoise_step", slow)
    period = 0.02
    cfg = RuntimeConfig(planner=PlannerConfig(mode="stream", delay_steps=5, commit_steps=0),
                        safety=SafetyConfig(max_obs_age_s=0.2), period_s=period)
    rt = make_runtime(policy, cfg, MonotonicClock())
    obs = random_observation(policy.config, np.random.default_rng(5))
    loop = ControlLoop(rt, sink=lambda result: rt.push_observation(obs))  # a camera frame per tick
    rt.push_observation(obs)
    rt.start()
    loop.start()
    time.sleep(0.8)
    loop.stop()
    rt.stop()
    rep, stats = loop.report(), rt.stats()
    assert rep["ticks"] + rep["missed_ticks"] >= 20
    assert rep["tick_ms_p50"] < 5.0  # a tick never includes a network call (each takes >= 60 ms)
    assert rep["jitter_ms_p50"] < period * 1000
    assert stats["inferences"] >= 2 and stats["inference_ms_p50"] >= 60.0
    assert stats["commands"] > 0 and stats["ticks"] == rep["ticks"]


def test_control_loop_with_fake_clock_is_exact(policy):
    clock = FakeClock()
    rt = make_runtime(policy, config("chunk"), clock)
    rng = np.random.default_rng(6)
    sent = []

    def sink(result):
        sent.append(result)
        # the frame of the next tick arrives (and is planned from) before that tick
        rt.push_observation(random_observation(policy.config, rng), stamp=clock.now() + PERIOD)
        rt.run_inference_once()

    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)
    rt.run_inference_once()
    loop = ControlLoop(rt, sink)
    loop.run_ticks(12)
    assert loop.report()["jitter_ms_max"] == 0.0 and loop.missed_ticks == 0
    assert all(isinstance(r, Command) for r in sent)
    assert [r.step for r in sent] == list(range(12))
    stats = rt.stats()
    # plans at steps 0, 4, 8 and 12 (the frame for tick 12 arrived), S = 4 calls each
    assert stats["overruns"] == 0 and stats["network_calls"] == 16 and stats["commands"] == 12


def test_each_observation_is_encoded_once(policy, monkeypatch):
    clock = FakeClock()
    rt = make_runtime(policy, config(), clock)
    encoded_frames = []
    original = policy.obs_encoder.forward

    def counting(obs):
        encoded_frames.append(obs["obs.image"].shape[1])
        return original(obs)

    monkeypatch.setattr(policy.obs_encoder, "forward", counting)
    windows = spy_windows(rt, monkeypatch)
    rng = np.random.default_rng(7)
    for k in range(4):
        clock.set(k * PERIOD)
        rt.push_observation(random_observation(policy.config, rng), stamp=k * PERIOD)
        rt.run_inference_once()
    assert encoded_frames == [1, 1, 1, 1]  # the older frame's features are reused
    # the cached features equal a fresh encoding of the whole window
    w = windows[-1]
    cached = rt.planner._encode(w)
    full = policy.encode_observations(w.obs)
    torch.testing.assert_close(cached.features, full.features, atol=1e-5, rtol=1e-4)
    assert torch.equal(cached.missing, full.missing)


def test_inference_thread_idles_on_stale_or_invalid_observations(policy, monkeypatch):
    clock = FakeClock(10.0)
    rt = make_runtime(policy, config(), clock)
    attempts = []
    original = rt.run_inference_once
    monkeypatch.setattr(rt, "run_inference_once", lambda: attempts.append(1) or original())
    rng = np.random.default_rng(8)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)  # 10 s old
    bad = random_observation(policy.config, rng)
    bad["agent_pos"][:] = np.inf
    rt.push_observation(bad, stamp=10.0)
    rt.start()
    try:
        time.sleep(0.3)
    finally:
        rt.stop()
    assert 1 <= len(attempts) <= 3  # one attempt per pushed observation, no busy loop
    assert rt.stats()["inferences"] == 0
    assert isinstance(rt.control_tick(10.0), Hold)


def test_late_actions_are_dropped_never_executed(policy):
    clock = FakeClock()
    rt = make_runtime(policy, config(delay=0), clock)
    rng = np.random.default_rng(9)
    rt.push_observation(random_observation(policy.config, rng), stamp=0.0)
    rt.run_inference_once()  # plans step 0 only (delay 0), due at t=0
    clock.set(0.1)  # the control tick at t=0 was missed: the action is now one period late
    out = rt.control_tick(0.1)
    assert isinstance(out, Hold) and out.kind == "overrun" and "too late" in out.reason
    stats = rt.stats()
    assert stats["dropped_late"] == 1 and stats["late_overruns"] == 1 and stats["commands"] == 0
    assert stats["recommended_delay_steps"] is None  # needs two measured inferences


def test_stats_never_blocks_the_control_tick(policy, monkeypatch):
    # stats() used to compute percentiles over 100,000-sample histories holding the lock that
    # control_tick needs (~17 ms per call); now it copies a bounded window and computes outside
    import df_policy.runtime.runner as runner

    rt = make_runtime(policy, config("chunk"), FakeClock())
    rt.push_observation(random_observation(policy.config, np.random.default_rng(0)), stamp=0.0)
    rt.run_inference_once()
    for _ in range(3 * runner.STATS_WINDOW):
        rt.control_tick(0.0)
    assert len(rt.control_tick_s) == runner.STATS_WINDOW
    inside, release = threading.Event(), threading.Event()
    original = runner._percentile_ms

    def slow_percentile(values, q):
        inside.set()
        assert release.wait(10.0)
        return original(values, q)

    monkeypatch.setattr(runner, "_percentile_ms", slow_percentile)
    reporter = threading.Thread(target=rt.stats)
    reporter.start()
    try:
        assert inside.wait(10.0)  # stats() is computing percentiles ...
        done = threading.Event()
        ticker = threading.Thread(target=lambda: (rt.control_tick(0.0), done.set()))
        ticker.start()
        assert done.wait(5.0), "control_tick waited for stats()"  # ... and the tick goes through
    finally:
        release.set()
        reporter.join(10.0)


def test_a_failing_control_tick_stops_the_loop_and_latches(policy, monkeypatch):
    rt = make_runtime(policy, config(), MonotonicClock())
    sent = []
    loop = ControlLoop(rt, sent.append, period_s=0.01).start()
    assert wait_for(lambda: loop.ticks >= 3)

    def broken(now=None, measured=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(rt, "control_tick", broken)
    assert wait_for(lambda: not loop.alive), "the loop must stop"
    assert loop.failure == "control loop stopped: RuntimeError: boom" and loop.report()["failure"] == loop.failure
    n = len(sent)
    time.sleep(0.05)
    assert len(sent) == n  # nothing sent after the failure
    monkeypatch.undo()
    loop.start()  # a restart clears it
    assert wait_for(lambda: len(sent) > n) and loop.failure is None
    loop.stop()


def wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _executed_actions(accelerate: str, precision: str = "fp32", **policy_overrides) -> tuple[np.ndarray, object]:
    """Normalised actions of 25 stream ticks on fixed observations and noise, and the policy."""
    policy = make_policy(tiny_policy_config(**policy_overrides), seed=0)
    rt = make_runtime(policy, RuntimeConfig(planner=PlannerConfig(mode="stream", delay_steps=1), period_s=PERIOD,
                                            accelerate=accelerate, precision=precision), FakeClock())
    assert rt.accelerate == accelerate
    rt.warmup()
    assert rt.stats()["ticks"] == 0 and rt.stats()["inferences"] == 0  # warm-up leaves no trace
    rng = np.random.default_rng(11)
    sent = []
    for k in range(25):
        result, _, _ = rt.step_synchronously(random_observation(policy.config, rng), k * PERIOD)
        if isinstance(result, Command):
            sent.append(rt.preprocessor.normalize_action(result.action))
    assert (policy._inference_denoiser is not None) == (accelerate in ("compile", "onnx") or precision == "bf16")
    assert "_inference_denoiser" not in str(list(policy.state_dict()))  # checkpoints unchanged
    return np.stack(sent), policy


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, raised while compiling
@pytest.mark.parametrize("accelerate,actions_per_token", [("channels_last", 1), ("compile", 1), ("onnx", 1),
                                                          ("onnx", 2)])
def test_fast_paths_give_the_same_actions_as_eager(accelerate, actions_per_token):
    """``accelerate``: channels_last, torch.compile and ONNX Runtime against eager on the same
    observations and noise; max abs difference of the executed actions in normalised units
    <= 1e-5 (issue 11). With two actions per token the stream window's alignment changes from
    tick to tick: the ONNX graph takes the time indices as inputs, so one export serves all."""
    if accelerate == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    overrides = {"actions_per_token": actions_per_token, "horizon": 8}
    eager, _ = _executed_actions("off", **overrides)
    fast, policy = _executed_actions(accelerate, **overrides)
    assert eager.shape == fast.shape and len(eager) >= 20
    diff = np.abs(fast - eager).max()
    assert diff <= 1e-5, f"{accelerate}: max abs difference {diff:.2e} in normalised action units"
    if accelerate == "onnx":  # every signature exported once, in warm-up; nothing on the control path
        assert policy._inference_denoiser.n_exports == 1 and policy._inference_encoder.n_exports == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, raised while compiling
@pytest.mark.parametrize("accelerate", ["channels_last", "compile"])
def test_bf16_runs_the_networks_in_bf16_and_stays_close_to_fp32(accelerate):
    """``precision="bf16"``: encoder and denoiser under bf16 autocast (a real difference to fp32,
    not a no-op), the executed actions within 0.05 normalised units of fp32 on this tiny random
    policy; refused with ``onnx``."""
    import torch

    from df_policy.runtime.acceleration import Bf16Autocast

    fp32, _ = _executed_actions("off")
    bf16, policy = _executed_actions(accelerate, precision="bf16")
    diff = np.abs(bf16 - fp32).max()
    assert 0 < diff <= 0.05, f"bf16 ({accelerate}): max abs difference {diff:.2e} in normalised action units"
    assert np.isfinite(bf16).all()
    if accelerate == "channels_last":  # the inference callables are the autocast wrappers
        assert isinstance(policy._inference_denoiser, Bf16Autocast)
        with torch.no_grad():
            obs = {f"obs.{k}": torch.rand(1, 1, *shape) for k, shape in policy.config.image_shapes.items()}
            obs.update({f"obs.{k}": torch.randn(1, 1, d) for k, d in policy.config.lowdim_shapes.items()})
            assert policy.run_obs_encoder(obs).dtype == torch.float32  # back in fp32 for the DDIM update
    with pytest.raises(ValueError, match="precision bf16 runs through PyTorch autocast"):
        RuntimeConfig(period_s=PERIOD, accelerate="onnx", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        RuntimeConfig(period_s=PERIOD, precision="fp16")


def test_accelerate_modes_are_validated_and_the_node_has_the_same_list():
    with pytest.raises(ValueError, match="accelerate must be one of"):
        RuntimeConfig(period_s=PERIOD, accelerate="tensorrt")
    from df_policy.ros.node_config import ACCELERATE_MODES as NODE_MODES
    from df_policy.ros.node_config import PRECISIONS as NODE_PRECISIONS
    from df_policy.runtime.acceleration import ACCELERATE_MODES, PRECISIONS

    assert NODE_MODES == ACCELERATE_MODES  # the node config's copy (it imports without torch)
    assert NODE_PRECISIONS == PRECISIONS


def test_onnx_encoder_exports_once_for_any_number_of_steps():
    """accelerate=onnx encodes step by step: a window of To frames (chunk mode, or a stream tick
    that finds two new frames) uses the single-step graph exported in warm-up, same features."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch

    from df_policy.runtime.acceleration import accelerate

    policy = make_policy(tiny_policy_config(), seed=0)
    cfg = policy.config
    torch.manual_seed(3)
    window = {f"obs.{k}": torch.rand(1, 2, *shape) for k, shape in cfg.image_shapes.items()}  # (1, To=2, ...)
    window.update({f"obs.{k}": torch.randn(1, 2, d) for k, d in cfg.lowdim_shapes.items()})
    with torch.no_grad():
        eager = policy.obs_encoder(window)
        assert accelerate(policy, "onnx") == "onnx"
        one = policy.run_obs_encoder({k: v[:, :1] for k, v in window.items()})
        both = policy.run_obs_encoder(window)
    assert policy._inference_encoder.n_exports == 1
    assert torch.allclose(both, eager, atol=1e-5) and torch.allclose(one, eager[:, :1], atol=1e-5)
