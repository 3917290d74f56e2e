"""``SimArmRobot``: the :class:`~data_collection.robots.base.Robot` interface over a
:class:`~df_policy.sim.arm_env.SimArmEnv`, so the recorder and the policy runtime drive
the simulated arm exactly like the real one.

Contracts (in addition to :mod:`data_collection.robots.base`)
--------------------------------------------------------------
* Joints: :data:`~df_policy.sim.assets.SO101_JOINTS`; limits are the MuJoCo joint /
  actuator ranges (rad) and ``SimArmConfig.velocity_max_rad_s``. Out-of-range commands are
  rejected (nothing sent), as on hardware.
* Time advances in one of two modes:

  - ``"lockstep"`` (default): every accepted :meth:`send_command` steps the simulation by one
    control period (``1 / control_hz`` s) holding that target; nothing moves between
    commands. Deterministic and as fast as the CPU allows (recording, tests, evaluation).
  - ``"realtime"``: after :meth:`connect` a background thread steps the simulation every
    control period of host time, holding the latest accepted target (the home pose until
    the first command), like servos that keep tracking between commands.

* :meth:`read_state` returns the env's current joint positions / velocities stamped with
  :attr:`SimArmEnv.state_stamp_s` (host monotonic time at which that state was computed), the
  stamp the camera adapter puts on frames of the same state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from data_collection.robots.base import Robot, RobotConfigError, RobotLimits, RobotState

from df_policy.sim.arm_env import SimArmEnv, StepResult

__all__ = ["SIM_ROBOT_MODES", "SimArmRobot", "SimArmRobotConfig", "sim_arm_limits"]

SIM_ROBOT_MODES = ("lockstep", "realtime")


def sim_arm_limits(env: SimArmEnv) -> RobotLimits:
    """The env's joint limits as :class:`RobotLimits` (rad, rad/s)."""
    n = len(env.joint_names)
    return RobotLimits(
        env.joint_names,
        tuple(float(v) for v in env.lower),
        tuple(float(v) for v in env.upper),
        (float(env.config.velocity_max_rad_s),) * n,
    )


@dataclass(frozen=True)
class SimArmRobotConfig:
    """Attributes: ``name`` used in messages; ``mode`` ``"lockstep"`` or ``"realtime"`` (see
    the module docstring)."""

    name: str = "sim_so101"
    mode: str = "lockstep"

    def __post_init__(self) -> None:
        if not self.name:
            raise RobotConfigError("name must be non-empty")
        if self.mode not in SIM_ROBOT_MODES:
            raise RobotConfigError(f"mode must be one of {SIM_ROBOT_MODES}, got {self.mode!r}")


class SimArmRobot(Robot):
    """Robot adapter over a :class:`SimArmEnv` (see the module docstring)."""

    def __init__(self, env: SimArmEnv, config: SimArmRobotConfig | None = None) -> None:
        if not isinstance(env, SimArmEnv):
            raise RobotConfigError(f"expected a SimArmEnv, got {type(env).__name__}")
        self.config = config or SimArmRobotConfig()
        super().__init__(sim_arm_limits(env), name=self.config.name)
        self.env = env
        self._target: np.ndarray | None = None
        self._target_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_step: StepResult | None = None

    @property
    def last_step(self) -> StepResult | None:
        """What the env reported for the last step this adapter made (``None`` before any)."""
        return self._last_step

    # -- Robot hooks

    def _connect(self) -> None:
        if self.config.mode == "realtime":
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
            self._thread.start()

    def _disconnect(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5.0)
            self._thread = None

    def _read_state(self) -> RobotState:
        env = self.env
        with env.lock:  # one consistent snapshot
            return RobotState(env.joint_positions(), env.joint_velocities(), env.state_stamp_s)

    def _send_command(self, action: np.ndarray, stamp_s: float) -> None:
        if self.config.mode == "lockstep":
            self._last_step = self.env.step(action)
        else:
            with self._target_lock:
                self._target = action.copy()

    # -- realtime stepping

    def _run(self) -> None:
        period = self.env.dt_s
        next_t = time.monotonic() + period
        while not self._stop.is_set():
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._target_lock:
                target = self.env.last_action if self._target is None else self._target
            self._last_step = self.env.step(target)
            next_t += period
            if time.monotonic() - next_t > period:  # fell behind (slow CPU): do not burst
                next_t = time.monotonic() + period
