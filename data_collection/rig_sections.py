"""The sections of a rig file: robot, cameras, teleop and recorder (see :mod:`data_collection.rig`).

Each section is a frozen dataclass whose docstring lists its keys, units and defaults; each
turns into the backend's own config (``to_config`` / ``camera_config``) and translates the
backend's validation errors into :class:`~data_collection.rig_fields.RigConfigError` on the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from data_collection.cameras.base import (
    CameraConfig,
    CameraConfigError,
    CameraIntrinsics,
)
from data_collection.recorder import RecorderConfig, RecorderError
from data_collection.rig_fields import RigConfigError, _coerce, _Spec, _translate
from data_collection.robots.base import RobotConfigError, RobotLimits
from data_collection.robots.ros2_robot import Ros2RobotConfig
from data_collection.teleop.base import TeleopError

ROBOT_TYPES = ("ros2", "simulated", "sim_arm")
CAMERA_TYPES = ("realsense", "opencv", "simulated", "sim_arm")
TELEOP_DEVICES = ("keyboard", "scripted", "gamepad", "spacemouse")
_DEPTH_CAMERAS = ("realsense", "simulated")
_SIM_ARM_MODES = ("realtime", "lockstep")  # data_collection.sim.robot.SIM_ROBOT_MODES (not imported: mujoco)
_SIM_ARM_PHYSICS_DT_S = 0.002  # df_policy.sim.scene.SceneConfig.physics_dt_s default
_TOP_KEYS = ("name", "description", "robot", "cameras", "teleop", "recorder")


def _defaults(config_cls: type) -> dict[str, Any]:
    """A backend config's field defaults: the sections below take theirs from here (the
    ``recorder`` section from :class:`RecorderConfig`, the ``ros2`` robot from
    :class:`Ros2RobotConfig`), so a rig file's default is the backend's, never a copy."""
    return {f.name: f.default for f in dataclasses.fields(config_cls) if f.default is not dataclasses.MISSING}


_RECORDER = _defaults(RecorderConfig)
_ROS2_ROBOT = _defaults(Ros2RobotConfig)


# --------------------------------------------------------------------------- robot


def _per_joint(value: float | tuple[float, ...] | None, n: int, key: str, default: float) -> tuple[float, ...]:
    if value is None:
        return (default,) * n
    if isinstance(value, tuple):
        if len(value) != n:
            raise RigConfigError(f"has {len(value)} values for {n} joints", key)
        return value
    return (value,) * n


def _limits(spec: Any) -> RobotLimits:
    n = len(spec.joint_names)
    if n == 0:
        raise RigConfigError("must list at least one joint", "joint_names")
    lower = _per_joint(spec.position_lower, n, "position_lower", -math.inf)
    upper = _per_joint(spec.position_upper, n, "position_upper", math.inf)
    vmax = _per_joint(spec.velocity_max, n, "velocity_max", math.inf)
    try:
        return RobotLimits(spec.joint_names, lower, upper, vmax)
    except RobotConfigError as e:
        raise _translate(e, ("joint_names", "position_lower", "position_upper", "velocity_max")) from None


@dataclass(frozen=True)
class Ros2RobotSpec(_Spec):
    """``robot: {type: ros2, ...}``: a real arm behind ROS 2 topics (:class:`~data_collection.robots.Ros2Robot`).

    Attributes:
        joint_names: the joints, in action / store order; JointState messages are read by name.
        position_lower, position_upper: position limits, rad / m: one number for every joint
            or one per joint. Commands outside are refused.
        velocity_max: speed limits, rad/s (one number or one per joint); required while
            ``check_speed`` is on.
        state_topic: ``sensor_msgs/JointState`` topic.
        command_topic: where position targets are published.
        command_type: ``trajectory`` (``trajectory_msgs/JointTrajectory``, e.g. ros2_control's
            joint_trajectory_controller) or ``multiarray`` (``std_msgs/Float64MultiArray``, e.g. a
            forward position controller).
        command_period_s: the trajectory point's ``time_from_start``; ``null`` = ``1 / recorder.fps``.
        check_speed, speed_check_horizon_s, max_state_age_s, stamp_source, state_qos,
        qos_depth, connect_timeout_s, wait_for_command_subscriber, node_name, namespace,
        domain_id, name: as in :class:`~data_collection.robots.Ros2RobotConfig`, with its
            defaults (taken from it) except ``node_name`` (``dfp_recorder``).
    """

    kind: ClassVar[str] = "a ros2 robot"
    joint_names: tuple[str, ...]
    position_lower: float | tuple[float, ...]
    position_upper: float | tuple[float, ...]
    velocity_max: float | tuple[float, ...] | None = None
    state_topic: str = _ROS2_ROBOT["state_topic"]
    command_topic: str = _ROS2_ROBOT["command_topic"]
    command_type: str = _ROS2_ROBOT["command_type"]
    command_period_s: float | None = None
    check_speed: bool = _ROS2_ROBOT["check_speed"]
    speed_check_horizon_s: float | None = _ROS2_ROBOT["speed_check_horizon_s"]
    max_state_age_s: float | None = _ROS2_ROBOT["max_state_age_s"]
    stamp_source: str = _ROS2_ROBOT["stamp_source"]
    state_qos: str = _ROS2_ROBOT["state_qos"]
    qos_depth: int = _ROS2_ROBOT["qos_depth"]
    connect_timeout_s: float = _ROS2_ROBOT["connect_timeout_s"]
    wait_for_command_subscriber: bool = _ROS2_ROBOT["wait_for_command_subscriber"]
    node_name: str = "dfp_recorder"
    namespace: str = _ROS2_ROBOT["namespace"]
    domain_id: int | None = _ROS2_ROBOT["domain_id"]
    name: str = _ROS2_ROBOT["name"]

    type: ClassVar[str] = "ros2"

    def _validate(self) -> None:
        _limits(self)
        if self.check_speed and self.velocity_max is None:
            raise RigConfigError(
                "required while check_speed is true (rad/s, one number or one per joint); the recorder "
                "refuses targets the arm cannot reach at that speed",
                "velocity_max",
            )
        self.to_config(fps=10.0)  # the backend's own checks

    def to_config(self, fps: float) -> Any:
        """The :class:`~data_collection.robots.Ros2RobotConfig` for a recorder running at ``fps``."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("joint_names", "position_lower", "position_upper", "velocity_max"):
            settings.pop(k)
        if settings["command_period_s"] is None:
            settings["command_period_s"] = 1.0 / fps
        try:
            return Ros2RobotConfig(limits=_limits(self), **settings)
        except (RobotConfigError, ValueError) as e:
            raise _translate(e, settings) from None


@dataclass(frozen=True)
class SimulatedRobotSpec(_Spec):
    """``robot: {type: simulated, ...}``: a kinematic stand-in arm (:class:`~data_collection.robots.SimulatedRobot`),
    advanced in real time by a background thread (for trying cameras and teleop devices without an arm).

    Attributes:
        joint_names, position_lower, position_upper: as for ``ros2``.
        velocity_max: speed limits, rad/s; ``null`` = unlimited.
        rate_hz: simulation rate, Hz.
        time_constant_s: first-order tracking time constant, s.
        initial_positions: start pose (one value per joint); ``null`` = zeros clipped into the limits.
        name: robot name.
    """

    kind: ClassVar[str] = "a simulated robot"
    joint_names: tuple[str, ...]
    position_lower: float | tuple[float, ...]
    position_upper: float | tuple[float, ...]
    velocity_max: float | tuple[float, ...] | None = None
    rate_hz: float = 100.0
    time_constant_s: float = 0.05
    initial_positions: tuple[float, ...] | None = None
    name: str = "sim_robot"

    type: ClassVar[str] = "simulated"

    def _validate(self) -> None:
        self.to_config()

    def to_config(self) -> Any:
        from data_collection.robots.simulated import SimulatedRobotConfig

        try:
            return SimulatedRobotConfig(
                _limits(self), self.rate_hz, self.time_constant_s, self.initial_positions, realtime=True, name=self.name
            )
        except RobotConfigError as e:
            raise _translate(e, ("rate_hz", "time_constant_s", "initial_positions", "name")) from None


@dataclass(frozen=True)
class SimArmRobotSpec(_Spec):
    """``robot: {type: sim_arm, ...}``: the MuJoCo SO-101 pick-and-place simulation
    (:class:`~data_collection.sim.SimArmRobot`); cameras of type ``sim_arm`` render it and the
    ``scripted`` teleop demonstrates the task. Each episode resets the scene with seed
    ``seed + episode`` (stored in the episode's notes).

    Attributes:
        mode: ``realtime`` (the simulation runs on the host clock, like hardware) or
            ``lockstep`` (one control period per command; use with ``recorder.realtime: false``
            to record as fast as the CPU allows).
        control_hz: simulation control rate, Hz; ``null`` = ``recorder.fps``.
        episode_time_s: the scene's episode length, s (the scripted teleop saves at this
            limit); ``null`` = the simulation's default (10 s).
        seed: seed of the first episode.
        name: robot name.
    """

    kind: ClassVar[str] = "a sim_arm robot"
    mode: str = "realtime"
    control_hz: float | None = None
    episode_time_s: float | None = None
    seed: int = 0
    name: str = "sim_so101"

    type: ClassVar[str] = "sim_arm"

    def _validate(self) -> None:
        if self.mode not in _SIM_ARM_MODES:
            raise RigConfigError(f"must be one of {', '.join(_SIM_ARM_MODES)}, got {self.mode!r}", "mode")
        for k in ("control_hz", "episode_time_s"):
            v = getattr(self, k)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise RigConfigError(f"must be a positive number, got {v!r}", k)
        if not self.name:
            raise RigConfigError("must be non-empty", "name")


RobotSpec = Ros2RobotSpec | SimulatedRobotSpec | SimArmRobotSpec
_ROBOT_SPECS: dict[str, type] = {"ros2": Ros2RobotSpec, "simulated": SimulatedRobotSpec, "sim_arm": SimArmRobotSpec}


def _robot_from_dict(data: Any, key: str = "robot") -> RobotSpec:
    if not isinstance(data, Mapping):
        raise RigConfigError(f"must be a mapping with a 'type' key, got {data!r}", key)
    kind = data.get("type")
    if kind not in _ROBOT_SPECS:
        raise RigConfigError(f"must be one of {', '.join(ROBOT_TYPES)}, got {kind!r}", f"{key}.type")
    return _ROBOT_SPECS[kind].from_dict(data, key, drop=("type",))


# --------------------------------------------------------------------------- cameras

_CAMERA_COMMON = ("type", "name", "width", "height", "fps")
_CAMERA_KEYS: dict[str, tuple[str, ...]] = {
    "realsense": _CAMERA_COMMON + ("serial", "playback_file", "exposure", "white_balance", "intrinsics", "depth"),
    "opencv": _CAMERA_COMMON + ("device", "path", "fourcc", "exposure", "white_balance", "intrinsics"),
    "simulated": _CAMERA_COMMON + ("realtime", "drop_frames", "drop_probability", "seed", "hfov_deg", "intrinsics",
                                   "depth"),
    "sim_arm": _CAMERA_COMMON + ("mj_camera",),
}


@dataclass(frozen=True)
class CameraSpec(_Spec):
    """One entry of ``cameras:``; mapped onto :class:`~data_collection.cameras.CameraConfig` and a backend.

    Keys by ``type`` (others are errors):

    * all: ``name`` (the image key in the store, ``[A-Za-z0-9_-]+``), ``width``, ``height``
      (pixels), ``fps`` (Hz; required for ``realsense`` / ``opencv``; ``simulated``
      defaults to 640 x 480 at 30; ``sim_arm`` to 96 x 96 at the simulation's control rate).
    * ``realsense``: ``serial`` (quoted string) **or** ``playback_file`` (a ``.db3`` / ``.bag``
      recording); ``exposure`` (colour sensor units; ``null`` = auto), ``white_balance`` (K,
      ``null`` = auto), ``intrinsics`` (override; default: the device's), ``depth`` (also
      record depth aligned to colour as the store key ``<name>_depth``, ``uint16`` with the
      device's depth scale; default ``false``).
    * ``opencv``: ``device`` (index or ``/dev/...`` path) **or** ``path`` (a video file, read
      frame by frame); ``fourcc`` (pixel format requested from a device, default ``MJPG``),
      ``exposure``, ``white_balance``, ``intrinsics`` (**required**: webcams do not report them).
    * ``simulated``: a moving test pattern; ``realtime`` (pace on the host clock), ``drop_frames``
      (frame numbers never delivered), ``drop_probability``, ``seed``, ``hfov_deg``, ``intrinsics``,
      ``depth`` (the pattern's depth: 1000 units of 1 mm, 500 inside the moving square).
    * ``sim_arm``: ``mj_camera``: the MuJoCo camera (``scene`` or ``wrist``; default: ``name``).

    ``intrinsics`` is either a mapping (``fx, fy, cx, cy`` [, ``distortion_model``, ``coeffs``];
    ``width``/``height`` default to the camera's) or the path of a ``dfp calib intrinsics``
    result file (``brown_conrady`` model with up to 5 coefficients).
    """

    kind: ClassVar[str] = "a camera"
    type: str
    name: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    serial: str | None = None
    playback_file: str | None = None
    device: int | str | None = None
    path: str | None = None
    fourcc: str | None = "MJPG"
    exposure: float | None = None
    white_balance: float | None = None
    intrinsics: dict[str, Any] | str | None = None
    depth: bool = False
    realtime: bool = True
    drop_frames: tuple[int, ...] = ()
    drop_probability: float = 0.0
    seed: int = 0
    hfov_deg: float = 60.0
    mj_camera: str | None = None

    @classmethod
    def _keys(cls, data: Mapping[str, Any]) -> tuple[str, ...]:
        return _CAMERA_KEYS.get(data.get("type"), _CAMERA_COMMON)  # type: ignore[arg-type]

    @classmethod
    def _what(cls, data: Mapping[str, Any]) -> str:
        kind = data.get("type")
        return f"a {kind} camera" if kind in _CAMERA_KEYS else "a camera"

    @classmethod
    def from_dict(cls, data: Any, key: str, *, drop: tuple[str, ...] = ()) -> CameraSpec:
        if isinstance(data, Mapping) and data.get("type") not in _CAMERA_KEYS:
            raise RigConfigError(f"must be one of {', '.join(CAMERA_TYPES)}, got {data.get('type')!r}", f"{key}.type")
        if isinstance(data, Mapping) and isinstance(data.get("serial"), int):
            raise RigConfigError(
                f"must be a quoted string, got the number {data['serial']!r} (YAML reads unquoted digits as a "
                "number and drops leading zeros)", f"{key}.serial"
            )
        return super().from_dict(data, key, drop=drop)

    def _validate(self) -> None:
        if self.type not in _CAMERA_KEYS:
            raise RigConfigError(f"must be one of {', '.join(CAMERA_TYPES)}, got {self.type!r}", "type")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for k, default in defaults.items():
            if k not in _CAMERA_KEYS[self.type] and getattr(self, k) != default:
                raise RigConfigError(f"not a key of {self.type} cameras", k)
        if self.type in ("realsense", "opencv"):
            for k in ("width", "height", "fps"):
                if getattr(self, k) is None:
                    raise RigConfigError(f"required for a {self.type} camera", k)
        if self.type == "realsense":
            if (self.serial is None) == (self.playback_file is None):
                raise RigConfigError(
                    "give the device's serial (a quoted string; `rs-enumerate-devices -s` lists them) "
                    "or a playback_file, exactly one",
                    "serial",
                )
            if self.serial is not None and not self.serial.strip():
                raise RigConfigError("must be a non-empty string", "serial")
            if self.fps is not None and self.fps != int(self.fps):
                raise RigConfigError(f"must be an integer for a RealSense camera, got {self.fps}", "fps")
        if self.type == "opencv":
            if (self.device is None) == (self.path is None):
                raise RigConfigError("give a device (index or /dev/... path) or a video file path, exactly one", "device")
            if self.path is not None and not os.path.isfile(self.path):
                raise RigConfigError(f"video file {self.path!r} does not exist", "path")
            if self.intrinsics is None:
                raise RigConfigError(
                    "required for an opencv camera (webcams do not report intrinsics): a mapping "
                    "{fx, fy, cx, cy, ...} or a `dfp calib intrinsics` result file", "intrinsics"
                )
            if self.fourcc is not None and len(self.fourcc) != 4:
                raise RigConfigError(f"must be 4 characters, got {self.fourcc!r}", "fourcc")
        if self.playback_file is not None and not os.path.isfile(self.playback_file):
            raise RigConfigError(f"recording {self.playback_file!r} does not exist", "playback_file")
        if self.type == "simulated" and not 0.0 <= self.drop_probability < 1.0:
            raise RigConfigError(f"must be in [0, 1), got {self.drop_probability}", "drop_probability")
        if self.type == "sim_arm":
            return  # size / fps are checked against the simulation when it is built
        self.camera_config()

    def camera_config(self, default_size: tuple[int, int] = (640, 480), default_fps: float = 30.0) -> CameraConfig:
        """The :class:`CameraConfig` (intrinsics resolved; file paths must already be absolute)."""
        width = self.width if self.width is not None else default_size[0]
        height = self.height if self.height is not None else default_size[1]
        fps = self.fps if self.fps is not None else default_fps
        intr = None if self.intrinsics is None else _intrinsics(self.intrinsics, width, height)
        try:
            return CameraConfig(
                name=self.name,
                serial=self.serial,
                width=width,
                height=height,
                fps=fps,
                exposure=self.exposure,
                white_balance=self.white_balance,
                intrinsics=intr,
                enable_depth=self.depth,
            )
        except CameraConfigError as e:
            raise _translate(e, ("name", "width", "height", "fps", "exposure", "white_balance", "intrinsics")) from None


def _intrinsics(value: dict[str, Any] | str, width: int, height: int) -> CameraIntrinsics:
    if isinstance(value, str):
        return _intrinsics_from_calibration(value, width, height)
    d = {"width": width, "height": height, **value}
    if "coeffs" in d and isinstance(d["coeffs"], list):
        d["coeffs"] = tuple(d["coeffs"])
    try:
        intr = CameraIntrinsics.from_dict(d)
    except (CameraConfigError, TypeError, ValueError) as e:
        raise RigConfigError(str(e), "intrinsics") from None
    if (intr.width, intr.height) != (width, height):
        raise RigConfigError(f"are for {intr.width}x{intr.height}, the camera is {width}x{height}", "intrinsics")
    return intr


def _intrinsics_from_calibration(path: str, width: int, height: int) -> CameraIntrinsics:
    """A ``dfp calib intrinsics`` result (OpenCV K / dist) as :class:`CameraIntrinsics`."""
    from calibration.io import CalibrationFileError, load_intrinsics

    if not os.path.isfile(path):
        raise RigConfigError(f"calibration file {path!r} does not exist", "intrinsics")
    try:
        cam = load_intrinsics(path).camera
    except (CalibrationFileError, OSError, yaml.YAMLError) as e:
        raise RigConfigError(str(e), "intrinsics") from None
    if tuple(cam.image_size) != (width, height):
        raise RigConfigError(
            f"{path} was calibrated at {cam.image_size[0]}x{cam.image_size[1]}, the camera is {width}x{height}",
            "intrinsics",
        )
    if abs(float(cam.K[0, 1])) > 1e-9:
        raise RigConfigError(f"{path}: a skewed camera matrix (K[0][1] != 0) cannot be recorded", "intrinsics")
    dist = [float(x) for x in cam.dist]
    if len(dist) > 5 and any(abs(x) > 0 for x in dist[5:]):
        raise RigConfigError(
            f"{path}: {len(dist)} distortion coefficients with nonzero k4.. cannot be stored as brown_conrady "
            "(k1, k2, p1, p2, k3); recalibrate with the 5-coefficient model", "intrinsics"
        )
    coeffs = tuple((dist + [0.0] * 5)[:5])
    return CameraIntrinsics(width, height, cam.fx, cam.fy, cam.cx, cam.cy, "brown_conrady", coeffs)


# --------------------------------------------------------------------------- teleop / recorder


@dataclass(frozen=True)
class TeleopSpec(_Spec):
    """``teleop:``: where actions and operator events come from.

    Attributes:
        device: ``keyboard`` (keys only; the arm holds its measured position), ``scripted``
            (the sim arm's scripted expert; ``robot.type: sim_arm`` only), ``gamepad`` or
            ``spacemouse`` (``data_collection.teleop.<device>.build_teleop(settings, robot)``;
            see ``data_collection/teleop/README.md``).
        keyboard: wrap the device in a :class:`~data_collection.teleop.keyboard.KeyboardTeleop`
            so ``s`` (or space) / ``d`` / ``y`` / ``n`` / ``q`` on the terminal start the next
            episode or stop and save the current one / discard / mark success / mark failure /
            quit. ``null`` (default) = on, except for ``scripted``.
        settings: device settings (``scripted``: :class:`~data_collection.teleop.scripted.ScriptedTeleopConfig`
            fields; ``gamepad`` / ``spacemouse``: see their module); ``keyboard`` takes none.
    """

    kind: ClassVar[str] = "teleop"
    device: str
    keyboard: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        if self.device not in TELEOP_DEVICES:
            raise RigConfigError(f"must be one of {', '.join(TELEOP_DEVICES)}, got {self.device!r}", "device")
        if self.device == "keyboard":
            if self.keyboard is False:
                raise RigConfigError("cannot be false with device: keyboard", "keyboard")
            if self.settings:
                raise RigConfigError("the keyboard device takes no settings", "settings")
        if self.device == "scripted":
            self.scripted_config()

    @property
    def with_keyboard(self) -> bool:
        """Whether the device is wrapped in a KeyboardTeleop (see ``keyboard``)."""
        if self.device == "keyboard":
            return False  # it is one
        return self.keyboard if self.keyboard is not None else self.device != "scripted"

    def scripted_config(self) -> Any:
        from data_collection.teleop.scripted import ScriptedTeleopConfig

        names = [f.name for f in dataclasses.fields(ScriptedTeleopConfig)]
        for k, v in self.settings.items():
            if k not in names:
                raise RigConfigError(f"unknown key; allowed keys for scripted: {', '.join(names)}", f"settings.{k}")
            hint = int if k == "hold_steps" else int | None
            _coerce(v, hint, f"settings.{k}")
        try:
            return ScriptedTeleopConfig(**self.settings)
        except TeleopError as e:
            raise _translate(e, names, "settings") from None


@dataclass(frozen=True)
class RecorderSpec(_Spec):
    """``recorder:``: the :class:`~data_collection.recorder.RecorderConfig` fields (same meaning;
    defaults taken from it).

    Attributes:
        fps: loop and recording rate, Hz.
        max_episode_s: episode length limit, s (the episode is then saved).
        episodes: stop after this many saved episodes; ``null`` = until ``q``.
        task: task description stored with every episode.
        realtime: pace the loop to ``fps`` (must be true for ``ros2`` / ``simulated`` robots).
        flush_every: steps buffered before they are written (what a crash can lose).
        frame_timeout_s: longest wait for the cameras' frames per step (all cameras together), s;
            a paced recording also stops waiting at the end of the period, so a late or
            unplugged camera never delays the robot's commands.
        max_skew_s: largest accepted gap between a frame's and the joint state's timestamps,
            s; at least ``1 / camera fps`` or most steps are dropped.
        robot_model: stored as ``schema.robot`` (default: the robot's name).
        status: show the live status line on stderr.
        store_path: episode store (``dfp record --out`` overrides it).
        wait_for_start: idle before every episode (the arm is still commanded, nothing is
            recorded) until ``s`` / the teleop's start button; ``null`` (default) = ``true``,
            except ``false`` with the ``scripted`` teleop (which never presses start). Unlike
            the other fields, this default differs from ``RecorderConfig``'s (``false``).
        allow_camera_change: append to a store recorded with another camera under the same name
            (serial or intrinsics changed; ``dfp record --allow-camera-change``); the old camera
            info is kept in the store's camera history. Default ``false``: refused.
        camera_lost_s: a camera without a frame this long (in loop periods) is lost: the episode
            ends and the session stops (``dfp record`` exits 1).
        on_camera_lost: ``save`` (the episode's steps, marked bad with a note) or ``discard``.
        write_queue_steps: steps the writer thread may lag behind the loop before the loop waits.
        camera_threads: read each camera on its own thread and record the frame nearest to each
            joint state among those buffered (decoding leaves the control loop; a camera faster
            than ``fps`` is matched to the state, not read in turn); default ``false``: one read
            per camera per step on the loop's thread (both work with ``sim_arm`` in ``lockstep``).
    """

    kind: ClassVar[str] = "recorder"
    fps: float = _RECORDER["fps"]
    max_episode_s: float = _RECORDER["max_episode_s"]
    episodes: int | None = _RECORDER["episodes"]
    task: str = _RECORDER["task"]
    realtime: bool = _RECORDER["realtime"]
    flush_every: int = _RECORDER["flush_every"]
    frame_timeout_s: float = _RECORDER["frame_timeout_s"]
    max_skew_s: float = _RECORDER["max_skew_s"]
    robot_model: str = _RECORDER["robot_model"]
    status: bool = _RECORDER["status"]
    store_path: str | None = None
    wait_for_start: bool | None = None
    allow_camera_change: bool = _RECORDER["allow_camera_change"]
    camera_lost_s: float = _RECORDER["camera_lost_s"]
    on_camera_lost: str = _RECORDER["on_camera_lost"]
    write_queue_steps: int = _RECORDER["write_queue_steps"]
    camera_threads: bool = _RECORDER["camera_threads"]

    def _validate(self) -> None:
        self.to_config(self.store_path or ".")

    def to_config(self, store_path: str | os.PathLike, scripted: bool = False) -> Any:
        """The :class:`~data_collection.recorder.RecorderConfig`; ``scripted``: the teleop is the
        scripted expert (``wait_for_start: null`` then means ``false``)."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "store_path"}
        if settings["wait_for_start"] is None:
            settings["wait_for_start"] = not scripted
        try:
            return RecorderConfig(store_path=Path(store_path), **settings)
        except RecorderError as e:
            raise _translate(e, settings) from None


