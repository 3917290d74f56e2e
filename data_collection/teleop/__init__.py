"""Teleoperation devices: where the recorder gets the commanded action and the operator's events.

* :mod:`.base` — the :class:`TeleopDevice` interface and the event names.
* :mod:`.scripted` — :class:`ScriptedTeleop`, the simulated arm's scripted expert as a
  stand-in teleoperator (tests, demos, synthetic data).
* :mod:`.keyboard` — :class:`KeyboardTeleop`, operator events from key presses.
* :mod:`.gamepad` / :mod:`.spacemouse` — :class:`GamepadTeleop` and :class:`SpaceMouseTeleop`,
  jog devices read through :mod:`.evdev_input` (Linux input events, no extra package), with
  the joint / Cartesian jog logic of :mod:`.jog` and the kinematics of :mod:`.kinematics`.
  Each module has ``build_teleop(settings, robot)``. See ``README.md`` here.

Importing this package does not import ``mujoco`` (the simulated arm's kinematics load it
only when built).
"""

from .base import TELEOP_EVENTS, TeleopDevice, TeleopError
from .evdev_input import (
    EvdevReader,
    InputDeviceInfo,
    TeleopConfigError,
    find_input_device,
    parse_proc_devices,
)
from .gamepad import GamepadConfig, GamepadTeleop
from .jog import AxisBinding, JogConfig
from .kinematics import Kinematics, SimArmKinematics, kinematics_for_robot
from .spacemouse import SpaceMouseConfig, SpaceMouseTeleop

__all__ = [
    "TELEOP_EVENTS",
    "AxisBinding",
    "EvdevReader",
    "GamepadConfig",
    "GamepadTeleop",
    "InputDeviceInfo",
    "JogConfig",
    "Kinematics",
    "SimArmKinematics",
    "SpaceMouseConfig",
    "SpaceMouseTeleop",
    "TeleopConfigError",
    "TeleopDevice",
    "TeleopError",
    "find_input_device",
    "kinematics_for_robot",
    "parse_proc_devices",
]
