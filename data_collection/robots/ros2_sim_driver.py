"""Fake robot hardware over ROS 2: a :class:`SimulatedRobot` behind real topics.

Publishes ``sensor_msgs/JointState`` at ``publish_rate_hz`` and executes commands received as
``trajectory_msgs/JointTrajectory`` or ``std_msgs/Float64MultiArray`` — the counterpart of
:class:`~data_collection.robots.ros2_robot.Ros2Robot` for tests and demos without hardware.

* The simulation advances with the host monotonic clock on every publish tick.
* A trajectory is followed point by point: the target is the first point whose
  ``time_from_start`` (from the message's receipt) has not yet passed, else the last point.
* Commands outside the limits (or unconvertible) are dropped and counted, like a controller
  rejecting a goal. Published joints can be reordered and padded with extra joints, to
  exercise by-name joint picking in clients.

Run it as a process: ``python -m data_collection.robots.ros2_sim_driver --joints j1,j2,j3``
(prints ``READY`` once the node is up; stops on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from df_policy.ros.messages import CommandConverter, JointStateConverter, MessageConversionError
from df_policy.ros.node_thread import NodeThread, NodeThreadConfig

from .base import CommandRejectedError, RobotConfigError, RobotLimits
from .ros2_robot import COMMAND_TYPES
from .simulated import SimulatedRobot, SimulatedRobotConfig

__all__ = ["Ros2SimDriver", "Ros2SimDriverConfig", "Ros2SimDriverStats", "main"]


@dataclass(frozen=True)
class Ros2SimDriverConfig:
    """Settings of a :class:`Ros2SimDriver`.

    Attributes:
        robot: the simulated robot (its ``realtime`` flag is ignored; the driver advances it).
        state_topic: where JointState is published.
        command_topic: where commands are received.
        command_type: ``"trajectory"`` or ``"multiarray"``.
        publish_rate_hz: JointState publish (and simulation advance) rate, > 0.
        publish_velocity: include velocities in the JointState.
        reverse_joint_order: publish joints in reverse order.
        extra_joints: additional joints published with position 0 (not simulated).
        node_name, namespace: the ROS node.
        domain_id: DDS domain; ``None`` = ``ROS_DOMAIN_ID`` from the environment.
    """

    robot: SimulatedRobotConfig
    state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    command_type: str = "trajectory"
    publish_rate_hz: float = 50.0
    publish_velocity: bool = True
    reverse_joint_order: bool = False
    extra_joints: tuple[str, ...] = ()
    node_name: str = "df_policy_sim_driver"
    namespace: str = ""
    domain_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.robot, SimulatedRobotConfig):
            raise RobotConfigError(f"robot must be a SimulatedRobotConfig, got {type(self.robot).__name__}")
        if self.command_type not in COMMAND_TYPES:
            raise RobotConfigError(f"command_type {self.command_type!r} is not one of {COMMAND_TYPES}")
        if not (math.isfinite(self.publish_rate_hz) and self.publish_rate_hz > 0):
            raise RobotConfigError(f"publish_rate_hz must be a finite number > 0, got {self.publish_rate_hz}")
        extra = tuple(self.extra_joints)
        clash = set(extra) & set(self.robot.limits.joint_names)
        if clash or len(set(extra)) != len(extra):
            raise RobotConfigError(f"extra_joints must be unique and differ from the robot joints, got {extra}")
        object.__setattr__(self, "extra_joints", extra)
        NodeThreadConfig(self.node_name, self.namespace, self.domain_id)


@dataclass(frozen=True)
class Ros2SimDriverStats:
    """Counters: JointStates published, commands executed, commands rejected (with the last reason)."""

    states_published: int
    commands_executed: int
    commands_rejected: int
    last_rejection: str | None


class Ros2SimDriver:
    """ROS node wrapping a :class:`SimulatedRobot` (see the module docstring).

    Lifecycle: ``start``/``stop``, or a context manager."""

    def __init__(self, config: Ros2SimDriverConfig) -> None:
        if not isinstance(config, Ros2SimDriverConfig):
            raise RobotConfigError(f"expected a Ros2SimDriverConfig, got {type(config).__name__}")
        self.config = config
        robot_cfg = config.robot
        if robot_cfg.realtime:
            robot_cfg = dataclasses.replace(robot_cfg, realtime=False)
        self.robot = SimulatedRobot(robot_cfg)
        names = list(self.robot.joint_names)
        self._publish_names = tuple((names[::-1] if config.reverse_joint_order else names) + list(config.extra_joints))
        self._order = np.array([names.index(n) for n in self._publish_names if n in names], dtype=np.intp)
        self._state_converter = JointStateConverter(self._publish_names)
        self._commands = CommandConverter(self.robot.joint_names)
        self._node_thread: NodeThread | None = None
        self._publisher: Any = None
        self._lock = threading.Lock()
        self._trajectory: tuple[np.ndarray, np.ndarray, float] | None = None  # positions, times_s, receipt
        self._last_tick: float | None = None
        self._published = 0
        self._executed = 0
        self._rejected = 0
        self._last_rejection: str | None = None

    @property
    def stats(self) -> Ros2SimDriverStats:
        with self._lock:
            return Ros2SimDriverStats(self._published, self._executed, self._rejected, self._last_rejection)

    @property
    def state_publisher(self) -> Any:
        """The JointState publisher (for ``get_subscription_count``); ``None`` when stopped."""
        return self._publisher

    @property
    def is_running(self) -> bool:
        return self._node_thread is not None

    def start(self) -> None:
        """Create the node, start publishing and listening. Idempotent."""
        if self._node_thread is not None:
            return
        from df_policy.ros._imports import ros_message_class

        cfg = self.config
        node_thread = NodeThread(NodeThreadConfig(cfg.node_name, cfg.namespace, cfg.domain_id))
        node = node_thread.start()
        try:
            self.robot.connect()
            cmd_type = (
                ros_message_class("trajectory_msgs", "JointTrajectory")
                if cfg.command_type == "trajectory"
                else ros_message_class("std_msgs", "Float64MultiArray")
            )
            node.create_subscription(cmd_type, cfg.command_topic, self._on_command, 10)
            self._publisher = node.create_publisher(ros_message_class("sensor_msgs", "JointState"), cfg.state_topic, 10)
            self._last_tick = time.monotonic()
            node.create_timer(1.0 / cfg.publish_rate_hz, self._tick)
        except BaseException:
            node_thread.stop()
            self._publisher = None
            raise
        self._node_thread = node_thread

    def stop(self) -> None:
        """Stop publishing and destroy the node (clients see the state go stale). Idempotent."""
        node_thread, self._node_thread = self._node_thread, None
        self._publisher = None
        if node_thread is not None:
            node_thread.stop()
        self.robot.disconnect()

    def __enter__(self) -> Ros2SimDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- callbacks (spin thread)

    def _on_command(self, msg: Any) -> None:
        received = time.monotonic()
        try:
            if self.config.command_type == "trajectory":
                traj = self._commands.from_trajectory(msg)
                positions, times = traj.positions, traj.times_s
            else:
                arr = self._commands.from_multiarray(msg)
                positions, times = arr.reshape(-1, self.robot.limits.dim)[:1], np.zeros(1)
            for row in positions:
                self.robot.limits.check_positions(row, what="sim driver command")
        except (MessageConversionError, CommandRejectedError) as exc:
            with self._lock:
                self._rejected += 1
                self._last_rejection = str(exc)
            return
        with self._lock:
            self._trajectory = (positions.astype(np.float64), times, received)
            self._executed += 1
        self._apply_target(received)

    def _apply_target(self, now: float) -> None:
        with self._lock:
            traj = self._trajectory
        if traj is None:
            return
        positions, times, received = traj
        elapsed = now - received
        i = int(np.searchsorted(times, elapsed, side="left"))
        target = positions[min(i, len(positions) - 1)]
        if not np.array_equal(target, self.robot.target):
            self.robot.send_command(target)

    def _tick(self) -> None:
        now = time.monotonic()
        self._apply_target(now)
        if self._last_tick is not None:
            self.robot.advance(max(0.0, now - self._last_tick))
        self._last_tick = now
        publisher, node_thread = self._publisher, self._node_thread
        if publisher is None or node_thread is None:
            return
        state = self.robot.read_state()
        n_extra = len(self.config.extra_joints)
        pos = np.concatenate([state.positions[self._order], np.zeros(n_extra)])
        vel = None
        if self.config.publish_velocity:
            vel = np.concatenate([state.velocities[self._order], np.zeros(n_extra)])
        msg = self._state_converter.to_msg(pos, vel, stamp=node_thread.node.get_clock().now().to_msg())
        publisher.publish(msg)
        with self._lock:
            self._published += 1


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_collection.robots.ros2_sim_driver", description=__doc__.split("\n")[0]
    )
    p.add_argument("--joints", required=True, help="comma-separated joint names")
    p.add_argument("--lower", type=float, default=-math.pi, help="lower position limit for every joint")
    p.add_argument("--upper", type=float, default=math.pi, help="upper position limit for every joint")
    p.add_argument("--vmax", type=float, default=2.0, help="speed limit for every joint")
    p.add_argument("--rate", type=float, default=100.0, help="simulation rate, Hz")
    p.add_argument("--time-constant", type=float, default=0.05, help="tracking time constant, s")
    p.add_argument("--publish-rate", type=float, default=50.0, help="JointState rate, Hz")
    p.add_argument("--state-topic", default="/joint_states")
    p.add_argument("--command-topic", default="/joint_trajectory_controller/joint_trajectory")
    p.add_argument("--command-type", choices=COMMAND_TYPES, default="trajectory")
    p.add_argument("--reverse-joint-order", action="store_true")
    p.add_argument("--extra-joints", default="", help="comma-separated extra joints published at 0")
    p.add_argument("--node-name", default="df_policy_sim_driver")
    p.add_argument("--domain-id", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the driver until SIGINT/SIGTERM. Prints ``READY`` when the node is up."""
    args = _parse_args(argv)
    joints = tuple(j for j in args.joints.split(",") if j)
    limits = RobotLimits.uniform(joints, args.lower, args.upper, args.vmax)
    config = Ros2SimDriverConfig(
        robot=SimulatedRobotConfig(limits, rate_hz=args.rate, time_constant_s=args.time_constant),
        state_topic=args.state_topic,
        command_topic=args.command_topic,
        command_type=args.command_type,
        publish_rate_hz=args.publish_rate,
        reverse_joint_order=args.reverse_joint_order,
        extra_joints=tuple(j for j in args.extra_joints.split(",") if j),
        node_name=args.node_name,
        domain_id=args.domain_id,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with Ros2SimDriver(config):
        print("READY", flush=True)
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
