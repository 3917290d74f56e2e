"""Intrinsics calibration on rendered ChArUco views with known K (and distortion)."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.board import CharucoBoardSpec
from calibration.detection import BoardNotDetectedError, detect_charuco
from calibration.intrinsics import CameraIntrinsics, calibrate_intrinsics
from calibration.render import render_board_view, sample_board_poses

SPEC = CharucoBoardSpec(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
K_TRUE = np.array([[600.0, 0.0, 322.5], [0.0, 605.0, 238.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
N_VIEWS = 16

# Tolerances stated by this test suite.
FOCAL_REL_TOL = 0.01  # 1 % on fx, fy
CENTER_TOL_PX = 3.0  # on cx, cy
RMS_MAX_PX = 0.5
POSE_TOL_M = 0.003  # per-view board translation vs ground truth


@pytest.fixture(scope="module")
def views():
    poses = sample_board_poses(SPEC, K_TRUE, SIZE, N_VIEWS, rng=7, max_tilt_deg=45)
    images = [
        render_board_view(SPEC, K_TRUE, T, SIZE, noise_sigma=2.0, blur_sigma=0.5, rng=i)
        for i, T in enumerate(poses)
    ]
    return poses, images


def _assert_k_close(K):
    assert abs(K[0, 0] / K_TRUE[0, 0] - 1) < FOCAL_REL_TOL, K
    assert abs(K[1, 1] / K_TRUE[1, 1] - 1) < FOCAL_REL_TOL, K
    assert abs(K[0, 2] - K_TRUE[0, 2]) < CENTER_TOL_PX, K
    assert abs(K[1, 2] - K_TRUE[1, 2]) < CENTER_TOL_PX, K


def test_recovers_known_intrinsics(views):
    poses, images = views
    names = [f"view_{i:02d}.png" for i in range(N_VIEWS)]
    result = calibrate_intrinsics(
        images, SPEC, names=names, camera_name="wrist", fix_k3=True, date="2025-01-01T00:00:00+00:00"
    )
    _assert_k_close(result.camera.K)
    assert result.rms_px < RMS_MAX_PX
    assert result.n_views == N_VIEWS and not result.rejected
    assert result.camera.image_size == SIZE
    assert np.abs(result.camera.dist).max() < 0.05  # the renderer had no distortion
    assert [v.name for v in result.views] == names
    for view, T_true in zip(result.views, poses):
        assert view.rms_px < RMS_MAX_PX
        assert np.abs(view.T_cam_board[:3, 3] - T_true[:3, 3]).max() < POSE_TOL_M
    assert set(result.std_dev) == {"fx", "fy", "cx", "cy"}
    assert "wrist" in result.summary() and "RMS" in result.summary()


def test_recovers_known_distortion():
    dist_true = np.array([-0.12, 0.04, 0.0, 0.0, 0.0])
    # Boards pushed towards the image periphery, where distortion is observable.
    poses = sample_board_poses(
        SPEC, K_TRUE, SIZE, 14, rng=21, max_tilt_deg=45, center_range=(0.1, 0.9), distance_m=(0.3, 0.6), margin_px=5
    )
    images = [render_board_view(SPEC, K_TRUE, T, SIZE, dist=dist_true, supersample=2) for T in poses]
    result = calibrate_intrinsics(images, SPEC, fix_k3=True)
    _assert_k_close(result.camera.K)
    assert result.rms_px < RMS_MAX_PX
    assert abs(result.camera.dist[0] - dist_true[0]) < 0.01, result.camera.dist  # k1
    assert abs(result.camera.dist[1] - dist_true[1]) < 0.03, result.camera.dist  # k2 (weakly observable)
    assert np.abs(result.camera.dist[2:4]).max() < 0.003, result.camera.dist  # p1, p2 (true 0)


def test_view_without_board_is_rejected_by_name(views):
    _, images = views
    blank = np.full((480, 640), 200, np.uint8)
    imgs = list(images[:8]) + [blank]
    names = [f"v{i}.png" for i in range(8)] + ["empty_wall.png"]
    result = calibrate_intrinsics(imgs, SPEC, names=names)
    assert [r.name for r in result.rejected] == ["empty_wall.png"]
    assert "board not detected" in result.rejected[0].reason
    assert result.n_views == 8
    with pytest.raises(ValueError, match="empty_wall.png: board not detected"):
        calibrate_intrinsics(imgs, SPEC, names=names, on_bad_view="raise")


def test_too_few_views_is_a_clear_error(views):
    _, images = views
    with pytest.raises(ValueError, match="too few usable views.*2 < 4"):
        calibrate_intrinsics(images[:2], SPEC)
    blank = np.zeros((480, 640), np.uint8)
    with pytest.raises(ValueError, match=r"too few usable views.*rejected: .*black\.png \(board not detected"):
        calibrate_intrinsics(list(images[:3]) + [blank], SPEC, names=["a", "b", "c", "black.png"])


def test_too_few_corners_and_mixed_sizes(views):
    _, images = views
    with pytest.raises(BoardNotDetectedError, match="view_x: only 24 ChArUco corners detected, need at least 30"):
        detect_charuco(images[0], SPEC, "view_x", min_corners=30)
    imgs = list(images[:5])
    imgs[3] = np.pad(imgs[3], ((0, 0), (0, 10)), constant_values=160)
    with pytest.raises(ValueError, match="image\\[3\\]: image size 650x480 differs"):
        calibrate_intrinsics(imgs, SPEC)
    with pytest.raises(ValueError, match="expected a uint8 image"):
        detect_charuco(images[0].astype(np.float32), SPEC, "float.png")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(K=np.eye(2)), "K must be 3x3"),
        (dict(K=np.diag([-1.0, 1.0, 1.0])), "fx and fy must be > 0"),
        (dict(dist=np.zeros(3)), "dist must have"),
        (dict(image_size=(640, 0)), "image_size"),
    ],
)
def test_camera_intrinsics_validation(kwargs, match):
    base = dict(K=K_TRUE, dist=np.zeros(5), image_size=SIZE)
    with pytest.raises(ValueError, match=match):
        CameraIntrinsics(**{**base, **kwargs})
