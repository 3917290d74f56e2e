"""The ROS 2 policy node: a thin adapter between ROS topics and :class:`~df_policy.runtime.runner.PolicyRuntime`.

Run it with ``python -m df_policy.ros.policy_node --checkpoint RUN --config node.yaml [--enable]``,
``dfp serve ...`` (same arguments) or ``ros2 launch df_policy run.launch.py checkpoint:=RUN
config:=node.yaml``. Settings: :class:`~df_policy.ros.node_config.PolicyNodeConfig`; precedence
(lowest first): field defaults < the ``--config`` YAML < ROS parameters (``--ros-args -p
name:=value`` / ``--params-file``) < ``--checkpoint`` / ``--device`` / ``--enable``. Parameters
are read once at start-up; changing one on a running node is refused (restart the node).
With the checkpoint alone (no config) the node starts when the checkpoint's store schema recorded
the robot (joint names and limits, as stores recorded by df_policy do): ``joint_names``,
``position_lower`` / ``position_upper`` and ``max_velocity`` default from it, camera topics to
realsense2_camera's (``/camera/color/image_raw``; ``/<key>/color/image_raw`` for several cameras).

Topics (names as configured; relative names resolve in the node's namespace)
--------------------------------------------------------------------------------
* subscribes ``joint_state_topic`` (``sensor_msgs/JointState``, best-effort "sensor data" QoS,
  which also matches reliable publishers): joints are picked **by name**; extra joints are
  ignored, a missing joint or a NaN/Inf in a field the checkpoint reads is an observation error.
* subscribes one topic per checkpoint image key (``camera_topics``): ``sensor_msgs/Image``
  (``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``) or ``sensor_msgs/CompressedImage``
  (JPEG / PNG), converted by :mod:`df_policy.ros.messages` and resized to the size the
  checkpoint was recorded at when it differs.
* publishes ``command_topic``: one joint **position target** per control tick, in
  ``joint_names`` order: a ``trajectory_msgs/JointTrajectory`` with one point whose
  ``time_from_start`` is one control period (header stamp zero = "start on receipt"), or a
  ``std_msgs/Float64MultiArray`` of ``len(joint_names)`` values.
* publishes ``~/planned_trajectory`` (the command plus the planned clean actions),
  ``~/command_raw`` / ``~/command_sent`` (``sensor_msgs/JointState``: before and after the
  safety layer) with every command, and ``~/state`` (``std_msgs/String`` JSON, latched) when the
  node's state changes;
* publishes ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) every
  ``diagnostics_period_s``: one status named ``<node name>: policy`` with level OK (disabled,
  or commanding), WARN (holding: stale observation, overrun, no action yet, late action;
  observation errors) or ERROR (fault latched, NaN in an observation or in the policy output,
  inference errors), the hold kind and reason, and counters (ticks, commands, holds per kind,
  limit clips, ``tracking_ratio_max``: the closest a command came to ``max_tracking_error``
  since ``~/enable``, 1 = the bound, with its joint; inference latency p50/p99, command rate,
  input ages, ...).

Services
--------
* ``~/enable`` (``std_srvs/SetBool``): ``true`` checks that every input (joint state and each
  camera) has arrived and is younger than ``max_obs_age_s`` and that the measured position is
  inside the position limits, resets the runtime from the **current measured joint
  position** (so velocity limits apply from the first command) and starts inference and the
  control loop; otherwise it fails and says why (``success=false``, ``message``). ``false``
  stops commanding (the controller keeps its last goal). Enabling also clears a latched fault.
* ``~/reset`` (``std_srvs/Trigger``): while enabled, re-anchor the runtime on the current
  measured position (history and action buffer cleared); while disabled, clear the counters.

Clocks and timing
-----------------
Every input is stamped with its **receipt time** on the runtime's clock: the host's monotonic
clock (``time.monotonic()``), or, when the node's ROS parameter ``use_sim_time`` is true, the
node's ROS clock, i.e. simulation time from ``/clock`` (:mod:`df_policy.ros.ros_clock`): the
control period, observation ages, the tracking grace and command lateness then all follow the
simulation, however fast it runs, and nothing is commanded while it is paused.
An input's ``header.stamp`` is not used (sender clocks do not matter, transport delay is not compensated;
outgoing trajectories are stamped, see ``trajectory_stamp``). An observation is pushed
to the runtime when a camera frame arrives (a joint state, for checkpoints without cameras),
combining the latest message of every input; its stamp is the **oldest** receipt time among
them, so a stalled input makes the observation age. The runtime runs inference on its own
thread; a :class:`~df_policy.runtime.control_loop.ControlLoop` thread calls ``control_tick``
every ``1 / rate_hz`` s (default: the checkpoint's fps) and publishes the result. Callbacks,
services and the diagnostics timer run on one executor thread.

Parts: the inputs (subscriptions, observations, the measured position) are
:class:`~df_policy.ros.observation_intake.ObservationIntake`; the outputs (the last-line check
and every message a command becomes) are :class:`~df_policy.ros.command_output.CommandOutputs`;
what ``/diagnostics`` says and at which level is :mod:`df_policy.ros.node_diagnostics`; this
module holds enabling, faults, the control-loop callback, the diagnostics timer and the CLI.

Faults
------
* stale input (camera or joint state stops, or older than ``max_obs_age_s``): the runtime holds;
  nothing is published (the controller keeps its last goal); ``/diagnostics`` WARN
  ``stale_observation``. Commands resume by themselves when fresh inputs return.
* inference slower than ``delay_steps`` periods: ``overrun`` / ``late_action`` holds (WARN).
* a command farther than ``max_tracking_error`` from the latest measured joint position (the
  controller is inactive, the arm blocked): never published; ``tracking_mode: fault`` latches a
  fault (ERROR) until ``~/enable`` once commands have stayed beyond the bound for
  ``tracking_fault_after_s`` (clipped into it until then: one late message is not a fault),
  ``clip`` clips it into ``measured ± max_tracking_error``.
  Velocity limits use the published ``time_from_start`` (one period), not the wall time.
* ``~/enable`` refuses while nothing subscribes to ``command_topic``; a subscriber that
  disappears while enabled, or a control-loop thread that died, latches a fault (ERROR).
* the checkpoint's action unit must equal ``action_unit`` (checked at start-up).
* NaN/Inf in an observation: ``invalid_observation`` hold (ERROR) until a valid one arrives.
* a message that cannot be converted (missing joint, bad encoding, wrong size): dropped,
  counted (``observation_errors``), logged (throttled), WARN.
* last line of defence: right before publishing every command is checked again (shape,
  finite, inside ``position_lower``/``position_upper``, within ``max_tracking_error`` of the
  tick's measured position, not later than the safety layer's
  ``max_action_age_s`` plus half a period). A stale one is dropped and counted. A non-finite or
  out-of-limit one (a bug upstream) is never published: the node **latches a fault** (ERROR),
  stops commanding and stays disabled until ``~/enable`` is called again.
* a hold of each kind is logged at most once per ``hold_log_period_s``.
* SIGINT / SIGTERM: stop commanding, stop inference, destroy the node, exit 0.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import logging
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._imports import import_ros, ros_message_class
from .command_output import CommandOutputs
from .node_config import MAPPING_FIELDS, PolicyNodeConfig, PolicyNodeConfigError
from .node_diagnostics import diagnostic_array, status_level, status_values
from .node_setup import (
    checkpoint_defaults,
    default_camera_topic,
    flatten_parameters,
    observation_inputs,
    parameter_value,
)
from .node_thread import init_private_context, serve_until_signal
from .observation_intake import ObservationIntake

__all__ = ["PolicyNode", "PolicyNodeConfig", "PolicyNodeConfigError", "build_arg_parser", "main", "run_from_args"]

log = logging.getLogger(__name__)

_RUNNING: weakref.WeakSet[PolicyNode] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """A context still spinning at interpreter exit aborts the process: stop what is left."""
    for node in list(_RUNNING):
        try:
            node.stop()
        except Exception:  # best effort at exit
            log.debug("stopping a policy node at exit failed", exc_info=True)


STUCK_TICK_S = 1.0
STUCK_TICK_PERIODS = 10
"""A control tick running longer than ``max(STUCK_TICK_S, STUCK_TICK_PERIODS * period)`` wall
seconds while enabled is a stuck loop: a fault, like a dead loop thread."""


# =========================================================================== node


class PolicyNode:
    """The policy node (see the module docstring).

    Args:
        config: a :class:`PolicyNodeConfig`, or a mapping of (possibly incomplete) settings that
            ROS parameters and ``overrides`` complete.
        ros_args: arguments after ``--ros-args`` (``-p name:=value``, ``--params-file f``,
            ``-r __ns:=/arm``, ...), applied to this node's private rclpy context.
        overrides: settings that win over ROS parameters (the ``--checkpoint``-style flags).
        domain_id: DDS domain; ``None`` = ``ROS_DOMAIN_ID``.

    Lifecycle: :meth:`start` (loads the checkpoint, raises :class:`PolicyNodeConfigError` on a
    bad setting) -> :meth:`enable` / services -> :meth:`stop`. Also a context manager.
    """

    def __init__(self, config: PolicyNodeConfig | Mapping[str, Any], *, ros_args: Sequence[str] = (),
                 overrides: Mapping[str, Any] | None = None, domain_id: int | None = None) -> None:
        base = config.to_dict() if isinstance(config, PolicyNodeConfig) else PolicyNodeConfig.normalize_mapping(config)
        self._base = base
        self._ros_args = list(ros_args)
        self._overrides = dict(overrides or {})
        self._domain_id = domain_id
        self.config: PolicyNodeConfig | None = None
        self.runtime: Any = None
        self.loop: Any = None
        self.node: Any = None
        self.clock: Any = None  # the runtime's clock, chosen at start (use_sim_time)
        self._context: Any = None
        self._executor: Any = None
        self._spin_thread: threading.Thread | None = None
        self._stop_spin = threading.Event()
        self._lock = threading.Lock()        # latest messages, counters
        self._state_lock = threading.RLock()  # enable / disable / reset
        self._enabled = False
        self._fault: str | None = None
        self._hold_logged: dict[str, float] = {}
        self._window: collections.Counter[str] = collections.Counter()
        self._publish_times: collections.deque[float] = collections.deque(maxlen=4096)
        # seconds from an observation's arrival to the publish of a command planned from it
        self._obs_to_command_s: collections.deque[float] = collections.deque(maxlen=2048)
        self._last_result: Any = None
        self._enabled_since: float | None = None
        self._seen_inference_errors = 0
        self.counters: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ lifecycle
    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def command_subscriber_count(self) -> int:
        """Subscriptions matched to the command publisher; with ``command_groups``, the fewest
        of any group's publisher (0 before :meth:`start`)."""
        out = getattr(self, "_out", None)
        return 0 if out is None or self.node is None else out.subscriber_count

    @property
    def fault(self) -> str | None:
        """Why commanding was stopped by the last-line check (``None`` = no fault)."""
        return self._fault

    def start(self) -> PolicyNode:
        """Create the node, read parameters, load and check the checkpoint, start spinning."""
        if self.node is not None:
            return self
        rclpy = import_ros("rclpy")
        try:
            context = init_private_context("policy_node", self._ros_args, self._domain_id)
        except ValueError as exc:  # e.g. an unparsable -p rule
            raise PolicyNodeConfigError(str(exc)) from exc.__cause__
        self._context = context
        try:
            name = self._overrides.get("node_name") or self._base.get("node_name") or "policy_node"
            self.node = rclpy.create_node(str(name), context=context)
            self.clock = self._runtime_clock()
            self._configure()
            self._build()
            self._executor = import_ros("rclpy.executors").SingleThreadedExecutor(context=context)
            self._executor.add_node(self.node)
        except BaseException:
            self._teardown()
            raise
        self._stop_spin.clear()
        self._spin_thread = threading.Thread(target=self._spin, name="ros-policy-node", daemon=True)
        self._spin_thread.start()
        _RUNNING.add(self)
        self.node.get_logger().info(
            f"ready: {self.config.checkpoint} at {1.0 / self.runtime.period_s:.2f} Hz, {self.runtime.planner.describe()}, "
            f"commands -> {self._out.describe()} "
            f"({'enabling when inputs are fresh' if self.config.start_enabled else 'disabled until ~/enable'})")
        return self

    def _runtime_clock(self) -> Any:
        """The monotonic clock, or the node's ROS clock (simulation time) under ``use_sim_time``."""
        from df_policy.runtime.clock import MonotonicClock

        if self.node.get_parameter("use_sim_time").value:
            from df_policy.ros.ros_clock import RosNodeClock

            self.node.get_logger().info("use_sim_time: the control loop and observation ages follow /clock")
            return RosNodeClock(self.node.get_clock())
        return MonotonicClock()

    def _spin(self) -> None:
        while not self._stop_spin.is_set() and self._context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # keep spinning; counted and logged
                if self._stop_spin.is_set() or not self._context.ok():
                    break
                self.counters["callback_errors"] += 1
                log.exception("policy node callback failed")

    def stop(self) -> None:
        """Stop commanding and inference, destroy the node, shut the context down. Idempotent."""
        _RUNNING.discard(self)
        if self.node is not None:
            self.disable("node shutting down")
        self._stop_spin.set()
        if self._spin_thread is not None:
            self._spin_thread.join(2.0)
            self._spin_thread = None
        self._teardown()

    def _teardown(self) -> None:
        if self.runtime is not None:
            self.runtime.stop(timeout=2.0)
        try:
            if self._executor is not None:
                self._executor.shutdown(timeout_sec=1.0)
            if self.node is not None:
                self.node.destroy_node()
        finally:
            if self._context is not None:
                self._context.try_shutdown()
            self._executor = self.node = self._context = None

    def __enter__(self) -> PolicyNode:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ set-up
    def _declare(self, name: str, default: Any) -> Any:
        descriptor = ros_message_class("rcl_interfaces", "ParameterDescriptor")(dynamic_typing=True)
        if isinstance(default, (list, tuple)) and not default:
            default = None  # an empty list has no ROS type
        return parameter_value(self.node.declare_parameter(name, default, descriptor).value)

    def _configure(self) -> None:
        """Declare every setting as a parameter, read the overrides, validate, load the checkpoint."""
        from df_policy.training.checkpoint import CheckpointError, load_checkpoint

        merged = dict(self._base)
        merged.update(self._overrides)
        values: dict[str, Any] = {}
        for name, default in flatten_parameters(merged).items():
            values[name] = self._declare(name, default)
        unknown = sorted(n for n in getattr(self.node, "_parameter_overrides", {})
                         if not self.node.has_parameter(n) and n not in values
                         and not n.startswith(tuple(f"{m}." for m in (*MAPPING_FIELDS, "command_groups"))))
        if unknown:
            raise PolicyNodeConfigError(
                f"unknown parameters {unknown} (from -p or --params-file); known: {sorted(values)}")
        values = PolicyNodeConfig.normalize_mapping(values)
        values.update(self._overrides)
        values = checkpoint_defaults(values)  # joint names and limits the config leaves out
        try:
            config = PolicyNodeConfig.from_mapping(values)
        except PolicyNodeConfigError as exc:
            if "missing required settings" not in str(exc) or not values.get("checkpoint"):
                raise
            raise PolicyNodeConfigError(
                f"{exc}: give them in the node config (or -p), or use a checkpoint whose training data recorded "
                "the robot's joint names and limits (stores recorded by df_policy do)") from None
        try:
            loaded = load_checkpoint(config.checkpoint, device=config.device)
        except (CheckpointError, FileNotFoundError) as exc:
            raise PolicyNodeConfigError(f"cannot load checkpoint {config.checkpoint!r}: {exc}") from exc
        # image keys the config does not mention may still come as ROS parameters
        cams = dict(config.camera_topics)
        image_keys = list(loaded.policy.config.image_shapes)
        for key in image_keys:
            if key not in cams:  # none configured at all: realsense2_camera's default topics
                default = None if config.camera_topics else default_camera_topic(key, image_keys)
                topic = self._declare(f"camera_topics.{key}", default)
                if topic:
                    cams[key] = topic
        if cams != dict(config.camera_topics):
            config = PolicyNodeConfig.from_mapping({**config.to_dict(), "camera_topics": cams})
        self._inputs = observation_inputs(config, loaded)
        self.config, self._loaded = config, loaded
        self.node.add_on_set_parameters_callback(self._refuse_parameter_change)

    def _refuse_parameter_change(self, params: list[Any]) -> Any:
        result = ros_message_class("rcl_interfaces", "SetParametersResult")()
        result.successful = False
        result.reason = "policy node parameters are read at start-up only; restart the node to change them"
        return result

    def _build(self) -> None:
        from df_policy.runtime.control_loop import ControlLoop
        from df_policy.runtime.planning import PlannerConfig
        from df_policy.runtime.preprocess import (
            ObservationError as RuntimeObservationError,
        )
        from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig
        from df_policy.runtime.safety import Command, SafetyConfig

        self._command_cls = Command
        cfg, node, loaded = self.config, self.node, self._loaded
        runtime_config = RuntimeConfig(
            planner=PlannerConfig(mode=cfg.planner_mode, delay_steps=cfg.delay_steps,
                                  block_tokens=cfg.planner_block_tokens),
            # command_dt_s = None: one control period, the time_from_start every published point gets
            safety=SafetyConfig(low=cfg.position_lower, high=cfg.position_upper, max_velocity=cfg.max_velocity,
                                max_acceleration=cfg.max_acceleration, max_obs_age_s=cfg.max_obs_age_s,
                                max_tracking_error=cfg.max_tracking_error, tracking_mode=cfg.tracking_mode,
                                tracking_grace_s=cfg.tracking_grace_s,
                                tracking_fault_after_s=cfg.tracking_fault_after_s, names=tuple(cfg.joint_names)),
            period_s=cfg.command_period_s, device=cfg.device, accelerate=cfg.accelerate, precision=cfg.precision,
        )
        self.runtime = PolicyRuntime.from_loaded(loaded, runtime_config, self.clock)
        warmup_s = self.runtime.warmup()  # compiles the fast path now, never on the control path
        node.get_logger().info(f"inference path {self.runtime.accelerate!r} ({cfg.precision}) warmed up in "
                               f"{warmup_s:.1f} s")
        fps = loaded.fps
        if fps and abs(1.0 / self.runtime.period_s - float(fps)) > 1e-6:
            node.get_logger().warning(
                f"rate_hz={1.0 / self.runtime.period_s:g} differs from the checkpoint's {float(fps):g} fps: "
                "the policy's actions are spaced for its training rate")
        self.period_s = self.runtime.period_s
        self.loop = ControlLoop(self.runtime, self._on_result, self.period_s, measure=self._measure_for_tick)
        self._tick_measured: np.ndarray | None = None
        self._intake = ObservationIntake(
            node, cfg, self._inputs, list(loaded.policy.config.image_shapes), self.clock, self.runtime.push_observation,
            (RuntimeObservationError,), lambda: self._enabled, self.counters, self._window, self._lock)
        # one publisher per controller (command_groups), or one for command_topic; introspection topics
        self._out = CommandOutputs(node, cfg, self.period_s,
                                   self.runtime.safety.config.vector("max_tracking_error", len(cfg.joint_names)),
                                   self.runtime.safety.max_action_age_s)
        self._diag_pub = node.create_publisher(ros_message_class("diagnostic_msgs", "DiagnosticArray"),
                                               "/diagnostics", cfg.qos_depth)
        qos = import_ros("rclpy.qos")
        latched = qos.QoSProfile(depth=1, durability=qos.DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=qos.ReliabilityPolicy.RELIABLE)
        self._state_pub = node.create_publisher(ros_message_class("std_msgs", "String"), "~/state", latched)
        self._published_state: tuple[Any, ...] | None = None
        self._publish_state("disabled", "waiting for ~/enable")
        srv = import_ros("std_srvs.srv")
        node.create_service(srv.SetBool, "~/enable", self._on_enable_service)
        node.create_service(srv.Trigger, "~/reset", self._on_reset_service)
        node.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        if cfg.start_enabled:
            self._auto_enable_timer = node.create_timer(0.1, self._try_auto_enable)

    # ------------------------------------------------------------------ inputs
    @property
    def last_observation_error(self) -> str | None:
        """Why the latest dropped observation was dropped (``None`` = none dropped)."""
        return self._intake.last_error if hasattr(self, "_intake") else None

    def input_ages(self) -> dict[str, float | None]:
        """Seconds since the latest message of each input (``None`` = nothing received yet)."""
        return self._intake.input_ages()

    def measured_position(self) -> np.ndarray:
        """The latest joint position in ``joint_names`` order; raises ``RuntimeError`` saying why not."""
        return self._intake.measured_position()

    def _measure_for_tick(self) -> np.ndarray | None:
        """The measured position the safety filter checks this tick's command against (control
        thread); kept for the last-line check of the same tick. ``None`` when it is unusable."""
        try:
            self._tick_measured = self.measured_position()
        except RuntimeError:
            self._tick_measured = None
        return self._tick_measured

    def enable(self) -> tuple[bool, str]:
        """Start commanding from the current measured position; ``(success, message)``."""
        with self._state_lock:
            if self._enabled and self._fault is None:
                return True, "already enabled"
            if self._enabled:  # a fault latched since the last diagnostics tick: stop first
                self.disable(f"fault: {self._fault}")
            unsubscribed = self._out.unsubscribed_topics()
            if unsubscribed:
                return False, (f"cannot enable: nothing subscribes to {', '.join(unsubscribed)} "
                               "(is the controller loaded and active?)")
            wrong_order = self._out.controller_order_errors(self._context)
            if wrong_order:
                return False, "cannot enable: " + "; ".join(wrong_order)
            try:
                q = self.measured_position()
            except RuntimeError as exc:
                return False, f"cannot enable: {exc}"
            outside = [f"{n}={v:.3f} not in [{lo:g}, {hi:g}]" for n, v, lo, hi
                       in zip(self.config.joint_names, q, self._out.low, self._out.high) if not lo <= v <= hi]
            if outside:
                return False, f"cannot enable: the robot is outside the position limits: {', '.join(outside)}"
            ages = self.input_ages()
            missing = [self._intake.topic_of[s] for s, a in ages.items() if a is None]
            if missing:
                return False, f"cannot enable: nothing received yet on {missing}"
            stale = [f"{self._intake.topic_of[s]} ({a:.2f} s)" for s, a in ages.items() if a > self.config.max_obs_age_s]
            if stale:
                return False, (f"cannot enable: stale inputs {stale} (max_obs_age_s={self.config.max_obs_age_s})")
            self.runtime.stop(timeout=2.0)
            self.runtime.reset(initial_command=q)
            self._intake.restart()
            self._fault = None
            self._seen_inference_errors = 0
            with self._lock:
                self._window.clear()
                self._last_result = None
            self.runtime.start()
            self._enabled = True
            self._enabled_since = self.clock.now()
            self._intake.push()  # the inputs are fresh: the first tick already has an observation
            self.loop.start()
            self.counters["enables"] += 1
            msg = f"enabled from measured position {np.round(q, 4).tolist()}"
            self._publish_state("enabled", msg)
            self.node.get_logger().info(msg)
            return True, msg

    def disable(self, why: str = "disabled") -> tuple[bool, str]:
        """Stop commanding (the controller keeps its last goal) and stop inference."""
        with self._state_lock:
            was = self._enabled
            self._enabled = False
            if self.loop is not None:
                self.loop.stop()
            if self.runtime is not None:
                self.runtime.stop(timeout=2.0)
            if was and self.node is not None:
                self.node.get_logger().info(f"commanding stopped: {why}")
                self._publish_state("disabled", why)
            return True, ("disabled" if was else "already disabled")

    def reset(self) -> tuple[bool, str]:
        """Re-anchor on the current measured position (enabled) or clear the counters (disabled)."""
        with self._state_lock:
            if not self._enabled:
                self.runtime.reset()
                return True, "runtime counters cleared (node is disabled)"
            self.disable("reset")
            ok, msg = self.enable()
            return ok, ("reset: " + msg) if ok else msg

    def _on_enable_service(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.enable() if request.data else self.disable("~/enable false")
        if not response.success:
            self.node.get_logger().warning(response.message)
        return response

    def _on_reset_service(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.reset()
        return response

    def _try_auto_enable(self) -> None:
        if self._enabled or self._fault is not None or self.counters["enables"]:
            self._auto_enable_timer.cancel()  # start_enabled acts once; later enables go through ~/enable
            return
        ok, msg = self.enable()
        if not ok:
            self.node.get_logger().info(f"start_enabled: waiting ({msg})", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ control (ControlLoop thread)
    def _last_line_check(self, command: Any) -> tuple[str, str] | None:
        """``(kind, why)`` if ``command`` must not be published (this tick's measured position, now)."""
        return self._out.last_line_check(command, self._tick_measured, self.clock.now())

    def _on_result(self, result: Any) -> None:
        if not self._enabled or self._fault is not None:
            return
        if isinstance(result, self._command_cls):
            if self.command_subscriber_count == 0:  # checked every tick, not only by the diagnostics timer
                self._fault = self._no_subscriber_fault()
                self.node.get_logger().error(f"NOT published, commanding stopped (fault): {self._fault}")
                self._publish_state("fault", self._fault)
                return
            problem = self._last_line_check(result)
            if problem is not None:
                self._out.publish_raw(result.raw)  # what the policy wanted, recorded even when refused
                kind, why = problem
                with self._lock:
                    self.counters[f"refused_{kind}"] += 1
                    self._window[f"refused_{kind}"] += 1
                if kind == "unsafe":
                    self._fault = why
                    self.node.get_logger().error(f"NOT published, commanding stopped (fault): {why}")
                    self._publish_state("fault", why)
                else:
                    self.node.get_logger().warning(f"NOT published: {why}", throttle_duration_sec=1.0)
                return
            self._out.publish(result, self.runtime.planned_after(result, self.config.chunk_points), self.clock.now())
            self._publish_state("commanding")
            published = self.clock.now()
            source = getattr(self.runtime.last_tick, "source", None)
            with self._lock:
                self.counters["commands_published"] += 1
                self._window["commands"] += 1
                self._publish_times.append(published)
                if source is not None:  # obs_time: the observation's (oldest input's) receipt time
                    self._obs_to_command_s.append(published - source.obs_time)
                self._last_result = result
            return
        # Hold: publish nothing new; the controller keeps its last goal
        if result.kind == "tracking_error" and self._fault is None:
            self._fault = result.reason
            self.node.get_logger().error(f"NOT published, commanding stopped (fault): {result.reason}")
        self._publish_state("fault" if self._fault else f"holding: {result.kind}", result.reason)
        now = self.clock.now()
        with self._lock:
            self.counters[f"hold.{result.kind}"] += 1
            self._window[f"hold.{result.kind}"] += 1
            self._last_result = result
            due = now - self._hold_logged.get(result.kind, -np.inf) >= self.config.hold_log_period_s
            if due:
                self._hold_logged[result.kind] = now
        # (rclpy refuses two severities from one call site: hence two calls)
        if due and result.kind == "no_action":  # the normal start-up hold: nothing planned yet
            self.node.get_logger().info(f"holding ({result.kind}): {result.reason}")
        elif due:
            self.node.get_logger().warning(f"holding ({result.kind}): {result.reason}")

    def _publish_state(self, activity: str, reason: str = "") -> None:
        """Latch ``~/state`` (JSON: enabled, fault, activity, reason) whenever it changes."""
        if self.node is None or not hasattr(self, "_state_pub"):
            return
        state = (self._enabled, self._fault, activity)
        if state == self._published_state:
            return
        self._published_state = state
        msg = ros_message_class("std_msgs", "String")()
        msg.data = json.dumps({"enabled": self._enabled, "fault": self._fault, "activity": activity,
                               "reason": reason})
        self._state_pub.publish(msg)

    # ------------------------------------------------------------------ diagnostics (executor thread)
    def status(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the current state; level is ``OK``, ``WARN`` or ``ERROR``
        (the rules: :mod:`df_policy.ros.node_diagnostics`).

        Window counts cover the time since the previous call (the diagnostics period)."""
        now = self.clock.now()
        with self._lock:
            window, self._window = self._window, collections.Counter()
            last = self._last_result
            counters = dict(self.counters)
            since = max(now - 2.0, self._enabled_since or now)
            recent = sum(1 for t in self._publish_times if t > since)
            obs_to_command = np.asarray(self._obs_to_command_s, dtype=np.float64)
        stats = self.runtime.stats()
        values = status_values(
            enabled=self._enabled, fault=self._fault, checkpoint=str(self._loaded.path), rate_hz=1.0 / self.period_s,
            command_rate_hz=recent / (now - since) if self._enabled and now - since > 0.2 else 0.0,
            obs_to_command_s=obs_to_command, counters=counters, stats=stats, loop=self.loop.report(),
            input_ages={self._intake.topic_of[s]: a for s, a in self.input_ages().items()},
            delay_steps=self.config.delay_steps, last_observation_error=self.last_observation_error)
        new_errors = 0
        if self._fault is None and self._enabled:  # errors seen while disabled are not news on enabling
            new_errors = stats["inference_errors"] - self._seen_inference_errors
            self._seen_inference_errors = stats["inference_errors"]
        level, message = status_level(values, enabled=self._enabled, fault=self._fault, window=window,
                                      new_inference_errors=new_errors, last_error=stats["last_error"],
                                      last_result=last, last_observation_error=self.last_observation_error)
        return level, message, values

    def _no_subscriber_fault(self) -> str:
        topics = ", ".join(self._out.unsubscribed_topics()) or "the command topic"
        return f"nothing subscribes to {topics} any more (controller stopped or unloaded)"

    def _check_liveness(self) -> None:
        """Latch a fault when, while enabled, the control loop died or the controller went away."""
        if not self._enabled or self._fault is not None:
            return
        stuck_limit_s = max(STUCK_TICK_S, STUCK_TICK_PERIODS * self.loop.period_s)
        if self.loop.failure is not None or not self.loop.alive:
            self._fault = self.loop.failure or "the control loop thread is not running"
        elif self.loop.busy_for_s() > stuck_limit_s:
            self._fault = (f"a control tick has been running for {self.loop.busy_for_s():.2f} s (limit "
                           f"{stuck_limit_s:.2f} s): the control loop is stuck")
        elif self.command_subscriber_count == 0:
            self._fault = self._no_subscriber_fault()
        if self._fault is not None:
            self.node.get_logger().error(f"commanding stopped (fault): {self._fault}")
            self._publish_state("fault", self._fault)

    def _publish_diagnostics(self) -> None:
        self._check_liveness()
        if self._fault is not None and self._enabled:
            self.disable(f"fault: {self._fault}")
        level, message, values = self.status()
        array = diagnostic_array(level, message, values, name=f"{self.node.get_name()}: policy",
                                 hardware_id=self._loaded.schema.robot or "",
                                 stamp=self.node.get_clock().now().to_msg())
        self._diag_pub.publish(array)


# =========================================================================== command line


def add_node_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The node's command-line arguments (shared by ``python -m df_policy.ros.policy_node`` and ``dfp serve``)."""
    parser.add_argument("--checkpoint", default=None, help="checkpoint or training run directory (overrides the config)")
    parser.add_argument("--config", default=None, help="node config YAML (PolicyNodeConfig fields or a ROS params file)")
    parser.add_argument("--enable", action="store_true", help="start commanding once every input is fresh "
                        "(start_enabled); default: wait for ~/enable")
    parser.add_argument("--device", default=None, help="torch device (overrides the config)")
    parser.add_argument("--namespace", default=None, help="ROS namespace of the node (same as -r __ns:=/NS)")
    parser.add_argument("--print-config", action="store_true", help="print the example SO-101 config and exit")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="everything after this goes to ROS (-p name:=value, --params-file F, -r ...)")
    return parser


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m df_policy.ros.policy_node",
                                     description="Run a df_policy checkpoint on a robot through ROS 2.")
    return add_node_arguments(parser)


EXAMPLE_CONFIG = "node_so101.yaml"


def run_from_args(args: argparse.Namespace) -> int:
    """Start the node from parsed arguments, run until SIGINT/SIGTERM; exit code (2 = bad settings)."""
    if args.print_config:
        from importlib import resources

        print(resources.files("df_policy").joinpath("configs").joinpath(EXAMPLE_CONFIG).read_text(), end="")
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    if args.checkpoint:
        overrides["checkpoint"] = args.checkpoint
    if args.device:
        overrides["device"] = args.device
    if args.enable:
        overrides["start_enabled"] = True
    ros_args = list(args.ros_args or [])
    if args.namespace:
        ns = args.namespace if args.namespace.startswith("/") else "/" + args.namespace
        ros_args += ["-r", f"__ns:={ns}"]
    try:
        base = PolicyNodeConfig.load_yaml(args.config) if args.config else {}
        node = PolicyNode(base, ros_args=ros_args, overrides=overrides)
        node.start()
    except (PolicyNodeConfigError, ValueError) as exc:
        print(f"policy_node: error: {exc}", file=sys.stderr)
        return 2
    serve_until_signal(node.stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m df_policy.ros.policy_node`` / the ``policy_node`` executable of the ROS package."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_from_args(build_arg_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
