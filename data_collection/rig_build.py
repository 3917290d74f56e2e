"""From a validated :class:`~data_collection.rig.Rig` to live devices: ``build(rig)``.

:func:`build` creates the robot, cameras, teleop device and recorder config, **not yet
connected/started** (``Recorder.run`` connects and starts them); hardware backends are imported
only when a rig uses them. ``gamepad`` / ``spacemouse`` come from
``data_collection.teleop.<device>.build_teleop(settings, robot)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

from data_collection.cameras.base import (
    Camera,
    CameraConfigError,
    UnsupportedModeError,
)
from data_collection.rig import Rig
from data_collection.rig_fields import RigConfigError, _translate
from data_collection.rig_sections import CameraSpec, Ros2RobotSpec, SimulatedRobotSpec, TeleopSpec
from data_collection.robots.base import Robot
from data_collection.teleop.base import TeleopDevice, TeleopError

__all__ = ["BuiltRig", "build"]


@dataclass
class BuiltRig:
    """What :func:`build` made; unpacks as ``robot, cameras, teleop, recorder_config``.

    Attributes:
        robot, cameras, teleop: not yet connected / started (``Recorder.run`` does that).
        recorder_config: the :class:`~data_collection.recorder.RecorderConfig`.
        on_episode_start: hook for ``Recorder(on_episode_start=...)``; resets the sim arm's
            scene (``None`` for hardware).
        env: the :class:`~df_policy.sim.SimArmEnv` of a ``sim_arm`` rig, else ``None``.
    """

    robot: Robot
    cameras: list[Camera]
    teleop: TeleopDevice
    recorder_config: Any
    on_episode_start: Callable[[int], str | None] | None = None
    env: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.robot, self.cameras, self.teleop, self.recorder_config))

    def close(self) -> None:
        """Release what the rig holds outside the robot/camera lifecycle (the sim's renderer)."""
        if self.env is not None:
            self.env.close()
            self.env = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(rig: Rig, store_path: str | os.PathLike | None = None) -> BuiltRig:
    """Create the robot, cameras, teleop device and recorder config of ``rig`` (see the module
    docstring). ``store_path`` overrides ``recorder.store_path``; one of them is required."""
    try:
        return _build(rig, store_path)
    except RigConfigError as e:
        raise (e.in_file(rig.source) if rig.source and not e.source else e) from None


def _build(rig: Rig, store_path: str | os.PathLike | None) -> BuiltRig:
    path = store_path if store_path is not None else rig.recorder.store_path
    if path is None:
        raise RigConfigError("no episode store given: pass --out STORE or set recorder.store_path", "recorder")
    recorder_config = rig.recorder.to_config(path, scripted=rig.teleop.device == "scripted")
    env = None
    try:
        robot, env = _build_robot(rig)
        cameras = [_build_camera(c, f"cameras[{i}]", rig, env) for i, c in enumerate(rig.cameras)]
        teleop = _build_teleop(rig.teleop, robot, env)
    except BaseException:
        if env is not None:
            env.close()
        raise
    hook = None
    if env is not None:
        seed = rig.robot.seed

        def hook(i: int) -> str:
            env.reset(seed + i)
            return f"seed={seed + i}"

    return BuiltRig(robot, cameras, teleop, recorder_config, hook, env)


def _build_robot(rig: Rig) -> tuple[Robot, Any]:
    spec = rig.robot
    if isinstance(spec, Ros2RobotSpec):
        from data_collection.robots.ros2_robot import Ros2Robot

        return Ros2Robot(spec.to_config(rig.recorder.fps)), None
    if isinstance(spec, SimulatedRobotSpec):
        from data_collection.robots.simulated import SimulatedRobot

        return SimulatedRobot(spec.to_config()), None
    from df_policy.sim.gl import select_gl_backend

    select_gl_backend()  # before anything imports mujoco
    from data_collection.sim import SimArmRobot, SimArmRobotConfig
    from df_policy.sim import DEFAULT_CAMERAS, WRIST_CAMERA, SceneConfig, SimArmConfig, SimArmEnv

    wanted = {c.mj_camera or c.name for c in rig.cameras if c.type == "sim_arm"}
    cams = DEFAULT_CAMERAS + ((WRIST_CAMERA,) if WRIST_CAMERA.name in wanted else ())
    settings: dict[str, Any] = {"control_hz": rig.sim_control_hz, "scene": SceneConfig(cameras=cams)}
    if spec.episode_time_s is not None:
        settings["episode_time_s"] = spec.episode_time_s
    try:
        config = SimArmConfig(**settings)
    except ValueError as e:
        raise _translate(e, ("control_hz", "episode_time_s"), "robot") from None
    env = SimArmEnv(config)
    try:
        return SimArmRobot(env, SimArmRobotConfig(name=spec.name, mode=spec.mode)), env
    except BaseException:
        env.close()
        raise


def _build_camera(spec: CameraSpec, key: str, rig: Rig, env: Any) -> Camera:
    try:
        if spec.type == "sim_arm":
            from data_collection.sim import SimArmCamera

            config = spec.camera_config(env.config.image_size, env.config.control_hz)
            return SimArmCamera(env, config, mj_camera=spec.mj_camera)
        config = spec.camera_config()
        if spec.type == "realsense":
            from data_collection.cameras.realsense import RealSenseCamera

            return RealSenseCamera(config, playback_file=spec.playback_file)
        if spec.type == "opencv":
            from data_collection.cameras.opencv_camera import OpenCVCamera

            return OpenCVCamera(config, spec.path if spec.path is not None else spec.device, fourcc=spec.fourcc)
        from data_collection.cameras.simulated import SimulatedCamera

        return SimulatedCamera(
            config,
            realtime=spec.realtime,
            drop_frames=spec.drop_frames,
            drop_probability=spec.drop_probability,
            seed=spec.seed,
            hfov_deg=spec.hfov_deg,
        )
    except RigConfigError as e:
        raise e.under(key) from None
    except (CameraConfigError, UnsupportedModeError, ValueError) as e:  # e.g. a sim camera larger than allowed
        raise RigConfigError(str(e), key) from None


def _stdin_fd() -> int:
    """The file descriptor of standard input (0 when ``sys.stdin`` was replaced by an object without one)."""
    import io
    import sys

    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return 0


def _build_teleop(spec: TeleopSpec, robot: Robot, env: Any) -> TeleopDevice:
    from data_collection.teleop.keyboard import KeyboardTeleop

    if spec.device == "keyboard":
        return KeyboardTeleop(fd=_stdin_fd())
    device: TeleopDevice
    if spec.device == "scripted":
        from data_collection.teleop.scripted import ScriptedTeleop

        device = ScriptedTeleop(env, spec.scripted_config())
    else:
        device = _external_teleop(spec.device, dict(spec.settings), robot)
    return KeyboardTeleop(inner=device, fd=_stdin_fd()) if spec.with_keyboard else device


def _external_teleop(device: str, settings: dict[str, Any], robot: Robot) -> TeleopDevice:
    module_name = f"data_collection.teleop.{device}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise RigConfigError(
                f"{device!r} needs the module {module_name}, which is not in this installation", "teleop.device"
            ) from None
        raise RigConfigError(f"{device!r}: importing {module_name} failed: {e}", "teleop.device") from None
    factory = getattr(module, "build_teleop", None)
    if not callable(factory):
        raise RigConfigError(f"{module_name} has no build_teleop(settings, robot)", "teleop.device")
    try:
        teleop = factory(settings, robot)
    except RigConfigError as e:
        raise e.under("teleop") from None
    except (KeyError, ValueError) as e:  # the device module's verdict on its settings
        raise RigConfigError(str(e), "teleop.settings") from None
    if not isinstance(teleop, TeleopDevice):
        raise TeleopError(f"{module_name}.build_teleop returned {type(teleop).__name__}, not a TeleopDevice")
    return teleop
