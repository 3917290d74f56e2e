"""Named variants of the simulated arm's task (importing this module does not import mujoco)."""

from __future__ import annotations

from typing import Any

__all__ = ["DEMO_TASK_KWARGS", "demo_task_config"]

DEMO_TASK_KWARGS: dict[str, Any] = {
    "image_size": (64, 64),
    "cube_x_range_m": (0.16, 0.24),
    "cube_y_range_m": (0.0, 0.10),
    "cube_yaw_range_rad": (0.0, 0.0),
    "target_x_range_m": (0.20, 0.20),
    "target_y_range_m": (-0.08, -0.08),
    "min_cube_target_distance_m": 0.0,
}
"""The demo's task (``dfp demo``, the simulated-arm ROS node's ``task: demo``), a narrower variant
of the default :class:`~df_policy.sim.arm_env.SimArmConfig`: the cube (upright, no yaw) starts
anywhere in an 8 x 10 cm area and must be carried to a fixed green square 8 to 20 cm away;
64 x 64 images. The policy must find the cube in the image; a CPU trains that in minutes, which
the default task (random yaw, random target) does not allow."""


def demo_task_config(**overrides: Any) -> Any:
    """The :class:`~df_policy.sim.arm_env.SimArmConfig` of the demo task (``overrides`` replace fields)."""
    from df_policy.sim.arm_env import SimArmConfig

    return SimArmConfig(**{**DEMO_TASK_KWARGS, **overrides})
