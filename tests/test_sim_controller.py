"""The simulated arm's controller refuses what ros2_control's controllers refuse and follows
trajectories the way joint_trajectory_controller does (from the measured state by default)."""

import numpy as np
import pytest

from df_policy.sim.controller import CommandRejected, JointPositionController

J = ("a", "b", "c")
LOW, HIGH = (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)


def _jtc(**kw) -> JointPositionController:
    return JointPositionController(J, LOW, HIGH, initial=(0.0, 0.0, 0.0), **kw)


def test_trajectory_starts_from_the_measured_state_and_interpolates_in_time() -> None:
    c = _jtc()
    measured = np.array([0.2, 0.0, 0.0])
    c.accept_trajectory(["c", "a", "b"], np.array([[0.3, 0.6, 0.0]]), np.array([0.1]), 0.0, 100.0, measured)
    np.testing.assert_allclose(c.target(100.0), measured)  # starts where the arm is, not at the old target
    np.testing.assert_allclose(c.target(100.05), [0.4, 0.0, 0.15])  # halfway, joints matched by name
    np.testing.assert_allclose(c.target(100.1), [0.6, 0.0, 0.3])
    np.testing.assert_allclose(c.target(105.0), [0.6, 0.0, 0.3])  # holds the last point
    assert c.stats().accepted == 1 and c.stats().rejected == 0


def test_interpolate_from_desired_state_starts_from_the_previous_target() -> None:
    c = _jtc(interpolate_from_desired_state=True)
    c.accept_trajectory(list(J), np.array([[0.5, 0.0, 0.0]]), np.array([0.1]), 0.0, 0.0, np.zeros(3))
    assert c.target(0.1)[0] == pytest.approx(0.5)
    lagging = np.array([0.1, 0.0, 0.0])  # the arm is behind its target
    c.accept_trajectory(list(J), np.array([[0.7, 0.0, 0.0]]), np.array([0.1]), 0.0, 0.1, lagging)
    assert c.target(0.1)[0] == pytest.approx(0.5)  # from the desired 0.5, not the measured 0.1
    default = _jtc()
    default.accept_trajectory(list(J), np.array([[0.7, 0.0, 0.0]]), np.array([0.1]), 0.0, 0.1, lagging)
    assert default.target(0.1)[0] == pytest.approx(0.1)


def test_multi_point_trajectory_and_stamp_in_the_future() -> None:
    c = _jtc()
    pts = np.array([[0.1, 0, 0], [0.2, 0, 0], [0.4, 0, 0]], dtype=float)
    c.accept_trajectory(list(J), pts, np.array([0.1, 0.2, 0.3]), 10.5, 10.0, np.zeros(3))
    assert c.target(10.2)[0] == pytest.approx(0.0)  # not started yet: the start state
    assert c.target(10.65)[0] == pytest.approx(0.15)
    assert c.target(10.75)[0] == pytest.approx(0.3)


@pytest.mark.parametrize("names, positions, times, why", [
    (["a", "b"], [[0, 0]], [0.1], "missing ['c']"),
    (["a", "b", "c", "d"], [[0, 0, 0, 0]], [0.1], "unknown ['d']"),
    (["a", "a", "b"], [[0, 0, 0]], [0.1], "repeat"),
    (list(J), [[0, 0, np.nan]], [0.1], "not finite"),
    (list(J), [[0, 1.5, 0]], [0.1], "b outside its limits"),
    (list(J), [[0, 0, 0], [0, 0, 0]], [0.2, 0.1], "strictly increasing"),
])
def test_jtc_rejects_what_a_real_controller_rejects(names, positions, times, why) -> None:
    c = _jtc()
    c.accept_trajectory(list(J), np.array([[0.5, 0, 0]]), np.array([0.1]), 0.0, 0.0, np.zeros(3))
    before = c.target(0.05)
    with pytest.raises(CommandRejected, match=why.replace("[", r"\[").replace("]", r"\]")):
        c.accept_trajectory(names, np.array(positions, dtype=float), np.array(times), 0.0, 0.0, np.zeros(3))
    np.testing.assert_allclose(c.target(0.05), before)  # a rejected command changes nothing
    assert c.stats().rejected == 1 and why.split()[0] in c.stats().last_rejection


def test_a_trajectory_that_ends_in_the_past_and_the_wrong_message_type_are_rejected() -> None:
    c = _jtc()
    with pytest.raises(CommandRejected, match="in the past"):
        c.accept_trajectory(list(J), np.zeros((1, 3)), np.array([0.1]), 5.0, 6.0, np.zeros(3))
    with pytest.raises(CommandRejected, match="takes JointTrajectory"):
        c.accept_forward(np.zeros(3))
    fwd = JointPositionController(J, LOW, HIGH, initial=np.zeros(3), mode="forward")
    with pytest.raises(CommandRejected, match="takes Float64MultiArray"):
        fwd.accept_trajectory(list(J), np.zeros((1, 3)), np.array([0.1]), 0.0, 0.0, np.zeros(3))
    with pytest.raises(CommandRejected, match="2 values for 3 joints"):
        fwd.accept_forward(np.zeros(2))
    fwd.accept_forward(np.array([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(fwd.target(0.0), [0.1, 0.2, 0.3])


def test_empty_trajectory_and_hold_stop_at_the_measured_position() -> None:
    c = _jtc()
    c.accept_trajectory(list(J), np.array([[0.5, 0, 0]]), np.array([1.0]), 0.0, 0.0, np.zeros(3))
    c.accept_trajectory(list(J), np.zeros((0, 3)), np.zeros(0), 0.0, 0.3, np.array([0.12, 0.0, 0.0]))
    np.testing.assert_allclose(c.target(0.9), [0.12, 0.0, 0.0])
    c.hold(np.array([0.3, 0.3, 0.3]))
    np.testing.assert_allclose(c.target(5.0), [0.3, 0.3, 0.3])
