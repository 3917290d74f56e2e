"""Teleoperation device interface used by :mod:`data_collection.recorder`.

Contracts
---------
* :meth:`TeleopDevice.action` is called once per recorder step with the latest
  :class:`~data_collection.robots.base.RobotState` and returns the commanded action in the
  robot's action space: joint position targets, ``(D,)`` in ``Robot.joint_names`` order,
  rad / m (see :mod:`data_collection.robots.base`). It must not block longer than a small
  fraction of the control period.
* :meth:`TeleopDevice.events` returns the operator events that arrived since the previous
  call, oldest first, each one of :data:`TELEOP_EVENTS`, and clears them:

  - ``"success"`` / ``"failure"``: the operator's verdict on the current episode (the last
    one before ``"save"`` wins);
  - ``"save"``: end the current episode and commit it;
  - ``"discard"``: end the current episode and throw it away;
  - ``"quit"``: stop recording after this step (an episode in progress is discarded unless
    ``"save"`` is in the same batch of events).

* :meth:`TeleopDevice.start` / :meth:`TeleopDevice.stop` bracket a recording session;
  :meth:`TeleopDevice.reset` is called at the start of every episode (after the robot /
  scene was reset).
"""

from __future__ import annotations

import abc
from typing import Self

import numpy as np

from data_collection.robots.base import RobotState

__all__ = ["TELEOP_EVENTS", "TeleopDevice", "TeleopError"]

TELEOP_EVENTS = ("save", "discard", "success", "failure", "quit")


class TeleopError(RuntimeError):
    """A teleoperation device failed or was used wrongly; the message names the device."""


class TeleopDevice(abc.ABC):
    """Source of commanded actions and operator events (see the module docstring)."""

    name: str = "teleop"

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._started = False

    @property
    def is_started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Open the device (idempotent)."""
        if not self._started:
            self._start()
            self._started = True

    def stop(self) -> None:
        """Close the device (idempotent)."""
        if self._started:
            self._stop()
            self._started = False

    def reset(self) -> None:
        """Called by the recorder at the start of each episode; drops pending events."""
        self._pending.clear()
        self._reset()

    def action(self, state: RobotState) -> np.ndarray:
        """Commanded action for this step (``float64 (D,)``, robot action space)."""
        if not self._started:
            raise TeleopError(f"{self.name}: action() before start()")
        return np.asarray(self._action(state), dtype=np.float64)

    def emit(self, event: str) -> None:
        """Queue an operator event (devices call this; tests may too)."""
        if event not in TELEOP_EVENTS:
            raise TeleopError(f"{self.name}: unknown event {event!r}; events are {TELEOP_EVENTS}")
        self._pending.append(event)

    def events(self) -> list[str]:
        """Events since the last call, oldest first; the queue is cleared."""
        self._poll()
        out, self._pending = self._pending, []
        return out

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hooks
    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass

    def _reset(self) -> None:
        pass

    def _poll(self) -> None:
        pass

    @abc.abstractmethod
    def _action(self, state: RobotState) -> np.ndarray: ...
