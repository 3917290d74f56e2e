"""Clocks for the runtime: the real monotonic clock and a fake one for deterministic tests.

Contract: ``now()`` returns seconds on a monotonic time axis (never decreases);
``sleep_until(t)`` returns once ``now() >= t`` (immediately if already past), or earlier for a
clock that cannot promise when ``t`` comes (simulation time, ``df_policy.ros.ros_clock``):
callers check ``now()`` and wait again. Every timestamp the runtime handles (observation
stamps, action target times) must be on the same clock.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Source of monotonic time in seconds."""

    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...


class MonotonicClock:
    """``time.monotonic()``; ``sleep_until`` sleeps in the calling thread."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class FakeClock:
    """A clock that only moves when told to (thread-safe).

    ``sleep_until(t)`` jumps the time forward to ``t`` instead of waiting, so a loop that
    sleeps one period per iteration runs as fast as the code allows but sees exact periods.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def set(self, t: float) -> None:
        """Move to ``t`` seconds; moving backwards raises ``ValueError``."""
        with self._lock:
            if t < self._t:
                raise ValueError(f"FakeClock cannot go back in time ({t} < {self._t})")
            self._t = float(t)

    def advance(self, dt: float) -> float:
        """Move forward by ``dt >= 0`` seconds; returns the new time."""
        if dt < 0:
            raise ValueError(f"FakeClock.advance needs dt >= 0, got {dt}")
        with self._lock:
            self._t += float(dt)
            return self._t

    def sleep_until(self, t: float) -> None:
        with self._lock:
            self._t = max(self._t, float(t))
