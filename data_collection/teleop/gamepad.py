"""``GamepadTeleop``: an Xbox / PlayStation-style gamepad (Linux evdev) as a jog teleoperator.

Read through :mod:`.evdev_input` (no extra package); motion, deadzone, limits, gripper and
timing follow :mod:`.jog` (velocities integrated from the commanded target; axes at rest,
unknown or lost give no motion; a lost device raises
:class:`~data_collection.teleop.base.TeleopError`).

Default mapping (kernel gamepad layout, ``Documentation/input/gamepad.rst``; ``xpad`` and
``hid-playstation`` both follow it). Stick up reads negative, so the ``Y`` axes have scale -1.

``cartesian`` (world frame: ``x`` forward from the robot base, ``y`` left, ``z`` up; the
operator stands behind the robot; speeds at full deflection):

* ``ABS_Y`` (left stick up/down) -> ``x``, scale -1: up = forward, ``linear_speed_m_s``;
* ``ABS_X`` (left stick left/right) -> ``y``, scale -1: right = to the right;
* ``ABS_RY`` (right stick up/down) -> ``z``, scale -1: up = up;
* ``ABS_RX`` (right stick left/right) -> ``rx``: roll about the tool's approach axis
  (``rotation_frame: tool``), ``angular_speed_rad_s``;
* ``ABS_RZ`` / ``ABS_Z`` (right / left trigger, unipolar) -> ``rz`` +1 / -1: wrist pitch
  (about the tool ``z`` axis = the jaw axis of the simulated SO-101).

``joint``: ``ABS_X`` (+1), ``ABS_Y`` (-1), ``ABS_RY`` (-1), ``ABS_RX`` (+1), the triggers
(``ABS_RZ`` +, ``ABS_Z`` -) and ``ABS_HAT0X`` (d-pad) drive the robot's joints in order,
skipping the gripper joint, at ``joint_rate_rad_s``.

Buttons: ``BTN_START`` toggle (start the next episode while the recorder is idle, stop and
save it while recording), ``BTN_SELECT`` (Back / Share) discard, ``BTN_SOUTH`` (A / cross)
success, ``BTN_EAST`` (B / circle) failure, ``BTN_MODE`` (Xbox / PS logo) quit, ``BTN_TR``
(RB / R1) close the gripper, ``BTN_TL`` (LB / L1) open it.

Device search (``device: null``): the first device with a joystick handler (``jsN``) that
reports absolute axes and keys. Raw ranges come from the device (``EVIOCGABS``); for a
non-evdev source (FIFO) :data:`DEFAULT_AXIS_RANGES` (Xbox One) apply unless ``axis_ranges``
says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import TeleopError
from .evdev_input import EV_ABS, EV_KEY, code_name, find_input_device, parse_code
from .jog import AxisBinding, EvdevJogTeleop, JogConfig, build_jog_teleop

__all__ = ["DEFAULT_AXIS_RANGES", "GamepadConfig", "GamepadTeleop", "build_teleop"]

DEFAULT_AXIS_RANGES: dict[str, tuple[float, float]] = {
    "ABS_X": (-32768, 32767), "ABS_Y": (-32768, 32767), "ABS_RX": (-32768, 32767), "ABS_RY": (-32768, 32767),
    "ABS_Z": (0, 1023), "ABS_RZ": (0, 1023), "ABS_HAT0X": (-1, 1), "ABS_HAT0Y": (-1, 1),
}

_CARTESIAN_AXES = (
    AxisBinding("ABS_Y", "x", -1.0),
    AxisBinding("ABS_X", "y", -1.0),
    AxisBinding("ABS_RY", "z", -1.0),
    AxisBinding("ABS_RX", "rx", 1.0),
    AxisBinding("ABS_RZ", "rz", 1.0, unipolar=True),
    AxisBinding("ABS_Z", "rz", -1.0, unipolar=True),
)
# per joint (in order): the bindings that drive it
_JOINT_AXES: tuple[tuple[tuple[str, float, bool], ...], ...] = (
    (("ABS_X", 1.0, False),),
    (("ABS_Y", -1.0, False),),
    (("ABS_RY", -1.0, False),),
    (("ABS_RX", 1.0, False),),
    (("ABS_RZ", 1.0, True), ("ABS_Z", -1.0, True)),
    (("ABS_HAT0X", 1.0, False),),
)
_BUTTONS = {
    "BTN_START": "toggle", "BTN_SELECT": "discard", "BTN_SOUTH": "success", "BTN_EAST": "failure",
    "BTN_MODE": "quit", "BTN_TR": "gripper_close", "BTN_TL": "gripper_open",
}


@dataclass(frozen=True)
class GamepadConfig(JogConfig):
    """Gamepad settings: every field of :class:`~data_collection.teleop.jog.JogConfig`
    (``device``, ``mode``, ``deadzone``, speeds, ``axes``, ``buttons``, gripper, ...);
    ``axes[].axis`` are ``ABS_*`` code names. Defaults: ``deadzone`` 0.15 (sticks rarely
    rest at exactly 0), ``rotation_frame`` ``tool``."""

    kind: ClassVar[str] = "gamepad"

    deadzone: float = 0.15
    rotation_frame: str = "tool"

    def validate_axis(self, binding: AxisBinding) -> None:
        parse_code(binding.axis, EV_ABS, f"gamepad: axis {binding.axis!r}")


class GamepadTeleop(EvdevJogTeleop):
    """Gamepad jog teleoperator (see the module docstring and :mod:`.jog`).

    ``config``: :class:`GamepadConfig`; ``limits``: the robot's joints and limits;
    ``kinematics``: needed for ``cartesian`` mode (``auto`` picks cartesian when given).
    """

    name = "gamepad"
    config_type = GamepadConfig
    default_axis_ranges: ClassVar[Mapping[str, tuple[float, float]]] = DEFAULT_AXIS_RANGES

    def __init__(self, config: GamepadConfig | None, limits: Any, kinematics: Any = None) -> None:
        super().__init__(config, limits, kinematics)
        self._codes = [parse_code(b.axis, EV_ABS, "axis") for b in self.bindings]

    @classmethod
    def default_axes(cls, mode: str, joints: tuple[str, ...], gripper: str | None) -> tuple[AxisBinding, ...]:
        if mode == "cartesian":
            return _CARTESIAN_AXES
        movable = [j for j in joints if j != gripper]
        out = []
        for joint, specs in zip(movable, _JOINT_AXES, strict=False):
            out.extend(AxisBinding(axis, joint, scale, unipolar) for axis, scale, unipolar in specs)
        return tuple(out)

    @classmethod
    def default_buttons(cls) -> dict[str, str]:
        return dict(_BUTTONS)

    def _device_path(self) -> str:
        dev = self.config.device
        if dev is None:
            return find_input_device(None, (EV_ABS, EV_KEY), joystick=True)
        if os.sep in dev:
            return dev
        return find_input_device(dev, (EV_ABS,))

    def _check_axes(self) -> None:
        reader = self.reader
        assert reader is not None
        missing = sorted({code_name(EV_ABS, c) for c in self._codes if not reader.has_abs(c)})
        if missing:
            if reader.is_evdev:
                raise TeleopError(
                    f"{self.name}: {reader.path} ({reader.device_name}) has no axes {missing}; fix 'axes' in the settings"
                )
            raise TeleopError(
                f"{self.name}: {reader.path} is not an evdev device and axes {missing} have no range; "
                "give them in 'axis_ranges'"
            )

    def _axis_value(self, index: int, binding: AxisBinding, now: float) -> float:
        assert self.reader is not None
        return self.reader.abs_normalized(self._codes[index], binding.unipolar)


def build_teleop(settings: Mapping[str, Any], robot: Any) -> GamepadTeleop:
    """A :class:`GamepadTeleop` for ``robot`` (a :class:`~data_collection.robots.base.Robot`)
    from ``settings`` (the fields of :class:`GamepadConfig` as a plain dict; unknown keys are
    an error). Cartesian kinematics come from
    :func:`~data_collection.teleop.kinematics.kinematics_for_robot`; for a lockstep
    simulated robot ``dt_s`` defaults to its control period. The device is opened by ``start()``."""
    return build_jog_teleop(GamepadTeleop, settings, robot)  # type: ignore[return-value]
