"""Robot interface shared by every robot backend (simulated, ROS 2, ...).

Contracts
---------
* Joint arrays are in :attr:`Robot.joint_names` order, units ``rad`` (revolute) / ``m``
  (prismatic), velocities ``rad/s`` / ``m/s``.
* The **action** sent with :meth:`Robot.send_command` is a joint **position target**,
  ``(D,)``, the same action space the recorder stores and the policy outputs (see
  :class:`df_policy.ros.messages.CommandConverter`). Every command is validated against
  :class:`RobotLimits` first; an invalid one raises :class:`CommandRejectedError` and is
  **not** sent.
* :attr:`RobotState.timestamp_s` is in the **host monotonic clock** (:func:`time.monotonic`),
  the clock camera frames use, so robot state and frames can be matched by time.
"""

from __future__ import annotations

import abc
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CommandRecord",
    "CommandRejectedError",
    "Robot",
    "RobotConfigError",
    "RobotError",
    "RobotLimits",
    "RobotNotConnectedError",
    "RobotState",
    "StaleStateError",
]


# --------------------------------------------------------------------------- errors


class RobotError(RuntimeError):
    """A robot failed or was used wrongly. The message names the robot and the problem."""


class RobotConfigError(ValueError):
    """A robot configuration or limits table is invalid. The message names the field."""


class RobotNotConnectedError(RobotError):
    """The robot was used before :meth:`Robot.connect` (or after :meth:`Robot.disconnect`)."""


class CommandRejectedError(RobotError, ValueError):
    """A command was refused (wrong shape, NaN/Inf, outside limits, unsafe); nothing was sent."""


class StaleStateError(RobotError):
    """The latest robot state is older than allowed (the driver stopped publishing?)."""


# --------------------------------------------------------------------------- state / limits


def _joint_vector(values: Any, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (dim,):
        raise RobotConfigError(f"{what} must have shape ({dim},), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class RobotState:
    """One snapshot of the joints.

    Attributes:
        positions: ``float32 (D,)``, rad / m, read-only.
        velocities: ``float32 (D,)``, rad/s / m/s, read-only; ``None`` when the robot does not
            report velocities.
        timestamp_s: when the state was measured (or received), host monotonic seconds.
    """

    positions: np.ndarray
    velocities: np.ndarray | None
    timestamp_s: float

    def __post_init__(self) -> None:
        pos = np.array(self.positions, dtype=np.float32)
        if pos.ndim != 1 or pos.size == 0:
            raise RobotConfigError(f"RobotState.positions must have shape (D,), got {pos.shape}")
        pos.flags.writeable = False
        object.__setattr__(self, "positions", pos)
        if self.velocities is not None:
            vel = np.array(self.velocities, dtype=np.float32)
            if vel.shape != pos.shape:
                raise RobotConfigError(f"RobotState.velocities shape {vel.shape} != positions shape {pos.shape}")
            vel.flags.writeable = False
            object.__setattr__(self, "velocities", vel)
        object.__setattr__(self, "timestamp_s", float(self.timestamp_s))


@dataclass(frozen=True)
class CommandRecord:
    """The last command a robot accepted.

    Attributes:
        action: ``float32 (D,)`` position target as sent.
        stamp_s: when it was issued, host monotonic seconds.
    """

    action: np.ndarray
    stamp_s: float


@dataclass(frozen=True)
class RobotLimits:
    """Per-joint limits used to validate commands.

    Attributes:
        joint_names: the joints, in action order.
        position_lower, position_upper: position limits (rad / m); ``-inf`` / ``inf`` for
            continuous joints. ``lower < upper``.
        velocity_max: speed limits (rad/s / m/s), ``> 0``; ``inf`` = unlimited.
    """

    joint_names: tuple[str, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    velocity_max: tuple[float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.joint_names, str):
            raise RobotConfigError("joint_names must be a sequence of names, not one string")
        names = tuple(self.joint_names)
        if not names or any(not isinstance(n, str) or not n for n in names):
            raise RobotConfigError(f"joint_names must be non-empty strings, got {names}")
        if len(set(names)) != len(names):
            raise RobotConfigError(f"duplicate joint names in {names}")
        object.__setattr__(self, "joint_names", names)
        d = len(names)
        lo = _joint_vector(self.position_lower, d, "position_lower")
        hi = _joint_vector(self.position_upper, d, "position_upper")
        vmax = _joint_vector(self.velocity_max, d, "velocity_max")
        if np.isnan(lo).any() or np.isnan(hi).any() or np.isnan(vmax).any():
            raise RobotConfigError("limits must not be NaN")
        bad = [names[i] for i in np.flatnonzero(~(lo < hi))]
        if bad:
            raise RobotConfigError(f"position_lower must be < position_upper for joints {bad}")
        bad = [names[i] for i in np.flatnonzero(~(vmax > 0))]
        if bad:
            raise RobotConfigError(f"velocity_max must be > 0 for joints {bad}")
        for name, arr in (("position_lower", lo), ("position_upper", hi), ("velocity_max", vmax)):
            object.__setattr__(self, name, tuple(float(x) for x in arr))

    @classmethod
    def uniform(
        cls, joint_names: Sequence[str], lower: float, upper: float, velocity_max: float = math.inf
    ) -> RobotLimits:
        """The same limits for every joint."""
        d = len(tuple(joint_names))
        return cls(tuple(joint_names), (lower,) * d, (upper,) * d, (velocity_max,) * d)

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    @property
    def lower(self) -> np.ndarray:
        """``float64 (D,)`` lower position limits."""
        return np.asarray(self.position_lower, dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """``float64 (D,)`` upper position limits."""
        return np.asarray(self.position_upper, dtype=np.float64)

    @property
    def vmax(self) -> np.ndarray:
        """``float64 (D,)`` speed limits."""
        return np.asarray(self.velocity_max, dtype=np.float64)

    def check_positions(self, action: Any, what: str = "command") -> np.ndarray:
        """``action`` as ``float64 (D,)``; :class:`CommandRejectedError` for wrong shape, NaN/Inf or out of limits."""
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CommandRejectedError(f"{what} is not a numeric array: {exc}") from exc
        if arr.shape != (self.dim,):
            raise CommandRejectedError(
                f"{what} has shape {arr.shape}, expected ({self.dim},) for joints {list(self.joint_names)}"
            )
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            values = ", ".join(f"{self.joint_names[i]}={arr[i]}" for i in bad)
            raise CommandRejectedError(f"{what} is not finite at joints {values}")
        bad = np.flatnonzero((arr < self.lower) | (arr > self.upper))
        if bad.size:
            lo, hi = self.lower, self.upper
            values = ", ".join(f"{self.joint_names[i]}={arr[i]:.6g} not in [{lo[i]:.6g}, {hi[i]:.6g}]" for i in bad)
            raise CommandRejectedError(f"{what} outside position limits: {values}")
        return arr

    def check_step(self, target: np.ndarray, current: np.ndarray, dt_s: float, what: str = "command") -> None:
        """Raise :class:`CommandRejectedError` if moving ``current -> target`` in ``dt_s`` exceeds ``velocity_max``."""
        speed = np.abs(np.asarray(target, np.float64) - np.asarray(current, np.float64)) / float(dt_s)
        bad = np.flatnonzero(speed > self.vmax * (1 + 1e-9))
        if bad.size:
            raise CommandRejectedError(
                f"{what} needs speeds above velocity_max within {dt_s:.4g}s: "
                + ", ".join(f"{self.joint_names[i]} {speed[i]:.4g} > {self.vmax[i]:.4g}" for i in bad)
            )

    def clip_positions(self, positions: Any) -> np.ndarray:
        """``positions`` clipped into the position limits, ``float64 (D,)``."""
        return np.clip(np.asarray(positions, dtype=np.float64), self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; infinite limits become ``None``."""

        def enc(values: tuple[float, ...]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return {
            "joint_names": list(self.joint_names),
            "position_lower": enc(self.position_lower),
            "position_upper": enc(self.position_upper),
            "velocity_max": enc(self.velocity_max),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobotLimits:
        """Inverse of :meth:`to_dict` (``None`` = unlimited); unknown keys are an error."""
        known = {"joint_names", "position_lower", "position_upper", "velocity_max"}
        extra = set(d) - known
        if extra:
            raise RobotConfigError(f"unknown limits keys {sorted(extra)}")
        missing = known - set(d)
        if missing:
            raise RobotConfigError(f"missing limits keys {sorted(missing)}")

        def dec(values: list[float | None], default: float) -> tuple[float, ...]:
            return tuple(default if v is None else float(v) for v in values)

        return cls(
            tuple(d["joint_names"]),
            dec(d["position_lower"], -math.inf),
            dec(d["position_upper"], math.inf),
            dec(d["velocity_max"], math.inf),
        )


# --------------------------------------------------------------------------- interface


class Robot(abc.ABC):
    """A position-controlled robot arm (or any set of joints).

    Lifecycle: ``connect()`` -> ``read_state()`` / ``send_command()`` … -> ``disconnect()``;
    also a context manager. ``read_state`` and ``send_command`` may be called from different
    threads. Subclasses implement ``_connect``, ``_disconnect``, ``_read_state`` and
    ``_send_command``; they may extend :meth:`validate_command`.
    """

    def __init__(self, limits: RobotLimits, name: str = "robot") -> None:
        if not isinstance(limits, RobotLimits):
            raise RobotConfigError(f"expected RobotLimits, got {type(limits).__name__}")
        self.limits = limits
        self.name = name
        self._connected = False
        self._last_command: CommandRecord | None = None
        self._lifecycle_lock = threading.Lock()

    # -- public API

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.limits.joint_names

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def last_command(self) -> CommandRecord | None:
        """The last accepted command (what the recorder stores as the commanded action)."""
        return self._last_command

    def connect(self) -> None:
        """Connect (idempotent). Raises :class:`RobotError` if the robot cannot be reached."""
        with self._lifecycle_lock:
            if self._connected:
                return
            self._connect()
            self._connected = True

    def disconnect(self) -> None:
        """Disconnect (idempotent)."""
        with self._lifecycle_lock:
            if not self._connected:
                return
            self._connected = False
            self._disconnect()

    def read_state(self) -> RobotState:
        """The latest joint state."""
        self._require_connected("read_state")
        return self._read_state()

    def send_command(self, action: Any, stamp_s: float | None = None) -> np.ndarray:
        """Validate and send a position target ``(D,)``; returns it as ``float32``.

        ``stamp_s``: when the command was issued, host monotonic seconds (default: now).
        Raises :class:`CommandRejectedError` (nothing sent) if :meth:`validate_command` refuses it.
        """
        self._require_connected("send_command")
        stamp = time.monotonic() if stamp_s is None else float(stamp_s)
        checked = self.validate_command(action)
        self._send_command(checked, stamp)
        sent = checked.astype(np.float32)
        sent.flags.writeable = False
        self._last_command = CommandRecord(sent, stamp)
        return sent

    def validate_command(self, action: Any) -> np.ndarray:
        """``float64 (D,)`` target if acceptable, else :class:`CommandRejectedError`.

        Base checks: shape, finite, position limits."""
        return self.limits.check_positions(action, what=f"{self.name} command")

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"{type(self).__name__}({self.name!r}, {self.limits.dim} joints, {state})"

    def _require_connected(self, op: str) -> None:
        if not self._connected:
            raise RobotNotConnectedError(f"{self.name}: {op} called before connect()")

    # -- backend hooks

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _read_state(self) -> RobotState: ...

    @abc.abstractmethod
    def _send_command(self, action: np.ndarray, stamp_s: float) -> None: ...
