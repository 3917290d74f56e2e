"""The simulated SO-101 arm (:mod:`df_policy.sim`) behind the recorder's hardware interfaces:
:class:`SimArmRobot` (:class:`~data_collection.robots.base.Robot`) and :class:`SimArmCamera`
(:class:`~data_collection.cameras.base.Camera`), and :func:`record_sim`, which records with them.
Imported lazily (they import mujoco)."""

import importlib

_EXPORTS = {
    "SimArmCamera": "camera", "intrinsics_from_fovy": "camera",
    "SIM_ROBOT_MODES": "robot", "SimArmRobot": "robot", "SimArmRobotConfig": "robot", "sim_arm_limits": "robot",
    "SIM_ARM_TASK": "record", "record_sim": "record",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
