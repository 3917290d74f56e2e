"""Pinhole + distortion intrinsics calibration from ChArUco views (OpenCV model).

Camera frame (``cam``): OpenCV convention, origin at the optical centre, x
right, y down, z forward (optical axis). Pixel centres are at integer
coordinates. ``image_size`` is always ``(width, height)``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

from calibration.board import CharucoBoardSpec
from calibration.detection import (
    BoardNotDetectedError,
    CharucoDetection,
    detect_charuco,
)
from calibration.transforms import rvec_tvec_to_transform

__all__ = [
    "CameraIntrinsics",
    "IntrinsicsCalibration",
    "RejectedView",
    "ViewResult",
    "calibrate_intrinsics",
    "calibrate_intrinsics_from_detections",
    "detect_views",
    "utc_now_iso",
]

#: Distortion vector lengths OpenCV accepts: (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]]).
VALID_DIST_LENGTHS = (4, 5, 8, 12, 14)


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 (seconds resolution)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CameraIntrinsics:
    """OpenCV camera model: ``K`` (3x3, pixels), ``dist`` (OpenCV order), ``image_size`` (w, h)."""

    K: np.ndarray
    dist: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        try:
            K = np.asarray(self.K, dtype=np.float64)
            dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"CameraIntrinsics: K/dist must be numeric ({exc})") from None
        if K.shape != (3, 3):
            raise ValueError(f"CameraIntrinsics.K must be 3x3, got shape {K.shape}")
        if not np.all(np.isfinite(K)) or not np.all(np.isfinite(dist)):
            raise ValueError("CameraIntrinsics: K and dist must be finite")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"CameraIntrinsics.K: fx and fy must be > 0, got {K[0, 0]}, {K[1, 1]}")
        if not np.allclose(K[1:, 0], 0) or not np.allclose(K[2], [0, 0, 1]):
            raise ValueError(f"CameraIntrinsics.K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        if dist.size not in VALID_DIST_LENGTHS:
            raise ValueError(
                f"CameraIntrinsics.dist must have {VALID_DIST_LENGTHS} coefficients, got {dist.size}"
            )
        size = tuple(self.image_size)
        if len(size) != 2 or any(int(v) != v or v <= 0 for v in size):
            raise ValueError(
                f"CameraIntrinsics.image_size must be (width, height) positive ints, got {self.image_size}"
            )
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])


@dataclass(frozen=True)
class ViewResult:
    """One accepted calibration view: reprojection RMS (px) and board pose ``T_cam_board`` (4x4, m).

    ``T_cam_board`` is None when the view was loaded from a file (poses are not stored).
    """

    name: str
    n_corners: int
    rms_px: float
    T_cam_board: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RejectedView:
    """A view that was not used, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class IntrinsicsCalibration:
    """Result of :func:`calibrate_intrinsics`.

    ``rms_px`` is OpenCV's overall RMS reprojection error over all corners of
    all accepted views; ``views`` holds per-view RMS and ``T_cam_board``;
    ``std_dev`` maps ``fx, fy, cx, cy`` to OpenCV's standard-deviation estimates (px).
    """

    camera_name: str
    camera: CameraIntrinsics
    rms_px: float
    board: CharucoBoardSpec
    views: tuple[ViewResult, ...]
    rejected: tuple[RejectedView, ...] = ()
    std_dev: dict[str, float] = field(default_factory=dict)
    date: str = field(default_factory=utc_now_iso)

    def __post_init__(self) -> None:
        if not isinstance(self.camera_name, str) or not self.camera_name.strip():
            raise ValueError("IntrinsicsCalibration.camera_name must be a non-empty string")
        if not np.isfinite(self.rms_px) or self.rms_px < 0:
            raise ValueError(f"IntrinsicsCalibration.rms_px must be finite and >= 0, got {self.rms_px}")
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "rejected", tuple(self.rejected))

    @property
    def n_views(self) -> int:
        return len(self.views)

    def summary(self) -> str:
        """Short human-readable report."""
        c = self.camera
        lines = [
            f"camera '{self.camera_name}': {c.image_size[0]}x{c.image_size[1]}, "
            f"{self.n_views} views used, {len(self.rejected)} rejected",
            f"  fx={c.fx:.2f} fy={c.fy:.2f} cx={c.cx:.2f} cy={c.cy:.2f} px",
            "  dist=[" + ", ".join(f"{v:+.5f}" for v in c.dist) + "]",
            f"  RMS reprojection error: {self.rms_px:.3f} px",
        ]
        if self.views:
            worst = max(self.views, key=lambda v: v.rms_px)
            lines.append(f"  worst view: {worst.name} ({worst.rms_px:.3f} px, {worst.n_corners} corners)")
        for r in self.rejected:
            lines.append(f"  rejected {r.name}: {r.reason}")
        return "\n".join(lines)


OnBadView = Literal["skip", "raise"]


def detect_views(
    images: Sequence[np.ndarray],
    spec: CharucoBoardSpec,
    names: Sequence[str] | None = None,
    min_corners: int = 6,
    on_bad_view: OnBadView = "skip",
) -> tuple[list[CharucoDetection], list[RejectedView]]:
    """Detect the board in each image.

    With ``on_bad_view="skip"`` views where the board is missing / has fewer
    than ``min_corners`` corners are returned as :class:`RejectedView`; with
    ``"raise"`` the first such view raises :class:`BoardNotDetectedError`.
    """
    if on_bad_view not in ("skip", "raise"):
        raise ValueError(f"on_bad_view must be 'skip' or 'raise', got {on_bad_view!r}")
    images = list(images)
    if names is None:
        names = [f"image[{i}]" for i in range(len(images))]
    names = [str(n) for n in names]
    if len(names) != len(images):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    detector = cv2.aruco.CharucoDetector(spec.make_board())
    detections: list[CharucoDetection] = []
    rejected: list[RejectedView] = []
    for img, name in zip(images, names):
        try:
            detections.append(detect_charuco(img, spec, name, min_corners=min_corners, detector=detector))
        except BoardNotDetectedError as exc:
            if on_bad_view == "raise":
                raise
            reason = str(exc)
            prefix = f"{name}: "
            rejected.append(RejectedView(name, reason[len(prefix):] if reason.startswith(prefix) else reason))
    return detections, rejected


def calibrate_intrinsics_from_detections(
    detections: Sequence[CharucoDetection],
    spec: CharucoBoardSpec,
    camera_name: str = "camera",
    min_views: int = 4,
    fix_k3: bool = False,
    zero_tangent: bool = False,
    rational_model: bool = False,
    rejected: Sequence[RejectedView] = (),
    date: str | None = None,
) -> IntrinsicsCalibration:
    """Calibrate K and distortion from ChArUco detections (all from one camera, one image size).

    Raises ``ValueError`` if fewer than ``min_views`` (>= 3) detections are
    given (listing rejected views) or image sizes differ.
    """
    if min_views < 3:
        raise ValueError(f"min_views must be >= 3, got {min_views}")
    detections = list(detections)
    if len(detections) < min_views:
        msg = f"too few usable views for intrinsics calibration: {len(detections)} < {min_views}"
        if rejected:
            msg += "; rejected: " + "; ".join(f"{r.name} ({r.reason})" for r in rejected)
        raise ValueError(msg)
    image_size = detections[0].image_size
    for d in detections[1:]:
        if d.image_size != image_size:
            raise ValueError(
                f"{d.name}: image size {d.image_size[0]}x{d.image_size[1]} differs from "
                f"{detections[0].name} ({image_size[0]}x{image_size[1]}); one calibration per camera mode"
            )
    flags = 0
    if fix_k3:
        flags |= cv2.CALIB_FIX_K3
    if zero_tangent:
        flags |= cv2.CALIB_ZERO_TANGENT_DIST
    if rational_model:
        flags |= cv2.CALIB_RATIONAL_MODEL
    obj = [d.object_points_m.astype(np.float32).reshape(-1, 1, 3) for d in detections]
    img = [d.corners_px.astype(np.float32).reshape(-1, 1, 2) for d in detections]
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    (rms, K, dist, rvecs, tvecs, std_intr, _std_extr, per_view) = cv2.calibrateCameraExtended(
        obj, img, image_size, None, None, flags=flags, criteria=criteria
    )
    if not np.isfinite(rms):
        raise ValueError("intrinsics calibration diverged (non-finite RMS); check the views")
    views = []
    for d, rvec, tvec, err in zip(detections, rvecs, tvecs, np.asarray(per_view).reshape(-1)):
        views.append(ViewResult(d.name, d.n_corners, float(err), rvec_tvec_to_transform(rvec, tvec)))
    std = np.asarray(std_intr, dtype=np.float64).reshape(-1)
    std_dev = {k: float(v) for k, v in zip(("fx", "fy", "cx", "cy"), std[:4])}
    return IntrinsicsCalibration(
        camera_name=camera_name,
        camera=CameraIntrinsics(K=K, dist=np.asarray(dist).reshape(-1), image_size=image_size),
        rms_px=float(rms),
        board=spec,
        views=tuple(views),
        rejected=tuple(rejected),
        std_dev=std_dev,
        date=date or utc_now_iso(),
    )


def calibrate_intrinsics(
    images: Sequence[np.ndarray],
    spec: CharucoBoardSpec,
    names: Sequence[str] | None = None,
    camera_name: str = "camera",
    min_corners: int = 6,
    min_views: int = 4,
    on_bad_view: OnBadView = "skip",
    fix_k3: bool = False,
    zero_tangent: bool = False,
    rational_model: bool = False,
    date: str | None = None,
) -> IntrinsicsCalibration:
    """Detect the ChArUco board in ``images`` and calibrate the camera intrinsics.

    ``names`` label the images in messages (default ``image[i]``). Views with
    no board or fewer than ``min_corners`` corners are rejected (listed in
    ``result.rejected``) or raise, per ``on_bad_view``. Raises ``ValueError``
    when fewer than ``min_views`` views remain.
    """
    detections, rejected = detect_views(images, spec, names, min_corners=min_corners, on_bad_view=on_bad_view)
    return calibrate_intrinsics_from_detections(
        detections,
        spec,
        camera_name=camera_name,
        min_views=min_views,
        fix_k3=fix_k3,
        zero_tangent=zero_tangent,
        rational_model=rational_model,
        rejected=rejected,
        date=date,
    )
