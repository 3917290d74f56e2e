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
