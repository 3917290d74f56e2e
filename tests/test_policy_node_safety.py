"""The policy node's safety against the *measured* arm, over real DDS on 127.0.0.1.

A robot whose controller is dead or whose arm is blocked keeps publishing the same joint state:
here a test node publishes a frozen ``JointState`` (what the issue reproduced from outside:
commands drifted 1.05 rad from the measured position). Also: no subscriber at enable, a
subscriber that goes away, a control loop that dies, a checkpoint in another unit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("trajectory_msgs.msg")
pytest.importorskip("diagnostic_msgs.msg")
pytest.importorskip("std_srvs.srv")

from fixtures.policy_node_harness import (
    JOINTS,
    LOWER,
    UPPER,
    Camera,
    Monitor,
    checkpoint,  # noqa: F401 - pytest fixture
    node_config,
    ros_env,  # noqa: F401 - pytest fixture
    sim_driver,
    status_values,
)

from df_policy.ros.node_config import PolicyNodeConfigError
from df_policy.ros.node_thread import NodeThread, NodeThreadConfig, wait_until
from df_policy.ros.policy_node import PolicyNode

pytestmark = [pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

RUN = f"/pns{os.getpid()}"
# every joint inside the test limits; wrist_roll at 0 while the demonstrations hold it above
# 1.39 rad, so the toy policy's commands head away from where this "arm" is
FROZEN = np.array([0.0, 0.2, -0.2, 0.3, 0.0, 0.5])


class FrozenArm:
    """A driver whose controller is dead: it publishes the same joint state at 50 Hz, whatever is commanded."""

    def __init__(self, topic: str, position: np.ndarray) -> None:
        from sensor_msgs.msg import JointState

        self.thread = NodeThread(NodeThreadConfig("frozen_arm"))
        node = self.thread.start()
        pub = node.create_publisher(JointState, topic, 10)
        msg = JointState(name=list(JOINTS), position=[float(v) for v in position])
        node.create_timer(0.02, lambda: pub.publish(msg))

    def stop(self) -> None:
        self.thread.stop()


def _inputs_fresh(node: PolicyNode) -> bool:
    return all(a is not None and a < 0.3 for a in node.input_ages().values())


@contextlib.contextmanager
def frozen_rig(checkpoint: Path, prefix: str, monitor_topic: str = "command", **settings):
    """A camera, a frozen arm, a monitor of ``prefix/monitor_topic`` and /diagnostics, and the node."""
    camera = Camera(f"{prefix}/camera/image_raw")
    arm = FrozenArm(f"{prefix}/joint_states", FROZEN)
    monitor = Monitor(f"{prefix}/{monitor_topic}")
    node = PolicyNode(node_config(checkpoint, prefix, diagnostics_period_s=0.25, **settings))
    try:
        node.start()
        assert wait_until(lambda: _inputs_fresh(node), 10.0), node.input_ages()
        yield node, monitor
    finally:
        node.stop()
        monitor.stop()
        arm.stop()
        camera.stop()


@pytest.mark.parametrize("mode", ["fault", "clip"])
def test_commands_never_drift_from_a_frozen_arm(checkpoint, mode):
    from diagnostic_msgs.msg import DiagnosticStatus

    bound = 0.15
    with frozen_rig(checkpoint, f"{RUN}/frozen_{mode}", max_tracking_error=bound, tracking_mode=mode) as (node, monitor):
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        ok, msg = node.enable()
        assert ok, msg
        t_enable = time.monotonic()
        if mode == "fault":
            # commands beyond the bound are clipped into it while the excursion is young (the
            # enable grace, then tracking_fault_after_s); the arm never follows, so the node
            # latches a fault naming how long, and stops
            status = monitor.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, since=t_enable, timeout_s=10.0)
            assert "max_tracking_error" in status.message and "not following" in status.message
            assert "max_tracking_error" in node.fault and "beyond the bound for" in node.fault, node.fault
            assert re.search(r"for joint '[\w.-]+' \(dimension \d\)", node.fault), node.fault  # names the joint
            assert wait_until(lambda: not node.enabled, 3.0)
            n = len(monitor.commands)
            time.sleep(0.5)
            assert len(monitor.commands) == n, "commands after a tracking fault"
            assert int(status_values(status)["holds.tracking_error"]) >= 1
        else:
            # clipped into measured ± bound, published, counted; the node goes on
            time.sleep(2.0)
            assert node.enabled and node.fault is None
            assert len(monitor.commands) >= 10
            status = monitor.wait_status(lambda s: "commanding" in s.message, since=time.monotonic())
            assert int(status_values(status)["clipped.tracking"]) > 0
        for _, m in list(monitor.commands):
            q = np.asarray(m.points[0].positions)
            assert (np.abs(q - FROZEN) <= bound + 1e-6).all(), f"command {q} drifted from the measured {FROZEN}"


def test_enable_needs_a_subscriber_and_a_vanished_one_is_a_fault(checkpoint):
    from diagnostic_msgs.msg import DiagnosticStatus

    prefix = f"{RUN}/nosub"
    controller = None
    # the rig's monitor watches /diagnostics only
    with frozen_rig(checkpoint, prefix, "not_the_command_topic", max_tracking_error=None) as (node, diagnostics):
        ok, msg = node.enable()
        assert not ok and f"nothing subscribes to {prefix}/command" in msg and not node.enabled
        controller = Monitor(f"{prefix}/command")  # the controller comes up
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        ok, msg = node.enable()
        assert ok, msg
        assert wait_until(lambda: len(controller.commands) > 0, 10.0)
        t_gone = time.monotonic()
        controller.stop()  # the controller is unloaded while the node commands
        controller = None
        status = diagnostics.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, since=t_gone, timeout_s=10.0)
        assert "nothing subscribes" in status.message and "any more" in status.message
        assert wait_until(lambda: not node.enabled, 3.0)
    if controller is not None:
        controller.stop()


def test_a_dead_control_loop_is_an_error_not_ok(checkpoint):
    from diagnostic_msgs.msg import DiagnosticStatus

    with frozen_rig(checkpoint, f"{RUN}/deadloop", max_tracking_error=None) as (node, monitor):
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        assert node.enable()[0]
        assert wait_until(lambda: len(monitor.commands) > 2, 10.0)

        def broken(now=None, measured=None):
            raise RuntimeError("planner state corrupted")

        node.runtime.control_tick = broken  # a bug inside control_tick kills the loop thread
        t_dead = time.monotonic()
        status = monitor.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, since=t_dead, timeout_s=10.0)
        assert "control loop stopped: RuntimeError: planner state corrupted" in status.message
        assert wait_until(lambda: not node.enabled, 3.0)
        n = len(monitor.commands)
        time.sleep(0.5)
        assert len(monitor.commands) == n
        del node.runtime.control_tick  # fixed: ~/enable resumes
        assert node.enable()[0] and node.fault is None
        assert wait_until(lambda: len(monitor.commands) > n + 2, 10.0)


def test_a_stuck_control_tick_is_an_error_not_ok(checkpoint):
    """The loop thread is alive but a tick never returns (a deadlock, a blocking call): after
    max(1 s, 10 periods) the node latches a fault, says why and sends nothing more."""
    import threading

    from diagnostic_msgs.msg import DiagnosticStatus

    with frozen_rig(checkpoint, f"{RUN}/stuckloop", max_tracking_error=None) as (node, monitor):
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        assert node.enable()[0]
        assert wait_until(lambda: len(monitor.commands) > 2, 10.0)
        release = threading.Event()
        real = node.runtime.control_tick

        def stuck(now=None, measured=None):
            release.wait(30.0)  # a lock that is never released
            return real(now, measured)

        node.runtime.control_tick = stuck
        t_stuck = time.monotonic()
        status = monitor.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, since=t_stuck, timeout_s=10.0)
        assert "the control loop is stuck" in status.message
        assert wait_until(lambda: not node.enabled, 3.0)
        n = len(monitor.commands)
        del node.runtime.control_tick
        release.set()  # the stuck tick returns late: its command is not published
        time.sleep(0.5)
        assert len(monitor.commands) == n


def test_a_checkpoint_in_another_unit_is_refused(checkpoint, tmp_path):
    run = tmp_path / "deg_run"
    shutil.copytree(checkpoint, run)
    schemas = list(run.rglob("schema.json"))
    assert schemas
    for path in schemas:  # the same checkpoint, recorded by a driver in degrees
        doc = json.loads(path.read_text())
        doc["keys"]["action"]["unit"] = "deg"
        path.write_text(json.dumps(doc))
    prefix = f"{RUN}/unit"
    with pytest.raises(PolicyNodeConfigError, match=r"actions are in 'deg' .* node commands 'rad'"):
        PolicyNode(node_config(run, prefix)).start()
    node = PolicyNode(node_config(run, prefix, action_unit="deg"))  # a driver in degrees: accepted
    try:
        node.start()
    finally:
        node.stop()


def test_trajectory_chunk_publishes_the_bounded_plan(checkpoint):
    """``command_type: trajectory_chunk``: each tick publishes the command plus the planned clean
    actions, one period apart, velocity- and position-limited point to point; the simulated
    controller follows them."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    prefix = f"{RUN}/chunk"
    camera = Camera(f"{prefix}/camera/image_raw")
    monitor = Monitor(f"{prefix}/command")
    seen: dict[str, list] = {"planned": [], "raw": [], "sent": [], "state": []}
    for topic, msg_type, key in [("planned_trajectory", JointTrajectory, "planned"), ("command_raw", JointState, "raw"),
                                 ("command_sent", JointState, "sent")]:
        monitor.node.create_subscription(msg_type, f"/policy_node/{topic}", seen[key].append, 100)
    driver = sim_driver(prefix)
    node = PolicyNode(node_config(checkpoint, prefix, command_type="trajectory_chunk", chunk_points=5,
                                  planner_mode="chunk", max_tracking_error=None))
    try:
        driver.start()
        node.start()
        assert wait_until(lambda: _inputs_fresh(node) and node.command_subscriber_count >= 1, 10.0)
        assert node.enable()[0]
        assert wait_until(lambda: len(monitor.commands) >= 12, 15.0)
        lengths, stamps = [], []
        wall_offset = time.time() - time.monotonic()  # receipt times are monotonic, ROS time is the system clock
        for received, msg in list(monitor.commands):
            received += wall_offset
            # trajectory_stamp "plan": stamped with the ROS time of the command's tick (this
            # node's clock, the host's); a command may be published up to half a period before
            # its tick, never a period or more
            stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
            stamps.append(stamp)
            assert received - 1.0 < stamp < received + 0.1, (stamp, received)
            points = np.asarray([p.positions for p in msg.points])
            times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
            lengths.append(len(points))
            assert 1 <= len(points) <= 6
            np.testing.assert_allclose(times, 0.1 * np.arange(1, len(points) + 1), atol=1e-9)
            assert (points >= np.asarray(LOWER) - 1e-9).all() and (points <= np.asarray(UPPER) + 1e-9).all()
            assert (np.abs(np.diff(points, axis=0)) <= 1.0 * 0.1 + 1e-9).all()  # max_velocity 1.0, 0.1 s apart
        assert max(lengths) > 1, "no planned points were published"
        assert (np.diff(stamps) > 0).all()
        assert abs(float(np.median(np.diff(stamps))) - 0.1) < 0.01  # one period apart
        assert driver.stats.commands_rejected == 0 and driver.stats.commands_executed > 0
        # what the policy intended, for recording: the plan, the raw and the sent command
        assert wait_until(lambda: min(len(seen[k]) for k in ("planned", "raw", "sent")) >= 5, 5.0)
        sent = {tuple(m.position) for m in seen["sent"]}
        assert all(tuple(m.points[0].positions) in sent for _, m in list(monitor.commands)[:5])
        assert all(tuple(m.name) == JOINTS for m in seen["raw"] + seen["sent"])
        # ~/state is latched: a subscriber that comes late still gets it (transient local)
        from rclpy.qos import DurabilityPolicy, QoSProfile

        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        monitor.node.create_subscription(String, "/policy_node/state", lambda m: seen["state"].append(json.loads(m.data)),
                                         latched)
        assert wait_until(lambda: seen["state"], 5.0)
        assert seen["state"][-1]["enabled"] and seen["state"][-1]["activity"] in ("commanding", "holding: overrun")
        node.disable("test")
        assert wait_until(lambda: seen["state"][-1]["enabled"] is False, 5.0)
        assert seen["state"][-1]["activity"] == "disabled" and seen["state"][-1]["reason"] == "test"
    finally:
        node.stop()
        driver.stop()
        monitor.stop()
        camera.stop()
