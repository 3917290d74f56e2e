"""The policy node's output side: the last-line check and every message one command becomes.

:class:`CommandOutputs` owns the command publishers (one per controller: ``command_groups``, or
the single ``command_topic``) and the introspection topics (``~/planned_trajectory``,
``~/command_raw``, ``~/command_sent``). The policy node (:mod:`df_policy.ros.policy_node`)
decides *whether* to publish (enabled, no fault, counters); this module decides *what* is
published and refuses a command that must never reach the robot (:meth:`CommandOutputs.last_line_check`).

Units: joint positions in ``joint_names`` order (robot units, the checkpoint's ``action_unit``);
times on the runtime's clock unless named ROS time. Every trajectory point is one control
period apart (``time_from_start = (i + 1) * period_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._imports import ros_message_class
from .messages import CommandConverter, ns_to_time
from .node_config import PolicyNodeConfig

__all__ = ["CommandOutput", "CommandOutputs"]


@dataclass(frozen=True)
class CommandOutput:
    """One command publisher: resolved topic, command type, publisher, converter of its joints and
    their indices in the action vector."""

    topic: str
    type: str
    publisher: Any
    converter: CommandConverter
    index: np.ndarray
    joints: tuple[str, ...] = ()
    controller: str = ""


class CommandOutputs:
    """The command publishers of a policy node and the checks right before publishing.

    Args:
        node: the rclpy node that owns the publishers.
        config: the node's settings (joints, limits, command groups, ``trajectory_stamp``).
        period_s: the control period (s), every point's spacing.
        max_tracking_error: per-joint bound against the measured position, ``(J,)`` or ``None``.
        max_action_age_s: the safety layer's lateness bound (s); a command is stale at publishing
            when it is later than that plus half a period.

    Attributes ``low`` / ``high``: the position limits, ``(J,)``; ``outputs``: one
    :class:`CommandOutput` per controller.
    """

    def __init__(self, node: Any, config: PolicyNodeConfig, period_s: float,
                 max_tracking_error: np.ndarray | None, max_action_age_s: float) -> None:
        self.node, self.config, self.period_s = node, config, float(period_s)
        self._track = max_tracking_error
        self._max_age_s = float(max_action_age_s)
        self.low = np.asarray(config.position_lower, dtype=np.float64)
        self.high = np.asarray(config.position_upper, dtype=np.float64)
        self._all_joints = CommandConverter(config.joint_names)
        self.outputs: list[CommandOutput] = []
        for group in config.command_outputs().values():
            cls = (ros_message_class("trajectory_msgs", "JointTrajectory") if group.type != "multiarray"
                   else ros_message_class("std_msgs", "Float64MultiArray"))
            self.outputs.append(CommandOutput(
                node.resolve_topic_name(group.topic), group.type,
                node.create_publisher(cls, group.topic, config.qos_depth),
                CommandConverter(group.joints), np.array([config.joint_names.index(j) for j in group.joints]),
                group.joints, group.controller))
            if group.type == "multiarray" and not group.controller:
                node.get_logger().warning(
                    f"{group.topic}: Float64MultiArray in the order {list(group.joints)}, not verified against the "
                    "controller (set controller_node, or command_groups.<group>.controller, to check its joints)")
        # what the policy intended, for `ros2 bag record` / Foxglove / RViz
        joint_state = ros_message_class("sensor_msgs", "JointState")
        self._planned_pub = node.create_publisher(ros_message_class("trajectory_msgs", "JointTrajectory"),
                                                  "~/planned_trajectory", config.qos_depth)
        self._raw_pub = node.create_publisher(joint_state, "~/command_raw", config.qos_depth)
        self._sent_pub = node.create_publisher(joint_state, "~/command_sent", config.qos_depth)

    # ------------------------------------------------------------------ controllers
    def describe(self) -> str:
        """``"/topic (type), ..."`` for the start-up log."""
        return ", ".join(f"{o.topic} ({o.type})" for o in self.outputs)

    @property
    def subscriber_count(self) -> int:
        """Subscriptions matched to the command publishers: the fewest of any output's."""
        return min(o.publisher.get_subscription_count() for o in self.outputs)

    def unsubscribed_topics(self) -> list[str]:
        """Command topics nobody subscribes to (a controller not running)."""
        return [o.topic for o in self.outputs if o.publisher.get_subscription_count() == 0]

    def controller_order_errors(self, context: Any) -> list[str]:
        """For each ``multiarray`` output with a controller node: why its ``joints`` parameter does
        not match the order the node sends (or could not be read), using the rclpy ``context``."""
        from .controller_check import ControllerCheckError, controller_joints, joint_order_error

        errors = []
        for o in self.outputs:
            if o.type != "multiarray" or not o.controller:
                continue
            try:
                error = joint_order_error(o.controller, o.joints, controller_joints(context, o.controller))
            except ControllerCheckError as exc:
                error = f"{exc} (needed to verify the joint order of {o.topic})"
            if error:
                errors.append(error)
        return errors

    # ------------------------------------------------------------------ checks
    def last_line_check(self, command: Any, measured: np.ndarray | None, now: float) -> tuple[str, str] | None:
        """``(kind, why)`` if ``command`` (a runtime ``Command``) must not be published at ``now``
        given the tick's ``measured`` position; ``kind`` is ``stale`` or ``unsafe``."""
        names = self.config.joint_names
        action = np.asarray(command.action, dtype=np.float64)
        if action.shape != (len(names),):
            return "unsafe", f"command has shape {action.shape}, expected ({len(names)},)"
        if not np.isfinite(action).all():
            return "unsafe", f"command is not finite: {action.tolist()}"
        bad = (action < self.low) | (action > self.high)
        if bad.any():
            joints = [f"{names[i]}={action[i]:.4f}" for i in np.flatnonzero(bad)]
            return "unsafe", f"command outside the position limits: {', '.join(joints)}"
        if self._track is not None:
            if measured is None:
                return "unsafe", "no usable measured joint position to check the command against"
            far = np.abs(action - measured) > self._track + 1e-9
            if far.any():
                joints = [f"{names[i]} {action[i]:.4f} vs measured {measured[i]:.4f}" for i in np.flatnonzero(far)]
                return "unsafe", ("command farther than max_tracking_error from the measured position: "
                                  + ", ".join(joints))
        late = now - command.target_time
        if late > self._max_age_s + 0.5 * self.period_s:
            return "stale", f"command for t={command.target_time:.3f} is {late:.3f} s late at publishing"
        return None

    # ------------------------------------------------------------------ publishing
    def publish(self, command: Any, future: np.ndarray, runtime_now: float) -> None:
        """Publish ``command`` to every controller, with ``future`` (the planned actions after it,
        ``(F, J)``, already bounded by the safety layer) for ``trajectory_chunk`` outputs and
        ``~/planned_trajectory``; points from the first non-finite or out-of-limit one are dropped."""
        future = np.asarray(future, dtype=np.float64).reshape(-1, len(self.config.joint_names))
        bad = (~np.isfinite(future).all(axis=1)) | ((future < self.low) | (future > self.high)).any(axis=1)
        if bad.any():  # cannot happen after bound_future: a bug upstream; keep the points before it
            future = future[: int(np.argmax(bad))]
        points = np.vstack([command.action, future])
        stamp = self.trajectory_stamp(command.target_time, runtime_now)
        for out in self.outputs:
            if out.type == "trajectory_chunk":
                msg = out.converter.to_trajectory(points[:, out.index], self.period_s, stamp=stamp)
            elif out.type == "trajectory":
                msg = out.converter.to_trajectory(command.action[out.index], self.period_s, stamp=stamp)
            else:
                msg = out.converter.to_multiarray(command.action[out.index])
            out.publisher.publish(msg)
        self._planned_pub.publish(self._all_joints.to_trajectory(points, self.period_s, stamp=stamp))
        self._publish_joint_vector(self._sent_pub, command.action)
        self.publish_raw(command.raw)

    def publish_raw(self, raw: np.ndarray | None) -> None:
        """``~/command_raw``: what the policy wanted before the safety layer (also when refused)."""
        if raw is not None:
            self._publish_joint_vector(self._raw_pub, raw)

    def trajectory_stamp(self, target_time: float, runtime_now: float) -> Any:
        """``header.stamp`` of a tick's trajectories: ``None`` (zero, "start on receipt") or the
        ROS time of ``target_time`` (a time on the runtime's clock, mapped through the offset
        between the two clocks, ``runtime_now`` being the runtime clock's reading now; the same
        clock under ``use_sim_time``). A late command (the last-line check lets it be up to
        ``max_action_age_s`` + half a period late) is stamped no earlier than half a period ago,
        so its first point, one period after the stamp, is still ahead when sent: a controller
        never receives a trajectory that ends in the past."""
        if self.config.trajectory_stamp == "zero":
            return None
        ros_now_ns = self.node.get_clock().now().nanoseconds
        planned_ns = ros_now_ns - round((runtime_now - target_time) * 1e9)
        return ns_to_time(max(planned_ns, ros_now_ns - round(0.5 * self.period_s * 1e9), 0))

    def _publish_joint_vector(self, publisher: Any, values: np.ndarray) -> None:
        msg = ros_message_class("sensor_msgs", "JointState")()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(self.config.joint_names)
        msg.position = [float(v) for v in values]
        publisher.publish(msg)
