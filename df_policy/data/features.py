"""Low-dim feature encodings applied between the raw values and the normaliser.

Training (:class:`~df_policy.data.dataset.EpisodeArrays`) and the runtime
(:class:`~df_policy.runtime.preprocess.Preprocessor`) call the same function, so a checkpoint
sees the same features in both; the store and its schema keep the raw values.

Angles. A dimension that holds an angle in radians wraps: PushT's block angle is stored in
``[0, 2π)`` and jumps from 6.28 to 0.0 as the block turns through zero (159 such jumps in the
186 demonstrations, and about 45 % of the steps lie within 0.8 rad of the seam). Min-max
normalised, the same pose reads as -1 or +1, and a two-step observation window can hold both.
Listed angle dimensions are replaced by their cosine and sine, which are continuous in the pose
(Diffusion Policy feeds block keypoints for the same reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def check_angle_dims(angle_dims: Mapping[str, Sequence[int]] | None) -> dict[str, list[int]]:
    """``{key: [dim, ...]}`` validated (non-negative, distinct integers per key) and copied."""
    out: dict[str, list[int]] = {}
    for key, dims in dict(angle_dims or {}).items():
        if isinstance(dims, (int, np.integer)):
            dims = [dims]
        values = [int(d) for d in dims]
        if not values or any(d < 0 for d in values) or len(set(values)) != len(values) or \
                any(int(d) != d for d in dims):
            raise ValueError(f"angle_dims[{key!r}] must be a non-empty list of distinct dimension indices >= 0, "
                             f"got {dims!r}")
        out[str(key)] = sorted(values)
    return out


def encoded_dim(raw_dim: int, angle_dims: Sequence[int]) -> int:
    """Feature size of a ``raw_dim`` vector once its ``angle_dims`` are encoded (one more per angle)."""
    if angle_dims and max(angle_dims) >= raw_dim:
        raise ValueError(f"angle dimension {max(angle_dims)} is out of range for a {raw_dim}-dimensional key")
    return raw_dim + len(angle_dims)


def encode_angles(x: Any, angle_dims: Sequence[int]) -> np.ndarray:
    """``(..., D)`` -> ``(..., D + k)`` for ``k = len(angle_dims)``: the other dimensions in their
    order, then ``cos`` of each angle, then ``sin`` of each angle (radians in). Without angle
    dimensions the input is returned unchanged."""
    if not angle_dims:
        return x
    x = np.asarray(x)
    encoded_dim(x.shape[-1], angle_dims)
    dims = list(angle_dims)
    keep = [d for d in range(x.shape[-1]) if d not in set(dims)]
    angles = x[..., dims].astype(np.float64)
    out = np.concatenate([x[..., keep].astype(np.float64), np.cos(angles), np.sin(angles)], axis=-1)
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)


# --- planar poses as keypoints ---------------------------------------------------------------

def check_pose_keypoints(spec: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, list]]:
    """``{key: {"pose_dims": [x, y, θ], "points": [[px, py], ...]}}`` validated and copied as
    plain lists (JSON/YAML-safe): three distinct non-negative dimension indices, at least one
    finite 2-D point."""
    out: dict[str, dict[str, list]] = {}
    for key, entry in dict(spec or {}).items():
        if not isinstance(entry, Mapping) or set(entry) != {"pose_dims", "points"}:
            raise ValueError(f"pose_keypoints[{key!r}] must be a mapping with exactly 'pose_dims' and 'points', "
                             f"got {entry!r}")
        dims = list(entry["pose_dims"])
        if len(dims) != 3 or any(int(d) != d or d < 0 for d in dims) or len(set(dims)) != 3:
            raise ValueError(f"pose_keypoints[{key!r}].pose_dims must be three distinct dimension indices >= 0 "
                             f"(x, y, angle in radians), got {entry['pose_dims']!r}")
        points = np.asarray(entry["points"], dtype=np.float64)
        if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] != 2 or not np.isfinite(points).all():
            raise ValueError(f"pose_keypoints[{key!r}].points must be a non-empty list of finite [x, y] pairs "
                             f"(body frame), got shape {points.shape}")
        out[str(key)] = {"pose_dims": [int(d) for d in dims], "points": points.tolist()}
    return out


def keypoint_encoded_dim(raw_dim: int, pose_dims: Sequence[int], n_points: int) -> int:
    """Feature size of a ``raw_dim`` vector once the pose at ``pose_dims`` becomes ``n_points``
    keypoints (``raw_dim - 3 + 2 * n_points``)."""
    if max(pose_dims) >= raw_dim:
        raise ValueError(f"pose dimension {max(pose_dims)} is out of range for a {raw_dim}-dimensional key")
    return raw_dim - 3 + 2 * n_points


def encode_pose_keypoints(x: Any, pose_dims: Sequence[int], points: Any) -> np.ndarray:
    """``(..., D)`` -> ``(..., D - 3 + 2K)``: the planar pose at ``pose_dims`` (``x, y`` in world
    units, ``θ`` in radians, counter-clockwise) is replaced by the world coordinates of the ``K``
    body-frame ``points``, ``p_world = (x, y) + R(θ) p_body``; the other dimensions come first, in
    their order, then ``x0, y0, x1, y1, ...``."""
    x = np.asarray(x)
    dims = list(pose_dims)
    pts = np.asarray(points, dtype=np.float64)
    keypoint_encoded_dim(x.shape[-1], dims, len(pts))
    keep = [d for d in range(x.shape[-1]) if d not in set(dims)]
    px, py, th = (x[..., d].astype(np.float64)[..., None] for d in dims)
    c, s = np.cos(th), np.sin(th)
    wx = px + c * pts[:, 0] - s * pts[:, 1]
    wy = py + s * pts[:, 0] + c * pts[:, 1]
    world = np.stack([wx, wy], axis=-1).reshape(*x.shape[:-1], 2 * len(pts))
    out = np.concatenate([x[..., keep].astype(np.float64), world], axis=-1)
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)


class LowdimFeatures:
    """Every low-dim encoding of one dataset config, by key: angles as ``(cos, sin)``
    (``angle_dims``) or a planar pose as keypoints (``pose_keypoints``); one encoding per key.
    Training and the runtime both go through :meth:`encode`."""

    def __init__(self, angle_dims: Mapping[str, Sequence[int]] | None = None,
                 pose_keypoints: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.angle_dims = check_angle_dims(angle_dims)
        self.pose_keypoints = check_pose_keypoints(pose_keypoints)
        both = sorted(set(self.angle_dims) & set(self.pose_keypoints))
        if both:
            raise ValueError(f"keys {both} are in both angle_dims and pose_keypoints; a key takes one encoding "
                             "(keypoints already make the pose's angle continuous)")

    @property
    def keys(self) -> list[str]:
        return sorted({*self.angle_dims, *self.pose_keypoints})

    def encoded_dim(self, key: str, raw_dim: int) -> int:
        """Model input size of ``key`` from its stored size (errors if a listed dimension is out of range)."""
        if key in self.pose_keypoints:
            spec = self.pose_keypoints[key]
            return keypoint_encoded_dim(raw_dim, spec["pose_dims"], len(spec["points"]))
        return encoded_dim(raw_dim, self.angle_dims.get(key, []))

    def raw_dim(self, key: str, model_dim: int) -> int:
        """Stored size of ``key`` from its model input size (inverse of :meth:`encoded_dim`)."""
        if key in self.pose_keypoints:
            return model_dim + 3 - 2 * len(self.pose_keypoints[key]["points"])
        return model_dim - len(self.angle_dims.get(key, []))

    def encode(self, key: str, x: Any) -> Any:
        """Raw ``(..., D)`` values of ``key`` -> model features ``(..., encoded_dim)`` (unchanged if
        the key has no encoding)."""
        if key in self.pose_keypoints:
            spec = self.pose_keypoints[key]
            return encode_pose_keypoints(x, spec["pose_dims"], spec["points"])
        if key in self.angle_dims:
            return encode_angles(x, self.angle_dims[key])
        return x
