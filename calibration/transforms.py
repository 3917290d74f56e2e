"""Rigid transforms (SE(3)) as 4x4 homogeneous matrices.

Naming convention used throughout ``calibration``: ``T_a_b`` is the pose of
frame ``b`` expressed in frame ``a``; it maps points from ``b`` to ``a``
(``p_a = T_a_b @ p_b``). Translations are in metres, angles in radians unless
a name says otherwise (``_deg``, ``_mm``).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "as_transform",
    "invert",
    "make_transform",
    "rotation_angle_rad",
    "rvec_tvec_to_transform",
    "transform_to_rvec_tvec",
    "transform_to_xyz_quat",
    "xyz_quat_to_transform",
]

_ORTHO_TOL = 1e-4


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation ``R`` and a translation ``t`` (metres)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def as_transform(value: Any, name: str = "T", tol: float = _ORTHO_TOL) -> np.ndarray:
    """Validate ``value`` as a rigid 4x4 transform and return it as float64.

    Raises ``ValueError`` naming ``name`` if the shape is wrong, entries are not
    finite, the last row is not ``[0, 0, 0, 1]`` or the rotation block is not a
    proper rotation (orthonormal, det +1) within ``tol``.
    """
    try:
        T = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not a numeric 4x4 matrix ({exc})") from None
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name}: contains non-finite values")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho_err = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho_err > tol or np.linalg.det(R) <= 0:
        raise ValueError(
            f"{name}: rotation block is not a proper rotation matrix "
            f"(|R^T R - I|max = {ortho_err:.2e}, det = {np.linalg.det(R):.4f})"
        )
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform: ``invert(T_a_b) == T_b_a``."""
    T = np.asarray(T, dtype=np.float64)
    R = T[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def rvec_tvec_to_transform(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """OpenCV Rodrigues ``rvec`` (rad) and ``tvec`` (m) -> 4x4 transform."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return make_transform(R, np.asarray(tvec, dtype=np.float64).reshape(3))


def transform_to_rvec_tvec(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 transform -> (rvec (3,1) rad, tvec (3,1) m) in OpenCV layout."""
    T = np.asarray(T, dtype=np.float64)
    rvec, _ = cv2.Rodrigues(T[:3, :3])
    return rvec.reshape(3, 1), T[:3, 3].reshape(3, 1).copy()


def xyz_quat_to_transform(xyz: Any, quat_xyzw: Any) -> np.ndarray:
    """Translation (m) and unit quaternion (x, y, z, w; ROS order) -> 4x4 transform."""
    q = np.asarray(quat_xyzw, dtype=np.float64).reshape(-1)
    p = np.asarray(xyz, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or p.shape != (3,):
        raise ValueError(f"expected xyz of length 3 and quaternion of length 4, got {p.shape}, {q.shape}")
    n = np.linalg.norm(q)
    if not np.isfinite(n) or abs(n - 1.0) > 1e-3:
        raise ValueError(f"quaternion {q.tolist()} is not unit length (norm {n:.6f})")
    return make_transform(Rotation.from_quat(q / n).as_matrix(), p)


def transform_to_xyz_quat(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 transform -> (xyz (3,) m, quaternion (4,) x, y, z, w)."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), Rotation.from_matrix(T[:3, :3]).as_quat()


def rotation_angle_rad(R: np.ndarray) -> float:
    """Rotation angle (rad, in [0, pi]) of a 3x3 rotation matrix."""
    return float(Rotation.from_matrix(np.asarray(R, dtype=np.float64)).magnitude())
