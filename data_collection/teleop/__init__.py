"""Teleoperation devices: where the recorder gets the commanded action and the operator's events.

* :mod:`.base` — the :class:`TeleopDevice` interface and the event names.
* :mod:`.scripted` — :class:`ScriptedTeleop`, the simulated arm's scripted expert as a
  stand-in teleoperator (tests, demos, synthetic data).
"""

from .base import TELEOP_EVENTS, TeleopDevice, TeleopError

__all__ = ["TELEOP_EVENTS", "TeleopDevice", "TeleopError"]
