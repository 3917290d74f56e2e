"""The one converter between ROS 2 messages and numpy arrays.

Used by the demonstration recorder, the ``Ros2Robot`` backend, simulated drivers and the
policy node, so that what is recorded and what the policy outputs live in the same spaces.

* Joint states (``sensor_msgs/JointState``): :class:`JointStateConverter` picks joints **by
  name** into the configured order (messages may list joints in any order and carry extra
  joints); output ``float32 (D,)``.
* Commands (``std_msgs/Float64MultiArray``, ``trajectory_msgs/JointTrajectory``):
  :class:`CommandConverter`; the action is a joint **position target** ``float32 (D,)``
  (or a chunk ``(T, D)``) in the configured joint order.
* Images (``sensor_msgs/Image``): :func:`image_to_rgb` / :func:`rgb_to_image` (``uint8
  (H, W, 3)`` RGB, no ``cv_bridge``); depth :func:`image_to_depth` / :func:`depth_to_image`.
  ``sensor_msgs/CompressedImage`` (JPEG / PNG): :func:`compressed_image_to_rgb`.
* ``sensor_msgs/CameraInfo``: :func:`camera_info_to_intrinsics` (the dict format of
  ``data_collection.cameras.CameraIntrinsics.to_dict``).
* Time (``builtin_interfaces/Time``, ``Duration``): float seconds or exact integer nanoseconds.

Reading a message only touches its fields, so any object with those attributes works; building
a message imports the message class lazily (no ROS import at module import time). Every
conversion problem raises :class:`MessageConversionError` with a message naming the problem.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ._imports import ros_message_class

__all__ = [
    "IMAGE_ENCODINGS",
    "DEPTH_ENCODINGS",
    "CommandConverter",
    "JointStateConverter",
    "JointStateSample",
    "MessageConversionError",
    "TrajectoryArrays",
    "camera_info_to_intrinsics",
    "check_joint_names",
    "compressed_image_to_rgb",
    "depth_to_image",
    "duration_to_ns",
    "duration_to_sec",
    "image_to_depth",
    "image_to_rgb",
    "ns_to_duration",
    "ns_to_time",
    "rgb_to_image",
    "sec_to_duration",
    "sec_to_time",
    "time_to_ns",
    "time_to_sec",
]

NS_PER_S = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class MessageConversionError(ValueError):
    """A message or array cannot be converted. The message names the field and the problem."""


# =========================================================================== time


def _split_ns(ns: int, what: str) -> tuple[int, int]:
    sec, nanosec = divmod(int(ns), NS_PER_S)  # floor division: nanosec always in [0, 1e9)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise MessageConversionError(f"{what} of {ns} ns does not fit builtin_interfaces (int32 seconds)")
    return sec, nanosec


def _sec_to_ns(t: float, what: str) -> int:
    """Nearest integer nanosecond to the exact value of float ``t`` (no float rounding on the way)."""
    try:
        t = float(t)
    except (TypeError, ValueError) as exc:
        raise MessageConversionError(f"{what} must be a number of seconds, got {t!r}") from exc
    if not math.isfinite(t):
        raise MessageConversionError(f"{what} must be finite, got {t}")
    return round(Fraction(t) * NS_PER_S)


def _stamp_ns(stamp: Any, what: str) -> int:
    sec, nanosec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
    if sec is None or nanosec is None:
        raise MessageConversionError(f"{what} must have 'sec' and 'nanosec' fields, got {type(stamp).__name__}")
    if not 0 <= int(nanosec) < NS_PER_S:
        raise MessageConversionError(f"{what}.nanosec must be in [0, 1e9), got {nanosec}")
    return int(sec) * NS_PER_S + int(nanosec)


def time_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact)."""
    return _stamp_ns(stamp, "time")


def time_to_sec(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds (nearest float to the exact value)."""
    return time_to_ns(stamp) / NS_PER_S


def ns_to_time(ns: int) -> Any:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time`` (exact)."""
    if isinstance(ns, bool) or not isinstance(ns, (int, np.integer)):
        raise MessageConversionError(f"time in nanoseconds must be an int, got {type(ns).__name__}")
    if ns < 0:
        raise MessageConversionError(f"time must be >= 0 (ROS time has no negative stamps), got {ns} ns")
    sec, nanosec = _split_ns(ns, "time")
    return ros_message_class("builtin_interfaces", "Time")(sec=sec, nanosec=nanosec)


def sec_to_time(t: float) -> Any:
    """Float seconds (>= 0) -> ``builtin_interfaces/Time``, rounded to the nearest nanosecond."""
    return ns_to_time(_sec_to_ns(t, "time"))


def duration_to_ns(duration: Any) -> int:
    """``builtin_interfaces/Duration`` -> integer nanoseconds (exact; may be negative)."""
    return _stamp_ns(duration, "duration")


def duration_to_sec(duration: Any) -> float:
    """``builtin_interfaces/Duration`` -> float seconds."""
    return duration_to_ns(duration) / NS_PER_S


def ns_to_duration(ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/Duration`` (exact; ``sec`` floors, ``nanosec`` >= 0)."""
    if isinstance(ns, bool) or not isinstance(ns, (int, np.integer)):
        raise MessageConversionError(f"duration in nanoseconds must be an int, got {type(ns).__name__}")
    sec, nanosec = _split_ns(ns, "duration")
    return ros_message_class("builtin_interfaces", "Duration")(sec=sec, nanosec=nanosec)


def sec_to_duration(t: float) -> Any:
    """Float seconds -> ``builtin_interfaces/Duration``, rounded to the nearest nanosecond."""
    return ns_to_duration(_sec_to_ns(t, "duration"))


def _as_stamp(stamp: Any) -> Any:
    """``None`` (zero time), float seconds, or an existing Time message -> Time message."""
    if stamp is None:
        return ros_message_class("builtin_interfaces", "Time")()
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return stamp
    return sec_to_time(stamp)


def _header(stamp: Any, frame_id: str) -> Any:
    header = ros_message_class("std_msgs", "Header")()
    header.stamp = _as_stamp(stamp)
    header.frame_id = str(frame_id)
    return header


# =========================================================================== joints


def check_joint_names(joint_names: Sequence[str], owner: str) -> tuple[str, ...]:
    """``joint_names`` as a tuple of unique non-empty strings, else :class:`MessageConversionError`
    (``"OWNER: problem"``)."""
    if isinstance(joint_names, str):
        raise MessageConversionError(f"{owner}: joint_names must be a sequence of names, not one string")
    names = tuple(joint_names)
    if not names:
        raise MessageConversionError(f"{owner}: joint_names must not be empty")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise MessageConversionError(f"{owner}: joint names must be non-empty strings, got {bad}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MessageConversionError(f"{owner}: duplicate joint names {dupes}")
    return names


def _nonfinite_report(values: np.ndarray, names: Sequence[str]) -> str:
    bad = ~np.isfinite(values)
    if values.ndim == 1:
        return ", ".join(f"{names[i]}={values[i]}" for i in np.flatnonzero(bad))
    rows, cols = np.nonzero(bad)
    return ", ".join(f"[{r}] {names[c]}={values[r, c]}" for r, c in zip(rows[:8], cols[:8]))


@dataclass(frozen=True)
class JointStateSample:
    """Joint state in the converter's joint order.

    Attributes:
        position: ``float32 (D,)``.
        velocity: ``float32 (D,)`` or ``None`` when the message carried no velocities.
        effort: ``float32 (D,)`` or ``None`` when the message carried no efforts.
        stamp_ns: ``header.stamp`` in integer nanoseconds (ROS time of the sender).
    """

    position: np.ndarray
    velocity: np.ndarray | None
    effort: np.ndarray | None
    stamp_ns: int

    @property
    def stamp_s(self) -> float:
        """``header.stamp`` in float seconds."""
        return self.stamp_ns / NS_PER_S


_JOINT_FIELDS = ("position", "velocity", "effort")


@dataclass(frozen=True)
class JointStateConverter:
    """``sensor_msgs/JointState`` <-> ``float32 (D,)`` arrays in a fixed joint order.

    Attributes:
        joint_names: the joints, in array order. Messages are read by name: they may list the
            joints in any order and contain other joints; a missing joint is an error.
        check_finite: fields whose values must be finite when read or written (NaN/Inf raise
            :class:`MessageConversionError` naming the joints). Default: all three.
    """

    joint_names: tuple[str, ...]
    check_finite: tuple[str, ...] = _JOINT_FIELDS
    _cache: list = field(default_factory=lambda: [None, None], init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_names", check_joint_names(self.joint_names, "JointStateConverter"))
        fields = tuple(self.check_finite)
        unknown = [f for f in fields if f not in _JOINT_FIELDS]
        if unknown:
            raise MessageConversionError(
                f"check_finite: unknown fields {unknown}; expected a subset of {_JOINT_FIELDS}"
            )
        object.__setattr__(self, "check_finite", fields)

    @property
    def dim(self) -> int:
        """Number of joints ``D``."""
        return len(self.joint_names)

    def indices(self, message_names: Sequence[str], what: str = "JointState") -> np.ndarray:
        """Index into the message's arrays of each configured joint, ``intp (D,)`` (cached per name list).

        ``what`` names the message in errors (duplicate or missing joints)."""
        key = tuple(message_names)
        cached_key, cached = self._cache
        if cached_key == key:
            return cached
        position = {}
        for i, n in enumerate(key):
            if n in position:
                raise MessageConversionError(f"{what} lists joint {n!r} twice")
            position[n] = i
        missing = [n for n in self.joint_names if n not in position]
        if missing:
            raise MessageConversionError(
                f"{what} is missing joints {missing}; it has {list(key)}, expected {list(self.joint_names)}"
            )
        idx = np.array([position[n] for n in self.joint_names], dtype=np.intp)
        self._cache[:] = [key, idx]  # one list assignment: readers see old or new pair
        return idx

    def _pick(self, msg: Any, name: str, idx: np.ndarray, n_msg: int, required: bool) -> np.ndarray | None:
        raw = getattr(msg, name)
        if len(raw) == 0:
            if required:
                raise MessageConversionError(f"JointState has no {name} values (field is empty)")
            return None
        if len(raw) != n_msg:
            raise MessageConversionError(f"JointState has {n_msg} names but {len(raw)} {name} values")
        values = np.asarray(raw, dtype=np.float64)[idx].astype(np.float32)
        if name in self.check_finite and not np.all(np.isfinite(values)):
            report = _nonfinite_report(values, self.joint_names)
            raise MessageConversionError(f"JointState {name} is not finite: {report}")
        return values

    def read(self, msg: Any, *, require_velocity: bool = False, require_effort: bool = False) -> JointStateSample:
        """Read a JointState. Position is always required; velocity/effort are ``None`` when absent."""
        names = msg.name
        idx = self.indices(names)
        n = len(names)
        position = self._pick(msg, "position", idx, n, required=True)
        velocity = self._pick(msg, "velocity", idx, n, required=require_velocity)
        effort = self._pick(msg, "effort", idx, n, required=require_effort)
        return JointStateSample(position, velocity, effort, time_to_ns(msg.header.stamp))

    def position(self, msg: Any) -> np.ndarray:
        """Just the positions, ``float32 (D,)``."""
        return self._pick(msg, "position", self.indices(msg.name), len(msg.name), required=True)

    def _check_array(self, values: Any, name: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (self.dim,):
            raise MessageConversionError(
                f"{name} must have shape ({self.dim},) for joints {list(self.joint_names)}, got {arr.shape}"
            )
        if name in self.check_finite and not np.all(np.isfinite(arr)):
            raise MessageConversionError(f"{name} is not finite: {_nonfinite_report(arr, self.joint_names)}")
        return arr

    def to_msg(
        self,
        position: Any,
        velocity: Any | None = None,
        effort: Any | None = None,
        *,
        stamp: Any = None,
        frame_id: str = "",
    ) -> Any:
        """Arrays ``(D,)`` -> ``sensor_msgs/JointState`` (joints in configured order).

        ``stamp``: float seconds, a ``builtin_interfaces/Time``, or ``None`` (zero).
        """
        msg = ros_message_class("sensor_msgs", "JointState")()
        msg.header = _header(stamp, frame_id)
        msg.name = list(self.joint_names)
        msg.position = self._check_array(position, "position")
        if velocity is not None:
            msg.velocity = self._check_array(velocity, "velocity")
        if effort is not None:
            msg.effort = self._check_array(effort, "effort")
        return msg


# =========================================================================== commands


@dataclass(frozen=True)
class TrajectoryArrays:
    """A ``JointTrajectory`` as arrays in the converter's joint order.

    Attributes:
        positions: ``float32 (T, D)`` position targets.
        times_s: ``float64 (T,)`` each point's ``time_from_start`` in seconds (strictly increasing).
        velocities: ``float32 (T, D)`` or ``None`` when the points carry no velocities.
        stamp_ns: ``header.stamp`` in nanoseconds (0 = "start now").
    """

    positions: np.ndarray
    times_s: np.ndarray
    velocities: np.ndarray | None
    stamp_ns: int


@dataclass(frozen=True)
class CommandConverter:
    """Joint position targets <-> ``Float64MultiArray`` / ``JointTrajectory``.

    The action space is joint position targets in ``joint_names`` order: one step is
    ``(D,)``, a chunk is ``(T, D)``. Arrays read back are ``float32``; messages carry float64.
    Wrong shapes and NaN/Inf raise :class:`MessageConversionError` in both directions.

    Attributes:
        joint_names: joint order of the action vector; trajectory messages are matched by name.
    """

    joint_names: tuple[str, ...]
    _picker: JointStateConverter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_names", check_joint_names(self.joint_names, "CommandConverter"))
        object.__setattr__(self, "_picker", JointStateConverter(self.joint_names))

    @property
    def dim(self) -> int:
        """Action dimension ``D``."""
        return len(self.joint_names)

    def validate(self, action: Any, *, allow_chunk: bool = False, what: str = "action") -> np.ndarray:
        """``action`` as float64 ``(D,)`` (or ``(T, D)`` if ``allow_chunk``), finite; raises otherwise."""
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise MessageConversionError(f"{what} is not a numeric array: {exc}") from exc
        is_chunk = arr.ndim == 2 and arr.shape[0] >= 1 and arr.shape[1] == self.dim
        ok = arr.shape == (self.dim,) or (allow_chunk and is_chunk)
        if not ok:
            expected = f"({self.dim},)" + (f" or (T, {self.dim})" if allow_chunk else "")
            raise MessageConversionError(
                f"{what} has shape {arr.shape}, expected {expected} for joints {list(self.joint_names)}"
            )
        if not np.all(np.isfinite(arr)):
            raise MessageConversionError(f"{what} is not finite: {_nonfinite_report(arr, self.joint_names)}")
        return arr

    # -- Float64MultiArray

    def to_multiarray(self, action: Any) -> Any:
        """``(D,)`` or ``(T, D)`` -> ``std_msgs/Float64MultiArray`` (row-major, layout labels ``time``/``joint``)."""
        arr = self.validate(action, allow_chunk=True)
        msg = ros_message_class("std_msgs", "Float64MultiArray")()
        dim_cls = ros_message_class("std_msgs", "MultiArrayDimension")
        dims = [dim_cls(label="joint", size=self.dim, stride=self.dim)]
        if arr.ndim == 2:
            dims.insert(0, dim_cls(label="time", size=arr.shape[0], stride=arr.size))
        msg.layout.dim = dims
        msg.layout.data_offset = 0
        msg.data = arr.ravel()
        return msg

    def from_multiarray(self, msg: Any) -> np.ndarray:
        """``Float64MultiArray`` -> ``float32 (D,)``, or ``(T, D)`` when the layout has two dimensions.

        An empty layout means a flat vector of exactly ``D`` values (ros2_control forward
        command controllers send it this way).
        """
        data = np.asarray(msg.data, dtype=np.float64)
        offset = int(msg.layout.data_offset)
        if offset:
            data = data[offset:]
        dims = list(msg.layout.dim)
        if len(dims) == 2:
            t, d = int(dims[0].size), int(dims[1].size)
            if d != self.dim or data.size != t * d:
                raise MessageConversionError(
                    f"Float64MultiArray layout {t}x{d} with {data.size} values does not match {self.dim} joints"
                )
            arr = data.reshape(t, d)
        elif len(dims) <= 1:
            if data.size != self.dim:
                raise MessageConversionError(
                    f"Float64MultiArray has {data.size} values, expected {self.dim} for joints {list(self.joint_names)}"
                )
            arr = data
        else:
            raise MessageConversionError(f"Float64MultiArray with {len(dims)} layout dimensions is not a command")
        return self.validate(arr, allow_chunk=True, what="Float64MultiArray data").astype(np.float32)

    # -- JointTrajectory

    def to_trajectory(
        self,
        action: Any,
        dt_s: float,
        *,
        start_s: float | None = None,
        velocities: Any | None = None,
        stamp: Any = None,
        frame_id: str = "",
    ) -> Any:
        """``(D,)`` or ``(T, D)`` targets -> ``trajectory_msgs/JointTrajectory``.

        Point ``i`` gets ``time_from_start = start_s + i * dt_s``; ``start_s`` defaults to
        ``dt_s`` (the first target is reached one control period from now, never at 0).
        ``velocities``: optional ``(D,)``/``(T, D)`` matching ``action``. ``stamp``: float
        seconds / ``Time`` / ``None`` (zero stamp = "start when received").
        """
        arr = self.validate(action, allow_chunk=True)
        chunk = arr.reshape(-1, self.dim)
        dt_ns = _sec_to_ns(dt_s, "dt_s")
        if dt_ns <= 0:
            raise MessageConversionError(f"dt_s must be > 0, got {dt_s}")
        start_ns = dt_ns if start_s is None else _sec_to_ns(start_s, "start_s")
        if start_ns < 0:
            raise MessageConversionError(f"start_s must be >= 0, got {start_s}")
        vel = None
        if velocities is not None:
            vel = self.validate(velocities, allow_chunk=True, what="velocities")
            if vel.shape != arr.shape:
                raise MessageConversionError(f"velocities shape {vel.shape} does not match action shape {arr.shape}")
            vel = vel.reshape(-1, self.dim)
        point_cls = ros_message_class("trajectory_msgs", "JointTrajectoryPoint")
        msg = ros_message_class("trajectory_msgs", "JointTrajectory")()
        msg.header = _header(stamp, frame_id)
        msg.joint_names = list(self.joint_names)
        points = []
        for i, row in enumerate(chunk):
            p = point_cls()
            p.positions = row
            if vel is not None:
                p.velocities = vel[i]
            p.time_from_start = ns_to_duration(start_ns + i * dt_ns)
            points.append(p)
        msg.points = points
        return msg

    def from_trajectory(self, msg: Any) -> TrajectoryArrays:
        """``JointTrajectory`` -> :class:`TrajectoryArrays` (joints picked by name, any order)."""
        names = list(msg.joint_names)
        idx = self._picker.indices(names, what="JointTrajectory")
        if not msg.points:
            raise MessageConversionError("JointTrajectory has no points")
        n = len(names)
        positions, velocities, times = [], [], []
        for i, p in enumerate(msg.points):
            if len(p.positions) != n:
                raise MessageConversionError(
                    f"JointTrajectory point {i} has {len(p.positions)} positions for {n} joints"
                )
            positions.append(np.asarray(p.positions, dtype=np.float64)[idx])
            if len(p.velocities) not in (0, n):
                raise MessageConversionError(
                    f"JointTrajectory point {i} has {len(p.velocities)} velocities for {n} joints"
                )
            velocities.append(np.asarray(p.velocities, dtype=np.float64)[idx] if len(p.velocities) else None)
            times.append(duration_to_ns(p.time_from_start))
        pos = self.validate(np.stack(positions), allow_chunk=True, what="JointTrajectory positions")
        has_vel = [v is not None for v in velocities]
        if any(has_vel) and not all(has_vel):
            raise MessageConversionError("JointTrajectory: some points have velocities and some do not")
        vel = None
        if all(has_vel):
            vel = self.validate(np.stack(velocities), allow_chunk=True, what="JointTrajectory velocities")
            vel = vel.astype(np.float32)
        t = np.asarray(times, dtype=np.int64)
        if t[0] < 0 or np.any(np.diff(t) <= 0):
            raise MessageConversionError(
                f"JointTrajectory time_from_start must be >= 0 and strictly increasing, got {t / NS_PER_S}"
            )
        return TrajectoryArrays(pos.astype(np.float32), t / NS_PER_S, vel, time_to_ns(msg.header.stamp))

    def to_action(self, msg: Any) -> np.ndarray:
        """The immediate position target ``float32 (D,)`` of a command message of either type.

        ``JointTrajectory``: its first point. ``Float64MultiArray``: the vector (or the first
        row of a ``(T, D)`` layout). This is what the recorder stores as the commanded action.
        """
        if hasattr(msg, "points") and hasattr(msg, "joint_names"):
            return self.from_trajectory(msg).positions[0]
        if hasattr(msg, "layout") and hasattr(msg, "data"):
            arr = self.from_multiarray(msg)
            return arr if arr.ndim == 1 else arr[0]
        raise MessageConversionError(f"{type(msg).__name__} is not a JointTrajectory or Float64MultiArray")


# =========================================================================== images

# encoding -> (channels, channel order of the source for R, G, B, or None for mono)
_COLOR_LAYOUTS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
IMAGE_ENCODINGS = tuple(_COLOR_LAYOUTS)
"""Encodings :func:`image_to_rgb` reads."""

_DEPTH_DTYPES = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}
DEPTH_ENCODINGS = tuple(_DEPTH_DTYPES)
"""Encodings :func:`image_to_depth` reads."""


def _image_rows(msg: Any, bytes_per_pixel: int) -> np.ndarray:
    """The image bytes as ``uint8 (H, W * bytes_per_pixel)``, row padding (``step``) removed. A view."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageConversionError(f"Image has size {w}x{h}; width and height must be > 0")
    row = w * bytes_per_pixel
    if step < row:
        raise MessageConversionError(
            f"Image step {step} is smaller than width*bytes_per_pixel = {w}*{bytes_per_pixel} = {row} ({msg.encoding})"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    # The last row may legitimately omit its padding.
    needed = step * (h - 1) + row
    if data.size < needed:
        raise MessageConversionError(f"Image data has {data.size} bytes, expected {step * h} ({h} rows of step {step})")
    if data.size >= step * h:
        return data[: step * h].reshape(h, step)[:, :row]
    return np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(step, 1))


def image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``uint8 (H, W, 3)`` RGB, C-contiguous, owned.

    Reads the encodings in :data:`IMAGE_ENCODINGS`: ``mono8`` is replicated to 3 channels,
    alpha is dropped, ``bgr*`` is reordered. Row padding (``step`` > ``width * channels``) is
    honoured. ``is_bigendian`` does not matter for 8-bit encodings.
    """
    enc = str(msg.encoding)
    if enc not in _COLOR_LAYOUTS:
        raise MessageConversionError(
            f"unsupported image encoding {enc!r}; colour images must be one of {list(IMAGE_ENCODINGS)} "
            f"(depth encodings {list(DEPTH_ENCODINGS)} go through image_to_depth)"
        )
    channels, order = _COLOR_LAYOUTS[enc]
    h, w = int(msg.height), int(msg.width)
    rows = _image_rows(msg, channels)
    pixels = rows.reshape(h, w, channels)
    if order == (0, 1, 2) and channels == 3:
        return pixels.copy()  # C-order copy: owned, padding dropped
    # per-channel copies: ~5x faster than fancy indexing or a reversed-stride copy
    out = np.empty((h, w, 3), dtype=np.uint8)
    for i, c in enumerate(order or (0, 0, 0)):
        out[:, :, i] = pixels[:, :, c]
    return out


# ``format`` of sensor_msgs/CompressedImage: a bare codec ("jpeg", "png") or image_transport's
# "<source encoding>; <codec> compressed <stream encoding>" (e.g. "rgb8; jpeg compressed bgr8").
_COMPRESSED_CODECS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
_COMPRESSED_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def _compressed_codec(fmt: str, data: np.ndarray) -> str:
    """The codec of a CompressedImage (``"jpeg"`` or ``"png"``), checked against its magic bytes."""
    lowered = fmt.lower()
    if "compresseddepth" in lowered:
        raise MessageConversionError(
            f"CompressedImage format {fmt!r} is a compressedDepth image; only colour images are supported"
        )
    source = lowered.split(";", 1)[0].strip() if ";" in lowered else ""
    if source.endswith("16") or source.startswith(("16", "32", "64")):
        raise MessageConversionError(
            f"CompressedImage format {fmt!r} holds a {source} (16-bit / depth) image; only 8-bit colour is supported"
        )
    if source.startswith("bayer"):
        raise MessageConversionError(
            f"CompressedImage format {fmt!r} holds a raw Bayer image; debayer it before compressing"
        )
    words = [w for w in lowered.replace(";", " ").split() if w]
    declared = {_COMPRESSED_CODECS[w] for w in words if w in _COMPRESSED_CODECS}
    if len(declared) > 1:
        raise MessageConversionError(f"CompressedImage format {fmt!r} names more than one codec")
    head = data[:8].tobytes()
    actual = next((c for c, magic in _COMPRESSED_MAGIC.items() if head.startswith(magic)), None)
    if actual is None:
        raise MessageConversionError(
            f"CompressedImage data (format {fmt!r}, {data.size} bytes, starting {head.hex()}) is neither JPEG nor PNG"
        )
    if declared and actual not in declared:
        raise MessageConversionError(f"CompressedImage format {fmt!r} says {declared.pop()} but the data is {actual}")
    return actual


def compressed_image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> ``uint8 (H, W, 3)`` RGB, C-contiguous, owned.

    ``format`` may be a bare codec (``"jpeg"``, ``"png"``), image_transport's
    ``"<encoding>; <codec> compressed <encoding>"`` or empty; the codec is recognised from the
    data's magic bytes and must agree with the one ``format`` names. The data is decoded as stored
    (``cv2.imdecode`` with ``IMREAD_UNCHANGED``: no EXIF rotation, no silent 16 -> 8 bit scaling):
    grey is replicated to 3 channels, alpha is dropped, OpenCV's BGR is reordered to RGB.
    ``compressedDepth`` and 16-bit images are refused (they are not colour images).
    """
    import cv2  # lazy: the ROS boundary imports without OpenCV until an image is decoded

    fmt = str(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if data.size == 0:
        raise MessageConversionError(f"CompressedImage (format {fmt!r}) has no data")
    codec = _compressed_codec(fmt, data)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MessageConversionError(
            f"CompressedImage data ({codec}, format {fmt!r}, {data.size} bytes) could not be decoded "
            "(truncated or corrupt)"
        )
    if img.dtype != np.uint8:
        raise MessageConversionError(
            f"CompressedImage ({codec}, format {fmt!r}) decodes to {img.dtype}; only 8-bit colour images are supported"
        )
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise MessageConversionError(
        f"CompressedImage ({codec}, format {fmt!r}) decodes to shape {img.shape}; expected grey, BGR or BGRA"
    )


def rgb_to_image(rgb: Any, *, encoding: str = "rgb8", stamp: Any = None, frame_id: str = "") -> Any:
    """``uint8 (H, W, 3)`` RGB -> ``sensor_msgs/Image`` in ``rgb8`` or ``bgr8`` (no row padding).

    ``encoding="mono8"`` takes a ``uint8 (H, W)`` (or ``(H, W, 1)``) grey image instead.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise MessageConversionError(f"image must be uint8, got {arr.dtype}")
    if encoding in ("rgb8", "bgr8"):
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise MessageConversionError(f"{encoding} image must have shape (H, W, 3), got {arr.shape}")
        if encoding == "bgr8":
            bgr = np.empty_like(arr)
            for i in range(3):
                bgr[:, :, i] = arr[:, :, 2 - i]
            arr = bgr
    elif encoding == "mono8":
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise MessageConversionError(f"mono8 image must have shape (H, W), got {arr.shape}")
    else:
        raise MessageConversionError(f"rgb_to_image writes rgb8, bgr8 or mono8, not {encoding!r}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise MessageConversionError(f"image must not be empty, got shape {arr.shape}")
    channels = 1 if arr.ndim == 2 else 3
    msg = ros_message_class("sensor_msgs", "Image")()
    msg.header = _header(stamp, frame_id)
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = w * channels
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def image_to_depth(msg: Any) -> np.ndarray:
    """Depth ``sensor_msgs/Image`` -> ``(H, W)`` array in native byte order, owned.

    ``16UC1`` / ``mono16`` -> ``uint16`` (camera units, usually millimetres; 0 = no depth);
    ``32FC1`` -> ``float32`` (metres by REP 118; NaN = no depth). ``is_bigendian`` is honoured.
    """
    enc = str(msg.encoding)
    if enc not in _DEPTH_DTYPES:
        raise MessageConversionError(f"unsupported depth encoding {enc!r}; expected one of {list(DEPTH_ENCODINGS)}")
    dtype = np.dtype(_DEPTH_DTYPES[enc])
    h, w = int(msg.height), int(msg.width)
    rows = np.ascontiguousarray(_image_rows(msg, dtype.itemsize))
    src = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    return rows.view(src).reshape(h, w).astype(dtype.newbyteorder("="))


def depth_to_image(depth: Any, *, stamp: Any = None, frame_id: str = "") -> Any:
    """``uint16 (H, W)`` -> ``16UC1`` Image, or ``float32 (H, W)`` -> ``32FC1`` (native byte order)."""
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.size == 0:
        raise MessageConversionError(f"depth image must have shape (H, W), got {arr.shape}")
    if arr.dtype == np.uint16:
        enc = "16UC1"
    elif arr.dtype == np.float32:
        enc = "32FC1"
    else:
        raise MessageConversionError(f"depth image must be uint16 or float32, got {arr.dtype}")
    msg = ros_message_class("sensor_msgs", "Image")()
    msg.header = _header(stamp, frame_id)
    msg.height, msg.width = arr.shape
    msg.encoding = enc
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = arr.shape[1] * arr.dtype.itemsize
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


# =========================================================================== camera info


def camera_info_to_intrinsics(msg: Any) -> dict[str, Any]:
    """``sensor_msgs/CameraInfo`` -> intrinsics dict of the image as published.

    The dict has exactly the keys of ``data_collection.cameras.CameraIntrinsics.to_dict``
    (``width, height, fx, fy, cx, cy, distortion_model, coeffs``), so
    ``CameraIntrinsics.from_dict(...)`` accepts it. ``binning_x/y`` and ``roi`` are applied
    (as ``image_geometry`` does). Distortion models: ``plumb_bob`` -> ``brown_conrady``
    (k1, k2, p1, p2, k3); ``rational_polynomial`` -> ``brown_conrady`` only when k4..k6 are
    zero; ``equidistant`` -> ``kannala_brandt4``; all-zero coefficients -> ``none``.
    Raises for an uncalibrated camera (``K`` all zero), skew, or an unmappable model.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise MessageConversionError(f"CameraInfo.k must have 9 values, got {k.size}")
    if not np.all(np.isfinite(k)):
        raise MessageConversionError(f"CameraInfo.k is not finite: {k.tolist()}")
    if not np.any(k):
        raise MessageConversionError("CameraInfo is uncalibrated (K is all zero)")
    fx, skew, cx, _, fy, cy = k[:6]
    if fx <= 0 or fy <= 0:
        raise MessageConversionError(f"CameraInfo focal lengths must be > 0, got fx={fx}, fy={fy}")
    if abs(skew) > 1e-9 * fx:
        raise MessageConversionError(f"CameraInfo K has skew {skew}; skewed pinhole models are not supported")

    d = [float(x) for x in msg.d]
    if not all(math.isfinite(x) for x in d):
        raise MessageConversionError(f"CameraInfo.d is not finite: {d}")
    model = str(msg.distortion_model)
    if not any(d):
        dist, coeffs = "none", [0.0] * 5
    elif model == "plumb_bob":
        if len(d) > 5:
            raise MessageConversionError(f"plumb_bob distortion has 5 coefficients, got {len(d)}")
        dist, coeffs = "brown_conrady", (d + [0.0] * 5)[:5]
    elif model == "rational_polynomial":
        if any(d[5:]):
            raise MessageConversionError(
                f"rational_polynomial distortion with non-zero k4..k6 {d[5:]} has no CameraIntrinsics equivalent"
            )
        dist, coeffs = "brown_conrady", (d + [0.0] * 5)[:5]
    elif model == "equidistant":
        if len(d) != 4:
            raise MessageConversionError(f"equidistant distortion has 4 coefficients, got {len(d)}")
        dist, coeffs = "kannala_brandt4", d
    else:
        raise MessageConversionError(
            f"unsupported CameraInfo distortion_model {model!r} with coefficients {d}; "
            "expected plumb_bob, rational_polynomial or equidistant"
        )

    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    roi = msg.roi
    full = int(roi.width) == 0 or int(roi.height) == 0
    width = int(msg.width) if full else int(roi.width)
    height = int(msg.height) if full else int(roi.height)
    ox, oy = (0, 0) if full else (int(roi.x_offset), int(roi.y_offset))
    if width <= 0 or height <= 0:
        raise MessageConversionError(f"CameraInfo image size must be > 0, got {width}x{height}")
    return {
        "width": width // bx,
        "height": height // by,
        "fx": float(fx / bx),
        "fy": float(fy / by),
        "cx": float((cx - ox) / bx),
        "cy": float((cy - oy) / by),
        "distortion_model": dist,
        "coeffs": [float(c) for c in coeffs],
    }
