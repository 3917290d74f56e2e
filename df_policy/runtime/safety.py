"""Last line of defence between the policy and the robot: every emitted command passes here.

Units: robot units (the store's action units, *not* normalised), seconds on the runtime's
monotonic clock. The action vector is treated as a position target (absolute action spaces,
e.g. joint or end-effector positions); velocity and acceleration are finite differences of
consecutive *sent* commands over ``command_dt_s``, the time the hardware is given to reach each
command (a trajectory point's ``time_from_start``; default one control period), **not** the wall
time between sends: after a stall the allowed step per command stays ``max_velocity *
command_dt_s``, because that is the velocity the controller will execute.

Per command, in this order:

1. Latched fault: after a tracking fault every command is refused until :meth:`SafetyFilter.reset`.
2. NaN/Inf guard: a non-finite command is never sent; the result is a :class:`Hold`.
3. Lateness guard: a command whose target time is more than ``max_action_age_s`` in the past
   is never sent (:class:`Hold`).
4. Acceleration limit, then velocity limit, relative to the last sent command.
5. Position limits (they win over the acceleration limit when both cannot hold).
6. Tracking bound against the **measured** position (``max_tracking_error``): a command farther
   than that from where the robot is (a dead controller, a blocked arm, an e-stop) is never sent;
   ``tracking_mode="fault"`` latches a ``tracking_error`` fault, ``"clip"`` clips the command into
   ``measured ± max_tracking_error`` (LeRobot's ``ensure_safe_goal_position``) and counts it. With
   the bound set, a command without a measured position is refused (``no_measurement``). For
   ``tracking_grace_s`` after the first command since a reset, a command beyond the bound is
   clipped in either mode: a policy's first targets lead an arm that has not moved yet (with
   ``delay_steps = 1`` the first command sent is the plan's second step), which is not a
   controller failure; a controller that does not follow is still caught once the grace ends.
   In ``"fault"`` mode an excursion is also clipped (and counted) while it has lasted less than
   ``tracking_fault_after_s``, timed from the first command of the excursion: one late joint
   state or command message lets the measured arm fall a period further behind a legal motion,
   and the arm catches up on the next tick; a dead controller or a blocked arm stays beyond the
   bound and latches the fault when that time is up (``0`` = at the first command beyond it).
   Either way no command beyond the bound is ever sent.

Clipped commands are sent, and every clip is counted per kind and per dimension and listed on
the :class:`Command` (``violations``); every hold is counted per kind. The largest ``|command -
measured| / max_tracking_error`` of any dimension since the reset (before clipping) is kept as
``tracking_ratio_max``, with its dimension: how close a run came to the tracking fault (1 = at
the bound). Holding means re-sending the last safe command (``Hold.action``; ``None`` when
nothing was ever sent, in which case the caller must send nothing). A hold counts as a sent
command at zero velocity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

VIOLATION_KINDS = ("position", "velocity", "acceleration", "tracking")
"""Kinds of limit violation that are clipped (the command is still sent)."""

HOLD_KINDS = (
    "non_finite_action",   # the policy produced NaN/Inf
    "late_action",         # the action's target time had passed by more than max_action_age_s
    "stale_observation",   # the newest observation is older than max_obs_age_s
    "invalid_observation", # the newest observation contained NaN/Inf
    "no_action",           # nothing planned yet (start-up)
    "overrun",             # inference fell behind and the clean actions ran out
    "no_measurement",      # max_tracking_error is set but no measured position was given
    "tracking_error",      # latched: a command was too far from the measured position
)
"""Kinds of hold (nothing new is sent)."""

Limit = float | Sequence[float] | None


@dataclass
class SafetyConfig:
    """Limits applied to every command (robot units, seconds). ``None`` disables a limit.

    Attributes:
        low, high: per-dimension position limits (a scalar applies to every dimension).
        max_velocity: per-dimension ``|dx/dt|`` limit in units/s between consecutive commands.
        max_acceleration: per-dimension ``|d2x/dt2|`` limit in units/s^2.
        max_obs_age_s: hold when the newest observation is older than this (watchdog).
        max_action_age_s: a command more than this late (now - target time) is never sent;
            ``None`` = half the control period (set by the runtime).
        max_tracking_error: per-dimension bound on ``|command - measured position|``.
        tracking_mode: ``"fault"`` (refuse and latch until reset) or ``"clip"``.
        tracking_grace_s: seconds after the first command since a reset during which a command
            beyond ``max_tracking_error`` is clipped into the bound even in ``"fault"`` mode.
        tracking_fault_after_s: in ``"fault"`` mode, seconds commands may stay beyond
            ``max_tracking_error`` (each clipped into the bound) before the fault latches; ``0`` =
            at the first one.
        command_dt_s: time the hardware takes to execute one command, the ``dt`` of the
            velocity and acceleration limits; ``None`` = one control period.
        names: a name per dimension (joint names), used in fault messages; ``None`` = indices.
    """

    low: Limit = None
    high: Limit = None
    max_velocity: Limit = None
    max_acceleration: Limit = None
    max_obs_age_s: float = 0.5
    max_action_age_s: float | None = None
    max_tracking_error: Limit = None
    tracking_mode: str = "fault"
    tracking_grace_s: float = 0.0
    tracking_fault_after_s: float = 0.0
    command_dt_s: float | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"SafetyConfig: {msg}")

        if self.names is not None:
            self.names = tuple(str(n) for n in self.names)

        for name in ("low", "high", "max_velocity", "max_acceleration", "max_tracking_error"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
            if arr.ndim != 1 or arr.size == 0:
                fail(f"{name} must be a number or a flat list of numbers, got {value!r}")
            if np.isnan(arr).any():
                fail(f"{name} contains NaN")
            if name.startswith("max_") and (arr <= 0).any():
                fail(f"{name} must be > 0, got {value!r}")
            setattr(self, name, float(arr[0]) if np.ndim(value) == 0 else tuple(float(v) for v in arr))
        if self.low is not None and self.high is not None:
            lo, hi = np.broadcast_arrays(np.atleast_1d(self.low), np.atleast_1d(self.high))
            if (lo >= hi).any():
                fail(f"low must be < high in every dimension, got low={self.low}, high={self.high}")
        if not (self.max_obs_age_s > 0 and math.isfinite(self.max_obs_age_s)):
            fail(f"max_obs_age_s must be a positive number, got {self.max_obs_age_s}")
        if self.max_action_age_s is not None and not self.max_action_age_s >= 0:
            fail(f"max_action_age_s must be >= 0 or None, got {self.max_action_age_s}")
        if self.tracking_mode not in ("fault", "clip"):
            fail(f"tracking_mode must be 'fault' or 'clip', got {self.tracking_mode!r}")
        for name in ("tracking_grace_s", "tracking_fault_after_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                fail(f"{name} must be a number >= 0, got {value}")
        if self.command_dt_s is not None and not (self.command_dt_s > 0 and math.isfinite(self.command_dt_s)):
            fail(f"command_dt_s must be a positive number or None, got {self.command_dt_s}")

    def vector(self, name: str, dim: int) -> np.ndarray | None:
        """Limit ``name`` broadcast to ``(dim,)`` float64, or ``None``; raises on a size mismatch."""
        value = getattr(self, name)
        if value is None:
            return None
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if arr.size == 1:
            return np.full(dim, float(arr[0]))
        if arr.size != dim:
            raise ValueError(f"SafetyConfig.{name} has {arr.size} values but the action has {dim} dimensions")
        return arr.copy()


@dataclass(frozen=True)
class Command:
    """A command to send now.

    Attributes:
        action: ``(Da,)`` float64 target in robot units (after clipping).
        time: when it was sent (seconds, runtime clock).
        target_time: when the policy meant it to be executed.
        step: control step index of ``target_time``.
        violations: kinds of limit that were clipped (empty = sent as planned).
        raw: the command before clipping (robot units).
    """

    action: np.ndarray
    time: float
    target_time: float
    step: int
    violations: tuple[str, ...] = ()
    raw: np.ndarray | None = None


@dataclass(frozen=True)
class Hold:
    """Nothing new is sent: the robot keeps (or is re-sent) the last safe command.

    Attributes:
        kind: one of :data:`HOLD_KINDS`.
        reason: human-readable explanation.
        action: the last safe command ``(Da,)`` to re-send, or ``None`` if none was ever sent.
        time: when the hold was decided (seconds, runtime clock).
    """

    kind: str
    reason: str
    action: np.ndarray | None
    time: float


@dataclass
class SafetyFilter:
    """Stateful limit checker; one per robot, reset per episode (:meth:`reset`)."""

    config: SafetyConfig
    action_dim: int
    period_s: float
    violations: dict[str, int] = field(init=False)
    violations_per_dim: dict[str, np.ndarray] = field(init=False)
    holds: dict[str, int] = field(init=False)
    commands: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.action_dim < 1 or not self.period_s > 0:
            raise ValueError(f"SafetyFilter needs action_dim >= 1 and period_s > 0, got {self.action_dim}, {self.period_s}")
        self._low = self.config.vector("low", self.action_dim)
        self._high = self.config.vector("high", self.action_dim)
        self._vmax = self.config.vector("max_velocity", self.action_dim)
        self._amax = self.config.vector("max_acceleration", self.action_dim)
        self._track = self.config.vector("max_tracking_error", self.action_dim)
        self.command_dt_s = float(self.config.command_dt_s or self.period_s)
        names = self.config.names
        if names is not None and len(names) != self.action_dim:
            raise ValueError(f"SafetyConfig.names has {len(names)} names but the action has {self.action_dim} dimensions")
        self.max_action_age_s = (0.5 * self.period_s if self.config.max_action_age_s is None
                                 else float(self.config.max_action_age_s))
        tight = self.tracking_tight_dims()
        if tight:
            log.warning("max_tracking_error is not larger than the step max_velocity allows per command "
                        "(max_velocity x %.3f s) for %s: a motion the velocity limit lets through can trip the "
                        "tracking fault, since the measured arm lags a command by at least one step; raise "
                        "max_tracking_error or lower max_velocity there", self.command_dt_s,
                        ", ".join(self.dimension_name(i) for i in tight))
        self.reset()

    def tracking_tight_dims(self) -> list[int]:
        """Dimensions where, in ``"fault"`` mode, ``max_tracking_error`` is not larger than one
        command's allowed step ``max_velocity * command_dt_s``: there the measured arm, which lags a
        command by at least the step it was just sent, can be out of bound during a legal motion."""
        if self._track is None or self._vmax is None or self.config.tracking_mode != "fault":
            return []
        return np.flatnonzero(self._track <= self._vmax * self.command_dt_s).tolist()

    # ------------------------------------------------------------------ state
    def reset(self, last_command: np.ndarray | None = None) -> None:
        """Forget history and counters; ``last_command`` (robot units, e.g. the robot's current
        position) makes the velocity/acceleration limits apply from the first command. Clears a
        latched tracking fault."""
        self.violations = {k: 0 for k in VIOLATION_KINDS}
        self.violations_per_dim = {k: np.zeros(self.action_dim, dtype=np.int64) for k in VIOLATION_KINDS}
        self.holds = {k: 0 for k in HOLD_KINDS}
        self.commands = 0
        self.fault: str | None = None
        self._last: np.ndarray | None = None
        self._first_command_at: float | None = None
        self._beyond_since: float | None = None  # first command of the current excursion beyond the bound
        self._last_velocity = np.zeros(self.action_dim)
        self.tracking_ratio_max = 0.0
        self.tracking_ratio_max_dim: int | None = None
        if last_command is not None:
            last = np.asarray(last_command, dtype=np.float64).reshape(-1)
            if last.shape != (self.action_dim,) or not np.isfinite(last).all():
                raise ValueError(f"last_command must be a finite ({self.action_dim},) vector, got {last_command!r}")
            self._last = self._clip_position(last.copy(), count=False)

    @property
    def last_command(self) -> np.ndarray | None:
        """The last command sent (or held), robot units."""
        return None if self._last is None else self._last.copy()

    # ------------------------------------------------------------------ checks
    def hold(self, kind: str, reason: str, now: float) -> Hold:
        """Record a hold of ``kind`` (re-sending the last safe command) and return it."""
        if kind not in self.holds:
            raise ValueError(f"unknown hold kind {kind!r}; expected one of {HOLD_KINDS}")
        self.holds[kind] += 1
        (log.warning if self.holds[kind] == 1 else log.debug)("hold (%s): %s", kind, reason)
        self._last_velocity = np.zeros(self.action_dim)
        return Hold(kind, reason, self.last_command, now)

    def check_observation(self, newest_obs_time: float | None, now: float) -> Hold | None:
        """Watchdog: a :class:`Hold` if there is no observation or the newest is too old."""
        if newest_obs_time is None:
            return self.hold("stale_observation", "no observation received", now)
        age = now - newest_obs_time
        if age > self.config.max_obs_age_s:
            return self.hold("stale_observation",
                             f"newest observation is {age:.3f} s old (max_obs_age_s={self.config.max_obs_age_s})", now)
        return None

    def _clip_position(self, x: np.ndarray, count: bool) -> np.ndarray:
        if self._low is None and self._high is None:
            return x
        lo = self._low if self._low is not None else np.full(self.action_dim, -np.inf)
        hi = self._high if self._high is not None else np.full(self.action_dim, np.inf)
        bad = (x < lo) | (x > hi)
        if count and bad.any():
            self._count("position", bad)
        return np.clip(x, lo, hi)

    def _count(self, kind: str, dims: np.ndarray) -> None:
        self.violations[kind] += 1
        self.violations_per_dim[kind] += dims.astype(np.int64)
        (log.warning if self.violations[kind] == 1 else log.debug)(
            "%s limit clipped in dimensions %s", kind, np.flatnonzero(dims).tolist())

    def filter(self, action: np.ndarray, now: float, target_time: float | None = None, step: int = -1,
               measured: np.ndarray | None = None) -> Command | Hold:
        """Check and clip one command (robot units) about to be sent at ``now``; ``measured`` is
        the robot's latest measured position in action space (needed when ``max_tracking_error``
        is set)."""
        raw = np.asarray(action, dtype=np.float64).reshape(-1)
        target = now if target_time is None else float(target_time)
        if raw.shape != (self.action_dim,):
            raise ValueError(f"command must have shape ({self.action_dim},), got {np.shape(action)}")
        if self.fault is not None:
            return self.hold("tracking_error", f"latched until reset: {self.fault}", now)
        if self._track is not None:
            measured = None if measured is None else np.asarray(measured, dtype=np.float64).reshape(-1)
            if measured is None or measured.shape != (self.action_dim,) or not np.isfinite(measured).all():
                return self.hold("no_measurement", "max_tracking_error is set but there is no finite measured "
                                 f"position ({self.action_dim} values) to check the command against", now)
        if not np.isfinite(raw).all():
            return self.hold("non_finite_action", f"policy produced a non-finite command {raw.tolist()}", now)
        if now - target > self.max_action_age_s:
            return self.hold("late_action", f"command for t={target:.3f} is {now - target:.3f} s late "
                             f"(max_action_age_s={self.max_action_age_s:.3f})", now)
        x = raw.copy()
        kinds: list[str] = []
        dt = self.command_dt_s
        if self._last is not None and (self._vmax is not None or self._amax is not None):
            v = (x - self._last) / dt
            if self._amax is not None:
                lo, hi = self._last_velocity - self._amax * dt, self._last_velocity + self._amax * dt
                bad = (v < lo) | (v > hi)
                if bad.any():
                    self._count("acceleration", bad)
                    kinds.append("acceleration")
                    v = np.clip(v, lo, hi)
            if self._vmax is not None:
                bad = np.abs(v) > self._vmax
                if bad.any():
                    self._count("velocity", bad)
                    kinds.append("velocity")
                    v = np.clip(v, -self._vmax, self._vmax)
            x = self._last + v * dt
        before = x
        x = self._clip_position(x, count=True)
        if not np.array_equal(before, x):
            kinds.append("position")
        if self._track is not None:
            error = np.abs(x - measured)
            far = error > self._track
            ratio = error / self._track
            worst = int(np.argmax(ratio))
            if ratio[worst] > self.tracking_ratio_max:
                self.tracking_ratio_max, self.tracking_ratio_max_dim = float(ratio[worst]), worst
            if self._first_command_at is None:
                self._first_command_at = now
            in_grace = now - self._first_command_at < self.config.tracking_grace_s
            if not far.any():
                self._beyond_since = None
            else:
                if self._beyond_since is None:
                    self._beyond_since = now
                beyond_s = now - self._beyond_since
                if self.config.tracking_mode == "clip" or in_grace or beyond_s < self.config.tracking_fault_after_s:
                    self._count("tracking", far)
                    kinds.append("tracking")
                    x = self._clip_position(np.clip(x, measured - self._track, measured + self._track), count=False)
                else:
                    lasting = f" (beyond the bound for {beyond_s:.3f} s)" if beyond_s > 0 else ""
                    self.fault = (f"command {x[worst]:.4f} for {self.dimension_name(worst)} is {error[worst]:.4f} "
                                  f"from the measured position {measured[worst]:.4f} (max_tracking_error "
                                  f"{self._track[worst]:g}){lasting}; the controller or the arm is not following")
                    return self.hold("tracking_error", self.fault, now)
        if self._last is not None:
            self._last_velocity = (x - self._last) / dt
        self._last = x
        self.commands += 1
        return Command(x.copy(), now, target, step, tuple(kinds), raw)

    def dimension_name(self, i: int) -> str:
        """``"joint 'elbow' (dimension 2)"`` when names are configured, else ``"dimension 2"``."""
        return f"joint {self.config.names[i]!r} (dimension {i})" if self.config.names else f"dimension {i}"

    def bound_future(self, start: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Planned actions ``(k, Da)`` after the command ``start`` (robot units), made safe to hand
        to a trajectory controller: each point is velocity-limited from the previous one over
        ``command_dt_s`` (the point spacing) and position-limited; non-finite points and
        everything after them are cut. Pure: counters and state are unchanged. Since the first
        command passed the tracking bound, point ``j`` is within ``max_tracking_error + (j + 1) *
        max_velocity * command_dt_s`` of the measured position."""
        prev = np.asarray(start, dtype=np.float64).reshape(self.action_dim)
        out = []
        for point in np.asarray(future, dtype=np.float64).reshape(-1, self.action_dim):
            if not np.isfinite(point).all():
                break
            x = point
            if self._vmax is not None:
                step = self._vmax * self.command_dt_s
                x = np.clip(x, prev - step, prev + step)
            prev = self._clip_position(x, count=False)
            out.append(prev)
        return np.asarray(out, dtype=np.float64).reshape(-1, self.action_dim)

    def report(self) -> dict:
        """Counters as plain JSON-able values."""
        return {
            "commands": self.commands,
            "violations": dict(self.violations),
            "violations_per_dim": {k: v.tolist() for k, v in self.violations_per_dim.items()},
            "holds": dict(self.holds),
            "tracking_ratio_max": round(self.tracking_ratio_max, 4),
            "tracking_ratio_max_dim": (None if self.tracking_ratio_max_dim is None
                                       else self.dimension_name(self.tracking_ratio_max_dim)),
        }
