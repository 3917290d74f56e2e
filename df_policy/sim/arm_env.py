"""``SimArmEnv``: the SO-101 arm in MuJoCo with a pick-and-place task (cube -> green square).

Task
----
A cube (``cube_half_size_m`` = 15 mm by default) starts at a random position and yaw on the
table; a green target square starts at another random position at least
``min_cube_target_distance_m`` away. The episode succeeds when the cube rests on the table
with its centre inside the target square and the arm is not touching it (released).
Episodes end at ``episode_time_s`` (``truncated``); success does not end them.

Action (the same for the scripted expert, the recorder and the policy)
----------------------------------------------------------------------
``float (6,)`` **joint position targets**, radians, in :attr:`SimArmEnv.joint_names` order
``shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper``. ``gripper`` is
the moving jaw's hinge angle: ``-0.17`` closed, larger = more open (``1.0`` ≈ 75 mm between
the pads). Targets outside ``[SimArmEnv.lower, SimArmEnv.upper]`` are clipped (the robot
adapter rejects them instead, like hardware). Each target is held by the arm's position
servos for one control period (``1 / control_hz`` s = ``SimArmConfig.substeps`` physics
steps).

Observation (:meth:`SimArmEnv.observation`)
-------------------------------------------
``joint_pos`` float32 (6,) rad and ``joint_vel`` float32 (6,) rad/s (measured, same order);
``ee_pos`` float32 (3,) m and ``ee_quat`` float32 (4,) ``(w, x, y, z)``: the ``grasp`` tool
point in the world frame (see :mod:`.scene`); one ``uint8 (H, W, 3)`` RGB image per camera,
keyed by camera name. :meth:`SimArmEnv.task_state` has the privileged cube / target poses
(for the expert and for evaluation, not for policies).

Time: ``time_s`` is simulated seconds since reset. Every reset and step makes a new state,
numbered by :attr:`SimArmEnv.state_index` (strictly increasing over the env's life) and
stamped with :attr:`SimArmEnv.state_stamp_s`, the host :func:`time.monotonic` time at which it
was computed; the robot and camera adapters report those, so a recorder matches a frame and
a joint state of the same simulated instant by timestamp. Deterministic: the same seed and
actions give the same states (MuJoCo is deterministic on one machine).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from .assets import SO101_JOINTS
from .scene import SceneConfig, build_scene

__all__ = ["DEFAULT_HOME", "LOWDIM_KEYS", "SimArmConfig", "SimArmEnv", "SimRenderError", "StepResult", "TaskState"]

DEFAULT_HOME: tuple[float, ...] = (0.0, -0.9, 0.95, 1.25, 1.57, 0.0)
LOWDIM_KEYS: tuple[str, ...] = ("joint_pos", "joint_vel", "ee_pos", "ee_quat")


class SimRenderError(RuntimeError):
    """Rendering failed (no usable OpenGL backend, or used after ``close``)."""


def _range(value: Any, what: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{what} must be (low, high) with low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class SimArmConfig:
    """Settings of :class:`SimArmEnv` (metres, radians, seconds, Hz).

    Attributes:
        scene: table, cube, target, cameras, physics step, rendering (see :class:`SceneConfig`).
        control_hz: control (= recording) rate; ``1 / control_hz`` must be a whole number of
            ``scene.physics_dt_s`` steps.
        episode_time_s: episode length; :meth:`SimArmEnv.step` reports ``truncated`` after it.
        image_size: ``(width, height)`` of observation images, pixels.
        cube_x_range_m, cube_y_range_m: where the cube centre is drawn (uniform, world frame).
        target_x_range_m, target_y_range_m: where the target centre is drawn.
        min_cube_target_distance_m: the target is redrawn until it is this far from the cube.
        cube_yaw_range_rad: cube yaw drawn uniformly from this range.
        home_joint_pos: arm configuration at reset, rad, ``(6,)``.
        initial_joint_noise_rad: uniform noise added to ``home_joint_pos`` at reset (arm joints).
        velocity_max_rad_s: joint speed limit reported in :attr:`SimArmEnv.limits` (the
            STS3215 servo's no-load speed is ~5 rad/s); the simulation itself is limited by the
            servos' torque.
        success_tolerance_m: how far outside the target square the cube centre may be.
    """

    scene: SceneConfig = field(default_factory=SceneConfig)
    control_hz: float = 10.0
    episode_time_s: float = 10.0
    image_size: tuple[int, int] = (96, 96)
    cube_x_range_m: tuple[float, float] = (0.15, 0.24)
    cube_y_range_m: tuple[float, float] = (-0.10, 0.10)
    target_x_range_m: tuple[float, float] = (0.15, 0.24)
    target_y_range_m: tuple[float, float] = (-0.10, 0.10)
    min_cube_target_distance_m: float = 0.08
    cube_yaw_range_rad: tuple[float, float] = (-math.pi / 4, math.pi / 4)
    home_joint_pos: tuple[float, ...] = DEFAULT_HOME
    initial_joint_noise_rad: float = 0.03
    velocity_max_rad_s: float = 5.0
    success_tolerance_m: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.scene, SceneConfig):
            raise ValueError(f"scene must be a SceneConfig, got {type(self.scene).__name__}")
        if not (math.isfinite(self.control_hz) and 0.5 <= self.control_hz <= 100.0):
            raise ValueError(f"control_hz must be in [0.5, 100], got {self.control_hz!r}")
        ratio = 1.0 / (self.control_hz * self.scene.physics_dt_s)
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"1 / control_hz = {1 / self.control_hz:g} s is not a whole number of physics steps of "
                f"{self.scene.physics_dt_s:g} s"
            )
        if not (math.isfinite(self.episode_time_s) and self.episode_time_s >= 1.0 / self.control_hz):
            raise ValueError(f"episode_time_s must be at least one control period, got {self.episode_time_s!r}")
        clash = sorted({c.name for c in self.scene.cameras} & set(LOWDIM_KEYS))
        if clash:
            raise ValueError(f"camera names {clash} clash with observation keys {LOWDIM_KEYS}")
        w, h = self.image_size
        if not all(isinstance(v, int) and 8 <= v <= self.scene.max_render_size for v in (w, h)):
            raise ValueError(
                f"image_size must be two ints in [8, scene.max_render_size={self.scene.max_render_size}], "
                f"got {self.image_size!r}"
            )
        for name in ("cube_x_range_m", "cube_y_range_m", "target_x_range_m", "target_y_range_m", "cube_yaw_range_rad"):
            object.__setattr__(self, name, _range(getattr(self, name), name))
        for name in ("min_cube_target_distance_m", "initial_joint_noise_rad", "success_tolerance_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        (cx0, cx1), (cy0, cy1) = self.cube_x_range_m, self.cube_y_range_m
        (tx0, tx1), (ty0, ty1) = self.target_x_range_m, self.target_y_range_m
        farthest = math.hypot(max(abs(cx1 - tx0), abs(tx1 - cx0)), max(abs(cy1 - ty0), abs(ty1 - cy0)))
        if farthest < self.min_cube_target_distance_m:
            raise ValueError(
                f"min_cube_target_distance_m={self.min_cube_target_distance_m} cannot be met within the cube "
                "and target ranges"
            )
        home = tuple(float(v) for v in self.home_joint_pos)
        if len(home) != len(SO101_JOINTS) or not all(math.isfinite(v) for v in home):
            raise ValueError(f"home_joint_pos must be {len(SO101_JOINTS)} finite numbers, got {self.home_joint_pos!r}")
        object.__setattr__(self, "home_joint_pos", home)
        if not (math.isfinite(self.velocity_max_rad_s) and self.velocity_max_rad_s > 0):
            raise ValueError(f"velocity_max_rad_s must be > 0, got {self.velocity_max_rad_s!r}")

    @property
    def substeps(self) -> int:
        """Physics steps per control period."""
        return round(1.0 / (self.control_hz * self.scene.physics_dt_s))

    @property
    def max_steps(self) -> int:
        """Control steps per episode."""
        return math.ceil(self.episode_time_s * self.control_hz - 1e-9)


@dataclass(frozen=True)
class TaskState:
    """Privileged task state, world frame (m, quaternion ``(w, x, y, z)``).

    Attributes:
        cube_pos, cube_quat: cube centre and orientation.
        target_pos: centre of the target square on the table (``z = 0``).
        ee_pos: the ``grasp`` tool point.
        grasped: both jaws touch the cube.
        arm_touching_cube: any part of the arm touches the cube.
    """

    cube_pos: np.ndarray
    cube_quat: np.ndarray
    target_pos: np.ndarray
    ee_pos: np.ndarray
    grasped: bool
    arm_touching_cube: bool


@dataclass(frozen=True)
class StepResult:
    """What :meth:`SimArmEnv.step` reports: ``time_s`` after the step, ``step`` index (1 =
    first step), ``success`` / ``progress`` at that time, ``truncated`` when the episode time
    is used up."""

    time_s: float
    step: int
    success: bool
    progress: float
    truncated: bool


class SimArmEnv:
    """The simulated arm and task (see the module docstring). Thread-safe: every public
    method holds one lock (:attr:`lock`), so a robot adapter and camera adapters may call it
    from different threads. A new env is already reset with seed 0.

    Attributes:
        config: the :class:`SimArmConfig`.
        model, data: the MuJoCo model and state (hold :attr:`lock` to touch ``data``).
        joint_names: the action / joint order, :data:`~df_policy.sim.assets.SO101_JOINTS`.
        lower, upper: ``float64 (6,)`` joint target limits, rad.
        camera_names: the scene's cameras, in :attr:`SceneConfig.cameras` order.
    """

    def __init__(self, config: SimArmConfig | None = None) -> None:
        self.config = config or SimArmConfig()
        if not isinstance(self.config, SimArmConfig):
            raise ValueError(f"expected a SimArmConfig, got {type(self.config).__name__}")
        self.model = build_scene(self.config.scene)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names: tuple[str, ...] = SO101_JOINTS
        jids = [m.joint(j).id for j in SO101_JOINTS]
        self._qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self._dadr = np.array([m.jnt_dofadr[j] for j in jids])
        self._act = np.array([m.actuator(j).id for j in SO101_JOINTS])
        ctrl = m.actuator_ctrlrange[self._act]
        jr = m.jnt_range[jids]
        self.lower = np.maximum(ctrl[:, 0], jr[:, 0])
        self.upper = np.minimum(ctrl[:, 1], jr[:, 1])
        self.camera_names: tuple[str, ...] = tuple(c.name for c in self.config.scene.cameras)
        self._cube_geom = m.geom("cube").id
        self._cube_qadr = m.jnt_qposadr[m.joint("cube").id]
        self._target_mocap = m.body_mocapid[m.body("target").id]
        self._grasp_site = m.site("grasp").id
        arm_body_names = ("shoulder", "upper_arm", "lower_arm", "wrist", "gripper", "moving_jaw_so101_v1")
        arm_bodies = {m.body(n).id for n in arm_body_names}
        self._arm_geoms = np.array([m.geom_bodyid[g] in arm_bodies for g in range(m.ngeom)])
        self._fixed_jaw_body = m.body("gripper").id
        self._moving_jaw_body = m.body("moving_jaw_so101_v1").id
        self._lock = threading.RLock()
        self._new_state = threading.Condition(self._lock)
        self._state_index = -1
        self._state_stamp_s = time.monotonic()
        self._total_steps = 0
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._closed = False
        self._steps = 0
        self._seed: int | None = None
        self._initial_cube_target_dist = 1.0
        self._last_action = np.asarray(self.config.home_joint_pos, dtype=np.float64)
        self._atexit = functools.partial(_close_if_alive, weakref.ref(self))
        self.reset(0)

    # ------------------------------------------------------------------ properties

    @property
    def dt_s(self) -> float:
        """Control period, seconds."""
        return 1.0 / self.config.control_hz

    @property
    def time_s(self) -> float:
        """Simulated seconds since the last reset."""
        return self._steps * self.dt_s

    @property
    def steps(self) -> int:
        """Control steps since the last reset."""
        return self._steps

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def lock(self) -> threading.RLock:
        """The env's re-entrant lock: hold it to read several things of one state."""
        return self._lock

    @property
    def state_index(self) -> int:
        """Number of the current state: +1 on every reset and step, never repeats."""
        return self._state_index

    @property
    def state_stamp_s(self) -> float:
        """Host :func:`time.monotonic` seconds when the current state was computed."""
        return self._state_stamp_s

    @property
    def total_time_s(self) -> float:
        """Simulated seconds stepped since the env was created (all episodes)."""
        return self._total_steps * self.dt_s

    def wait_for_state(self, after_index: int, timeout_s: float) -> bool:
        """Block until :attr:`state_index` > ``after_index`` (True) or ``timeout_s`` passes (False)."""
        with self._new_state:
            return self._new_state.wait_for(lambda: self._state_index > after_index, timeout=timeout_s)

    def _publish_state(self) -> None:
        self._state_index += 1
        self._state_stamp_s = time.monotonic()
        self._new_state.notify_all()

    @property
    def last_action(self) -> np.ndarray:
        """The joint target currently held, ``float64 (6,)`` (the home pose after reset)."""
        return self._last_action.copy()

    # ------------------------------------------------------------------ episode

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        """Start an episode: arm at home (+ noise), cube and target drawn from ``seed``.
        Returns :meth:`observation` without images (call it again for images)."""
        cfg = self.config
        rng = np.random.default_rng(int(seed))
        with self._lock:
            m, d = self.model, self.data
            mujoco.mj_resetData(m, d)
            home = np.asarray(cfg.home_joint_pos, dtype=np.float64)
            q0 = home.copy()
            q0[:5] += rng.uniform(-cfg.initial_joint_noise_rad, cfg.initial_joint_noise_rad, 5)
            q0 = np.clip(q0, self.lower, self.upper)
            d.qpos[self._qadr] = q0
            d.ctrl[self._act] = q0
            cube_xy = np.array([rng.uniform(*cfg.cube_x_range_m), rng.uniform(*cfg.cube_y_range_m)])
            yaw = rng.uniform(*cfg.cube_yaw_range_rad)
            for _ in range(1000):
                target_xy = np.array([rng.uniform(*cfg.target_x_range_m), rng.uniform(*cfg.target_y_range_m)])
                if np.linalg.norm(target_xy - cube_xy) >= cfg.min_cube_target_distance_m:
                    break
            else:  # pragma: no cover - excluded by SimArmConfig validation in practice
                raise RuntimeError("could not place the target away from the cube")
            h = cfg.scene.cube_half_size_m
            a = self._cube_qadr
            d.qpos[a : a + 3] = [cube_xy[0], cube_xy[1], h]
            d.qpos[a + 3 : a + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
            d.mocap_pos[self._target_mocap] = [target_xy[0], target_xy[1], 0.0]
            mujoco.mj_forward(m, d)
            self._steps = 0
            self._seed = int(seed)
            self._last_action = q0.copy()
            self._reset_progress_scale()
            self._publish_state()
            return self.observation(images=False)

    def set_cube_pose(self, xy: Any, yaw_rad: float = 0.0) -> None:
        """Put the cube at rest on the table at world ``xy`` (m) with yaw ``yaw_rad`` (a new
        state; for tests and scripted scenarios)."""
        x, y = (float(v) for v in xy)
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(yaw_rad)):
            raise ValueError(f"cube pose must be finite, got xy={xy!r}, yaw={yaw_rad!r}")
        with self._lock:
            a = self._cube_qadr
            d = self.data
            d.qpos[a : a + 3] = [x, y, self.config.scene.cube_half_size_m]
            d.qpos[a + 3 : a + 7] = [math.cos(yaw_rad / 2), 0.0, 0.0, math.sin(yaw_rad / 2)]
            dof = self.model.jnt_dofadr[self.model.joint("cube").id]
            d.qvel[dof : dof + 6] = 0.0
            mujoco.mj_forward(self.model, d)
            self._reset_progress_scale()
            self._publish_state()

    def set_target_xy(self, xy: Any) -> None:
        """Move the target square's centre to world ``xy`` (m) (a new state)."""
        x, y = (float(v) for v in xy)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"target position must be finite, got {xy!r}")
        with self._lock:
            self.data.mocap_pos[self._target_mocap] = [x, y, 0.0]
            mujoco.mj_forward(self.model, self.data)
            self._reset_progress_scale()
            self._publish_state()

    def _reset_progress_scale(self) -> None:
        a = self._cube_qadr
        dist = np.linalg.norm(self.data.qpos[a : a + 2] - self.data.mocap_pos[self._target_mocap][:2])
        self._initial_cube_target_dist = max(float(dist), 1e-6)

    def step(self, action: Any) -> StepResult:
        """Hold joint targets ``action`` (see module docstring) for one control period."""
        act = np.asarray(action, dtype=np.float64)
        if act.shape != (len(self.joint_names),):
            raise ValueError(
                f"action must have shape ({len(self.joint_names)},) for joints {list(self.joint_names)}, "
                f"got {act.shape}"
            )
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action must be finite, got {act.tolist()}")
        act = np.clip(act, self.lower, self.upper)
        with self._lock:
            m, d = self.model, self.data
            d.ctrl[self._act] = act
            mujoco.mj_step(m, d, nstep=self.config.substeps)
            # mj_step leaves positions-derived quantities (frames, contacts) one substep old;
            # refresh them so observations, images and success all describe the new qpos.
            mujoco.mj_fwdPosition(m, d)
            self._steps += 1
            self._total_steps += 1
            self._last_action = act
            self._publish_state()
            return StepResult(
                time_s=self.time_s,
                step=self._steps,
                success=self.success(),
                progress=self.progress(),
                truncated=self._steps >= self.config.max_steps,
            )

    # ------------------------------------------------------------------ state

    def joint_positions(self) -> np.ndarray:
        """Measured joint positions, ``float64 (6,)`` rad."""
        with self._lock:
            return self.data.qpos[self._qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        """Measured joint velocities, ``float64 (6,)`` rad/s."""
        with self._lock:
            return self.data.qvel[self._dadr].copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``grasp`` tool point: world position (m) and quaternion ``(w, x, y, z)``."""
        with self._lock:
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._grasp_site])
            return self.data.site_xpos[self._grasp_site].copy(), quat

    def _cube_contacts(self) -> tuple[bool, bool, bool]:
        """(fixed jaw touches cube, moving jaw touches cube, any arm geom touches cube)."""
        d = self.data
        fixed = moving = anyarm = False
        for i in range(d.ncon):
            c = d.contact[i]
            g1, g2 = int(c.geom[0]), int(c.geom[1])
            if g1 == self._cube_geom:
                other = g2
            elif g2 == self._cube_geom:
                other = g1
            else:
                continue
            if not self._arm_geoms[other]:
                continue
            anyarm = True
            body = self.model.geom_bodyid[other]
            fixed |= body == self._fixed_jaw_body
            moving |= body == self._moving_jaw_body
        return fixed, moving, anyarm

    def task_state(self) -> TaskState:
        """Privileged state for the expert and evaluation (see :class:`TaskState`)."""
        with self._lock:
            d = self.data
            a = self._cube_qadr
            fixed, moving, anyarm = self._cube_contacts()
            return TaskState(
                cube_pos=d.qpos[a : a + 3].copy(),
                cube_quat=d.qpos[a + 3 : a + 7].copy(),
                target_pos=d.mocap_pos[self._target_mocap].copy(),
                ee_pos=d.site_xpos[self._grasp_site].copy(),
                grasped=fixed and moving,
                arm_touching_cube=anyarm,
            )

    def success(self) -> bool:
        """Cube centre inside the target square (+ ``success_tolerance_m``), cube resting on
        the table (bottom within 5 mm of it) and not touched by the arm."""
        s = self.task_state()
        lim = self.config.scene.target_half_size_m + self.config.success_tolerance_m
        inside = bool(np.all(np.abs(s.cube_pos[:2] - s.target_pos[:2]) <= lim))
        on_table = s.cube_pos[2] <= self.config.scene.cube_half_size_m + 0.005
        return inside and on_table and not s.arm_touching_cube

    def progress(self) -> float:
        """Shaped task progress in ``[0, 1]``: 1 on success, else at most 0.9 =
        ``0.25 reach + 0.25 lift + 0.4 transport`` where ``reach`` = 1 - (tool point to cube
        distance / 0.2 m), ``lift`` = cube height above the table / 3 cm (or ``transport``
        if larger: pushing counts) and ``transport`` = 1 - (cube-to-target distance / its
        initial value), each clipped to ``[0, 1]``."""
        if self.success():
            return 1.0
        s = self.task_state()
        h = self.config.scene.cube_half_size_m
        reach = float(np.clip(1.0 - np.linalg.norm(s.ee_pos - s.cube_pos) / 0.2, 0.0, 1.0))
        transport = float(
            np.clip(1.0 - np.linalg.norm(s.cube_pos[:2] - s.target_pos[:2]) / self._initial_cube_target_dist, 0.0, 1.0)
        )
        lift = max(float(np.clip((s.cube_pos[2] - h) / 0.03, 0.0, 1.0)), transport)
        return min(0.9, 0.25 * reach + 0.25 * lift + 0.4 * transport)

    def observation(self, images: bool = True) -> dict[str, np.ndarray]:
        """Observation dict (see module docstring); ``images=False`` skips rendering."""
        with self._lock:
            pos, quat = self.ee_pose()
            obs: dict[str, np.ndarray] = {
                "joint_pos": self.joint_positions().astype(np.float32),
                "joint_vel": self.joint_velocities().astype(np.float32),
                "ee_pos": pos.astype(np.float32),
                "ee_quat": quat.astype(np.float32),
            }
            if images:
                for name in self.camera_names:
                    obs[name] = self.render(name)
            return obs

    # ------------------------------------------------------------------ rendering

    def render(self, camera: str, width: int | None = None, height: int | None = None) -> np.ndarray:
        """RGB image ``uint8 (height, width, 3)`` from camera ``camera`` (default size:
        ``config.image_size``). The array is new and owned by the caller."""
        if camera not in self.camera_names:
            raise ValueError(f"unknown camera {camera!r}; cameras are {list(self.camera_names)}")
        w = self.config.image_size[0] if width is None else int(width)
        h = self.config.image_size[1] if height is None else int(height)
        limit = self.config.scene.max_render_size
        if not (1 <= w <= limit and 1 <= h <= limit):
            raise ValueError(f"image size {w}x{h} outside [1, {limit}] (SceneConfig.max_render_size)")
        with self._lock:
            renderer = self._renderer(w, h)
            renderer.update_scene(self.data, camera)
            flags = renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
            img = renderer.render()
            _release_gl_context()
            return img

    def camera_fovy_deg(self, camera: str) -> float:
        """Vertical field of view of ``camera``, degrees (MuJoCo ``cam_fovy``)."""
        if camera not in self.camera_names:
            raise ValueError(f"unknown camera {camera!r}; cameras are {list(self.camera_names)}")
        return float(self.model.cam_fovy[self.model.camera(camera).id])

    def camera_pose(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)``: rotation (3x3) and position (m) of ``camera`` in the world, in the
        **OpenCV** camera convention (``x`` right, ``y`` down, ``z`` forward), so that a world
        point ``p`` has camera coordinates ``R.T @ (p - t)``. Moves with the arm for a
        body-mounted camera."""
        if camera not in self.camera_names:
            raise ValueError(f"unknown camera {camera!r}; cameras are {list(self.camera_names)}")
        with self._lock:
            cid = self.model.camera(camera).id
            rot = self.data.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
            return rot, self.data.cam_xpos[cid].copy()

    def _renderer(self, width: int, height: int) -> mujoco.Renderer:
        if self._closed:
            raise SimRenderError("render() after close()")
        key = (width, height)
        if key not in self._renderers:
            try:
                self._renderers[key] = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as exc:  # noqa: BLE001 - GL failures come as many types
                backend = os.environ.get("MUJOCO_GL", "<unset>")
                raise SimRenderError(
                    f"could not create a MuJoCo renderer with MUJOCO_GL={backend}: {exc!r}. Set MUJOCO_GL=egl or "
                    "osmesa before importing mujoco (see df_policy.sim.gl.select_gl_backend) and install "
                    "libegl1 libegl-mesa0 / libosmesa6"
                ) from exc
            if len(self._renderers) == 1:
                # close before MuJoCo's own atexit hook tears the EGL display down
                atexit.register(self._atexit)
        return self._renderers[key]

    def close(self) -> None:
        """Free the renderers (the env can still step; rendering then raises)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for r in self._renderers.values():
                r.close()
            self._renderers.clear()
            atexit.unregister(self._atexit)

    def __enter__(self) -> SimArmEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimArmEnv(seed={self._seed}, step={self._steps}, cameras={list(self.camera_names)})"


def _close_if_alive(ref: weakref.ReferenceType[SimArmEnv]) -> None:
    env = ref()
    if env is not None:
        env.close()


def _release_gl_context() -> None:
    """Make no EGL context current in this thread, so another thread may render next
    (an EGL context can be current in one thread only). No-op for other backends."""
    if os.environ.get("MUJOCO_GL", "").lower() != "egl":
        return
    try:
        from mujoco import egl as mj_egl
        from mujoco.egl import egl_ext
    except ImportError:  # pragma: no cover
        return
    display = getattr(mj_egl, "EGL_DISPLAY", None)
    if display is not None:
        egl_ext.eglMakeCurrent(display, egl_ext.EGL_NO_SURFACE, egl_ext.EGL_NO_SURFACE, egl_ext.EGL_NO_CONTEXT)
