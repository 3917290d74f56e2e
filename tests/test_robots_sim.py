"""RobotLimits and the kinematic SimulatedRobot (no ROS)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from data_collection.robots import (
    CommandRejectedError,
    RobotConfigError,
    RobotLimits,
    RobotNotConnectedError,
    RobotState,
    SimulatedRobot,
    SimulatedRobotConfig,
)

JOINTS = ("j1", "j2", "j3")


def limits(vmax=1.0):
    return RobotLimits(JOINTS, (-1.0, -2.0, -math.inf), (1.0, 2.0, math.inf), (vmax, vmax, vmax))


def test_limits_validate_commands():
    lim = limits()
    np.testing.assert_array_equal(lim.check_positions([0.5, -2.0, 100.0]), [0.5, -2.0, 100.0])
    with pytest.raises(CommandRejectedError, match=r"j1=1\.5 not in \[-1, 1\]"):
        lim.check_positions([1.5, 0.0, 0.0])
    with pytest.raises(CommandRejectedError, match="not finite at joints j2=nan"):
        lim.check_positions([0.0, float("nan"), 0.0])
    with pytest.raises(CommandRejectedError, match=r"shape \(2,\)"):
        lim.check_positions([0.0, 0.0])
    lim.check_step([0.1, 0.0, 0.0], [0.0, 0.0, 0.0], dt_s=0.1)
    with pytest.raises(CommandRejectedError, match="j2 2 > 1"):
        lim.check_step([0.0, 0.2, 0.0], [0.0, 0.0, 0.0], dt_s=0.1)
    assert RobotLimits.from_dict(lim.to_dict()) == lim
    assert lim.to_dict()["position_upper"] == [1.0, 2.0, None]


def test_limits_config_errors():
    with pytest.raises(RobotConfigError, match="lower must be < position_upper for joints \\['b'\\]"):
        RobotLimits(("a", "b"), (0.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(RobotConfigError, match="velocity_max must be > 0"):
        RobotLimits.uniform(("a",), -1, 1, 0.0)
    with pytest.raises(RobotConfigError, match="duplicate"):
        RobotLimits.uniform(("a", "a"), -1, 1)
    with pytest.raises(RobotConfigError, match=r"shape \(2,\)"):
        RobotLimits(("a", "b"), (0.0,), (1.0, 1.0), (1.0, 1.0))


def test_simulated_robot_tracks_commands_first_order():
    cfg = SimulatedRobotConfig(limits(vmax=100.0), rate_hz=100.0, time_constant_s=0.1)
    with SimulatedRobot(cfg) as robot:
        state = robot.read_state()
        t0 = state.timestamp_s
        assert isinstance(state, RobotState) and state.positions.dtype == np.float32
        np.testing.assert_array_equal(state.positions, [0.0, 0.0, 0.0])
        robot.send_command([0.5, -1.0, 3.0])
        assert robot.last_command is not None and robot.last_command.action.dtype == np.float32
        robot.advance(0.1)  # one time constant
        q = robot.read_state().positions
        np.testing.assert_allclose(q, np.array([0.5, -1.0, 3.0]) * (1 - math.exp(-1.0)), rtol=1e-5)
        robot.step(200)  # 2 s more: converged
        np.testing.assert_allclose(robot.read_state().positions, [0.5, -1.0, 3.0], atol=1e-6)
        assert robot.read_state().timestamp_s - t0 == pytest.approx(2.1, abs=1e-9)  # simulated time


def test_simulated_robot_enforces_limits():
    robot = SimulatedRobot(SimulatedRobotConfig(limits(vmax=1.0), rate_hz=50.0, time_constant_s=0.0))
    with pytest.raises(RobotNotConnectedError):
        robot.send_command([0.0, 0.0, 0.0])
    robot.connect()
    with pytest.raises(CommandRejectedError, match="j1=2 not in"):
        robot.send_command([2.0, 0.0, 0.0])
    with pytest.raises(CommandRejectedError, match="not finite"):
        robot.send_command([0.0, np.inf, 0.0])
    assert robot.last_command is None  # nothing accepted
    robot.send_command([1.0, -2.0, 0.0])
    robot.advance(0.5)  # speed-limited: 1 rad/s for 0.5 s
    state = robot.read_state()
    np.testing.assert_allclose(state.positions, [0.5, -0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(state.velocities, [1.0, -1.0, 0.0], atol=1e-5)
    robot.advance(5.0)
    np.testing.assert_allclose(robot.read_state().positions, [1.0, -2.0, 0.0], atol=1e-6)
    robot.disconnect()
    with pytest.raises(RobotConfigError, match="outside the position limits"):
        SimulatedRobotConfig(limits(), initial_positions=(5.0, 0.0, 0.0))


def test_simulated_robot_realtime_thread():
    cfg = SimulatedRobotConfig(limits(vmax=10.0), rate_hz=200.0, time_constant_s=0.02, realtime=True)
    with SimulatedRobot(cfg) as robot:
        robot.send_command([0.8, 0.0, 0.0])
        deadline = time.monotonic() + 3.0
        while robot.read_state().positions[0] < 0.79 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert robot.read_state().positions[0] == pytest.approx(0.8, abs=0.01)
        assert robot.read_state().timestamp_s <= time.monotonic() + 1e-3
