"""Ros2Robot against the simulated ROS 2 driver, over real DDS on 127.0.0.1.

The driver runs in this process (its own rclpy context = its own DDS participant) or as a
subprocess; either way messages go through Fast DDS over the loopback-only profile in
``tests/fixtures``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("trajectory_msgs.msg")

from fixtures.ros_env import loopback_ros_env, loopback_ros_environment  # noqa: E402

from data_collection.robots import (  # noqa: E402
    CommandRejectedError,
    RobotError,
    RobotLimits,
    Ros2Robot,
    Ros2RobotConfig,
    Ros2SimDriver,
    Ros2SimDriverConfig,
    SimulatedRobotConfig,
    StaleStateError,
)
from df_policy.ros.node_thread import wait_until  # noqa: E402

# rosidl_generator_py imports lark, which imports the deprecated sre_* modules
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
JOINTS = ("shoulder", "elbow", "wrist")
LIMITS = RobotLimits.uniform(JOINTS, -1.5, 1.5, velocity_max=2.0)
RUN = f"/run{os.getpid()}"  # topic namespace: even a domain-id collision with another run cannot cross-talk


@pytest.fixture(scope="module", autouse=True)
def ros_env():
    """Loopback-only DDS, unique domain, set before any rclpy.init() in this module."""
    with loopback_ros_environment() as env:
        yield env


def _driver(topic_prefix: str, command_type: str = "trajectory", **kw) -> Ros2SimDriver:
    return Ros2SimDriver(
        Ros2SimDriverConfig(
            robot=SimulatedRobotConfig(LIMITS, rate_hz=200.0, time_constant_s=0.03),
            state_topic=f"{topic_prefix}/joint_states",
            command_topic=f"{topic_prefix}/command",
            command_type=command_type,
            publish_rate_hz=50.0,
            node_name="sim_driver",
            **kw,
        )
    )


def _robot(topic_prefix: str, command_type: str = "trajectory", **kw) -> Ros2Robot:
    settings = dict(command_period_s=0.1, max_state_age_s=0.3, connect_timeout_s=10.0, node_name="robot_client")
    settings.update(kw)
    return Ros2Robot(
        Ros2RobotConfig(
            limits=LIMITS,
            state_topic=f"{topic_prefix}/joint_states",
            command_topic=f"{topic_prefix}/command",
            command_type=command_type,
            **settings,
        )
    )


def _wait_close(robot: Ros2Robot, target, atol=0.01, timeout_s=5.0) -> np.ndarray:
    target = np.asarray(target, np.float32)
    # allow_stale: under CPU load a publish gap can exceed max_state_age_s; here we only wait for motion
    def reached() -> bool:
        return np.allclose(robot.read_state(allow_stale=True).positions, target, atol=atol)

    ok = wait_until(reached, timeout_s, poll_s=0.02)
    q = robot.read_state(allow_stale=True).positions
    assert ok, f"joints {q} did not reach {target} within {timeout_s}s"
    return q


@pytest.mark.parametrize("command_type, stamp_source", [("trajectory", "receipt"), ("multiarray", "header")])
def test_reads_state_and_moves_simulated_joints(command_type, stamp_source):
    prefix = f"{RUN}/move_{command_type}"
    # the driver publishes joints reversed plus an extra one: the robot must pick by name
    with _driver(prefix, command_type, reverse_joint_order=True, extra_joints=("gripper",)) as driver:
        with _robot(prefix, command_type, stamp_source=stamp_source) as robot:
            assert robot.command_subscriber_count >= 1
            state = robot.read_state()
            np.testing.assert_array_equal(state.positions, [0.0, 0.0, 0.0])
            assert state.velocities is not None
            # both stamp sources give host-monotonic times: header stamps are mapped from wall clock
            assert abs(time.monotonic() - state.timestamp_s) < 0.3
            assert -0.05 < robot.state_age_s() < 0.3

            sent = robot.send_command([0.3, -0.2, 0.1])
            assert sent.dtype == np.float32 and robot.last_command is not None
            _wait_close(robot, [0.3, -0.2, 0.1])
            # a second, further target (reachable within the speed-check horizon from here)
            robot.send_command([0.6, -0.5, 0.4])
            q = _wait_close(robot, [0.6, -0.5, 0.4])
            np.testing.assert_allclose(driver.robot.read_state().positions, q, atol=0.05)
            assert driver.stats.commands_executed == 2 and driver.stats.commands_rejected == 0
            assert robot.stats.commands_sent == 2 and robot.stats.states_rejected == 0


def test_refuses_invalid_commands_and_detects_stale_state():
    prefix = f"{RUN}/refuse"
    driver = _driver(prefix)
    driver.start()
    try:
        with _robot(prefix) as robot:
            for bad, match in [
                ([0.1, float("nan"), 0.0], "not finite at joints elbow=nan"),
                ([2.0, 0.0, 0.0], r"shoulder=2 not in \[-1\.5, 1\.5\]"),
                ([0.1, 0.2], r"shape \(2,\)"),
                ([1.0, 0.0, 0.0], "speeds above velocity_max"),  # 1 rad in 0.2 s > 2 rad/s
            ]:
                with pytest.raises(CommandRejectedError, match=match):
                    robot.send_command(bad)
            assert robot.stats.commands_sent == 0 and robot.stats.commands_rejected == 4
            assert robot.last_command is None

            driver.stop()  # the "hardware" goes away: no more JointState
            assert wait_until(robot.is_state_stale, 3.0), "state never went stale"
            with pytest.raises(StaleStateError, match=r"stale \([\d.]+s old > max_state_age_s=0\.3s\)"):
                robot.read_state()
            assert robot.read_state(allow_stale=True).positions.shape == (3,)
            assert robot.state_age_s() > 0.3
            with pytest.raises(CommandRejectedError, match="stale.*refusing to command"):
                robot.send_command([0.0, 0.0, 0.0])
            assert driver.stats.commands_executed == 0
    finally:
        driver.stop()


def test_connect_fails_clearly():
    # nobody publishes: clear timeout naming the topic
    topic = f"{RUN}/nobody/joint_states"
    robot = Ros2Robot(Ros2RobotConfig(LIMITS, state_topic=topic, connect_timeout_s=0.5, node_name="lonely"))
    with pytest.raises(RobotError, match=f"no valid JointState on '{topic}' within 0.5s"):
        robot.connect()
    assert not robot.is_connected

    # the driver publishes other joints: messages arrive but are rejected, and the error says why
    other = RobotLimits.uniform(("shoulder", "elbow"), -1.0, 1.0)
    driver = Ros2SimDriver(
        Ros2SimDriverConfig(
            SimulatedRobotConfig(other), state_topic=f"{RUN}/wrong/joint_states", node_name="wrong_driver"
        )
    )
    with driver:
        robot = _robot(f"{RUN}/wrong", connect_timeout_s=1.5)
        with pytest.raises(RobotError, match=r"messages rejected, last: JointState is missing joints \['wrist'\]"):
            robot.connect()


def test_against_driver_in_subprocess(tmp_path):
    """Two processes, two DDS participants, real loopback UDP."""
    env = dict(os.environ, **loopback_ros_env(), PYTHONPATH=str(REPO))
    cmd = [
        sys.executable, "-m", "data_collection.robots.ros2_sim_driver",
        "--joints", ",".join(JOINTS), "--lower", "-1.5", "--upper", "1.5", "--vmax", "2.0",
        "--state-topic", f"{RUN}/proc/joint_states", "--command-topic", f"{RUN}/proc/command",
        "--extra-joints", "finger", "--reverse-joint-order", "--node-name", "proc_driver",
    ]  # fmt: skip
    log = tmp_path / "driver.stderr"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = proc.stdout.readline()  # blocks until READY (or the process dies)
        if line.strip() != "READY":
            proc.kill()
            proc.wait(10)
            pytest.fail(f"driver did not start: {line!r}\n{log.read_text()}")
        with _robot(f"{RUN}/proc") as robot:
            np.testing.assert_allclose(robot.read_state().positions, [0.0, 0.0, 0.0], atol=1e-6)
            robot.send_command([-0.3, 0.3, 0.2])
            _wait_close(robot, [-0.3, 0.3, 0.2])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    assert proc.returncode == 0, log.read_text()
