"""A planar task's mirror symmetry, used to augment training windows.

Some tasks are unchanged by a reflection of the world: PushT's square workspace, its goal (the
T at ``(256, 256)``, angle ``π/4``), the T itself (mirror-symmetric about its stem) and the
physics (frictional contact is reflection-invariant) all map onto themselves under the
reflection about the goal's stem axis, the line through ``(256, 256)`` at ``3π/4``:
``(x, y) -> (512 - y, 512 - x)``, block angle ``θ -> π/2 - θ``. Every demonstration then has a
mirror image that is an equally valid demonstration. In ``gym-pusht`` a mirrored start state
driven by the mirrored actions reproduces the mirrored trajectory exactly away from the walls
(``tests/test_symmetry.py``; the walls sit 1 unit off the symmetry, 1 unit of error there).

The reflection about the line through ``c`` with direction angle ``φ`` is
``p' = c + M (p - c)``, ``M = [[cos 2φ, sin 2φ], [sin 2φ, -cos 2φ]]``. A planar body whose shape
is symmetric about its own axis at angle ``β`` (body frame) keeps its shape, and its angle maps
to ``θ' = 2φ - 2β - θ`` (wrapped into ``[angle_origin, angle_origin + 2π)``). Vectors that are
not positions (velocities, offsets) reflect with ``M`` alone, without ``c``.

Images. A camera whose image plane is parallel to the task's plane (PushT's top-down render)
sees the reflection as a fixed pixel operation, declared per image key: ``transpose`` (the
main diagonal), ``anti_transpose`` (the other diagonal), ``flip_rows`` or ``flip_cols``. PushT's
render puts world ``(x, y)`` at pixel ``(row, col) = (y, x)``, so its reflection is
``anti_transpose``; re-rendering the mirrored state matches the mirrored frame in all but about
0.5 % of the pixels (polygon edges rasterise differently). A real, oblique camera has no such
operation: leave its key out, and the dataset refuses the mirror.

Only raw stored values are transformed (before feature encodings and normalisation; images after
the crop), and only in training; the runtime never mirrors anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_OPS = ("transpose", "anti_transpose", "flip_rows", "flip_cols")

def _pairs(value: Any, what: str) -> list[list[int]]:
    pairs = [list(p) for p in (value or [])]
    for p in pairs:
        if len(p) != 2 or any(int(d) != d or d < 0 for d in p) or p[0] == p[1]:
            raise ValueError(f"mirror.{what}: each entry must be a pair of distinct dimension indices >= 0 "
                             f"[x_dim, y_dim], got {p!r}")
    return [[int(a), int(b)] for a, b in pairs]


def _dims(value: Any, what: str) -> list[int]:
    dims = [value] if isinstance(value, (int, np.integer)) else list(value or [])
    if any(int(d) != d or d < 0 for d in dims):
        raise ValueError(f"mirror.{what}: dimension indices must be integers >= 0, got {value!r}")
    return [int(d) for d in dims]


@dataclass
class MirrorConfig:
    """A reflection of the world the task is invariant under, and which stored dimensions it moves.

    Attributes:
        prob: probability that a training window is mirrored (all its steps together).
        line_point: a point of the mirror line, world units.
        line_angle: direction of the mirror line, radians, counter-clockwise from the world x axis.
        points: stored key -> ``[[x_dim, y_dim], ...]`` positions reflected about the line.
        vectors: stored key -> ``[[x_dim, y_dim], ...]`` free vectors (velocities) reflected by the
            line's direction only.
        angles: stored key -> dimensions holding a body angle in radians, mapped to
            ``2 line_angle - 2 body_axis - θ``.
        images: image key -> the pixel operation the reflection is in that camera (one of
            ``IMAGE_OPS``; see the module docstring). ``transpose`` / ``anti_transpose`` need
            square images (after the crop).
        body_axis: direction of the mirror axis of the bodies whose angles are listed, radians in
            the body frame (PushT's T: its stem, ``π/2``).
        angle_origin: mirrored angles are wrapped into ``[angle_origin, angle_origin + 2π)``
            (PushT stores ``[0, 2π)``).
        unchanged: stored keys the reflection leaves as they are (e.g. a gripper). Every key a
            dataset uses, the action included, must be moved by the lists above or named here, so
            nothing is mirrored by half.
    """

    prob: float = 0.5
    line_point: tuple[float, float] = (0.0, 0.0)
    line_angle: float = 0.0
    points: dict[str, list[list[int]]] = field(default_factory=dict)
    vectors: dict[str, list[list[int]]] = field(default_factory=dict)
    angles: dict[str, list[int]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    body_axis: float = 0.0
    angle_origin: float = 0.0
    unchanged: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prob = float(self.prob)
        if not 0.0 < self.prob <= 1.0:
            raise ValueError(f"mirror.prob must be in (0, 1], got {self.prob}")
        point = [float(v) for v in self.line_point]
        if len(point) != 2 or not all(math.isfinite(v) for v in point):
            raise ValueError(f"mirror.line_point must be a finite [x, y], got {self.line_point!r}")
        self.line_point = (point[0], point[1])
        for name in ("line_angle", "body_axis", "angle_origin"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"mirror.{name} must be a finite angle in radians, got {value}")
            setattr(self, name, value)
        self.points = {str(k): _pairs(v, f"points[{k!r}]") for k, v in dict(self.points or {}).items()}
        self.vectors = {str(k): _pairs(v, f"vectors[{k!r}]") for k, v in dict(self.vectors or {}).items()}
        self.angles = {str(k): _dims(v, f"angles[{k!r}]") for k, v in dict(self.angles or {}).items()}
        self.images = {str(k): str(v) for k, v in dict(self.images or {}).items()}
        bad = {k: v for k, v in self.images.items() if v not in IMAGE_OPS}
        if bad:
            raise ValueError(f"mirror.images: unknown pixel operation(s) {bad}; choose from {IMAGE_OPS}")
        self.unchanged = [str(k) for k in (self.unchanged or [])]
        for key in self.moved_keys:
            dims = self.listed_dims(key)
            if len(set(dims)) != len(dims):
                raise ValueError(f"mirror: a dimension of {key!r} is listed twice ({sorted(dims)})")
        both = sorted(set(self.unchanged) & ({*self.moved_keys, *self.images}))
        if both:
            raise ValueError(f"mirror: keys {both} are both moved and listed as unchanged")
        if not self.moved_keys and not self.images:
            raise ValueError("mirror: no key is moved (give points, vectors, angles or images)")

    @property
    def moved_keys(self) -> list[str]:
        return sorted({*self.points, *self.vectors, *self.angles})

    def listed_dims(self, key: str) -> list[int]:
        """Every dimension of ``key`` the reflection moves (points, vectors, angles)."""
        pairs = self.points.get(key, []) + self.vectors.get(key, [])
        return [d for pair in pairs for d in pair] + self.angles.get(key, [])

    @classmethod
    def coerce(cls, value: "MirrorConfig | Mapping | None") -> "MirrorConfig | None":
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"dataset.mirror must be a mapping or null, got {value!r}")
        try:
            return cls(**dict(value))
        except TypeError as e:  # an unknown field
            raise ValueError(f"dataset.mirror: {e}") from None

    def check_keys(self, used: Sequence[str], dims: Mapping[str, int],
                   image_shapes: Mapping[str, tuple[int, int]] | None = None) -> None:
        """Every key in ``used`` is moved or unchanged, every listed dimension exists (``dims``:
        stored vector key -> its size) and every mirrored image key is used with a shape its
        operation keeps (``image_shapes``: image key -> ``(h, w)`` after the crop). Raises
        ValueError naming the key."""
        image_shapes = dict(image_shapes or {})
        moved = {*self.moved_keys, *self.images}
        missing = [k for k in used if k not in moved and k not in self.unchanged]
        if missing:
            raise ValueError(f"dataset.mirror says nothing about {missing}: list their positions, vectors or "
                             "angles, or name them in mirror.unchanged (a mirrored window must be mirrored whole)")
        for key in self.moved_keys:
            if key not in dims:
                raise ValueError(f"dataset.mirror names {key!r}, which is not a stored vector key "
                                 f"({sorted(dims)})")
            listed = self.listed_dims(key)
            if max(listed) >= dims[key]:
                raise ValueError(f"dataset.mirror: dimension {max(listed)} of {key!r} is out of range "
                                 f"(it has {dims[key]})")
        for key, op in self.images.items():
            if key not in image_shapes:
                raise ValueError(f"dataset.mirror.images names {key!r}, which is not an image key of the dataset "
                                 f"({sorted(image_shapes)})")
            h, w = image_shapes[key]
            if op in ("transpose", "anti_transpose") and h != w:
                raise ValueError(f"dataset.mirror.images[{key!r}] = {op!r} needs square images, "
                                 f"{key!r} is {h}x{w} after the crop")


class PlanarMirror:
    """Applies a :class:`MirrorConfig` to raw stored values (see the module docstring)."""

    def __init__(self, cfg: MirrorConfig) -> None:
        self.cfg = cfg
        c2, s2 = math.cos(2 * cfg.line_angle), math.sin(2 * cfg.line_angle)
        self.matrix = np.round(np.array([[c2, s2], [s2, -c2]]), 15)  # exact 0 / ±1 on axis and diagonal lines
        self.center = np.asarray(cfg.line_point, dtype=np.float64)
        self.angle_offset = 2 * cfg.line_angle - 2 * cfg.body_axis

    def moves(self, key: str) -> bool:
        return key in self.cfg.moved_keys

    def reflect_points(self, p: Any) -> np.ndarray:
        """``(..., 2)`` world positions -> their mirror images (float64)."""
        p = np.asarray(p, dtype=np.float64)
        return self.center + (p - self.center) @ self.matrix.T

    def reflect_angles(self, theta: Any) -> np.ndarray:
        """Body angles (radians) -> the mirrored body's angles, in ``[angle_origin, angle_origin + 2π)``."""
        out = self.angle_offset - np.asarray(theta, dtype=np.float64)
        origin = self.cfg.angle_origin
        return origin + np.mod(out - origin, 2 * math.pi)

    def apply(self, key: str, x: Any) -> np.ndarray:
        """Raw ``(..., D)`` values of stored ``key`` -> mirrored copy, same dtype (unchanged
        keys are returned as they are)."""
        x = np.asarray(x)
        if not self.moves(key):
            return x
        out = x.astype(np.float64, copy=True)
        for i, j in self.cfg.points.get(key, []):
            out[..., [i, j]] = self.reflect_points(out[..., [i, j]])
        for i, j in self.cfg.vectors.get(key, []):
            out[..., [i, j]] = out[..., [i, j]] @ self.matrix.T
        for d in self.cfg.angles.get(key, []):
            out[..., d] = self.reflect_angles(out[..., d])
        return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)


def mirror_images_hwc(images: np.ndarray, op: str) -> np.ndarray:
    """``(..., H, W, C)`` frames -> their mirror images under pixel operation ``op`` (a view)."""
    if op == "transpose":
        return np.swapaxes(images, -3, -2)
    if op == "anti_transpose":
        return np.swapaxes(images[..., ::-1, ::-1, :], -3, -2)
    if op == "flip_rows":
        return images[..., ::-1, :, :]
    if op == "flip_cols":
        return images[..., ::-1, :]
    raise ValueError(f"unknown pixel operation {op!r}; choose from {IMAGE_OPS}")


def mirror_images_chw(images: Any, op: str) -> Any:
    """``(..., C, H, W)`` torch frames -> their mirror images under pixel operation ``op``."""
    if op == "transpose":
        return images.transpose(-2, -1)
    if op == "anti_transpose":
        return images.flip(-2, -1).transpose(-2, -1)
    if op == "flip_rows":
        return images.flip(-2)
    if op == "flip_cols":
        return images.flip(-1)
    raise ValueError(f"unknown pixel operation {op!r}; choose from {IMAGE_OPS}")
