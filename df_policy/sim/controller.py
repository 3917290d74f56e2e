"""A position controller with the strictness of ros2_control's, for the simulated arm.

ROS-free: the simulated-arm ROS node (:mod:`df_policy.ros.sim_arm_node`) feeds it decoded
messages and asks it, every physics step, which joint target to hold. Two modes:

* ``"jtc"`` — like ``joint_trajectory_controller`` with its defaults:

  - a trajectory must name **every** controller joint, each once, and no other joint
    (``allow_partial_joints_goal: false``); any order, matched by name;
  - it starts at its header stamp, or on receipt when the stamp is zero; one that ends in the
    past is rejected;
  - a new trajectory replaces the current one and starts from the **measured** position
    (``interpolate_from_desired_state: false``, the default that makes one-point-per-tick
    streaming lag: ros2_controllers #1505), or from the current desired position when
    ``interpolate_from_desired_state`` is set (``open_loop_control``);
  - positions are interpolated linearly in time between the start state and the points
    (positions-only points); after the last point its position is held;
  - an empty trajectory stops: the measured position is held.

* ``"forward"`` — like ``forward_command_controller`` / ``position_controllers``: a flat vector
  of exactly one value per joint, in the controller's joint order, applied at once.

Both refuse non-finite values and targets outside the joint limits (a rejected command changes
nothing; the count and the reason are kept). Times are seconds on one clock chosen by the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CONTROLLER_MODES", "CommandRejected", "ControllerStats", "JointPositionController"]

CONTROLLER_MODES = ("jtc", "forward")


class CommandRejected(ValueError):
    """A command the controller refuses; the message says why."""


@dataclass(frozen=True)
class ControllerStats:
    accepted: int
    rejected: int
    last_rejection: str | None


class JointPositionController:
    """Joint position targets from trajectories or forward commands (see the module docstring).

    Args:
        joint_names: the controller's joints, in its (and the target's) order.
        lower, upper: position limits, ``(J,)`` rad.
        initial: the target held until the first command, ``(J,)``.
        mode: ``"jtc"`` or ``"forward"``.
        interpolate_from_desired_state: ``jtc`` only; start a new trajectory from the current
            desired position instead of the measured one.
    Thread-safe.
    """

    def __init__(self, joint_names: Sequence[str], lower: Sequence[float], upper: Sequence[float],
                 initial: Sequence[float], mode: str = "jtc", interpolate_from_desired_state: bool = False) -> None:
        if mode not in CONTROLLER_MODES:
            raise ValueError(f"controller mode must be one of {CONTROLLER_MODES}, got {mode!r}")
        self.joint_names = tuple(joint_names)
        if len(set(self.joint_names)) != len(self.joint_names) or not self.joint_names:
            raise ValueError(f"joint_names must be unique and non-empty, got {self.joint_names}")
        J = len(self.joint_names)
        self.lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        self.upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        if self.lower.shape != (J,) or self.upper.shape != (J,) or np.any(self.lower > self.upper):
            raise ValueError(f"lower/upper must be ({J},) with lower <= upper")
        self.mode = mode
        self.interpolate_from_desired_state = bool(interpolate_from_desired_state)
        self._lock = threading.Lock()
        self._hold = self._checked(np.asarray(initial, dtype=np.float64), "initial target")
        # active trajectory: knot times (s, absolute) and positions (K, J), K >= 1
        self._knots: tuple[np.ndarray, np.ndarray] | None = None
        self._desired = self._hold.copy()
        self._accepted = 0
        self._rejected = 0
        self._last_rejection: str | None = None

    # ------------------------------------------------------------------ commands
    def stats(self) -> ControllerStats:
        with self._lock:
            return ControllerStats(self._accepted, self._rejected, self._last_rejection)

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._rejected += 1
            self._last_rejection = reason
        raise CommandRejected(reason)

    def _checked(self, positions: np.ndarray, what: str) -> np.ndarray:
        if not np.all(np.isfinite(positions)):
            raise CommandRejected(f"{what} is not finite: {positions.tolist()}")
        low = positions < self.lower - 1e-9
        high = positions > self.upper + 1e-9
        if np.any(low | high):
            bad = np.flatnonzero((low | high).reshape(-1, len(self.joint_names)).any(axis=0))
            j = int(bad[0])
            raise CommandRejected(f"{what} puts {self.joint_names[j]} outside its limits "
                                  f"[{self.lower[j]:.4f}, {self.upper[j]:.4f}]")
        return positions

    def accept_trajectory(self, joint_names: Sequence[str], positions: np.ndarray, times_from_start_s: np.ndarray,
                          stamp_s: float, now_s: float, measured: np.ndarray) -> None:
        """A ``JointTrajectory``: ``positions (P, J)`` in ``joint_names`` order, ``time_from_start``
        of each point (s), ``stamp_s`` its header stamp (0 = start now). Raises
        :class:`CommandRejected` (nothing changes) if a real JTC would refuse it."""
        try:
            if self.mode != "jtc":
                raise CommandRejected("a forward position controller takes Float64MultiArray, not JointTrajectory")
            names = list(joint_names)
            if len(set(names)) != len(names):
                raise CommandRejected(f"joint names repeat: {names}")
            unknown = sorted(set(names) - set(self.joint_names))
            missing = [j for j in self.joint_names if j not in names]
            if unknown or missing:
                raise CommandRejected(f"joint names do not match the controller's {list(self.joint_names)}: "
                                      f"unknown {unknown}, missing {missing} (partial goals are not allowed)")
            pos = np.asarray(positions, dtype=np.float64)
            times = np.asarray(times_from_start_s, dtype=np.float64).reshape(-1)
            if pos.shape[0] == 0:
                with self._lock:  # empty trajectory: stop where the arm is
                    self._knots, self._hold = None, np.asarray(measured, dtype=np.float64).copy()
                    self._accepted += 1
                return
            if pos.ndim != 2 or pos.shape[1] != len(names) or times.shape != (pos.shape[0],):
                raise CommandRejected(f"trajectory points must each have {len(names)} positions")
            if times[0] < 0 or np.any(np.diff(times) <= 0):
                raise CommandRejected(f"time_from_start must be >= 0 and strictly increasing, got {times.tolist()}")
            order = [names.index(j) for j in self.joint_names]
            pos = self._checked(pos[:, order], "trajectory point")
            start = float(stamp_s) if stamp_s > 0 else float(now_s)
            if start + times[-1] < now_s:
                raise CommandRejected(f"trajectory ends {now_s - start - times[-1]:.3f} s in the past")
        except CommandRejected as exc:
            self._reject(str(exc))
        with self._lock:
            origin = self._desired if self.interpolate_from_desired_state else np.asarray(measured, dtype=np.float64)
            if times[0] > 0:
                knot_t = np.concatenate([[start], start + times])
                knot_p = np.concatenate([origin[None], pos])
            else:
                knot_t, knot_p = start + times, pos
            self._knots = (knot_t, knot_p)
            self._accepted += 1

    def accept_forward(self, values: np.ndarray) -> None:
        """A forward command: exactly one finite, in-limit value per joint, controller order."""
        try:
            if self.mode != "forward":
                raise CommandRejected("a joint trajectory controller takes JointTrajectory, not Float64MultiArray")
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
            if arr.shape != (len(self.joint_names),):
                raise CommandRejected(f"{arr.size} values for {len(self.joint_names)} joints {list(self.joint_names)}")
            arr = self._checked(arr, "forward command")
        except CommandRejected as exc:
            self._reject(str(exc))
        with self._lock:
            self._knots, self._hold = None, arr
            self._accepted += 1

    def hold(self, position: np.ndarray) -> None:
        """Drop the active command and hold ``position`` (a controller being stopped)."""
        with self._lock:
            self._knots, self._hold = None, np.asarray(position, dtype=np.float64).copy()

    # ------------------------------------------------------------------ sampling
    def target(self, now_s: float) -> np.ndarray:
        """The position target to hold at ``now_s``, ``float64 (J,)``."""
        with self._lock:
            if self._knots is None:
                out = self._hold
            else:
                t, p = self._knots
                if now_s <= t[0]:
                    out = p[0]
                elif now_s >= t[-1]:
                    out = p[-1]
                else:
                    i = int(np.searchsorted(t, now_s, side="right"))
                    w = (now_s - t[i - 1]) / (t[i] - t[i - 1])
                    out = (1.0 - w) * p[i - 1] + w * p[i]
            self._desired = np.asarray(out, dtype=np.float64).copy()
            return self._desired.copy()
