"""``SpaceMouseTeleop``: a 3Dconnexion SpaceMouse (Linux evdev) as a 6-DoF jog teleoperator.

The kernel (``hid-generic``) exposes the SpaceMouse as an input device with six axes and
buttons ``BTN_0``, ``BTN_1`` (more on larger models). Depending on the model the axes are
relative (``REL_X`` .. ``REL_RZ``: every HID report repeats the cap's current displacement,
and the kernel drops zero values, so a released cap simply stops reporting) or absolute
(``ABS_X`` .. ``ABS_RZ``). Bindings name the axes generically, ``X Y Z RX RY RZ``, and both
kinds are read:

* relative: the mean of the values received since the previous :meth:`action`, or, if none
  arrived, the last value while it is at most ``rel_hold_s`` old; older = released = 0.
  Divided by ``full_scale`` (raw value at full deflection, ~350 on current models). Motion
  therefore stops within ``rel_hold_s`` (plus one control period) after the cap is released
  or the device stops reporting.
* absolute: normalised by the axis range (``EVIOCGABS``; ``axis_ranges`` / ±350 for a FIFO).

Motion, deadzone, limits, gripper and timing follow :mod:`.jog`.

Raw axis convention (3Dconnexion HID): ``X`` right, ``Y`` toward the user, ``Z`` down, the
rotations right-handed about those. Default ``cartesian`` mapping (``mode: auto`` picks it
when the robot has kinematics), for an operator behind the robot looking along the world
``+x`` (world frame: ``x`` forward, ``y`` left, ``z`` up; ``rotation_frame: world``):

===========  ===========  ==========================================
device axis  target       cap motion
===========  ===========  ==========================================
``Y``        ``x`` (-1)   push away = forward, ``linear_speed_m_s``
``X``        ``y`` (-1)   push right = to the right
``Z``        ``z`` (-1)   pull up = up
``RY``       ``rx`` (-1)  tilt (roll) about the forward axis
``RX``       ``ry`` (-1)  tilt (pitch) about the left axis
``RZ``       ``rz`` (-1)  twist about the vertical, ``angular_speed_rad_s``
===========  ===========  ==========================================

If a direction is reversed on your model, flip that binding's ``scale``. ``joint`` fallback
(robots without kinematics): ``X Y Z RX RY RZ`` drive the robot's joints in order (skipping
the gripper joint), scale +1: check the signs on your robot.

Buttons: ``BTN_0`` (left) toggles the gripper, ``BTN_1`` (right) is the episode ``toggle``
(start the next episode while the recorder is idle, stop and save it while recording).
Device search (``device: null``): the first input device whose name contains one of
:data:`SPACEMOUSE_NAMES` and that reports six relative or absolute axes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import TeleopError
from .evdev_input import (
    EV_ABS,
    EV_REL,
    InputDeviceInfo,
    RelAccum,
    TeleopConfigError,
    code_name,
    find_input_device,
)
from .jog import AxisBinding, EvdevJogTeleop, JogConfig, _number, build_jog_teleop

__all__ = ["SPACEMOUSE_AXES", "SPACEMOUSE_NAMES", "SpaceMouseConfig", "SpaceMouseTeleop", "build_teleop"]

SPACEMOUSE_AXES = ("X", "Y", "Z", "RX", "RY", "RZ")
SPACEMOUSE_NAMES = ("3Dconnexion", "SpaceMouse", "SpaceNavigator", "SpacePilot", "SpaceExplorer")
DEFAULT_AXIS_RANGES: dict[str, tuple[float, float]] = {f"ABS_{a}": (-350, 350) for a in SPACEMOUSE_AXES}

_CARTESIAN_AXES = (
    AxisBinding("Y", "x", -1.0),
    AxisBinding("X", "y", -1.0),
    AxisBinding("Z", "z", -1.0),
    AxisBinding("RY", "rx", -1.0),
    AxisBinding("RX", "ry", -1.0),
    AxisBinding("RZ", "rz", -1.0),
)
_BUTTONS = {"BTN_0": "gripper_toggle", "BTN_1": "toggle"}


def _axis_index(name: object) -> int | None:
    if not isinstance(name, str):
        return None
    text = name.strip().upper()
    for prefix in ("REL_", "ABS_"):
        text = text.removeprefix(prefix)
    return SPACEMOUSE_AXES.index(text) if text in SPACEMOUSE_AXES else None


@dataclass(frozen=True)
class SpaceMouseConfig(JogConfig):
    """SpaceMouse settings: every field of :class:`~data_collection.teleop.jog.JogConfig`,
    plus:

    Attributes:
        full_scale: raw relative-axis value at full deflection (> 0).
        rel_hold_s: a relative axis reads 0 once its last value is older than this (s, > 0).

    ``axes[].axis`` are ``X``, ``Y``, ``Z``, ``RX``, ``RY``, ``RZ`` (``REL_``/``ABS_``
    prefixes accepted). Defaults: ``deadzone`` 0.08, ``linear_speed_m_s`` 0.08,
    ``angular_speed_rad_s`` 0.8, ``rotation_frame`` ``world``.
    """

    kind: ClassVar[str] = "spacemouse"

    deadzone: float = 0.08
    linear_speed_m_s: float = 0.08
    angular_speed_rad_s: float = 0.8
    rotation_frame: str = "world"
    full_scale: float = 350.0
    rel_hold_s: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("full_scale", "rel_hold_s"):
            object.__setattr__(self, name, _number(f"spacemouse: {name}", getattr(self, name), minimum=0.0, strict=True))

    def validate_axis(self, binding: AxisBinding) -> None:
        if _axis_index(binding.axis) is None:
            raise TeleopConfigError(f"spacemouse: axis {binding.axis!r} is not one of {SPACEMOUSE_AXES}")


def _six_axes(dev: InputDeviceInfo) -> bool:
    return any((dev.capabilities.get(k, 0) & 0x3F) == 0x3F for k in ("REL", "ABS"))


class SpaceMouseTeleop(EvdevJogTeleop):
    """SpaceMouse jog teleoperator (see the module docstring and :mod:`.jog`).

    ``config``: :class:`SpaceMouseConfig`; ``limits``: the robot's joints and limits;
    ``kinematics``: for ``cartesian`` mode (``auto`` falls back to ``joint`` without it).
    """

    name = "spacemouse"
    config_type = SpaceMouseConfig
    default_axis_ranges: ClassVar[Mapping[str, tuple[float, float]]] = DEFAULT_AXIS_RANGES

    def __init__(self, config: SpaceMouseConfig | None, limits: Any, kinematics: Any = None) -> None:
        super().__init__(config, limits, kinematics)
        self._axes = [_axis_index(b.axis) for b in self.bindings]
        self._rel: dict[int, RelAccum] = {}

    @classmethod
    def default_axes(cls, mode: str, joints: tuple[str, ...], gripper: str | None) -> tuple[AxisBinding, ...]:
        if mode == "cartesian":
            return _CARTESIAN_AXES
        movable = [j for j in joints if j != gripper]
        return tuple(AxisBinding(axis, joint) for axis, joint in zip(SPACEMOUSE_AXES, movable, strict=False))

    @classmethod
    def default_buttons(cls) -> dict[str, str]:
        return dict(_BUTTONS)

    def _device_path(self) -> str:
        dev = self.config.device
        if dev is None:
            return find_input_device(SPACEMOUSE_NAMES, accept=_six_axes)
        if os.sep in dev:
            return dev
        return find_input_device(dev, accept=_six_axes)

    def _check_axes(self) -> None:
        reader = self.reader
        assert reader is not None
        if reader.is_evdev and reader.event_types is not None and EV_REL not in reader.event_types:
            missing = sorted({code_name(EV_ABS, a) for a in self._axes if a is not None and not reader.has_abs(a)})
            if missing:
                raise TeleopError(
                    f"{self.name}: {reader.path} ({reader.device_name}) reports neither relative axes nor {missing}"
                )

    def _begin_step(self) -> None:
        assert self.reader is not None
        self._rel = self.reader.take_rel()

    def _axis_value(self, index: int, binding: AxisBinding, now: float) -> float:
        assert self.reader is not None
        axis = self._axes[index]
        assert axis is not None
        acc = self._rel.get(axis)  # REL_X..REL_RZ have the same numbers as ABS_X..ABS_RZ
        if acc is None:
            return self.reader.abs_normalized(axis)
        if acc.count > 0:
            raw = acc.total / acc.count
        elif acc.last_time_s is not None and now - acc.last_time_s <= self.config.rel_hold_s:
            raw = acc.last
        else:
            return 0.0  # released (the kernel does not report zeros) or the device went quiet
        return max(-1.0, min(1.0, raw / self.config.full_scale))


def build_teleop(settings: Mapping[str, Any], robot: Any) -> SpaceMouseTeleop:
    """A :class:`SpaceMouseTeleop` for ``robot`` (a :class:`~data_collection.robots.base.Robot`)
    from ``settings`` (the fields of :class:`SpaceMouseConfig` as a plain dict; unknown keys
    are an error). ``mode: auto`` (default) is cartesian when
    :func:`~data_collection.teleop.kinematics.kinematics_for_robot` knows the robot, else
    joint; for a lockstep simulated robot ``dt_s`` defaults to its control period. The device
    is opened by ``start()``."""
    return build_jog_teleop(SpaceMouseTeleop, settings, robot)  # type: ignore[return-value]
