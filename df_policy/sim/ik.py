"""Damped least-squares inverse kinematics for the arm, on MuJoCo's site Jacobian.

Contract: :meth:`ArmIK.solve` finds arm joint positions (rad, in ``joints`` order) that put a
site at a world position (m) and, optionally, a world orientation, starting from a seed
configuration and respecting the joint limits. It uses its own ``MjData``, so it never
touches the simulation state. Orientation errors are weighted by ``rot_weight_m_per_rad``
(metres of position error worth one radian), so a 5-joint arm that cannot reach a full pose
trades the two sensibly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

__all__ = ["ArmIK", "IKConfig", "IKResult", "top_down_rotation"]


@dataclass(frozen=True)
class IKConfig:
    """Solver settings.

    Attributes:
        max_iterations: Gauss-Newton iterations per solve, >= 1.
        damping: Levenberg-Marquardt damping added to ``J Jᵀ`` (m²), > 0.
        rot_weight_m_per_rad: metres of position error equivalent to one radian, > 0.
        max_step_rad: largest joint change per iteration (rad), > 0.
        tol_m: stop when the weighted error norm is below this (m), > 0.
    """

    max_iterations: int = 40
    damping: float = 1e-4
    rot_weight_m_per_rad: float = 0.05
    max_step_rad: float = 0.25
    tol_m: float = 2e-4

    def __post_init__(self) -> None:
        if not (isinstance(self.max_iterations, int) and self.max_iterations >= 1):
            raise ValueError(f"max_iterations must be an int >= 1, got {self.max_iterations!r}")
        for attr in ("damping", "rot_weight_m_per_rad", "max_step_rad", "tol_m"):
            v = getattr(self, attr)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{attr} must be > 0, got {v!r}")


@dataclass(frozen=True)
class IKResult:
    """Attributes: ``q`` joint positions (rad); ``pos_error_m`` remaining position error (m);
    ``rot_error_rad`` remaining orientation error (rad, 0 when no orientation was asked)."""

    q: np.ndarray
    pos_error_m: float
    rot_error_rad: float


def top_down_rotation(jaw_direction: object) -> np.ndarray:
    """World rotation of the ``grasp`` site for a vertical top-down grasp: site ``x`` (approach)
    points down, site ``z`` (jaw axis) along the horizontal part of ``jaw_direction``."""
    jaw = np.asarray(jaw_direction, dtype=np.float64).copy()
    jaw[2] = 0.0
    norm = np.linalg.norm(jaw)
    if norm < 1e-9:
        raise ValueError(f"jaw_direction {jaw_direction!r} has no horizontal component")
    z = jaw / norm
    x = np.array([0.0, 0.0, -1.0])
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vector taking ``current`` to ``target`` (both 3x3)."""
    delta = target @ current.T
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, delta.reshape(-1))
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class ArmIK:
    """IK for ``site`` over the hinge ``joints`` of ``model`` (see the module docstring)."""

    def __init__(
        self, model: mujoco.MjModel, site: str, joints: tuple[str, ...], config: IKConfig | None = None
    ) -> None:
        self.model = model
        self.config = config or IKConfig()
        self._data = mujoco.MjData(model)
        self._site = model.site(site).id
        ids = [model.joint(j).id for j in joints]
        self._qadr = np.array([model.jnt_qposadr[i] for i in ids])
        self._dadr = np.array([model.jnt_dofadr[i] for i in ids])
        self.lower = model.jnt_range[ids, 0].copy()
        self.upper = model.jnt_range[ids, 1].copy()
        self._jp = np.zeros((3, model.nv))
        self._jr = np.zeros((3, model.nv))

    def forward(self, q: object) -> tuple[np.ndarray, np.ndarray]:
        """Site position (m) and rotation (3x3) in the world for joint positions ``q``."""
        d = self._data
        d.qpos[self._qadr] = np.asarray(q, dtype=np.float64)
        mujoco.mj_kinematics(self.model, d)
        return d.site_xpos[self._site].copy(), d.site_xmat[self._site].reshape(3, 3).copy()

    def solve(self, seed: object, target_pos: object, target_rot: np.ndarray | None = None) -> IKResult:
        """Joint positions reaching ``target_pos`` (and ``target_rot`` if given) from ``seed``."""
        cfg = self.config
        q = np.clip(np.asarray(seed, dtype=np.float64), self.lower, self.upper)
        pos_t = np.asarray(target_pos, dtype=np.float64)
        w = cfg.rot_weight_m_per_rad
        d, m = self._data, self.model
        err_p = np.zeros(3)
        err_r = np.zeros(3)
        for _ in range(cfg.max_iterations):
            d.qpos[self._qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err_p = pos_t - d.site_xpos[self._site]
            mujoco.mj_jacSite(m, d, self._jp, self._jr, self._site)
            if target_rot is None:
                err, jac = err_p, self._jp[:, self._dadr]
            else:
                err_r = _rotation_error(target_rot, d.site_xmat[self._site].reshape(3, 3))
                err = np.concatenate([err_p, w * err_r])
                jac = np.vstack([self._jp[:, self._dadr], w * self._jr[:, self._dadr]])
            if np.linalg.norm(err) < cfg.tol_m:
                break
            dq = jac.T @ np.linalg.solve(jac @ jac.T + cfg.damping * np.eye(jac.shape[0]), err)
            biggest = np.max(np.abs(dq))
            if biggest > cfg.max_step_rad:
                dq *= cfg.max_step_rad / biggest
            q = np.clip(q + dq, self.lower, self.upper)
        pos, rot = self.forward(q)
        rot_err = 0.0 if target_rot is None else float(np.linalg.norm(_rotation_error(target_rot, rot)))
        return IKResult(q, float(np.linalg.norm(pos_t - pos)), rot_err)
