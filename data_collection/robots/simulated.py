"""A kinematic simulated robot: first-order tracking of position targets at a fixed rate.

Dynamics, per fixed step ``dt = 1 / rate_hz``::

    dq = (1 - exp(-dt / time_constant_s)) * (target - q)    # first-order lag (dq = target - q if tau == 0)
    dq = clip(dq, -velocity_max * dt, velocity_max * dt)    # speed limit
    q  = clip(q + dq, position_lower, position_upper)
    v  = dq / dt

Time: the simulation advances only through :meth:`SimulatedRobot.advance` / :meth:`step`
(deterministic, for tests) or, with ``realtime=True``, from a background thread that keeps
simulated time equal to elapsed host monotonic time. ``RobotState.timestamp_s`` is
``start_time_s + sim_time_s`` where ``start_time_s`` is :func:`time.monotonic` at connect.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Robot, RobotConfigError, RobotLimits, RobotState

__all__ = ["SimulatedRobot", "SimulatedRobotConfig"]


@dataclass(frozen=True)
class SimulatedRobotConfig:
    """Settings of a :class:`SimulatedRobot`.

    Attributes:
        limits: joints and their position / speed limits.
        rate_hz: integration rate (fixed step ``1 / rate_hz``), > 0.
        time_constant_s: first-order tracking time constant, >= 0 (0 = reach the target as
            fast as the speed limit allows).
        initial_positions: start configuration ``(D,)`` inside the limits; ``None`` = zeros
            clipped into the limits.
        realtime: if True, :meth:`SimulatedRobot.connect` starts a thread that advances the
            simulation with the host monotonic clock; if False, call ``advance``/``step``.
        name: robot name used in messages.
    """

    limits: RobotLimits
    rate_hz: float = 100.0
    time_constant_s: float = 0.05
    initial_positions: tuple[float, ...] | None = None
    realtime: bool = False
    name: str = "sim_robot"

    def __post_init__(self) -> None:
        if not isinstance(self.limits, RobotLimits):
            raise RobotConfigError(f"limits must be RobotLimits, got {type(self.limits).__name__}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise RobotConfigError(f"rate_hz must be a finite number > 0, got {self.rate_hz}")
        if not (math.isfinite(self.time_constant_s) and self.time_constant_s >= 0):
            raise RobotConfigError(f"time_constant_s must be a finite number >= 0, got {self.time_constant_s}")
        if self.initial_positions is not None:
            q0 = np.asarray(self.initial_positions, dtype=np.float64)
            if q0.shape != (self.limits.dim,) or not np.all(np.isfinite(q0)):
                raise RobotConfigError(
                    f"initial_positions must be {self.limits.dim} finite values, got {self.initial_positions}"
                )
            if np.any(q0 < self.limits.lower) or np.any(q0 > self.limits.upper):
                raise RobotConfigError(f"initial_positions {q0.tolist()} are outside the position limits")
            object.__setattr__(self, "initial_positions", tuple(float(x) for x in q0))


class SimulatedRobot(Robot):
    """Kinematic joint-space robot (see the module docstring for dynamics and time)."""

    def __init__(self, config: SimulatedRobotConfig) -> None:
        if not isinstance(config, SimulatedRobotConfig):
            raise RobotConfigError(f"expected a SimulatedRobotConfig, got {type(config).__name__}")
        super().__init__(config.limits, name=config.name)
        self.config = config
        self.dt_s = 1.0 / config.rate_hz
        tau = config.time_constant_s
        self._alpha = 1.0 if tau == 0 else -math.expm1(-self.dt_s / tau)
        self._max_step = self.limits.vmax * self.dt_s
        q0 = (
            np.asarray(config.initial_positions, dtype=np.float64)
            if config.initial_positions is not None
            else self.limits.clip_positions(np.zeros(self.limits.dim))
        )
        self._q = q0.copy()
        self._v = np.zeros_like(q0)
        self._target = q0.copy()
        self._steps = 0
        self._pending_s = 0.0
        self._start_time_s = time.monotonic()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- simulation

    @property
    def sim_time_s(self) -> float:
        """Simulated seconds since construction (``steps * dt``)."""
        return self._steps * self.dt_s

    @property
    def target(self) -> np.ndarray:
        """The current position target, ``float64 (D,)`` (a copy)."""
        with self._state_lock:
            return self._target.copy()

    def step(self, n_steps: int = 1) -> None:
        """Advance ``n_steps`` fixed steps of ``1 / rate_hz``."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        with self._state_lock:
            lo, hi = self.limits.lower, self.limits.upper
            for _ in range(int(n_steps)):
                dq = np.clip(self._alpha * (self._target - self._q), -self._max_step, self._max_step)
                q_new = np.clip(self._q + dq, lo, hi)
                self._v = (q_new - self._q) / self.dt_s
                self._q = q_new
                self._steps += 1

    def advance(self, duration_s: float) -> int:
        """Advance by ``duration_s`` of simulated time in whole fixed steps (the remainder
        carries over to the next call). Returns the number of steps taken."""
        if not duration_s >= 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        with self._state_lock:
            total = self._pending_s + duration_s
            n = int(total / self.dt_s + 1e-9)
            self._pending_s = max(0.0, total - n * self.dt_s)
        self.step(n)
        return n

    # -- Robot hooks

    def _connect(self) -> None:
        self._start_time_s = time.monotonic() - self.sim_time_s
        if self.config.realtime:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
            self._thread.start()

    def _disconnect(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.dt_s):
            now = time.monotonic()
            self.advance(now - last)
            last = now

    def _read_state(self) -> RobotState:
        with self._state_lock:
            return RobotState(self._q.copy(), self._v.copy(), self._start_time_s + self._steps * self.dt_s)

    def _send_command(self, action: np.ndarray, stamp_s: float) -> None:
        with self._state_lock:
            self._target = action.copy()

    def set_positions(self, positions: Any) -> None:
        """Teleport the joints (and the target) to ``positions`` (within limits); for tests and resets."""
        q = self.limits.check_positions(positions, what=f"{self.name} positions")
        with self._state_lock:
            self._q = q.copy()
            self._target = q.copy()
            self._v = np.zeros_like(q)
