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

  - ``"start"``: begin the next episode. Only meaningful while the recorder is **idle**
    between episodes (``RecorderConfig.wait_for_start``); ignored while recording;
  - ``"save"``: end the current episode and commit it (ignored while idle);
  - ``"toggle"``: the one-button start / stop-and-save: ``"start"`` while idle, ``"save"``
    while recording (keyboard ``s``, the gamepad's Start button, the SpaceMouse's right
    button by default). Without ``wait_for_start`` it is simply ``"save"``;
  - ``"success"`` / ``"failure"``: the operator's verdict on the current episode (the last
    one before ``"save"`` wins; ignored while idle);
  - ``"discard"``: end the current episode and throw it away (ignored while idle);
  - ``"quit"``: stop recording after this step (an episode in progress is discarded unless
    ``"save"`` is in the same batch of events; while idle: nothing is in progress).

  Events the recorder ignores while idle are counted (summary ``ignored_events``) and
  logged; they never carry over into the next episode. Events that follow ``"start"`` in
  the same batch belong to the episode it starts.

* :meth:`TeleopDevice.start` / :meth:`TeleopDevice.stop` bracket a recording session.
  :meth:`TeleopDevice.reset` is called at the start of an episode after the recorder's
  ``on_episode_start`` hook (which resets a simulated scene: the device must forget targets
  it held for the old scene). With ``wait_for_start`` and **no** hook (real hardware: the
  operator drove the arm while idle and the scene is wherever it was left), the recorder
  does **not** reset the device at start, so the commanded target continues smoothly from
  idle into the episode (a jog device's reset would snap its target to the measured
  position: a sag under gravity, or an opened gripper that was holding an object).
"""

from __future__ import annotations

import abc
from typing import Self

import numpy as np

from data_collection.robots.base import RobotState

__all__ = ["TELEOP_EVENTS", "TeleopDevice", "TeleopError"]

TELEOP_EVENTS = ("save", "discard", "success", "failure", "quit", "start", "toggle")


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
        """Called by the recorder at the start of an episode (see the module docstring); drops pending events."""
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
