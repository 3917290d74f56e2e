"""Recording on the simulated SO-101 arm: :func:`record_sim` wires :class:`SimArmEnv`, the
lock-step :class:`~data_collection.sim.robot.SimArmRobot`, its scene camera and the scripted
teleop into a :class:`~data_collection.recorder.Recorder` (``dfp record --sim arm``, ``dfp demo``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_collection.recorder import Recorder, RecorderConfig
from data_collection.robots.base import Robot

SIM_ARM_TASK = "pick the cube and place it on the green square"
"""The task description stored in the simulated episodes' metadata by default."""


def record_sim(
    store_path: str | Path,
    episodes: int,
    seed: int = 0,
    *,
    teleop_config: Any = None,
    log: Callable[[str], None] | None = None,
    status: bool = False,
    flush_every: int = 10,
    robot_factory: Callable[[Any], Robot] | None = None,
    task: str | None = None,
    env_config: Any = None,
) -> dict[str, Any]:
    """Record ``episodes`` sim-arm episodes with the scripted teleop; returns the summary.

    Builds ``SimArmEnv`` + ``SimArmRobot`` (lockstep, unpaced) + ``SimArmCamera("scene")`` +
    :class:`~data_collection.teleop.scripted.ScriptedTeleop`; episode ``i`` of this call uses
    seed ``seed + i`` (stored in the notes as ``seed=N``). ``robot_factory(env)`` may replace
    the robot (tests wrap it to observe commands). ``task``: stored in the episodes' metadata
    (default: the pick-and-place description). ``env_config``: the
    :class:`~df_policy.sim.arm_env.SimArmConfig` (task variant, image size; ``None`` =
    the default task).
    """
    from df_policy.sim.gl import select_gl_backend

    select_gl_backend()
    from data_collection.cameras.base import CameraConfig
    from data_collection.sim import SimArmCamera, SimArmRobot, SimArmRobotConfig
    from data_collection.teleop.scripted import ScriptedTeleop
    from df_policy.sim import SimArmEnv

    env = SimArmEnv(env_config)
    try:
        robot = robot_factory(env) if robot_factory else SimArmRobot(env, SimArmRobotConfig(mode="lockstep"))
        w, h = env.config.image_size
        cam = SimArmCamera(env, CameraConfig(name="scene", width=w, height=h, fps=env.config.control_hz))
        teleop = ScriptedTeleop(env, teleop_config)

        def start(i: int) -> str:
            env.reset(seed + i)
            return f"seed={seed + i}"

        config = RecorderConfig(
            store_path=Path(store_path),
            fps=env.config.control_hz,
            max_episode_s=env.config.episode_time_s + 1.0,  # the teleop saves at the env limit
            episodes=episodes,
            task=SIM_ARM_TASK if task is None else task,
            realtime=False,
            flush_every=flush_every,
            robot_model="so101_sim",
            status=status,
            wait_for_start=False,  # the scripted expert never presses start
        )
        return Recorder(config, robot, [cam], teleop, on_episode_start=start, log=log).run()
    finally:
        env.close()
