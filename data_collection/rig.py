"""Rig files: the robot, cameras, teleop device and recorder settings of ``dfp record --config``.

A rig file is YAML with these top-level keys (every section is a dataclass below; its
docstring lists the keys, their units and defaults; ``data_collection/README.md`` has the
full reference and examples ship in ``data_collection/configs/``)::

    name: my_rig                  # optional, free text
    description: ...              # optional, free text (shown by --list-configs)
    robot:    {type: ros2 | simulated | sim_arm, ...}          # Ros2RobotSpec / SimulatedRobotSpec / SimArmRobotSpec
    cameras:  [{type: realsense | opencv | simulated | sim_arm, name: ..., ...}, ...]   # CameraSpec
    teleop:   {device: keyboard | scripted | gamepad | spacemouse, keyboard: true, settings: {...}}  # TeleopSpec
    recorder: {fps: 10, max_episode_s: 60, task: ..., ...}    # RecorderSpec (RecorderConfig fields)

Contracts
---------
* :func:`load_rig` validates the whole file before anything is opened: unknown keys, wrong
  types, impossible values and inconsistent combinations (e.g. ``scripted`` teleop without a
  ``sim_arm`` robot) raise :class:`RigConfigError`, whose message names the file, the key
  path (``cameras[1].serial``) and the problem; for an unknown key it lists the allowed ones.
  YAML duplicate keys are errors too.
* Types are strict: a number is never accepted where a string is expected (a RealSense serial
  must be quoted: YAML reads ``012345`` as a number and drops the zero), ``true``/``false`` only
  for flags, integers accepted for floats.
* Relative paths in a rig file (``path``, ``playback_file``, ``intrinsics`` files,
  ``recorder.store_path``) are relative to the directory of the rig file.
* :func:`build` turns a :class:`Rig` into live but **not yet connected/started** objects
  (``Recorder.run`` connects and starts them); it unpacks as ``robot, cameras, teleop,
  recorder_config``. Nothing touches hardware before ``Recorder.run`` except what a teleop
  module's own ``build_teleop`` does.
* ``gamepad`` / ``spacemouse`` are built by ``data_collection.teleop.<device>.build_teleop(
  settings, robot)``, imported only when used; if that module is missing, :func:`build`
  raises :class:`RigConfigError` saying so.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, Union

import yaml

from data_collection.cameras.base import (
    Camera,
    CameraConfig,
    CameraConfigError,
    CameraIntrinsics,
    UnsupportedModeError,
)
from data_collection.robots.base import Robot, RobotConfigError, RobotLimits
from data_collection.teleop.base import TeleopDevice, TeleopError

__all__ = [
    "CAMERA_TYPES",
    "ROBOT_TYPES",
    "TELEOP_DEVICES",
    "BuiltRig",
    "CameraSpec",
    "RecorderSpec",
    "Rig",
    "RigConfigError",
    "Ros2RobotSpec",
    "SimArmRobotSpec",
    "SimulatedRobotSpec",
    "TeleopSpec",
    "build",
    "example_config_path",
    "example_configs",
    "load_rig",
]

ROBOT_TYPES = ("ros2", "simulated", "sim_arm")
CAMERA_TYPES = ("realsense", "opencv", "simulated", "sim_arm")
TELEOP_DEVICES = ("keyboard", "scripted", "gamepad", "spacemouse")
RESERVED_STORE_KEYS = ("joint_pos", "stamp_s", "action")  # data_collection.recorder.RESERVED_KEYS
DEPTH_KEY_SUFFIX = "_depth"  # data_collection.recorder.DEPTH_KEY_SUFFIX
_DEPTH_CAMERAS = ("realsense", "simulated")
_SIM_ARM_MODES = ("realtime", "lockstep")  # data_collection.sim.robot.SIM_ROBOT_MODES (not imported: mujoco)
_SIM_ARM_PHYSICS_DT_S = 0.002  # df_policy.sim.scene.SceneConfig.physics_dt_s default
_TOP_KEYS = ("name", "description", "robot", "cameras", "teleop", "recorder")


# --------------------------------------------------------------------------- errors


class RigConfigError(ValueError):
    """An invalid rig description. ``str(e)`` is ``"FILE: KEY.PATH: problem"`` (parts omitted when unknown).

    Attributes: ``problem`` (text), ``key`` (dotted key path, ``""`` = the whole section),
    ``source`` (the rig file, or ``None``).
    """

    def __init__(self, problem: str, key: str = "", source: str | None = None) -> None:
        self.problem = problem
        self.key = key
        self.source = source
        super().__init__(": ".join([p for p in (source, key) if p] + [problem]))

    def under(self, prefix: str) -> RigConfigError:
        """The same error with ``prefix`` (a section's key path) prepended to :attr:`key`."""
        if not prefix:
            return self
        key = prefix if not self.key else (prefix + self.key if self.key.startswith("[") else f"{prefix}.{self.key}")
        return RigConfigError(self.problem, key, self.source)

    def in_file(self, source: str | os.PathLike) -> RigConfigError:
        return RigConfigError(self.problem, self.key, str(source))


def _translate(exc: Exception, keys: typing.Iterable[str], prefix: str = "") -> RigConfigError:
    """A backend validation error (whose message starts with a field name, possibly after
    ``"camera: "``) as a :class:`RigConfigError` on that field."""
    text = str(exc)
    body = text.split(": ", 1)[1] if ": " in text and " " not in text.split(": ", 1)[0] else text
    for k in sorted(keys, key=len, reverse=True):
        if body == k or body.startswith((k + " ", k + "=")):
            return RigConfigError(body, k).under(prefix)
    return RigConfigError(text, prefix)


# --------------------------------------------------------------------------- typed fields

_NONE = type(None)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", _NONE: "null"}.get(
        hint, str(hint)
    )


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (lists become tuples, ints floats)."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _coerce(value, arg, key)
            except RigConfigError:
                continue
        raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
    ok: bool
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        if ok:
            return float(value)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise RigConfigError(f"must be a mapping with string keys, got {value!r}", key)
        return dict(value)
    else:  # pragma: no cover - only the annotations above are used
        raise TypeError(f"unsupported annotation {hint!r}")
    if not ok:
        raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Spec:
    """Base of the rig sections: fields typed from their annotations, then :meth:`_validate`."""

    kind: ClassVar[str] = "section"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f.name))
        self._validate()

    def _validate(self) -> None:
        pass

    @classmethod
    def _keys(cls, data: Mapping[str, Any]) -> tuple[str, ...]:
        """Keys this section accepts (given its other keys, e.g. a camera's ``type``)."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Any, key: str, *, drop: tuple[str, ...] = ()) -> Any:
        """Build from a YAML mapping; ``key`` is this section's key path for errors."""
        if not isinstance(data, Mapping):
            raise RigConfigError(f"must be a mapping of keys, got {data!r}", key)
        allowed = cls._keys(data)
        for k in data:
            if not isinstance(k, str) or (k not in allowed and k not in drop):
                raise RigConfigError(
                    f"unknown key; allowed keys for {cls._what(data)}: {', '.join(drop + allowed)}", f"{key}.{k}"
                )
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
                raise RigConfigError(f"missing required key {f.name!r} ({cls._what(data)})", key)
        try:
            return cls(**{k: v for k, v in data.items() if k not in drop})
        except RigConfigError as e:
            raise e.under(key) from None

    @classmethod
    def _what(cls, data: Mapping[str, Any]) -> str:
        return cls.kind


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
        domain_id, name: as in :class:`~data_collection.robots.Ros2RobotConfig`, with the
            same defaults (a test holds them equal) except ``node_name`` (``dfp_recorder``).
    """

    kind: ClassVar[str] = "a ros2 robot"
    joint_names: tuple[str, ...]
    position_lower: float | tuple[float, ...]
    position_upper: float | tuple[float, ...]
    velocity_max: float | tuple[float, ...] | None = None
    state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    command_type: str = "trajectory"
    command_period_s: float | None = None
    check_speed: bool = True
    speed_check_horizon_s: float | None = None
    max_state_age_s: float | None = 0.5
    stamp_source: str = "receipt"
    state_qos: str = "sensor_data"
    qos_depth: int = 10
    connect_timeout_s: float = 5.0
    wait_for_command_subscriber: bool = True
    node_name: str = "dfp_recorder"
    namespace: str = ""
    domain_id: int | None = None
    name: str = "ros2_robot"

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
        from data_collection.robots.ros2_robot import Ros2RobotConfig

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
    """``recorder:``: the :class:`~data_collection.recorder.RecorderConfig` fields (same meaning and defaults).

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
    """

    kind: ClassVar[str] = "recorder"
    fps: float = 10.0
    max_episode_s: float = 60.0
    episodes: int | None = None
    task: str = ""
    realtime: bool = True
    flush_every: int = 10
    frame_timeout_s: float = 0.5
    max_skew_s: float = 0.02
    robot_model: str = ""
    status: bool = True
    store_path: str | None = None
    wait_for_start: bool | None = None
    allow_camera_change: bool = False
    camera_lost_s: float = 2.0
    on_camera_lost: str = "save"
    write_queue_steps: int = 256

    def _validate(self) -> None:
        self.to_config(self.store_path or ".")

    def to_config(self, store_path: str | os.PathLike, scripted: bool = False) -> Any:
        """The :class:`~data_collection.recorder.RecorderConfig`; ``scripted``: the teleop is the
        scripted expert (``wait_for_start: null`` then means ``false``)."""
        from data_collection.recorder import RecorderConfig, RecorderError

        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "store_path"}
        if settings["wait_for_start"] is None:
            settings["wait_for_start"] = not scripted
        try:
            return RecorderConfig(store_path=Path(store_path), **settings)
        except RecorderError as e:
            raise _translate(e, settings) from None


# --------------------------------------------------------------------------- rig


@dataclass(frozen=True)
class Rig:
    """A validated rig description (see the module docstring); ``source`` is the file it came from."""

    robot: RobotSpec
    cameras: tuple[CameraSpec, ...]
    teleop: TeleopSpec
    recorder: RecorderSpec = field(default_factory=RecorderSpec)
    name: str = ""
    description: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        err = self._check()
        if err is not None:
            raise err if self.source is None else err.in_file(self.source)

    def _check(self) -> RigConfigError | None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        for key, value, kinds in (
            ("robot", self.robot, (Ros2RobotSpec, SimulatedRobotSpec, SimArmRobotSpec)),
            ("teleop", self.teleop, (TeleopSpec,)),
            ("recorder", self.recorder, (RecorderSpec,)),
            *((f"cameras[{i}]", c, (CameraSpec,)) for i, c in enumerate(self.cameras)),
        ):
            if not isinstance(value, kinds):
                return RigConfigError(f"expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}",
                                      key)
        if not self.cameras:
            return RigConfigError("list at least one camera (the store records images)", "cameras")
        names = [c.name for c in self.cameras]
        for i, c in enumerate(self.cameras):
            if names.index(c.name) != i:
                return RigConfigError(f"camera name {c.name!r} is used twice", f"cameras[{i}].name")
            if c.name in RESERVED_STORE_KEYS:
                return RigConfigError(f"{c.name!r} is a reserved store key {RESERVED_STORE_KEYS}", f"cameras[{i}].name")
            if c.depth and c.name + DEPTH_KEY_SUFFIX in names:
                return RigConfigError(
                    f"camera {c.name!r} records depth as the store key {c.name + DEPTH_KEY_SUFFIX!r}, which is "
                    "another camera's name", f"cameras[{i}].depth"
                )
        for attr in ("serial", "device", "path", "playback_file"):
            seen = [getattr(c, attr) for c in self.cameras if getattr(c, attr) is not None]
            for i, c in enumerate(self.cameras):
                v = getattr(c, attr)
                if v is not None and seen.count(v) > 1:
                    return RigConfigError(f"{v!r} is used by two cameras", f"cameras[{i}].{attr}")
        sim_arm = isinstance(self.robot, SimArmRobotSpec)
        if sim_arm:
            hz = self.sim_control_hz
            substeps = 1.0 / (hz * _SIM_ARM_PHYSICS_DT_S)
            if not 0.5 <= hz <= 100.0 or abs(substeps - round(substeps)) > 1e-6:
                return RigConfigError(
                    f"the simulation needs 0.5 <= control_hz <= 100 and a period that is a whole number of "
                    f"{_SIM_ARM_PHYSICS_DT_S * 1000:g} ms physics steps, got {hz:g} Hz (default: recorder.fps)",
                    "robot.control_hz",
                )
        for i, c in enumerate(self.cameras):
            if c.type == "sim_arm" and not sim_arm:
                return RigConfigError("a sim_arm camera needs robot.type: sim_arm", f"cameras[{i}].type")
            if sim_arm and c.type == "sim_arm" and c.fps is not None and c.fps != self.sim_control_hz:
                return RigConfigError(
                    f"a sim_arm camera delivers one frame per control step: fps must be {self.sim_control_hz:g} "
                    "(robot.control_hz, default recorder.fps) or left out", f"cameras[{i}].fps"
                )
        if self.teleop.device == "scripted" and not sim_arm:
            return RigConfigError(
                f"the scripted teleop drives the simulated SO-101 only: it needs robot.type: sim_arm, "
                f"not {self.robot.type}", "teleop.device"
            )
        if self.recorder.wait_for_start and self.teleop.device == "scripted" and not self.teleop.with_keyboard:
            return RigConfigError(
                "the scripted teleop never sends start: set it false, or teleop.keyboard: true to start "
                "episodes with s", "recorder.wait_for_start"
            )
        if not self.recorder.realtime and not (sim_arm and self.robot.mode == "lockstep"):
            return RigConfigError(
                "must be true unless robot.type is sim_arm with mode: lockstep (an unpaced loop would "
                "command the robot as fast as the CPU allows)", "recorder.realtime"
            )
        return None

    @property
    def wait_for_start(self) -> bool:
        """``recorder.wait_for_start`` resolved (``null`` = true, except with the scripted teleop)."""
        if self.recorder.wait_for_start is not None:
            return self.recorder.wait_for_start
        return self.teleop.device != "scripted"

    @property
    def sim_control_hz(self) -> float:
        """The sim arm's control rate (``robot.control_hz``, else ``recorder.fps``)."""
        hz = getattr(self.robot, "control_hz", None)
        return float(hz) if hz is not None else self.recorder.fps

    def with_recorder(self, **changes: Any) -> Rig:
        """A copy with recorder fields replaced (``None`` values are ignored), revalidated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        try:
            recorder = dataclasses.replace(self.recorder, **changes)
        except RigConfigError as e:
            e = e.under("recorder")
            raise e if self.source is None else e.in_file(self.source) from None
        return dataclasses.replace(self, recorder=recorder)

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | os.PathLike | None = None, source: str | None = None) -> Rig:
        """Validate a parsed rig file; relative paths resolve against ``base_dir`` (default: cwd)."""
        try:
            return cls._from_dict(data, Path(base_dir) if base_dir is not None else Path.cwd(), source)
        except RigConfigError as e:
            raise (e if source is None or e.source else e.in_file(source)) from None

    @classmethod
    def _from_dict(cls, data: Any, base: Path, source: str | None) -> Rig:
        if not isinstance(data, Mapping):
            raise RigConfigError(f"a rig file must be a mapping with keys {', '.join(_TOP_KEYS)}, got {data!r}")
        for k in data:
            if k not in _TOP_KEYS:
                raise RigConfigError(f"unknown key; allowed top-level keys: {', '.join(_TOP_KEYS)}", str(k))
        for k in ("robot", "cameras", "teleop"):
            if k not in data:
                raise RigConfigError(f"missing required section {k!r}")
        robot = _robot_from_dict(data["robot"])
        cams_raw = data["cameras"]
        if not isinstance(cams_raw, list):
            raise RigConfigError(f"must be a list of cameras, got {cams_raw!r}", "cameras")
        cameras = []
        for i, raw in enumerate(cams_raw):
            if isinstance(raw, Mapping):
                raw = dict(raw)
                for k in ("path", "playback_file", "intrinsics"):
                    if isinstance(raw.get(k), str):
                        raw[k] = _resolve(raw[k], base)
            cameras.append(CameraSpec.from_dict(raw, f"cameras[{i}]"))
        teleop = TeleopSpec.from_dict(data["teleop"], "teleop")
        rec_raw = data.get("recorder", {})
        if isinstance(rec_raw, Mapping) and isinstance(rec_raw.get("store_path"), str):
            rec_raw = {**rec_raw, "store_path": _resolve(rec_raw["store_path"], base)}
        recorder = RecorderSpec.from_dict(rec_raw if rec_raw is not None else {}, "recorder")
        text = {}
        for k in ("name", "description"):
            v = data.get(k, "")
            text[k] = _coerce("" if v is None else v, str, k)
        return cls(robot, tuple(cameras), teleop, recorder, source=source, **text)

    def describe(self) -> str:
        """A few human-readable lines: what :func:`build` will create."""
        r = self.robot
        lines = [f"rig {self.name or '(unnamed)'}" + (f" from {self.source}" if self.source else "")]
        if isinstance(r, SimArmRobotSpec):
            lines.append(f"  robot: sim_arm ({r.mode}, {self.sim_control_hz:g} Hz, seed {r.seed})")
        else:
            extra = f", {r.state_topic} -> {r.command_topic} ({r.command_type})" if isinstance(r, Ros2RobotSpec) else ""
            lines.append(f"  robot: {r.type} {r.name}: joints {', '.join(r.joint_names)}{extra}")
        for c in self.cameras:
            src = next((f"{k}={getattr(c, k)}" for k in ("serial", "playback_file", "device", "path", "mj_camera")
                        if getattr(c, k) is not None), "")
            size = f"{c.width}x{c.height}" if c.width and c.height else "default size"
            rate = f"{c.fps:g} fps" if c.fps else "default fps"
            depth = f" + depth ({c.name}{DEPTH_KEY_SUFFIX})" if c.depth else ""
            lines.append(f"  camera {c.name}: {' '.join(filter(None, (c.type, src, size)))} @ {rate}{depth}")
        t = self.teleop
        lines.append(f"  teleop: {t.device}" + (" + keyboard" if t.with_keyboard else ""))
        rc = self.recorder
        lines.append(
            f"  recorder: {rc.fps:g} Hz, max {rc.max_episode_s:g} s/episode, "
            f"episodes {rc.episodes if rc.episodes else 'until q'}, task {rc.task!r}, "
            + ("idle between episodes (s starts)" if self.wait_for_start else "episodes start at once")
        )
        lines += [f"  warning: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what was meant."""
        out = []
        fps = self.recorder.fps
        for c in self.cameras:
            if c.fps is not None and c.fps < fps:
                out.append(
                    f"camera {c.name} runs at {c.fps:g} fps < recorder.fps {fps:g}: steps without a new frame "
                    "are dropped (not recorded)"
                )
            if c.fps is not None and self.recorder.max_skew_s < 0.5 / c.fps and c.type != "sim_arm":
                out.append(
                    f"recorder.max_skew_s {self.recorder.max_skew_s:g} s is below half a frame period of camera "
                    f"{c.name} ({1 / c.fps:.3f} s): many steps may be dropped"
                )
        return out


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else base / p)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_rig(path: str | os.PathLike) -> Rig:
    """Read and validate a rig file (see the module docstring). Raises :class:`RigConfigError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RigConfigError(f"cannot read the rig file: {e.strerror or e}", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RigConfigError(f"not valid YAML: {e}", source=str(path)) from None
    return Rig.from_dict(data, base_dir=path.resolve().parent, source=str(path))


# --------------------------------------------------------------------------- examples


def example_configs() -> dict[str, Path]:
    """The example rig files shipped in ``data_collection/configs``, by name (file stem)."""
    folder = Path(__file__).resolve().with_name("configs")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def example_config_path(name: str) -> Path:
    """Path of the shipped example ``name`` (with or without ``.yaml``); :class:`RigConfigError` if unknown."""
    examples = example_configs()
    stem = name.removesuffix(".yaml")
    if stem not in examples:
        raise RigConfigError(f"no example rig {name!r}; examples: {', '.join(examples) or 'none'}")
    return examples[stem]


# --------------------------------------------------------------------------- build


@dataclass
class BuiltRig:
    """What :func:`build` made; unpacks as ``robot, cameras, teleop, recorder_config``.

    Attributes:
        robot, cameras, teleop: not yet connected / started (``Recorder.run`` does that).
        recorder_config: the :class:`~data_collection.recorder.RecorderConfig`.
        on_episode_start: hook for ``Recorder(on_episode_start=...)``; resets the sim arm's
            scene (``None`` for hardware).
        env: the :class:`~df_policy.sim.SimArmEnv` of a ``sim_arm`` rig, else ``None``.
    """

    robot: Robot
    cameras: list[Camera]
    teleop: TeleopDevice
    recorder_config: Any
    on_episode_start: Callable[[int], str | None] | None = None
    env: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.robot, self.cameras, self.teleop, self.recorder_config))

    def close(self) -> None:
        """Release what the rig holds outside the robot/camera lifecycle (the sim's renderer)."""
        if self.env is not None:
            self.env.close()
            self.env = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(rig: Rig, store_path: str | os.PathLike | None = None) -> BuiltRig:
    """Create the robot, cameras, teleop device and recorder config of ``rig`` (see the module
    docstring). ``store_path`` overrides ``recorder.store_path``; one of them is required."""
    try:
        return _build(rig, store_path)
    except RigConfigError as e:
        raise (e.in_file(rig.source) if rig.source and not e.source else e) from None


def _build(rig: Rig, store_path: str | os.PathLike | None) -> BuiltRig:
    path = store_path if store_path is not None else rig.recorder.store_path
    if path is None:
        raise RigConfigError("no episode store given: pass --out STORE or set recorder.store_path", "recorder")
    recorder_config = rig.recorder.to_config(path, scripted=rig.teleop.device == "scripted")
    env = None
    try:
        robot, env = _build_robot(rig)
        cameras = [_build_camera(c, f"cameras[{i}]", rig, env) for i, c in enumerate(rig.cameras)]
        teleop = _build_teleop(rig.teleop, robot, env)
    except BaseException:
        if env is not None:
            env.close()
        raise
    hook = None
    if env is not None:
        seed = rig.robot.seed

        def hook(i: int) -> str:
            env.reset(seed + i)
            return f"seed={seed + i}"

    return BuiltRig(robot, cameras, teleop, recorder_config, hook, env)


def _build_robot(rig: Rig) -> tuple[Robot, Any]:
    spec = rig.robot
    if isinstance(spec, Ros2RobotSpec):
        from data_collection.robots.ros2_robot import Ros2Robot

        return Ros2Robot(spec.to_config(rig.recorder.fps)), None
    if isinstance(spec, SimulatedRobotSpec):
        from data_collection.robots.simulated import SimulatedRobot

        return SimulatedRobot(spec.to_config()), None
    from df_policy.sim.gl import select_gl_backend

    select_gl_backend()  # before anything imports mujoco
    from data_collection.sim import SimArmRobot, SimArmRobotConfig
    from df_policy.sim import DEFAULT_CAMERAS, WRIST_CAMERA, SceneConfig, SimArmConfig, SimArmEnv

    wanted = {c.mj_camera or c.name for c in rig.cameras if c.type == "sim_arm"}
    cams = DEFAULT_CAMERAS + ((WRIST_CAMERA,) if WRIST_CAMERA.name in wanted else ())
    settings: dict[str, Any] = {"control_hz": rig.sim_control_hz, "scene": SceneConfig(cameras=cams)}
    if spec.episode_time_s is not None:
        settings["episode_time_s"] = spec.episode_time_s
    try:
        config = SimArmConfig(**settings)
    except ValueError as e:
        raise _translate(e, ("control_hz", "episode_time_s"), "robot") from None
    env = SimArmEnv(config)
    try:
        return SimArmRobot(env, SimArmRobotConfig(name=spec.name, mode=spec.mode)), env
    except BaseException:
        env.close()
        raise


def _build_camera(spec: CameraSpec, key: str, rig: Rig, env: Any) -> Camera:
    try:
        if spec.type == "sim_arm":
            from data_collection.sim import SimArmCamera

            config = spec.camera_config(env.config.image_size, env.config.control_hz)
            return SimArmCamera(env, config, mj_camera=spec.mj_camera)
        config = spec.camera_config()
        if spec.type == "realsense":
            from data_collection.cameras.realsense import RealSenseCamera

            return RealSenseCamera(config, playback_file=spec.playback_file)
        if spec.type == "opencv":
            from data_collection.cameras.opencv_camera import OpenCVCamera

            return OpenCVCamera(config, spec.path if spec.path is not None else spec.device, fourcc=spec.fourcc)
        from data_collection.cameras.simulated import SimulatedCamera

        return SimulatedCamera(
            config,
            realtime=spec.realtime,
            drop_frames=spec.drop_frames,
            drop_probability=spec.drop_probability,
            seed=spec.seed,
            hfov_deg=spec.hfov_deg,
        )
    except RigConfigError as e:
        raise e.under(key) from None
    except (CameraConfigError, UnsupportedModeError, ValueError) as e:  # e.g. a sim camera larger than allowed
        raise RigConfigError(str(e), key) from None


def _stdin_fd() -> int:
    """The file descriptor of standard input (0 when ``sys.stdin`` was replaced by an object without one)."""
    import io
    import sys

    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return 0


def _build_teleop(spec: TeleopSpec, robot: Robot, env: Any) -> TeleopDevice:
    from data_collection.teleop.keyboard import KeyboardTeleop

    if spec.device == "keyboard":
        return KeyboardTeleop(fd=_stdin_fd())
    device: TeleopDevice
    if spec.device == "scripted":
        from data_collection.teleop.scripted import ScriptedTeleop

        device = ScriptedTeleop(env, spec.scripted_config())
    else:
        device = _external_teleop(spec.device, dict(spec.settings), robot)
    return KeyboardTeleop(inner=device, fd=_stdin_fd()) if spec.with_keyboard else device


def _external_teleop(device: str, settings: dict[str, Any], robot: Robot) -> TeleopDevice:
    module_name = f"data_collection.teleop.{device}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise RigConfigError(
                f"{device!r} needs the module {module_name}, which is not in this installation", "teleop.device"
            ) from None
        raise RigConfigError(f"{device!r}: importing {module_name} failed: {e}", "teleop.device") from None
    factory = getattr(module, "build_teleop", None)
    if not callable(factory):
        raise RigConfigError(f"{module_name} has no build_teleop(settings, robot)", "teleop.device")
    try:
        teleop = factory(settings, robot)
    except RigConfigError as e:
        raise e.under("teleop") from None
    except (KeyError, ValueError) as e:  # the device module's verdict on its settings
        raise RigConfigError(str(e), "teleop.settings") from None
    if not isinstance(teleop, TeleopDevice):
        raise TeleopError(f"{module_name}.build_teleop returned {type(teleop).__name__}, not a TeleopDevice")
    return teleop
