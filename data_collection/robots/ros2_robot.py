"""Robot backend over ROS 2: reads ``sensor_msgs/JointState``, sends position targets.

Commands go out as ``trajectory_msgs/JointTrajectory`` (one point, reached after
``command_period_s``; e.g. ros2_control's ``joint_trajectory_controller``) or
``std_msgs/Float64MultiArray`` (e.g. a ``forward_command_controller`` for positions), built by
:class:`df_policy.ros.messages.CommandConverter`, the converter the recorder and the policy
node use too. The node runs in its own rclpy context on a background thread
(:class:`df_policy.ros.node_thread.NodeThread`); ``rclpy`` is imported only in ``connect``.

Safety: a command is refused (:class:`CommandRejectedError`, nothing published) if it has the
wrong shape, NaN/Inf, leaves the position limits, or — with ``check_speed`` — when the state is
missing/stale or the target is farther from the measured position than ``velocity_max *
speed_check_horizon_s``. Note a tracking controller lags its target, so a steady command
stream near ``velocity_max`` needs a horizon longer than one command period.

State: JointStates are read by joint name (any order, extra joints ignored). A message with a
missing joint or a non-finite position is dropped and counted (:attr:`Ros2Robot.stats`);
absent or non-finite velocities give ``RobotState.velocities = None``.

Time: ``RobotState.timestamp_s`` is host monotonic seconds: the receipt time
(``stamp_source="receipt"``) or ``header.stamp`` mapped from wall-clock to monotonic time
(``stamp_source="header"``; assumes the sender stamps with this host's wall clock, i.e. no
``use_sim_time`` and synchronised clocks). State age is ``time.monotonic() - timestamp_s``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from df_policy.ros.messages import CommandConverter, JointStateConverter, MessageConversionError
from df_policy.ros.node_thread import NodeThread, NodeThreadConfig, wait_until

from .base import CommandRejectedError, Robot, RobotConfigError, RobotError, RobotLimits, RobotState, StaleStateError

__all__ = ["COMMAND_TYPES", "Ros2Robot", "Ros2RobotConfig", "Ros2RobotStats"]

COMMAND_TYPES = ("trajectory", "multiarray")
_STAMP_SOURCES = ("receipt", "header")
_STATE_QOS = ("sensor_data", "reliable")


@dataclass(frozen=True)
class Ros2RobotConfig:
    """Settings of a :class:`Ros2Robot`.

    Attributes:
        limits: joints (action order) and their limits; JointState messages are read by name.
        state_topic: ``sensor_msgs/JointState`` topic.
        command_topic: topic the commands are published on.
        command_type: ``"trajectory"`` (JointTrajectory) or ``"multiarray"`` (Float64MultiArray).
        command_period_s: control period (s); the trajectory point's ``time_from_start``.
        check_speed: refuse targets that are unreachable at ``velocity_max`` (and refuse
            commanding at all while the state is missing or stale).
        speed_check_horizon_s: time (s) the speed check allows to reach a target; ``None`` =
            ``2 * command_period_s``.
        max_state_age_s: state older than this is stale (``read_state`` raises
            :class:`StaleStateError`); ``None`` = never stale.
        stamp_source: ``"receipt"`` or ``"header"`` (see the module docstring).
        state_qos: ``"sensor_data"`` (best effort; matches reliable and best-effort
            publishers) or ``"reliable"``.
        qos_depth: history depth of the state subscription and command publisher.
        connect_timeout_s: ``connect`` waits this long for the first JointState (and for a
            command subscriber, if ``wait_for_command_subscriber``).
        wait_for_command_subscriber: ``connect`` fails unless something subscribes to commands.
        node_name, namespace: the ROS node.
        domain_id: DDS domain; ``None`` = ``ROS_DOMAIN_ID`` from the environment.
        name: robot name used in messages.
    """

    limits: RobotLimits
    state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    command_type: str = "trajectory"
    command_period_s: float = 0.1
    check_speed: bool = True
    speed_check_horizon_s: float | None = None
    max_state_age_s: float | None = 0.5
    stamp_source: str = "receipt"
    state_qos: str = "sensor_data"
    qos_depth: int = 10
    connect_timeout_s: float = 5.0
    wait_for_command_subscriber: bool = True
    node_name: str = "df_policy_robot"
    namespace: str = ""
    domain_id: int | None = None
    name: str = "ros2_robot"

    def __post_init__(self) -> None:
        if not isinstance(self.limits, RobotLimits):
            raise RobotConfigError(f"limits must be RobotLimits, got {type(self.limits).__name__}")
        for topic in ("state_topic", "command_topic"):
            if not isinstance(getattr(self, topic), str) or not getattr(self, topic):
                raise RobotConfigError(f"{topic} must be a non-empty topic name")
        if self.command_type not in COMMAND_TYPES:
            raise RobotConfigError(f"command_type {self.command_type!r} is not one of {COMMAND_TYPES}")
        positive = {"command_period_s": self.command_period_s, "connect_timeout_s": self.connect_timeout_s}
        if self.speed_check_horizon_s is not None:
            positive["speed_check_horizon_s"] = self.speed_check_horizon_s
        if self.max_state_age_s is not None:
            positive["max_state_age_s"] = self.max_state_age_s
        for key, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RobotConfigError(f"{key} must be a finite number > 0, got {value!r}")
        if self.stamp_source not in _STAMP_SOURCES:
            raise RobotConfigError(f"stamp_source {self.stamp_source!r} is not one of {_STAMP_SOURCES}")
        if self.state_qos not in _STATE_QOS:
            raise RobotConfigError(f"state_qos {self.state_qos!r} is not one of {_STATE_QOS}")
        if isinstance(self.qos_depth, bool) or int(self.qos_depth) < 1:
            raise RobotConfigError(f"qos_depth must be >= 1, got {self.qos_depth}")
        NodeThreadConfig(self.node_name, self.namespace, self.domain_id)  # validates those fields

    @property
    def speed_horizon_s(self) -> float:
        """The effective speed-check horizon in seconds."""
        return self.speed_check_horizon_s if self.speed_check_horizon_s is not None else 2 * self.command_period_s


@dataclass(frozen=True)
class Ros2RobotStats:
    """Counters of a :class:`Ros2Robot`.

    Attributes:
        states_received: JointState messages converted successfully.
        states_rejected: JointState messages that could not be converted (missing joint, NaN…).
        last_state_error: the conversion error of the last rejected message, or ``None``.
        commands_sent: commands published.
        commands_rejected: commands refused by validation.
    """

    states_received: int
    states_rejected: int
    last_state_error: str | None
    commands_sent: int
    commands_rejected: int


class Ros2Robot(Robot):
    """:class:`~data_collection.robots.base.Robot` over ROS 2 topics (see the module docstring)."""

    def __init__(self, config: Ros2RobotConfig) -> None:
        if not isinstance(config, Ros2RobotConfig):
            raise RobotConfigError(f"expected a Ros2RobotConfig, got {type(config).__name__}")
        super().__init__(config.limits, name=config.name)
        self.config = config
        # positions must be finite (else the message is rejected); velocities are checked in
        # _on_state, efforts are not used
        self._joints = JointStateConverter(config.limits.joint_names, check_finite=("position",))
        self._commands = CommandConverter(config.limits.joint_names)
        self._node_thread: NodeThread | None = None
        self._publisher: Any = None
        self._subscription: Any = None
        self._state_lock = threading.Lock()
        self._latest: RobotState | None = None
        self._n_ok = 0
        self._n_bad = 0
        self._last_error: str | None = None
        self._n_sent = 0
        self._n_refused = 0

    # -- public extras

    @property
    def stats(self) -> Ros2RobotStats:
        with self._state_lock:
            return Ros2RobotStats(self._n_ok, self._n_bad, self._last_error, self._n_sent, self._n_refused)

    @property
    def command_subscriber_count(self) -> int:
        """How many subscriptions match the command publisher (0 when disconnected)."""
        return 0 if self._publisher is None else int(self._publisher.get_subscription_count())

    def latest_state(self) -> RobotState | None:
        """The latest state, stale or not, or ``None`` if none was received. Never raises."""
        with self._state_lock:
            return self._latest

    def state_age_s(self) -> float | None:
        """Seconds since the latest state's ``timestamp_s`` (host monotonic), ``None`` if none yet."""
        state = self.latest_state()
        return None if state is None else time.monotonic() - state.timestamp_s

    def is_state_stale(self) -> bool:
        """True if there is no state or it is older than ``max_state_age_s``."""
        age = self.state_age_s()
        if age is None:
            return True
        return self.config.max_state_age_s is not None and age > self.config.max_state_age_s

    def read_state(self, allow_stale: bool = False) -> RobotState:
        """The latest JointState as a :class:`RobotState`.

        Raises :class:`RobotError` if none was received, :class:`StaleStateError` if it is
        older than ``max_state_age_s`` (unless ``allow_stale``).
        """
        self._require_connected("read_state")
        return self._state(allow_stale)

    def _state(self, allow_stale: bool) -> RobotState:
        state = self.latest_state()
        if state is None:
            raise RobotError(f"{self.name}: no JointState received on {self.config.state_topic!r} yet")
        if not allow_stale:
            self._raise_if_stale(state, StaleStateError)
        return state

    # -- validation

    def validate_command(self, action: Any) -> np.ndarray:
        """Base checks (shape, finite, position limits) plus, with ``check_speed``, fresh state
        and reachability at ``velocity_max`` within ``speed_horizon_s``."""
        try:
            target = super().validate_command(action)
            if self.config.check_speed:
                state = self.latest_state()
                if state is None:
                    raise CommandRejectedError(
                        f"{self.name}: no JointState received on {self.config.state_topic!r}; refusing to command"
                    )
                self._raise_if_stale(state, CommandRejectedError, "; refusing to command")
                horizon = self.config.speed_horizon_s
                self.limits.check_step(target, state.positions, horizon, what=f"{self.name} command")
        except CommandRejectedError:
            with self._state_lock:
                self._n_refused += 1
            raise
        return target

    def _raise_if_stale(self, state: RobotState, error: type[Exception], suffix: str = "") -> None:
        max_age = self.config.max_state_age_s
        age = time.monotonic() - state.timestamp_s
        if max_age is not None and age > max_age:
            raise error(
                f"{self.name}: joint state on {self.config.state_topic!r} is stale "
                f"({age:.3f}s old > max_state_age_s={max_age}s){suffix}"
            )

    # -- Robot hooks

    def _connect(self) -> None:
        from df_policy.ros._imports import import_ros, ros_message_class

        qos = import_ros("rclpy.qos")
        cfg = self.config
        node_thread = NodeThread(NodeThreadConfig(cfg.node_name, cfg.namespace, cfg.domain_id))
        node = node_thread.start()
        try:
            if cfg.state_qos == "sensor_data":
                state_qos = qos.QoSProfile(
                    depth=cfg.qos_depth,
                    reliability=qos.ReliabilityPolicy.BEST_EFFORT,
                    history=qos.HistoryPolicy.KEEP_LAST,
                )
            else:
                state_qos = qos.QoSProfile(depth=cfg.qos_depth)
            msg_type = (
                ros_message_class("trajectory_msgs", "JointTrajectory")
                if cfg.command_type == "trajectory"
                else ros_message_class("std_msgs", "Float64MultiArray")
            )
            self._publisher = node.create_publisher(msg_type, cfg.command_topic, cfg.qos_depth)
            self._subscription = node.create_subscription(
                ros_message_class("sensor_msgs", "JointState"), cfg.state_topic, self._on_state, state_qos
            )
            deadline = time.monotonic() + cfg.connect_timeout_s
            domain = node_thread.node.context.get_domain_id()
            if not wait_until(lambda: self.latest_state() is not None, cfg.connect_timeout_s):
                stats = self.stats
                detail = ""
                if stats.states_rejected:
                    detail = f"; {stats.states_rejected} messages rejected, last: {stats.last_state_error}"
                raise RobotError(
                    f"{self.name}: no valid JointState on {cfg.state_topic!r} within {cfg.connect_timeout_s}s "
                    f"(ROS domain {domain}){detail}; is the robot driver running?"
                )
            if cfg.wait_for_command_subscriber and not wait_until(
                lambda: self._publisher.get_subscription_count() > 0, max(0.0, deadline - time.monotonic())
            ):
                raise RobotError(
                    f"{self.name}: nothing subscribes to commands on {cfg.command_topic!r} "
                    f"({cfg.command_type}) within {cfg.connect_timeout_s}s (ROS domain {domain})"
                )
        except BaseException:
            node_thread.stop()
            self._publisher = self._subscription = None
            raise
        self._node_thread = node_thread

    def _disconnect(self) -> None:
        node_thread, self._node_thread = self._node_thread, None
        self._publisher = self._subscription = None
        if node_thread is not None:
            node_thread.stop()
        with self._state_lock:
            self._latest = None

    def _read_state(self) -> RobotState:
        return self._state(allow_stale=False)

    def _on_state(self, msg: Any) -> None:
        received = time.monotonic()
        try:
            sample = self._joints.read(msg)
        except MessageConversionError as exc:
            with self._state_lock:
                self._n_bad += 1
                self._last_error = str(exc)
            return
        if self.config.stamp_source == "header":
            timestamp = sample.stamp_s - (time.time() - time.monotonic())
        else:
            timestamp = received
        velocity = sample.velocity
        if velocity is not None and not np.all(np.isfinite(velocity)):
            velocity = None  # some drivers publish NaN velocities: report "unknown", keep positions
        state = RobotState(sample.position, velocity, timestamp)
        with self._state_lock:
            self._latest = state
            self._n_ok += 1

    def _send_command(self, action: np.ndarray, stamp_s: float) -> None:
        publisher = self._publisher
        if publisher is None:
            raise RobotError(f"{self.name}: not connected")
        if self.config.command_type == "trajectory":
            msg = self._commands.to_trajectory(action, self.config.command_period_s)
        else:
            msg = self._commands.to_multiarray(action)
        publisher.publish(msg)
        with self._state_lock:
            self._n_sent += 1
