"""KeyboardTeleop reads keys from a pseudo-terminal without blocking."""

from __future__ import annotations

import os
import pty
import termios

import numpy as np
import pytest

from data_collection.robots.base import RobotState
from data_collection.teleop.keyboard import KeyboardTeleop


def test_keys_become_events_on_a_pty():
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        kb = KeyboardTeleop(fd=slave)
        kb.start()
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: no Enter needed
        assert kb.events() == []  # nothing typed: returns at once
        os.write(master, b"sxYn")
        os.write(master, b"dQ ")
        assert kb.events() == ["toggle", "success", "failure", "discard", "quit", "toggle"]  # s, space: toggle
        assert kb.events() == []
        state = RobotState(np.array([0.1, -0.2]), None, 1.0)
        np.testing.assert_array_equal(kb.action(state), state.positions.astype(np.float64))
        kb.stop()
        assert termios.tcgetattr(slave) == before  # terminal restored
    finally:
        os.close(master)
        os.close(slave)


def test_pipe_and_inner_device_events():
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)  # always readable, always EOF
    try:
        inner = KeyboardTeleop(fd=r)  # any device; its events pass through
        kb = KeyboardTeleop(inner=inner, fd=null)
        with kb:
            assert inner.is_started
            os.write(w, b"s")
            assert kb.events() == ["toggle"]
        assert not inner.is_started
    finally:
        for fd in (r, w, null):
            os.close(fd)


def test_action_before_start_is_an_error():
    from data_collection.teleop.base import TeleopError

    with pytest.raises(TeleopError, match="before start"):
        KeyboardTeleop(fd=0).action(RobotState(np.zeros(2), None, 0.0))
