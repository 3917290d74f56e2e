"""ChArUco corner detection and single-view board pose (PnP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from calibration.board import CharucoBoardSpec
from calibration.transforms import rvec_tvec_to_transform

__all__ = [
    "BoardNotDetectedError",
    "BoardPose",
    "CharucoDetection",
    "detect_charuco",
    "estimate_board_pose",
    "to_gray",
]


class BoardNotDetectedError(ValueError):
    """The board was not found (or too few corners were found) in an image."""


def to_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return a uint8 single-channel view of ``image`` (gray, BGR or BGRA)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"{name}: expected a HxW or HxWx{{1,3,4}} image, got shape {img.shape}")


@dataclass(frozen=True)
class CharucoDetection:
    """ChArUco corners found in one image.

    ``corners_px``: (N, 2) float64 sub-pixel image points (pixel centres at
    integer coordinates); ``ids``: (N,) int corner ids; ``object_points_m``:
    (N, 3) matching board-frame points; ``image_size``: (width, height).
    """

    name: str
    corners_px: np.ndarray
    ids: np.ndarray
    object_points_m: np.ndarray
    image_size: tuple[int, int]
    n_markers: int = 0

    def __post_init__(self) -> None:
        corners = np.asarray(self.corners_px, dtype=np.float64).reshape(-1, 2)
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        obj = np.asarray(self.object_points_m, dtype=np.float64).reshape(-1, 3)
        if not (len(corners) == len(ids) == len(obj)):
            raise ValueError(
                f"{self.name}: corners ({len(corners)}), ids ({len(ids)}) and object points "
                f"({len(obj)}) differ in length"
            )
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"{self.name}: image_size must be (width, height) > 0, got {self.image_size}")
        object.__setattr__(self, "corners_px", corners)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "object_points_m", obj)
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    @property
    def n_corners(self) -> int:
        return int(len(self.ids))


def _check_not_degenerate(obj: np.ndarray, name: str) -> None:
    """Raise if the board points are (nearly) collinear: a line does not constrain a homography."""
    centred = obj[:, :2] - obj[:, :2].mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    if len(sv) < 2 or sv[1] < 1e-3 * max(sv[0], 1e-12):
        raise BoardNotDetectedError(f"{name}: detected ChArUco corners are collinear (a single row/column)")


def detect_charuco(
    image: np.ndarray,
    spec: CharucoBoardSpec,
    name: str = "image",
    min_corners: int = 6,
    detector: cv2.aruco.CharucoDetector | None = None,
) -> CharucoDetection:
    """Detect ChArUco corners of ``spec`` in ``image`` with ``cv2.aruco.CharucoDetector``.

    Raises :class:`BoardNotDetectedError` (a ``ValueError``) naming ``name`` if
    no markers are found, fewer than ``min_corners`` corners are interpolated
    (``min_corners`` >= 4), or the corners are collinear.
    """
    if min_corners < 4:
        raise ValueError(f"min_corners must be >= 4, got {min_corners}")
    gray = to_gray(image, name)
    if detector is None:
        detector = cv2.aruco.CharucoDetector(spec.make_board())
    corners, ids, _marker_corners, marker_ids = detector.detectBoard(gray)
    n_markers = 0 if marker_ids is None else int(len(marker_ids))
    n_found = 0 if ids is None else int(len(ids))
    if n_found == 0:
        if n_markers == 0:
            raise BoardNotDetectedError(f"{name}: board not detected (no ArUco markers of {spec.dictionary} found)")
        raise BoardNotDetectedError(
            f"{name}: board not detected ({n_markers} markers found but no ChArUco corners interpolated)"
        )
    if n_found < min_corners:
        raise BoardNotDetectedError(
            f"{name}: only {n_found} ChArUco corners detected, need at least {min_corners}"
        )
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    obj = spec.corner_points_m()[ids]
    _check_not_degenerate(obj, name)
    h, w = gray.shape[:2]
    return CharucoDetection(
        name=name,
        corners_px=np.asarray(corners, dtype=np.float64).reshape(-1, 2),
        ids=ids,
        object_points_m=obj,
        image_size=(w, h),
        n_markers=n_markers,
    )


@dataclass(frozen=True)
class BoardPose:
    """Board pose from one view: ``T_cam_board`` (4x4, metres) and its reprojection RMS (px)."""

    name: str
    T_cam_board: np.ndarray
    reprojection_rms_px: float
    n_corners: int
    per_corner_error_px: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def estimate_board_pose(
    detection: CharucoDetection, K: np.ndarray, dist: Sequence[float] | np.ndarray | None = None
) -> BoardPose:
    """Board pose ``T_cam_board`` from one detection with known intrinsics.

    Planar PnP (IPPE) followed by Levenberg-Marquardt refinement. Raises
    ``ValueError`` naming the view if PnP fails or the board ends up behind the camera.
    """
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    dist_arr = np.zeros(5) if dist is None else np.asarray(dist, dtype=np.float64).reshape(-1)
    obj = detection.object_points_m
    img = detection.corners_px
    if len(obj) < 4:
        raise ValueError(f"{detection.name}: PnP needs >= 4 corners, got {len(obj)}")
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist_arr, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise ValueError(f"{detection.name}: solvePnP failed")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist_arr, rvec, tvec)
    T = rvec_tvec_to_transform(rvec, tvec)
    depth = (T[:3, :3] @ obj.T + T[:3, 3:4])[2]
    if np.any(depth <= 0):
        raise ValueError(f"{detection.name}: PnP solution puts the board behind the camera")
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, dist_arr)
    err = np.linalg.norm(proj.reshape(-1, 2) - img, axis=1)
    return BoardPose(
        name=detection.name,
        T_cam_board=T,
        reprojection_rms_px=float(np.sqrt(np.mean(err**2))),
        n_corners=detection.n_corners,
        per_corner_error_px=err,
    )
