"""The simulated SO-101 arm (MuJoCo, :mod:`df_policy.sim`) as a ROS 2 node, standing in for a
robot driven by ros2_control, so the policy node's closed loop runs through real topics.

Publishes (stamps: the node clock when the state was computed):

* ``joint_state_topic`` (``sensor_msgs/JointState``, positions and velocities, ``physics_hz``);
* one ``sensor_msgs/Image`` (``rgb8``) per entry of ``camera_topics`` at ``camera_hz``,
  rendered from the same state as the JointState of that instant;
* ``~/task`` (``std_msgs/String``, JSON, at ``camera_hz``): ``seed``, ``time_s`` since reset,
  ``success``, ``solved_for_s`` (how long the task has been solved without a break),
  ``progress``, the controller's ``accepted`` / ``rejected`` counts and last rejection, and the
  physics thread's ``overruns`` (periods it could not keep up with real time) and
  ``max_step_ms`` (longest step since the previous message).

Accepts on ``command_topic`` what a real controller accepts, with its strictness
(:class:`~df_policy.sim.controller.JointPositionController`): ``controller: jtc`` takes
``trajectory_msgs/JointTrajectory`` (all joints by name, no partial goals, starts from the
measured state unless ``interpolate_from_desired_state``), ``controller: forward`` takes
``std_msgs/Float64MultiArray`` (one value per joint, in ``SO101_JOINTS`` order). Rejected
messages change nothing and are counted.

Parameter ``joints``: the joint order of its commands, as a ros2_control controller declares it
(the policy node's ``controller_node`` check reads it).

Services (``std_srvs``): ``~/reset`` (``Trigger``; next episode: the first call gives ``seed``,
the next ``seed + 1``, ...), ``~/controller_active`` (``SetBool``; false = the controller is
stopped: its command subscription is destroyed and the arm holds where it is, as when a
controller is deactivated), ``~/camera_active`` (``SetBool``; false = no more images).

Time: the physics thread steps ``1 / physics_hz`` of simulated time every ``1 / (physics_hz *
real_time_factor)`` of wall time (an overrun is counted and skipped, never caught up in a burst).
By default stamps and the controller's trajectory timing use the host clock. With
``publish_clock`` the node is the simulation's time source, as Gazebo is: it publishes
``/clock`` (``rosgraph_msgs/Clock``, simulated time since start-up) every physics step, stamps
its messages with it and times trajectories on it, so a policy node with ``use_sim_time`` runs
on the simulation's time whatever ``real_time_factor`` is.

Run: ``python -m df_policy.ros.sim_arm_node --task demo`` (prints ``READY``; stops on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._imports import import_ros, ros_message_class
from .messages import JointStateConverter, MessageConversionError, duration_to_ns, rgb_to_image, time_to_ns
from .node_thread import NodeThread, NodeThreadConfig, serve_until_signal

__all__ = ["SIM_TASKS", "SimArmNode", "SimArmNodeConfig", "main"]

SIM_TASKS = ("demo", "default")


@dataclass(frozen=True)
class SimArmNodeConfig:
    """Settings of :class:`SimArmNode` (Hz, seconds; topics may be relative to ``namespace``).

    Attributes:
        task: ``"demo"`` (``dfp demo``'s task: 64x64 images, narrow cube area, fixed target)
            or ``"default"`` (:class:`~df_policy.sim.arm_env.SimArmConfig` defaults).
        seed: the first episode's seed (the state at start-up and the first ``~/reset``).
        physics_hz: physics / controller / JointState rate; ``500 / physics_hz`` must be whole.
        camera_hz: image and ``~/task`` rate; a divisor of ``physics_hz``.
        controller: ``"jtc"`` or ``"forward"`` (see the module docstring).
        interpolate_from_desired_state: ``jtc``: start trajectories from the desired state.
        joint_state_topic, command_topic: topics.
        camera_topics: camera name in the scene (``scene``) -> image topic.
        node_name, namespace, domain_id: the ROS node (``domain_id`` None = ``ROS_DOMAIN_ID``).
        ros_args: what follows ``--ros-args`` (``-r __ns:=/arm`` from ``launch_ros``, ...); wins
            over ``node_name`` / ``namespace``.
        publish_clock: publish ``/clock`` and run stamps and trajectory timing on simulated time.
        real_time_factor: simulated seconds per wall second (0.5 = half speed).
    """

    task: str = "demo"
    seed: int = 0
    physics_hz: float = 50.0
    camera_hz: float = 10.0
    controller: str = "jtc"
    interpolate_from_desired_state: bool = False
    joint_state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    camera_topics: dict[str, str] = field(default_factory=lambda: {"scene": "/camera/color/image_raw"})
    node_name: str = "sim_arm"
    namespace: str = ""
    domain_id: int | None = None
    ros_args: tuple[str, ...] = ()
    publish_clock: bool = False
    real_time_factor: float = 1.0

    def __post_init__(self) -> None:
        from df_policy.sim.controller import CONTROLLER_MODES

        if self.task not in SIM_TASKS:
            raise ValueError(f"task must be one of {SIM_TASKS}, got {self.task!r}")
        if self.controller not in CONTROLLER_MODES:
            raise ValueError(f"controller must be one of {CONTROLLER_MODES}, got {self.controller!r}")
        for name in ("physics_hz", "camera_hz", "real_time_factor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        ratio = self.physics_hz / self.camera_hz
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"camera_hz ({self.camera_hz}) must divide physics_hz ({self.physics_hz})")
        if not self.camera_topics:
            raise ValueError("camera_topics must name at least one camera")
        object.__setattr__(self, "ros_args", NodeThreadConfig(self.node_name, self.namespace, self.domain_id,
                                                              ros_args=self.ros_args).ros_args)

    def env_config(self) -> Any:
        """The :class:`SimArmConfig` of the task, stepped at ``physics_hz``."""
        from df_policy.sim.tasks import demo_task_config

        if self.task == "demo":
            return demo_task_config(control_hz=float(self.physics_hz), episode_time_s=3600.0)
        from df_policy.sim.arm_env import SimArmConfig

        return SimArmConfig(control_hz=float(self.physics_hz), episode_time_s=3600.0)


class SimArmNode:
    """The simulated arm behind ROS 2 topics and services (see the module docstring)."""

    def __init__(self, config: SimArmNodeConfig) -> None:
        from df_policy.sim.gl import select_gl_backend

        select_gl_backend()
        from df_policy.sim.arm_env import SimArmEnv
        from df_policy.sim.controller import JointPositionController

        self.config = config
        self.env = SimArmEnv(config.env_config())
        unknown = sorted(set(config.camera_topics) - set(self.env.camera_names))
        if unknown:
            raise ValueError(f"camera_topics names cameras {unknown}; the scene has {list(self.env.camera_names)}")
        self.joint_names = tuple(self.env.joint_names)
        self._next_seed = int(config.seed)
        self._seed = int(config.seed)
        self.env.reset(self._seed)
        self.controller = JointPositionController(
            self.joint_names, self.env.lower, self.env.upper, self.env.joint_positions(), mode=config.controller,
            interpolate_from_desired_state=config.interpolate_from_desired_state)
        self._states = JointStateConverter(self.joint_names)
        self._lock = threading.Lock()  # env episode state (seed, solved time) vs services
        self._node_thread: NodeThread | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._command_sub: Any = None
        self._camera_on = True
        self._solved_for_s = 0.0
        self.overruns = 0
        self._max_step_s = 0.0  # longest physics step (+ render) since the last ~/task message
        self.steps = 0
        self.sim_time_s = 0.0  # simulated seconds since start-up (/clock with publish_clock)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimArmNode:
        cfg = self.config
        node_thread = NodeThread(NodeThreadConfig(cfg.node_name, cfg.namespace, cfg.domain_id, parameter_services=True,
                                                     ros_args=cfg.ros_args))
        node = node_thread.start()
        try:
            srv = import_ros("std_srvs.srv")
            self._state_pub = node.create_publisher(ros_message_class("sensor_msgs", "JointState"),
                                                    cfg.joint_state_topic, 10)
            image = ros_message_class("sensor_msgs", "Image")
            self._image_pubs = {cam: node.create_publisher(image, topic, 10) for cam, topic in cfg.camera_topics.items()}
            self._task_pub = node.create_publisher(ros_message_class("std_msgs", "String"), "~/task", 10)
            self._clock_pub = (node.create_publisher(ros_message_class("rosgraph_msgs", "Clock"), "/clock", 10)
                               if cfg.publish_clock else None)
            node.declare_parameter("joints", list(self.joint_names))  # as ros2_control controllers declare it
            node.create_service(srv.Trigger, "~/reset", self._on_reset)
            node.create_service(srv.SetBool, "~/controller_active", self._on_controller_active)
            node.create_service(srv.SetBool, "~/camera_active", self._on_camera_active)
            self._node_thread = node_thread
            self._subscribe()
        except BaseException:
            node_thread.stop()
            self._node_thread = None
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-arm-physics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        node_thread, self._node_thread = self._node_thread, None
        if node_thread is not None:
            node_thread.stop()
        self.env.close()

    def __enter__(self) -> SimArmNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def node(self) -> Any:
        if self._node_thread is None:
            raise RuntimeError("SimArmNode is not started")
        return self._node_thread.node

    # ------------------------------------------------------------------ commands
    def _subscribe(self) -> None:
        cfg = self.config
        if cfg.controller == "jtc":
            msg_type, callback = ros_message_class("trajectory_msgs", "JointTrajectory"), self._on_trajectory
        else:
            msg_type, callback = ros_message_class("std_msgs", "Float64MultiArray"), self._on_forward
        self._command_sub = self.node.create_subscription(msg_type, cfg.command_topic, callback, 10)

    def _now(self) -> float:
        """The controller's time: simulated seconds with ``publish_clock``, else the host's."""
        return self.sim_time_s if self.config.publish_clock else time.time()

    def _on_trajectory(self, msg: Any) -> None:
        from df_policy.sim.controller import CommandRejected

        now = self._now()
        n = len(msg.joint_names)
        if any(len(p.positions) != n for p in msg.points):
            positions = np.full((len(msg.points), n + 1), np.nan)  # the controller rejects and counts it
        else:
            positions = np.array([list(p.positions) for p in msg.points], dtype=np.float64).reshape(-1, n)
        times = np.array([duration_to_ns(p.time_from_start) / 1e9 for p in msg.points], dtype=np.float64)
        try:
            self.controller.accept_trajectory(list(msg.joint_names), positions, times,
                                              time_to_ns(msg.header.stamp) / 1e9, now, self.env.joint_positions())
        except (CommandRejected, MessageConversionError):
            pass  # counted by the controller; reported on ~/task

    def _on_forward(self, msg: Any) -> None:
        from df_policy.sim.controller import CommandRejected

        try:
            self.controller.accept_forward(np.asarray(msg.data, dtype=np.float64))
        except CommandRejected:
            pass

    # ------------------------------------------------------------------ services
    def reset(self) -> int:
        """Start the next episode; returns its seed."""
        with self._lock:
            seed, self._next_seed = self._next_seed, self._next_seed + 1
            self.env.reset(seed)
            self._seed = seed
            self._solved_for_s = 0.0
            self.controller.hold(self.env.joint_positions())
        return seed

    def _on_reset(self, request: Any, response: Any) -> Any:
        seed = self.reset()
        response.success, response.message = True, f"seed {seed}"
        return response

    def _on_controller_active(self, request: Any, response: Any) -> Any:
        active = bool(request.data)
        if active and self._command_sub is None:
            self.controller.hold(self.env.joint_positions())
            self._subscribe()
        elif not active and self._command_sub is not None:
            self.node.destroy_subscription(self._command_sub)
            self._command_sub = None
            self.controller.hold(self.env.joint_positions())
        response.success, response.message = True, f"controller {'active' if active else 'stopped'}"
        return response

    def _on_camera_active(self, request: Any, response: Any) -> Any:
        self._camera_on = bool(request.data)
        response.success, response.message = True, f"camera {'on' if self._camera_on else 'off'}"
        return response

    # ------------------------------------------------------------------ physics thread
    def _run(self) -> None:
        cfg = self.config
        period = 1.0 / cfg.physics_hz
        wall_period = period / cfg.real_time_factor
        every = round(cfg.physics_hz / cfg.camera_hz)
        next_t = time.monotonic()
        time_msg = ros_message_class("builtin_interfaces", "Time")
        clock_msg = ros_message_class("rosgraph_msgs", "Clock")
        while not self._stop.is_set():
            t_step = time.monotonic()
            with self._lock:
                result = self.env.step(self.controller.target(self._now()))
                self._solved_for_s = self._solved_for_s + period if result.success else 0.0
                self.steps += 1
                self.sim_time_s = self.steps * period
                if cfg.publish_clock:
                    ns = round(self.sim_time_s * 1e9)
                    stamp = time_msg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
                else:
                    stamp = self.node.get_clock().now().to_msg()
                pos, vel = self.env.joint_positions(), self.env.joint_velocities()
                images = ({cam: self.env.render(cam) for cam in cfg.camera_topics}
                          if self.steps % every == 0 and self._camera_on else {})
                task = None
                if self.steps % every == 0:
                    stats = self.controller.stats()
                    task = {"seed": self._seed, "time_s": round(self.env.time_s, 4), "success": bool(result.success),
                            "solved_for_s": round(self._solved_for_s, 4), "progress": round(result.progress, 4),
                            "accepted": stats.accepted, "rejected": stats.rejected,
                            "last_rejection": stats.last_rejection, "overruns": self.overruns,
                            "max_step_ms": round(self._max_step_s * 1e3, 2)}
                    self._max_step_s = 0.0
            try:
                if self._clock_pub is not None:
                    self._clock_pub.publish(clock_msg(clock=stamp))
                self._state_pub.publish(self._states.to_msg(pos, vel, stamp=stamp))
                for cam, rgb in images.items():
                    self._image_pubs[cam].publish(rgb_to_image(rgb, stamp=stamp, frame_id=f"{cam}_optical_frame"))
                if task is not None:
                    self._task_pub.publish(ros_message_class("std_msgs", "String")(data=json.dumps(task)))
            except Exception:  # noqa: BLE001 - the context is shutting down
                if self._stop.is_set():
                    return
                raise
            self._max_step_s = max(self._max_step_s, time.monotonic() - t_step)
            next_t += wall_period
            delay = next_t - time.monotonic()
            if delay < 0:  # overrun: skip the missed periods instead of bursting to catch up
                self.overruns += 1
                next_t = time.monotonic()
            elif self._stop.wait(delay):
                return


# --------------------------------------------------------------------------- CLI
def _camera_topics(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, topic = item.partition("=")
        if not sep or not name or not topic:
            raise argparse.ArgumentTypeError(f"--camera-topic takes NAME=TOPIC, got {item!r}")
        out[name] = topic
    return out


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m df_policy.ros.sim_arm_node", description=__doc__.split("\n")[0])
    d = SimArmNodeConfig()
    p.add_argument("--task", choices=SIM_TASKS, default=d.task)
    p.add_argument("--seed", type=int, default=d.seed, help="first episode's seed; ~/reset moves to the next")
    p.add_argument("--physics-hz", type=float, default=d.physics_hz)
    p.add_argument("--camera-hz", type=float, default=d.camera_hz)
    p.add_argument("--controller", choices=("jtc", "forward"), default=d.controller)
    p.add_argument("--interpolate-from-desired-state", action="store_true")
    p.add_argument("--joint-state-topic", default=d.joint_state_topic)
    p.add_argument("--command-topic", default=d.command_topic)
    p.add_argument("--camera-topic", action="append", default=None, metavar="NAME=TOPIC",
                   help="camera image topic (repeatable); default scene=/camera/color/image_raw")
    p.add_argument("--publish-clock", action="store_true",
                   help="publish /clock (simulated time) and stamp and time everything on it (use_sim_time)")
    p.add_argument("--real-time-factor", type=float, default=d.real_time_factor,
                   help="simulated seconds per wall second")
    p.add_argument("--node-name", default=d.node_name)
    p.add_argument("--namespace", default=d.namespace)
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="everything after this goes to ROS (-r __ns:=/NS, -r __node:=NAME, ...), "
                   "as launch_ros passes it")
    return p


def config_from_args(args: argparse.Namespace) -> SimArmNodeConfig:
    kw: dict[str, Any] = dict(task=args.task, seed=args.seed, physics_hz=args.physics_hz, camera_hz=args.camera_hz,
                              controller=args.controller,
                              interpolate_from_desired_state=args.interpolate_from_desired_state,
                              joint_state_topic=args.joint_state_topic, command_topic=args.command_topic,
                              node_name=args.node_name, namespace=args.namespace,
                              publish_clock=args.publish_clock, real_time_factor=args.real_time_factor,
                              ros_args=tuple(args.ros_args or ()))
    if args.camera_topic:
        kw["camera_topics"] = _camera_topics(args.camera_topic)
    return SimArmNodeConfig(**kw)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; prints ``READY`` once it publishes."""
    args = build_arg_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"sim_arm_node: {exc}", file=sys.stderr)
        return 2
    try:
        node = SimArmNode(config).start()
    except ValueError as exc:  # e.g. an unparsable ROS argument
        print(f"sim_arm_node: {exc}", file=sys.stderr)
        return 2
    serve_until_signal(node.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
