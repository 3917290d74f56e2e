"""``KeyboardTeleop``: operator events from single key presses on a terminal.

Keys (case-insensitive): ``s`` and space = ``toggle`` (start the next episode while the
recorder is idle, stop and save the episode while recording; see
:mod:`data_collection.teleop.base`), ``d`` = discard, ``y`` = success, ``n`` = failure,
``q`` = quit; every other byte is ignored. Keys are read without blocking (``select`` with a
zero timeout) each time the recorder asks for :meth:`events`, so at most one control period
of latency. While started, a terminal is put in cbreak mode (no Enter needed, no echo) and
restored on :meth:`stop`; a non-terminal file descriptor (pipe) is read as is.

The keyboard only produces events. Actions come from ``inner`` (another teleop device, e.g.
a leader arm), whose events are passed through too; without ``inner`` the action holds the
robot's measured position (``state.positions``), i.e. the arm stays where it is.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty

import numpy as np

from data_collection.robots.base import RobotState

from .base import TeleopDevice, TeleopError

__all__ = ["KEY_EVENTS", "KeyboardTeleop"]

KEY_EVENTS = {"s": "toggle", " ": "toggle", "d": "discard", "y": "success", "n": "failure", "q": "quit"}


class KeyboardTeleop(TeleopDevice):
    """Events from key presses on ``fd`` (default: stdin); actions from ``inner`` (see module docstring)."""

    name = "keyboard"

    def __init__(self, inner: TeleopDevice | None = None, fd: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._saved_attrs: list | None = None

    def _start(self) -> None:
        if os.isatty(self.fd):
            try:
                self._saved_attrs = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)
            except termios.error as e:
                raise TeleopError(f"{self.name}: cannot put fd {self.fd} in cbreak mode: {e}") from e
        if self.inner is not None:
            self.inner.start()

    def _stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()
        if self._saved_attrs is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_attrs)
            self._saved_attrs = None

    def _reset(self) -> None:
        if self.inner is not None:
            self.inner.reset()

    def _action(self, state: RobotState) -> np.ndarray:
        if self.inner is not None:
            return self.inner.action(state)
        return np.asarray(state.positions, dtype=np.float64)

    def _poll(self) -> None:
        if self.inner is not None:
            for ev in self.inner.events():
                self.emit(ev)
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 64)
            if not data:  # EOF: nothing more will come
                break
            for ch in data.decode("ascii", errors="ignore").lower():
                if ch in KEY_EVENTS:
                    self.emit(KEY_EVENTS[ch])
