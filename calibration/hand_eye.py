"""Hand-eye calibration (``cv2.calibrateHandEye``) for both camera mountings.

Frames: ``base`` (robot base), ``gripper`` (robot flange/TCP as reported by
the robot), ``cam`` (OpenCV camera frame), ``board`` (see ``calibration.board``).
Inputs per pose ``i``: the robot pose ``T_base_gripper[i]`` and the board pose
seen by the camera ``T_cam_board[i]`` (4x4, metres), captured at the same instant.

* ``eye_in_hand``: camera rigidly on the gripper, board fixed in the world.
  Solves ``X = T_gripper_cam``. Consistency: ``T_base_board[i] =
  T_base_gripper[i] @ X @ T_cam_board[i]`` should be the same for every ``i``.
* ``eye_to_hand``: camera fixed in the world, board rigidly on the gripper.
  Solves ``X = T_base_cam`` by passing the inverted robot poses
  (``T_gripper_base``) to OpenCV, as its documentation prescribes.
  Consistency: ``T_gripper_board[i] = inv(T_base_gripper[i]) @ X @ T_cam_board[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from calibration.board import CharucoBoardSpec
from calibration.detection import BoardNotDetectedError, detect_charuco, estimate_board_pose
from calibration.intrinsics import CameraIntrinsics, RejectedView, utc_now_iso
from calibration.transforms import as_transform, invert, make_transform

__all__ = [
    "HAND_EYE_METHODS",
    "HAND_EYE_MODES",
    "BoardPoseObservations",
    "HandEyeResidual",
    "HandEyeResult",
    "board_poses_from_images",
    "calibrate_hand_eye",
    "hand_eye_residual",
]

HandEyeMode = Literal["eye_in_hand", "eye_to_hand"]
HAND_EYE_MODES: tuple[str, ...] = ("eye_in_hand", "eye_to_hand")

#: Method name -> OpenCV flag.
HAND_EYE_METHODS: dict[str, int] = {
    "TSAI": cv2.CALIB_HAND_EYE_TSAI,
    "PARK": cv2.CALIB_HAND_EYE_PARK,
    "HORAUD": cv2.CALIB_HAND_EYE_HORAUD,
    "ANDREFF": cv2.CALIB_HAND_EYE_ANDREFF,
    "DANIILIDIS": cv2.CALIB_HAND_EYE_DANIILIDIS,
}

#: Name of the solved transform / of the fixed board pose used for the residual, per mode.
SOLVED_TRANSFORM = {"eye_in_hand": "T_gripper_cam", "eye_to_hand": "T_base_cam"}
FIXED_BOARD_TRANSFORM = {"eye_in_hand": "T_base_board", "eye_to_hand": "T_gripper_board"}

_MIN_MOTION_ROT_DEG = 2.0
_MIN_AXIS_SPREAD_DEG = 5.0


def _check_mode(mode: str) -> str:
    if mode not in HAND_EYE_MODES:
        raise ValueError(f"hand-eye mode must be one of {HAND_EYE_MODES}, got {mode!r}")
    return mode


def _check_method(method: str) -> str:
    key = str(method).upper()
    if key not in HAND_EYE_METHODS:
        raise ValueError(f"hand-eye method must be one of {tuple(HAND_EYE_METHODS)}, got {method!r}")
    return key


@dataclass(frozen=True)
class HandEyeResidual:
    """Spread of the implied fixed board pose across poses (should be ~0 for a perfect fit).

    Per pose: translation distance (mm) and rotation angle (deg) between the
    board pose implied by that pose and their mean (``T_fixed_board``).
    """

    translation_rms_mm: float
    translation_max_mm: float
    rotation_rms_deg: float
    rotation_max_deg: float
    per_pose_translation_mm: tuple[float, ...] = ()
    per_pose_rotation_deg: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("translation_rms_mm", "translation_max_mm", "rotation_rms_deg", "rotation_max_deg"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"HandEyeResidual.{name} must be finite and >= 0, got {v}")
        object.__setattr__(self, "per_pose_translation_mm", tuple(float(v) for v in self.per_pose_translation_mm))
        object.__setattr__(self, "per_pose_rotation_deg", tuple(float(v) for v in self.per_pose_rotation_deg))


@dataclass(frozen=True)
class HandEyeResult:
    """Result of :func:`calibrate_hand_eye`.

    ``T`` is ``T_gripper_cam`` (eye_in_hand) or ``T_base_cam`` (eye_to_hand),
    named by :attr:`transform_name`. ``T_fixed_board`` is the mean implied
    ``T_base_board`` (eye_in_hand) or ``T_gripper_board`` (eye_to_hand), if known.
    ``camera_name`` / ``intrinsics_file`` optionally link the camera calibration used.
    """

    mode: str
    method: str
    T: np.ndarray
    residual: HandEyeResidual
    T_fixed_board: np.ndarray | None = field(default=None, repr=False)
    n_poses: int = 0
    pose_names: tuple[str, ...] = ()
    rejected: tuple[RejectedView, ...] = ()
    date: str = field(default_factory=utc_now_iso)
    camera_name: str | None = None
    intrinsics_file: str | None = None

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        object.__setattr__(self, "method", _check_method(self.method))
        object.__setattr__(self, "T", as_transform(self.T, SOLVED_TRANSFORM[self.mode]))
        if self.T_fixed_board is not None:
            object.__setattr__(
                self, "T_fixed_board", as_transform(self.T_fixed_board, FIXED_BOARD_TRANSFORM[self.mode])
            )
        object.__setattr__(self, "pose_names", tuple(self.pose_names))
        object.__setattr__(self, "rejected", tuple(self.rejected))

    @property
    def transform_name(self) -> str:
        return SOLVED_TRANSFORM[self.mode]

    def summary(self) -> str:
        """Short human-readable report."""
        t = self.T[:3, 3] * 1000.0
        rpy = Rotation.from_matrix(self.T[:3, :3]).as_euler("xyz", degrees=True)
        r = self.residual
        lines = [
            f"hand-eye ({self.mode}, {self.method}) from {self.n_poses} poses, {len(self.rejected)} rejected",
            f"  {self.transform_name}: t = [{t[0]:.2f}, {t[1]:.2f}, {t[2]:.2f}] mm, "
            f"rpy(xyz) = [{rpy[0]:.3f}, {rpy[1]:.3f}, {rpy[2]:.3f}] deg",
            f"  {FIXED_BOARD_TRANSFORM[self.mode]} spread: translation rms {r.translation_rms_mm:.2f} mm "
            f"(max {r.translation_max_mm:.2f}), rotation rms {r.rotation_rms_deg:.3f} deg "
            f"(max {r.rotation_max_deg:.3f})",
        ]
        for rej in self.rejected:
            lines.append(f"  rejected {rej.name}: {rej.reason}")
        return "\n".join(lines)


def _validated_poses(poses: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    return [as_transform(T, f"{name}[{i}]") for i, T in enumerate(poses)]


def _check_rotation_diversity(T_base_gripper: list[np.ndarray]) -> None:
    """Raise unless the gripper rotates about at least two non-parallel axes across the poses."""
    R0 = T_base_gripper[0][:3, :3]
    axes = []
    for T in T_base_gripper[1:]:
        rv = Rotation.from_matrix(R0.T @ T[:3, :3]).as_rotvec()
        angle = np.linalg.norm(rv)
        if np.rad2deg(angle) >= _MIN_MOTION_ROT_DEG:
            axes.append(rv / angle)
    # Relative rotations between consecutive non-reference poses also count.
    for Ta, Tb in zip(T_base_gripper[1:], T_base_gripper[2:]):
        rv = Rotation.from_matrix(Ta[:3, :3].T @ Tb[:3, :3]).as_rotvec()
        angle = np.linalg.norm(rv)
        if np.rad2deg(angle) >= _MIN_MOTION_ROT_DEG:
            axes.append(rv / angle)
    if not axes:
        raise ValueError(
            f"robot poses do not rotate the gripper (all relative rotations < {_MIN_MOTION_ROT_DEG} deg); "
            "hand-eye calibration needs rotations about at least two different axes"
        )
    A = np.asarray(axes)
    max_sin = np.linalg.norm(np.cross(A[:, None, :], A[None, :, :]), axis=-1).max()
    if max_sin < np.sin(np.deg2rad(_MIN_AXIS_SPREAD_DEG)):
        raise ValueError(
            "robot poses rotate the gripper about a single axis only; hand-eye calibration needs "
            "rotations about at least two non-parallel axes"
        )


def hand_eye_residual(
    mode: HandEyeMode,
    X: np.ndarray,
    T_base_gripper: Sequence[np.ndarray],
    T_cam_board: Sequence[np.ndarray],
) -> tuple[HandEyeResidual, np.ndarray]:
    """Consistency of ``X`` with the data: spread of the implied fixed board pose.

    Returns the residual and the mean fixed board pose (``T_base_board`` for
    eye_in_hand, ``T_gripper_board`` for eye_to_hand; rotation mean by
    quaternion averaging).
    """
    _check_mode(mode)
    implied = []
    for Tbg, Tcb in zip(T_base_gripper, T_cam_board):
        if mode == "eye_in_hand":
            implied.append(Tbg @ X @ Tcb)
        else:
            implied.append(invert(Tbg) @ X @ Tcb)
    implied_arr = np.asarray(implied)
    t = implied_arr[:, :3, 3]
    t_mean = t.mean(axis=0)
    rots = Rotation.from_matrix(implied_arr[:, :3, :3])
    r_mean = rots.mean()
    dt_mm = np.linalg.norm(t - t_mean, axis=1) * 1000.0
    dr_deg = np.rad2deg((r_mean.inv() * rots).magnitude())
    residual = HandEyeResidual(
        translation_rms_mm=float(np.sqrt(np.mean(dt_mm**2))),
        translation_max_mm=float(dt_mm.max()),
        rotation_rms_deg=float(np.sqrt(np.mean(dr_deg**2))),
        rotation_max_deg=float(dr_deg.max()),
        per_pose_translation_mm=tuple(dt_mm),
        per_pose_rotation_deg=tuple(dr_deg),
    )
    return residual, make_transform(r_mean.as_matrix(), t_mean)


def calibrate_hand_eye(
    T_base_gripper: Sequence[np.ndarray],
    T_cam_board: Sequence[np.ndarray],
    mode: HandEyeMode = "eye_in_hand",
    method: str = "PARK",
    pose_names: Sequence[str] | None = None,
    min_poses: int = 5,
    rejected: Sequence[RejectedView] = (),
    date: str | None = None,
) -> HandEyeResult:
    """Solve the hand-eye transform from paired robot and board poses.

    ``T_base_gripper[i]`` and ``T_cam_board[i]`` (4x4, metres) must be taken
    at the same instant. Returns ``T_gripper_cam`` (eye_in_hand) or
    ``T_base_cam`` (eye_to_hand) plus the consistency residual. Raises
    ``ValueError`` for mismatched lengths, fewer than ``min_poses`` (>= 3)
    poses, invalid transforms, or robot motions without rotation about two axes.
    """
    _check_mode(mode)
    method = _check_method(method)
    if min_poses < 3:
        raise ValueError(f"min_poses must be >= 3 (OpenCV minimum), got {min_poses}")
    T_bg = _validated_poses(T_base_gripper, "T_base_gripper")
    T_cb = _validated_poses(T_cam_board, "T_cam_board")
    if len(T_bg) != len(T_cb):
        raise ValueError(f"got {len(T_bg)} robot poses but {len(T_cb)} board poses; they must be paired")
    if len(T_bg) < min_poses:
        msg = f"too few poses for hand-eye calibration: {len(T_bg)} < {min_poses}"
        if rejected:
            msg += "; rejected: " + "; ".join(f"{r.name} ({r.reason})" for r in rejected)
        raise ValueError(msg)
    names = tuple(pose_names) if pose_names is not None else tuple(f"pose[{i}]" for i in range(len(T_bg)))
    if len(names) != len(T_bg):
        raise ValueError(f"got {len(names)} pose names for {len(T_bg)} poses")
    _check_rotation_diversity(T_bg)

    # OpenCV: (R,t)_gripper2base = T_base_gripper; eye-to-hand passes T_gripper_base instead.
    robot = T_bg if mode == "eye_in_hand" else [invert(T) for T in T_bg]
    R_g = [T[:3, :3] for T in robot]
    t_g = [T[:3, 3].reshape(3, 1) for T in robot]
    R_t = [T[:3, :3] for T in T_cb]
    t_t = [T[:3, 3].reshape(3, 1) for T in T_cb]
    R_x, t_x = cv2.calibrateHandEye(R_g, t_g, R_t, t_t, method=HAND_EYE_METHODS[method])
    if R_x is None or not np.all(np.isfinite(R_x)) or not np.all(np.isfinite(t_x)):
        raise ValueError(f"cv2.calibrateHandEye ({method}) failed to produce a finite solution")
    # Re-orthonormalize (some methods return a slightly non-orthogonal R).
    U, _, Vt = np.linalg.svd(np.asarray(R_x, dtype=np.float64))
    R_x = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    X = make_transform(R_x, np.asarray(t_x, dtype=np.float64).reshape(3))
    residual, T_fixed = hand_eye_residual(mode, X, T_bg, T_cb)
    return HandEyeResult(
        mode=mode,
        method=method,
        T=X,
        residual=residual,
        T_fixed_board=T_fixed,
        n_poses=len(T_bg),
        pose_names=names,
        rejected=tuple(rejected),
        date=date or utc_now_iso(),
    )


@dataclass(frozen=True)
class BoardPoseObservations:
    """Board poses from images: ``T_cam_board`` for accepted views, their indices into the input, rejects."""

    T_cam_board: tuple[np.ndarray, ...]
    indices: tuple[int, ...]
    names: tuple[str, ...]
    reprojection_rms_px: tuple[float, ...]
    rejected: tuple[RejectedView, ...]


def board_poses_from_images(
    images: Sequence[np.ndarray],
    spec: CharucoBoardSpec,
    camera: CameraIntrinsics,
    names: Sequence[str] | None = None,
    min_corners: int = 6,
    on_bad_view: Literal["skip", "raise"] = "skip",
    max_reprojection_px: float | None = None,
) -> BoardPoseObservations:
    """Detect the board and solve ``T_cam_board`` (PnP with ``camera``) in every image.

    Views without the board, with too few corners, of the wrong image size or
    (if ``max_reprojection_px`` is set) with a worse PnP reprojection RMS are
    rejected (``on_bad_view="skip"``) or raise ``ValueError`` naming the image.
    """
    if on_bad_view not in ("skip", "raise"):
        raise ValueError(f"on_bad_view must be 'skip' or 'raise', got {on_bad_view!r}")
    images = list(images)
    names = [f"image[{i}]" for i in range(len(images))] if names is None else [str(n) for n in names]
    if len(names) != len(images):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    detector = cv2.aruco.CharucoDetector(spec.make_board())
    poses, idx, used, rms, rejected = [], [], [], [], []
    for i, (img, name) in enumerate(zip(images, names)):
        try:
            h, w = np.asarray(img).shape[:2]
            if (w, h) != camera.image_size:
                raise BoardNotDetectedError(
                    f"{name}: image size {w}x{h} does not match the intrinsics "
                    f"({camera.image_size[0]}x{camera.image_size[1]})"
                )
            det = detect_charuco(img, spec, name, min_corners=min_corners, detector=detector)
            bp = estimate_board_pose(det, camera.K, camera.dist)
            if max_reprojection_px is not None and bp.reprojection_rms_px > max_reprojection_px:
                raise BoardNotDetectedError(
                    f"{name}: board pose reprojection RMS {bp.reprojection_rms_px:.2f} px > "
                    f"{max_reprojection_px} px"
                )
        except ValueError as exc:
            if on_bad_view == "raise":
                raise
            reason = str(exc)
            prefix = f"{name}: "
            rejected.append(RejectedView(name, reason[len(prefix):] if reason.startswith(prefix) else reason))
            continue
        poses.append(bp.T_cam_board)
        idx.append(i)
        used.append(name)
        rms.append(bp.reprojection_rms_px)
    return BoardPoseObservations(tuple(poses), tuple(idx), tuple(used), tuple(rms), tuple(rejected))
