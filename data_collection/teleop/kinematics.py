"""Kinematics for Cartesian teleoperation: joint positions <-> tool pose.

Conventions
-----------
* Poses are in the robot's **world frame** (for the simulated arm: MuJoCo's world, ``x``
  forward from the arm base, ``y`` to the left, ``z`` up, origin on the table). Positions in
  metres; orientations as ``3x3`` rotation matrices whose columns are the tool axes expressed
  in the world frame (``world_from_tool``).
* Joint vectors cover :attr:`Kinematics.joint_names` only (a subset of the robot's joints,
  e.g. the arm without its gripper), in that order, radians (or metres for prismatic joints).

:class:`SimArmKinematics` is the implementation for the simulated SO-101 arm
(:class:`~df_policy.sim.arm_env.SimArmEnv`): the ``grasp`` tool point over the five arm
joints, solved with :class:`~df_policy.sim.ik.ArmIK` (damped least squares, its own
``MjData``, never touching the simulation state). ``mujoco`` is imported only when one is
built. Note that the SO-101 has 5 arm joints: it cannot reach every orientation at every
position (the tool's heading about the vertical follows the shoulder pan), so
:meth:`SimArmKinematics.inverse` returns the best compromise (position errors weigh
``IKConfig.rot_weight_m_per_rad`` metres per radian of orientation error).

:func:`kinematics_for_robot` finds the kinematics of a :class:`~data_collection.robots.base.Robot`:
its ``kinematics`` attribute if it is a :class:`Kinematics`, else a :class:`SimArmKinematics`
for a robot with a ``SimArmEnv`` as ``env`` (:class:`~data_collection.sim.robot.SimArmRobot`),
else ``None``.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

import numpy as np

from .base import TeleopError

__all__ = ["Kinematics", "SimArmKinematics", "kinematics_for_robot"]


class Kinematics(abc.ABC):
    """Forward / inverse kinematics of one tool point (see the module docstring).

    Attributes:
        joint_names: the joints ``q`` covers, in order (must be joints of the robot).
    """

    joint_names: tuple[str, ...]

    @abc.abstractmethod
    def forward(self, q: Any) -> tuple[np.ndarray, np.ndarray]:
        """Tool pose for joint positions ``q`` ``(n,)``: ``(pos (3,) m, rot (3, 3))``, world frame."""

    @abc.abstractmethod
    def inverse(self, pos: Any, rot: np.ndarray | None, seed_q: Any) -> np.ndarray:
        """Joint positions ``(n,)`` that put the tool at ``pos`` (m) and, unless ``rot`` is
        ``None``, orientation ``rot`` (3x3), starting from ``seed_q`` (the closest solution
        to it is preferred) and within the joint limits. When the pose cannot be reached the
        best compromise is returned (callers check with :meth:`forward`)."""


class SimArmKinematics(Kinematics):
    """Kinematics of the simulated SO-101 ``env`` (a :class:`SimArmEnv`) for ``site`` (default:
    the ``grasp`` tool point reported as ``ee_pos``) over ``joints`` (default: the 5 arm
    joints). ``ik_config``: :class:`~df_policy.sim.ik.IKConfig`. Thread-safe."""

    def __init__(self, env: Any, site: str = "grasp", joints: tuple[str, ...] | None = None, ik_config: Any = None):
        from df_policy.sim.arm_env import SimArmEnv  # lazy: imports mujoco
        from df_policy.sim.assets import SO101_ARM_JOINTS
        from df_policy.sim.ik import ArmIK

        if not isinstance(env, SimArmEnv):
            raise TeleopError(f"SimArmKinematics needs a SimArmEnv, got {type(env).__name__}")
        self.joint_names = tuple(joints) if joints is not None else tuple(SO101_ARM_JOINTS)
        unknown = [j for j in self.joint_names if j not in env.joint_names]
        if unknown:
            raise TeleopError(f"SimArmKinematics: joints {unknown} are not joints of the arm {list(env.joint_names)}")
        try:
            self._ik = ArmIK(env.model, site, self.joint_names, ik_config)
        except KeyError as exc:
            raise TeleopError(f"SimArmKinematics: no site {site!r} in the model") from exc
        self._lock = threading.Lock()  # ArmIK's MjData is shared by forward and inverse

    @property
    def lower(self) -> np.ndarray:
        return self._ik.lower.copy()

    @property
    def upper(self) -> np.ndarray:
        return self._ik.upper.copy()

    def forward(self, q: Any) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.joint_names),):
            raise TeleopError(f"SimArmKinematics.forward: q must have shape ({len(self.joint_names)},), got {q.shape}")
        with self._lock:
            return self._ik.forward(q)

    def inverse(self, pos: Any, rot: np.ndarray | None, seed_q: Any) -> np.ndarray:
        seed = np.asarray(seed_q, dtype=np.float64)
        if seed.shape != (len(self.joint_names),):
            raise TeleopError(
                f"SimArmKinematics.inverse: seed_q must have shape ({len(self.joint_names)},), got {seed.shape}"
            )
        with self._lock:
            return self._ik.solve(seed, np.asarray(pos, dtype=np.float64), rot).q.copy()


def kinematics_for_robot(robot: Any) -> Kinematics | None:
    """The kinematics to use for ``robot`` (see the module docstring), or ``None``."""
    kin = getattr(robot, "kinematics", None)
    if isinstance(kin, Kinematics):
        return kin
    env = getattr(robot, "env", None)
    if env is None:
        return None
    from df_policy.sim.arm_env import (
        SimArmEnv,  # lazy: imports mujoco; only for robots with an env
    )

    if isinstance(env, SimArmEnv):
        return SimArmKinematics(env)
    return None
