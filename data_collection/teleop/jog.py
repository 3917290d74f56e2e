"""Velocity ("jog") teleoperation shared by the evdev devices (:mod:`.gamepad`, :mod:`.spacemouse`).

Every :meth:`~data_collection.teleop.base.TeleopDevice.action` call turns the device's axes
into velocities, integrates them over the step's duration ``dt`` from the **commanded
target** (not from the measured position, so tracking lag does not accumulate) and returns
joint position targets ``(D,)`` in the robot's ``joint_names`` order (rad / m).

Axes and deadzone
-----------------
Each :class:`AxisBinding` reads one device axis normalised to ``[-1, 1]`` (``[0, 1]`` for a
``unipolar`` trigger), applies the deadzone (``|v| <= deadzone`` -> 0, the rest rescaled so
the output is continuous and reaches 1 at full deflection), multiplies by ``scale`` and adds
the result to its ``target``. Several bindings may share a target (e.g. two triggers, one
with ``scale: -1``). An axis at rest, an axis whose state is unknown, and a device that
stopped reporting all give exactly zero velocity, so the target does not move.

Modes
-----
* ``joint``: ``target`` is a joint name; that joint moves at ``joint_rate_rad_s * value``
  (rad/s, or m/s for prismatic joints). Works for any robot.
* ``cartesian``: ``target`` is ``x``, ``y``, ``z`` (tool-point velocity in the **world
  frame**, ``linear_speed_m_s * value`` m/s) or ``rx``, ``ry``, ``rz`` (angular velocity
  ``angular_speed_rad_s * value`` rad/s about the axes of ``rotation_frame``: ``world``, or
  ``tool`` = the tool's own axes). Joint targets come from a
  :class:`~data_collection.teleop.kinematics.Kinematics`: each step the tool-point target
  moves by ``v * dt``, the orientation target is the orientation reached at the previous step
  turned by ``w * dt``, and ``inverse`` solves for the joints seeded with the previous
  command. Position comes first: a turn that would move the tool point by more than 1 mm
  (joint limit, too few joints) is retried at 1/2, 1/4, then 0 of its size. Orientation the
  arm cannot reach (e.g. heading about the vertical, independent of position, on the
  5-joint SO-101) is given up instead of accumulating; the position target is kept within
  ``max_position_error_m`` of the position actually reached (at the workspace boundary or a
  joint limit it stops instead of running away).
* ``auto``: ``cartesian`` when kinematics are available for the robot, else ``joint``.

Every command is then limited to the robot's :class:`~data_collection.robots.base.RobotLimits`:
no joint moves more than ``velocity_max * dt`` per step, and positions are clipped into
``[position_lower, position_upper]``.

Time step: ``dt_s`` if configured (one control period per call: deterministic; use it with
lockstep simulation), else the host :func:`time.monotonic` time since the previous call,
clamped to ``max_dt_s`` (the first call after :meth:`reset` then has ``dt = 0``).

Start: the commanded target starts at the robot's **measured** position (``state.positions``,
clipped into the limits) at the first :meth:`action` after :meth:`start` / :meth:`reset`.

Buttons and gripper
-------------------
``buttons`` maps key codes to an operator event (:data:`~data_collection.teleop.base.TELEOP_EVENTS`:
``toggle`` is the one-button start / stop-and-save, what the devices' default "save" button
sends; ``start`` and ``save`` separate the two for rigs with buttons to spare) or to
``gripper_open`` / ``gripper_close`` / ``gripper_toggle``. A button acts **once per
press** (edge), however long it is held. The gripper joint (``gripper_joint``, default: the
robot's joint named ``gripper`` if any) moves toward ``gripper_open`` / ``gripper_closed``
(default: its upper / lower limit) at ``gripper_rate_rad_s``.

Device loss: a device that is unplugged or whose stream ends raises
:class:`~data_collection.teleop.base.TeleopError` from :meth:`action` / :meth:`events` (every
later call too); no action is produced from it.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import numpy as np

from data_collection.robots.base import RobotLimits, RobotState

from .base import TELEOP_EVENTS, TeleopDevice, TeleopError
from .evdev_input import EV_ABS, EV_KEY, EvdevReader, TeleopConfigError, parse_code
from .kinematics import Kinematics, kinematics_for_robot

__all__ = [
    "BUTTON_ACTIONS",
    "CARTESIAN_TARGETS",
    "GRIPPER_ACTIONS",
    "JOG_MODES",
    "ROTATION_FRAMES",
    "AxisBinding",
    "EvdevJogTeleop",
    "JogConfig",
    "TeleopConfigError",
    "apply_deadzone",
    "rotation_matrix",
]

JOG_MODES = ("auto", "joint", "cartesian")
CARTESIAN_TARGETS = ("x", "y", "z", "rx", "ry", "rz")
ROTATION_FRAMES = ("world", "tool")
GRIPPER_ACTIONS = ("gripper_open", "gripper_close", "gripper_toggle")
BUTTON_ACTIONS = (*TELEOP_EVENTS, *GRIPPER_ACTIONS)
# Cartesian mode: fractions of the commanded turn tried in turn while the tool point would
# move by more than the tolerance (m) to make it.
_ROTATION_BACKOFF = (1.0, 0.5, 0.25, 0.0)
_ROTATION_BACKOFF_TOL_M = 1e-3


def apply_deadzone(value: float, deadzone: float) -> float:
    """0 for ``|value| <= deadzone``, else ``sign(value) * (|value| - deadzone) / (1 - deadzone)``."""
    mag = abs(value)
    if mag <= deadzone:
        return 0.0
    return math.copysign((mag - deadzone) / (1.0 - deadzone), value)


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis * angle, rad), Rodrigues' formula."""
    rv = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rv))
    if angle < 1e-12:
        return np.eye(3)
    k = rv / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def _number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False,
            maximum: float | None = None, upper_strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TeleopConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise TeleopConfigError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise TeleopConfigError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and (v > maximum or (upper_strict and v == maximum)):
        raise TeleopConfigError(f"{name} must be {'<' if upper_strict else '<='} {maximum:g}, got {value!r}")
    return v


@dataclass(frozen=True)
class AxisBinding:
    """One device axis driving one target.

    Attributes:
        axis: the device axis (gamepad: an ``ABS_*`` code name such as ``ABS_RY``; SpaceMouse:
            ``X``, ``Y``, ``Z``, ``RX``, ``RY``, ``RZ``).
        target: a joint name (``joint`` mode) or ``x``/``y``/``z``/``rx``/``ry``/``rz``
            (``cartesian`` mode).
        scale: multiplies the deadzoned axis value; its sign sets the direction.
        unipolar: the axis rests at its minimum (trigger): read as ``[0, 1]`` instead of ``[-1, 1]``.
    """

    axis: str
    target: str
    scale: float = 1.0
    unipolar: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.axis, (str, int)) or isinstance(self.axis, bool) or self.axis == "":
            raise TeleopConfigError(f"axis binding: axis must be a name, got {self.axis!r}")
        if not isinstance(self.target, str) or not self.target:
            raise TeleopConfigError(f"axis binding for {self.axis}: target must be a non-empty string, got {self.target!r}")
        object.__setattr__(self, "scale", _number(f"axis binding {self.axis}->{self.target}: scale", self.scale))
        if not isinstance(self.unipolar, bool):
            raise TeleopConfigError(f"axis binding {self.axis}->{self.target}: unipolar must be true/false")

    @classmethod
    def from_settings(cls, item: Any, where: str) -> AxisBinding:
        if isinstance(item, AxisBinding):
            return item
        if not isinstance(item, Mapping):
            raise TeleopConfigError(f"{where}: expected a mapping with keys axis, target[, scale, unipolar], got {item!r}")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(item) - known)
        if extra:
            raise TeleopConfigError(f"{where}: unknown key(s) {extra}; known keys: {sorted(known)}")
        missing = sorted({"axis", "target"} - set(item))
        if missing:
            raise TeleopConfigError(f"{where}: missing key(s) {missing}")
        return cls(**dict(item))


@dataclass(frozen=True)
class JogConfig:
    """Settings shared by the evdev jog devices (see the module docstring; units: m, rad, s).

    Attributes:
        device: ``/dev/input/eventN`` or any path (``/dev/input/by-id/...``, a FIFO of
            recorded events), or a substring of the device name (case-insensitive, from
            ``/proc/bus/input/devices``); ``None`` = the device type's default search.
        mode: ``auto``, ``joint`` or ``cartesian``.
        deadzone: axis values with ``|v| <=`` this are zero, in ``[0, 1)``.
        dt_s: seconds integrated per :meth:`action` call (> 0), ``None`` = measured host time.
        max_dt_s: largest measured step (s, > 0), so a stall never becomes a jump.
        joint_rate_rad_s: joint speed at full deflection in ``joint`` mode (rad/s or m/s), > 0.
        linear_speed_m_s: tool-point speed at full deflection in ``cartesian`` mode (m/s), > 0.
        angular_speed_rad_s: tool angular speed at full deflection (rad/s), > 0.
        rotation_frame: ``world`` or ``tool``: the axes ``rx``/``ry``/``rz`` turn about.
        max_position_error_m: in ``cartesian`` mode the tool-point target stays within this
            distance of the pose reached (m, > 0).
        axes: the bindings; ``None`` = the device's default for the mode.
        buttons: ``{key code name: action}``; ``None`` = the device's default.
        gripper_joint: joint driven by the ``gripper_*`` buttons; ``"auto"`` = the joint named
            ``gripper`` if the robot has one; ``None`` = no gripper.
        gripper_open, gripper_closed: gripper targets (rad / m); ``None`` = the joint's
            upper / lower limit.
        gripper_rate_rad_s: gripper speed toward its target (rad/s), > 0.
        axis_ranges: ``{ABS code name: [min, max]}`` raw ranges used when the device file is
            not a real evdev device (FIFO); merged over the device's defaults.
        grab: take the device exclusively (``EVIOCGRAB``) while started.
    """

    kind: ClassVar[str] = "jog"

    device: str | None = None
    mode: str = "auto"
    deadzone: float = 0.1
    dt_s: float | None = None
    max_dt_s: float = 0.25
    joint_rate_rad_s: float = 0.6
    linear_speed_m_s: float = 0.05
    angular_speed_rad_s: float = 0.6
    rotation_frame: str = "world"
    max_position_error_m: float = 0.01
    axes: tuple[AxisBinding, ...] | None = None
    buttons: Mapping[str, str] | None = None
    gripper_joint: str | None = "auto"
    gripper_open: float | None = None
    gripper_closed: float | None = None
    gripper_rate_rad_s: float = 3.0
    axis_ranges: Mapping[str, tuple[float, float]] | None = None
    grab: bool = False

    def __post_init__(self) -> None:
        k = self.kind
        if self.device is not None and (not isinstance(self.device, str) or not self.device.strip()):
            raise TeleopConfigError(f"{k}: device must be a path or a name substring, got {self.device!r}")
        if self.mode not in JOG_MODES:
            raise TeleopConfigError(f"{k}: mode must be one of {JOG_MODES}, got {self.mode!r}")
        if self.rotation_frame not in ROTATION_FRAMES:
            raise TeleopConfigError(f"{k}: rotation_frame must be one of {ROTATION_FRAMES}, got {self.rotation_frame!r}")
        set_ = object.__setattr__
        set_(self, "deadzone", _number(f"{k}: deadzone", self.deadzone, minimum=0.0, maximum=1.0, upper_strict=True))
        if self.dt_s is not None:
            set_(self, "dt_s", _number(f"{k}: dt_s", self.dt_s, minimum=0.0, strict=True))
        for name in ("max_dt_s", "joint_rate_rad_s", "linear_speed_m_s", "angular_speed_rad_s",
                     "max_position_error_m", "gripper_rate_rad_s"):
            set_(self, name, _number(f"{k}: {name}", getattr(self, name), minimum=0.0, strict=True))
        for name in ("gripper_open", "gripper_closed"):
            if getattr(self, name) is not None:
                set_(self, name, _number(f"{k}: {name}", getattr(self, name)))
        if self.gripper_joint is not None and (not isinstance(self.gripper_joint, str) or not self.gripper_joint):
            raise TeleopConfigError(f"{k}: gripper_joint must be a joint name, 'auto' or null, got {self.gripper_joint!r}")
        if not isinstance(self.grab, bool):
            raise TeleopConfigError(f"{k}: grab must be true/false, got {self.grab!r}")
        if self.axes is not None:
            if isinstance(self.axes, (str, bytes, Mapping)) or not hasattr(self.axes, "__iter__"):
                raise TeleopConfigError(f"{k}: axes must be a list of bindings, got {self.axes!r}")
            axes = tuple(AxisBinding.from_settings(a, f"{k}: axes[{i}]") for i, a in enumerate(self.axes))
            for b in axes:
                self.validate_axis(b)
            set_(self, "axes", axes)
        if self.buttons is not None:
            if not isinstance(self.buttons, Mapping):
                raise TeleopConfigError(f"{k}: buttons must be a mapping {{code: action}}, got {self.buttons!r}")
            for code, action in self.buttons.items():
                parse_code(code, EV_KEY, f"{k}: buttons key {code!r}")
                if action not in BUTTON_ACTIONS:
                    raise TeleopConfigError(f"{k}: buttons[{code!r}] = {action!r}; actions are {BUTTON_ACTIONS}")
            set_(self, "buttons", dict(self.buttons))
        if self.axis_ranges is not None:
            if not isinstance(self.axis_ranges, Mapping):
                raise TeleopConfigError(f"{k}: axis_ranges must be a mapping {{ABS code: [min, max]}}")
            ranges = {}
            for code, rng in self.axis_ranges.items():
                parse_code(code, EV_ABS, f"{k}: axis_ranges key {code!r}")
                if isinstance(rng, (str, bytes)) or not hasattr(rng, "__len__") or len(rng) != 2:
                    raise TeleopConfigError(f"{k}: axis_ranges[{code!r}] must be [min, max], got {rng!r}")
                lo = _number(f"{k}: axis_ranges[{code!r}] min", rng[0])
                hi = _number(f"{k}: axis_ranges[{code!r}] max", rng[1])
                if not lo < hi:
                    raise TeleopConfigError(f"{k}: axis_ranges[{code!r}] must have min < max, got {list(rng)}")
                ranges[code] = (lo, hi)
            set_(self, "axis_ranges", ranges)

    def validate_axis(self, binding: AxisBinding) -> None:
        """Device-specific check of ``binding.axis`` (subclasses)."""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Self:
        """Config from a plain dict (a YAML section). Unknown keys are an error naming them; an
        optional ``type`` key must name this device (``gamepad`` / ``spacemouse``)."""
        if isinstance(settings, cls):
            return settings
        if not isinstance(settings, Mapping):
            raise TeleopConfigError(f"{cls.kind} settings must be a mapping, got {type(settings).__name__}")
        known = {f.name for f in fields(cls)}
        extra = sorted(str(key) for key in set(settings) - known - {"type"})
        if extra:
            raise TeleopConfigError(f"{cls.kind} settings: unknown key(s) {extra}; known keys: {sorted(known)}")
        if "type" in settings and settings["type"] != cls.kind:
            raise TeleopConfigError(f"{cls.kind} settings: type is {settings['type']!r}, expected {cls.kind!r}")
        return cls(**{key: value for key, value in settings.items() if key != "type"})


class EvdevJogTeleop(TeleopDevice):
    """Base of :class:`~data_collection.teleop.gamepad.GamepadTeleop` and
    :class:`~data_collection.teleop.spacemouse.SpaceMouseTeleop` (see the module docstring).

    Subclasses provide the default bindings, the device search and :meth:`_axis_value`.
    """

    name = "jog"
    config_type: ClassVar[type[JogConfig]] = JogConfig
    default_axis_ranges: ClassVar[Mapping[str, tuple[float, float]]] = {}

    def __init__(
        self,
        config: JogConfig | None,
        limits: RobotLimits,
        kinematics: Kinematics | None = None,
    ) -> None:
        super().__init__()
        config = config if config is not None else self.config_type()
        if not isinstance(config, self.config_type):
            raise TeleopConfigError(f"{self.name}: expected a {self.config_type.__name__}, got {type(config).__name__}")
        if not isinstance(limits, RobotLimits):
            raise TeleopConfigError(f"{self.name}: expected RobotLimits, got {type(limits).__name__}")
        self.config = config
        self.limits = limits
        joints = limits.joint_names
        mode = config.mode
        if mode == "auto":
            mode = "cartesian" if kinematics is not None else "joint"
        if mode == "cartesian" and kinematics is None:
            raise TeleopConfigError(
                f"{self.name}: mode 'cartesian' needs kinematics for this robot and none is available; "
                "use mode: joint (or auto)"
            )
        self.mode = mode
        self.kinematics = kinematics if mode == "cartesian" else None

        # gripper
        gj = config.gripper_joint
        if gj == "auto":
            gj = "gripper" if "gripper" in joints else None
        elif gj is not None and gj not in joints:
            raise TeleopConfigError(f"{self.name}: gripper_joint {gj!r} is not a joint of the robot {list(joints)}")
        self._grip = None if gj is None else joints.index(gj)
        self.gripper_joint = gj
        if self._grip is not None:
            g = self._grip
            lo, hi = limits.lower[g], limits.upper[g]
            self._grip_open = float(hi if config.gripper_open is None else config.gripper_open)
            self._grip_closed = float(lo if config.gripper_closed is None else config.gripper_closed)
            for name, v in (("gripper_open", self._grip_open), ("gripper_closed", self._grip_closed)):
                if not math.isfinite(v):
                    raise TeleopConfigError(f"{self.name}: joint {gj!r} has no finite limit: set {name}")
                if not lo <= v <= hi:
                    raise TeleopConfigError(f"{self.name}: {name}={v:g} is outside the limits [{lo:g}, {hi:g}] of joint {gj!r}")

        # kinematics joints
        if self.kinematics is not None:
            unknown = [j for j in self.kinematics.joint_names if j not in joints]
            if unknown:
                raise TeleopConfigError(f"{self.name}: kinematics joints {unknown} are not joints of the robot {list(joints)}")
            self._kin_idx = np.array([joints.index(j) for j in self.kinematics.joint_names])

        # axes
        bindings = config.axes if config.axes is not None else self.default_axes(mode, joints, gj)
        self.bindings: tuple[AxisBinding, ...] = tuple(bindings)
        self._targets: list[int] = []
        for b in self.bindings:
            if mode == "joint":
                if b.target not in joints:
                    raise TeleopConfigError(
                        f"{self.name}: axis {b.axis} targets {b.target!r}, which is not a joint of the robot; "
                        f"in joint mode targets are joint names {list(joints)}"
                    )
                self._targets.append(joints.index(b.target))
            else:
                if b.target not in CARTESIAN_TARGETS:
                    raise TeleopConfigError(
                        f"{self.name}: axis {b.axis} targets {b.target!r}; in cartesian mode targets are "
                        f"{CARTESIAN_TARGETS}"
                    )
                self._targets.append(CARTESIAN_TARGETS.index(b.target))

        # buttons
        buttons = config.buttons if config.buttons is not None else self.default_buttons()
        self._buttons: dict[int, str] = {}
        for code, action in buttons.items():
            if action in GRIPPER_ACTIONS and self._grip is None:
                if config.buttons is None:
                    continue  # default gripper buttons on a robot without a gripper: unused
                raise TeleopConfigError(f"{self.name}: button {code} is bound to {action!r} but there is no gripper joint")
            self._buttons[parse_code(code, EV_KEY, f"{self.name}: button {code!r}")] = action

        ranges = {**self.default_axis_ranges, **(config.axis_ranges or {})}
        self._axis_ranges = {parse_code(k, EV_ABS, "axis_ranges"): v for k, v in ranges.items()}
        self.reader: EvdevReader | None = None
        self._q_cmd: np.ndarray | None = None
        self._p_cmd: np.ndarray | None = None
        self._r_cmd: np.ndarray | None = None
        self._grip_goal: float | None = None
        self._last_t: float | None = None

    # -- subclass hooks

    @classmethod
    @abc.abstractmethod
    def default_axes(cls, mode: str, joints: tuple[str, ...], gripper: str | None) -> tuple[AxisBinding, ...]:
        """Bindings used when ``config.axes`` is ``None``."""

    @classmethod
    @abc.abstractmethod
    def default_buttons(cls) -> dict[str, str]:
        """Button map used when ``config.buttons`` is ``None``."""

    @abc.abstractmethod
    def _device_path(self) -> str:
        """The device file to open (search by name if needed)."""

    def _check_axes(self) -> None:
        """Called after the device is opened: every bound axis must be readable."""

    @abc.abstractmethod
    def _axis_value(self, index: int, binding: AxisBinding, now: float) -> float:
        """Normalised value of ``binding`` (``self.bindings[index]``)'s axis (``[-1, 1]``, ``[0, 1]`` if unipolar), before the deadzone."""

    def _begin_step(self) -> None:
        """Called once per action() after polling, before :meth:`_axis_value`."""

    # -- TeleopDevice hooks

    def _start(self) -> None:
        path = self._device_path()
        reader = EvdevReader(path, axis_ranges=self._axis_ranges, grab=self.config.grab)
        reader.open()
        self.reader = reader
        try:
            self._check_axes()
        except Exception:
            reader.close()
            self.reader = None
            raise
        self._q_cmd = None
        self._last_t = None
        self._grip_goal = None

    def _stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _reset(self) -> None:
        self._q_cmd = None
        self._last_t = None
        self._grip_goal = None
        if self.reader is not None:  # presses made before the episode do not count
            self.reader.poll()
            self.reader.take_presses()
            self.reader.take_rel()

    def _poll(self) -> None:
        if self.reader is not None:
            self._update()

    def _update(self) -> None:
        reader = self.reader
        assert reader is not None
        reader.poll()
        for code, count in reader.take_presses().items():
            action = self._buttons.get(code)
            if action is None:
                continue
            for _ in range(count):
                if action in GRIPPER_ACTIONS:
                    self._gripper_button(action)
                else:
                    self.emit(action)

    def _gripper_button(self, action: str) -> None:
        if action == "gripper_open":
            self._grip_goal = self._grip_open
        elif action == "gripper_close":
            self._grip_goal = self._grip_closed
        else:
            if self._grip_goal is not None:
                current = self._grip_goal
            elif self._q_cmd is not None:
                current = float(self._q_cmd[self._grip])
            else:
                current = self._grip_open
            nearer_closed = abs(current - self._grip_closed) < abs(current - self._grip_open)
            self._grip_goal = self._grip_open if nearer_closed else self._grip_closed

    def _action(self, state: RobotState) -> np.ndarray:
        self._update()
        q_meas = np.asarray(state.positions, dtype=np.float64)
        if q_meas.shape != (self.limits.dim,):
            raise TeleopError(
                f"{self.name}: state has {q_meas.shape} positions, expected ({self.limits.dim},) for {list(self.limits.joint_names)}"
            )
        now = time.monotonic()
        first = self._q_cmd is None
        if first:
            self._init_target(q_meas)
        if self.config.dt_s is not None:
            dt = self.config.dt_s
        else:
            dt = 0.0 if first or self._last_t is None else min(max(now - self._last_t, 0.0), self.config.max_dt_s)
        self._last_t = now
        self._begin_step()
        command = np.zeros(self.limits.dim if self.mode == "joint" else 6)
        for i, (b, idx) in enumerate(zip(self.bindings, self._targets, strict=True)):
            v = apply_deadzone(self._axis_value(i, b, now), self.config.deadzone)
            if v != 0.0:
                command[idx] += b.scale * v
        assert self._q_cmd is not None
        prev = self._q_cmd
        if dt <= 0.0:
            return prev.copy()
        if self.mode == "joint":
            q = prev + command * self.config.joint_rate_rad_s * dt
            if self._grip is not None and command[self._grip] != 0.0:
                self._grip_goal = None  # jogging the gripper overrides the buttons' target
        else:
            q = self._cartesian_step(prev, command[:3] * self.config.linear_speed_m_s,
                                     command[3:] * self.config.angular_speed_rad_s, dt)
        if self._grip is not None and self._grip_goal is not None:
            g = self._grip
            step = self.config.gripper_rate_rad_s * dt
            q[g] = prev[g] + float(np.clip(self._grip_goal - prev[g], -step, step))
        q = self._limit(prev, q, dt)
        self._q_cmd = q
        if self.mode == "cartesian":
            self._track_pose(q)
        return q.copy()

    # -- internals

    def _init_target(self, q_meas: np.ndarray) -> None:
        q = self.limits.clip_positions(q_meas)
        self._q_cmd = q
        if self.mode == "cartesian":
            assert self.kinematics is not None
            pos, rot = self.kinematics.forward(q[self._kin_idx])
            self._p_cmd = np.asarray(pos, dtype=np.float64).copy()
            self._r_cmd = np.asarray(rot, dtype=np.float64).copy()

    def _limit(self, prev: np.ndarray, q: np.ndarray, dt: float) -> np.ndarray:
        max_step = self.limits.vmax * dt
        q = prev + np.clip(q - prev, -max_step, max_step)
        return self.limits.clip_positions(q)

    def _cartesian_step(self, prev: np.ndarray, lin: np.ndarray, ang: np.ndarray, dt: float) -> np.ndarray:
        assert self.kinematics is not None and self._p_cmd is not None and self._r_cmd is not None
        q = prev.copy()
        if not lin.any() and not ang.any():
            return q  # at rest: the target does not move (no IK round-off either)
        kin, seed = self.kinematics, prev[self._kin_idx]
        self._p_cmd = self._p_cmd + lin * dt
        step = ang * dt
        for attempt in range(len(_ROTATION_BACKOFF)):
            turn = rotation_matrix(step * _ROTATION_BACKOFF[attempt])
            rot = turn @ self._r_cmd if self.config.rotation_frame == "world" else self._r_cmd @ turn
            q_kin = kin.inverse(self._p_cmd, rot, seed)
            if not step.any() or attempt == len(_ROTATION_BACKOFF) - 1:
                break
            # position first: a turn that cannot be made without moving the tool point
            # (joint limit, too few joints) is made smaller, down to none
            if np.linalg.norm(np.asarray(kin.forward(q_kin)[0]) - self._p_cmd) <= _ROTATION_BACKOFF_TOL_M:
                break
        q[self._kin_idx] = q_kin
        return q

    def _track_pose(self, q: np.ndarray) -> None:
        """After limiting: orientation target = orientation reached; position target kept
        within ``max_position_error_m`` of the position reached."""
        assert self.kinematics is not None and self._p_cmd is not None
        pos, rot = self.kinematics.forward(q[self._kin_idx])
        pos = np.asarray(pos, dtype=np.float64)
        self._r_cmd = np.asarray(rot, dtype=np.float64).copy()
        err = self._p_cmd - pos
        dist = float(np.linalg.norm(err))
        limit = self.config.max_position_error_m
        if dist > limit:
            self._p_cmd = pos + err * (limit / dist)

    @property
    def commanded(self) -> np.ndarray | None:
        """The current joint target ``(D,)`` (``None`` before the first action)."""
        return None if self._q_cmd is None else self._q_cmd.copy()

    @property
    def tool_target(self) -> np.ndarray | None:
        """Cartesian mode: the tool-point target (world, m); else ``None``."""
        return None if self._p_cmd is None or self.mode != "cartesian" else self._p_cmd.copy()


def lockstep_dt_s(robot: Any) -> float | None:
    """The control period of a lockstep simulated robot (``SimArmRobot`` in ``lockstep`` mode), else ``None``."""
    env = getattr(robot, "env", None)
    mode = getattr(getattr(robot, "config", None), "mode", None)
    dt = getattr(env, "dt_s", None)
    if mode == "lockstep" and isinstance(dt, (int, float)) and dt > 0:
        return float(dt)
    return None


def build_jog_teleop(cls: type[EvdevJogTeleop], settings: Mapping[str, Any], robot: Any) -> EvdevJogTeleop:
    """Shared body of the devices' ``build_teleop``: config from ``settings``, kinematics
    from the robot when the mode may be cartesian, ``dt_s`` = the control period of a
    lockstep simulated robot unless set."""
    config = cls.config_type.from_settings(settings)
    limits = getattr(robot, "limits", None)
    if not isinstance(limits, RobotLimits):
        raise TeleopConfigError(f"{cls.name}: build_teleop needs a Robot with RobotLimits, got {type(robot).__name__}")
    kin = None if config.mode == "joint" else kinematics_for_robot(robot)
    if config.mode == "cartesian" and kin is None:
        raise TeleopConfigError(
            f"{cls.name}: mode 'cartesian' needs kinematics and none is known for robot "
            f"{getattr(robot, 'name', type(robot).__name__)!r} (only the simulated arm, or a robot with a "
            "'kinematics' attribute); use mode: joint or auto"
        )
    if config.dt_s is None:
        dt = lockstep_dt_s(robot)
        if dt is not None:
            from dataclasses import replace

            config = replace(config, dt_s=dt)
    return cls(config, limits, kinematics=kin)
