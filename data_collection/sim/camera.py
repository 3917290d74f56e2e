"""``SimArmCamera``: the :class:`~data_collection.cameras.base.Camera` interface over one
camera of a :class:`~df_policy.sim.arm_env.SimArmEnv`.

Contracts (in addition to :mod:`data_collection.cameras.base`)
---------------------------------------------------------------
* One frame per simulation state: :meth:`read` renders the env's current state if it has not
  been delivered yet, else waits (up to ``timeout_s``) for the simulation to step, then raises
  :class:`~data_collection.cameras.base.CameraTimeoutError`. ``Frame.frame_number`` is
  :attr:`SimArmEnv.state_index`; a gap means states were stepped but never read (dropped).
* ``Frame.timestamp_s`` is :attr:`SimArmEnv.state_stamp_s` (host monotonic time at which the
  state was computed), the stamp :class:`~data_collection.sim.robot.SimArmRobot` puts on the
  joint state of the same instant. There is no device clock (``hw_timestamp_ms`` is ``None``).
* ``config.fps`` must equal the env's ``control_hz`` (one state per control period).
  ``config.width`` x ``config.height`` may be any size up to ``SceneConfig.max_render_size``.
  Depth, exposure and white balance are not simulated: asking for them is an error.
* Intrinsics: an ideal pinhole from MuJoCo's vertical field of view ``fovy``:
  ``fy = fx = (height / 2) / tan(fovy / 2)`` (square pixels), ``cx = (width - 1) / 2``,
  ``cy = (height - 1) / 2`` (pixel centres at integer coordinates), no distortion.
  :meth:`SimArmEnv.camera_pose` gives the matching extrinsics.
"""

from __future__ import annotations

import math

from data_collection.cameras.base import (
    Camera,
    CameraConfig,
    CameraConfigError,
    CameraIntrinsics,
    CameraTimeoutError,
    Frame,
    UnsupportedModeError,
)

from df_policy.sim.arm_env import SimArmEnv

__all__ = ["SimArmCamera", "intrinsics_from_fovy"]


def intrinsics_from_fovy(width: int, height: int, fovy_deg: float) -> CameraIntrinsics:
    """Pinhole intrinsics of a MuJoCo camera with vertical field of view ``fovy_deg`` rendering
    ``width`` x ``height`` pixels (see the module docstring)."""
    if not 0.0 < fovy_deg < 180.0:
        raise CameraConfigError(f"fovy_deg must be in (0, 180), got {fovy_deg}")
    f = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


class SimArmCamera(Camera):
    """Camera adapter; ``mj_camera`` is the MuJoCo camera name (default: ``config.name``)."""

    def __init__(self, env: SimArmEnv, config: CameraConfig, mj_camera: str | None = None) -> None:
        super().__init__(config)
        if not isinstance(env, SimArmEnv):
            raise CameraConfigError(f"{config.name}: expected a SimArmEnv, got {type(env).__name__}")
        self.env = env
        self.mj_camera = mj_camera or config.name
        if self.mj_camera not in env.camera_names:
            raise CameraConfigError(
                f"{config.name}: the simulation has no camera {self.mj_camera!r}; cameras are {list(env.camera_names)}"
            )
        if config.enable_depth:
            raise UnsupportedModeError(f"{config.name}: the simulated camera renders colour only (enable_depth=False)")
        if config.exposure is not None or config.white_balance is not None:
            raise UnsupportedModeError(f"{config.name}: exposure / white balance are not simulated; leave them None")
        limit = env.config.scene.max_render_size
        if config.width > limit or config.height > limit:
            raise UnsupportedModeError(
                f"{config.name}: {config.width}x{config.height} exceeds SceneConfig.max_render_size={limit}"
            )
        if not math.isclose(config.fps, env.config.control_hz, rel_tol=1e-6):
            raise UnsupportedModeError(
                f"{config.name}: fps={config.fps:g} but the simulation makes {env.config.control_hz:g} states per "
                "second (SimArmConfig.control_hz); use that rate"
            )
        self._last_index = -1

    def _open(self) -> None:
        self._last_index = -1

    def _close(self) -> None:
        pass

    def _device_intrinsics(self) -> CameraIntrinsics:
        return intrinsics_from_fovy(self.config.width, self.config.height, self.env.camera_fovy_deg(self.mj_camera))

    def _read(self, timeout_s: float) -> Frame:
        env = self.env
        if not env.wait_for_state(self._last_index, timeout_s):
            raise CameraTimeoutError(
                f"{self.name}: no new simulation state within {timeout_s:g} s (the sim steps on robot commands "
                "in lockstep mode; send a command first)"
            )
        with env.lock:  # render and stamp the same state
            index = env.state_index
            color = env.render(self.mj_camera, self.config.width, self.config.height)
            stamp = env.state_stamp_s
        self._last_index = index
        return Frame(color=color, timestamp_s=stamp, frame_number=index, camera=self.name)
