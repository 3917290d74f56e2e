"""ChArUco board spec, board image and synthetic view rendering."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.board import CharucoBoardSpec, render_board_image
from calibration.detection import detect_charuco
from calibration.io import CalibrationFileError, load_board_spec, save_board_spec
from calibration.render import look_at_board, render_board_view, sample_board_poses
from calibration.transforms import make_transform

SPEC = CharucoBoardSpec(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
K = np.array([[600.0, 0.0, 322.5], [0.0, 605.0, 238.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(squares_x=1), "squares_x must be >= 2"),
        (dict(squares_y=2.5), "squares_y must be an int"),
        (dict(square_length_m=-0.04), "square_length_m must be > 0"),
        (dict(square_length_m=40.0, marker_length_m=30.0), "implausibly large"),
        (dict(marker_length_m=0.05), "must be smaller than square_length_m"),
        (dict(dictionary="DICT_9X9_1"), "not an OpenCV ArUco dictionary"),
        (dict(squares_x=12, squares_y=12, dictionary="DICT_4X4_50"), "needs 72 markers"),
    ],
)
def test_spec_validation(kwargs, match):
    base = dict(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
    with pytest.raises(ValueError, match=match):
        CharucoBoardSpec(**{**base, **kwargs})


def test_spec_dict_and_yaml_round_trip(tmp_path):
    spec = CharucoBoardSpec(9, 6, 0.025, 0.018, "DICT_4X4_50", legacy_pattern=True)
    assert CharucoBoardSpec.from_dict(spec.to_dict()) == spec
    path = save_board_spec(spec, tmp_path / "board.yaml")
    assert load_board_spec(path) == spec
    assert spec.n_corners == 8 * 5
    assert spec.make_board().getLegacyPattern() is True


def test_spec_from_dict_errors(tmp_path):
    with pytest.raises(ValueError, match="missing required key.*marker_length_m"):
        CharucoBoardSpec.from_dict({"squares_x": 5, "squares_y": 5, "square_length_m": 0.04})
    with pytest.raises(ValueError, match="unknown key.*colour"):
        CharucoBoardSpec.from_dict({**SPEC.to_dict(), "colour": "red"})
    bad = tmp_path / "bad_board.yaml"
    bad.write_text("squares_x: 7\nsquares_y: 5\nsquare_length_m: 0.04\nmarker_length_m: 0.05\n")
    with pytest.raises(CalibrationFileError, match="bad_board.yaml.*smaller than square_length_m"):
        load_board_spec(bad)


def test_board_image_geometry_matches_documented_pixel_mapping():
    pps, margin = 80, 40
    img = render_board_image(SPEC, px_per_square=pps, margin_px=margin)
    assert img.shape == (5 * pps + 2 * margin, 7 * pps + 2 * margin)
    det = detect_charuco(img, SPEC, "board.png")
    assert det.n_corners == SPEC.n_corners
    expected = margin - 0.5 + det.object_points_m[:, :2] / SPEC.square_length_m * pps
    assert np.abs(det.corners_px - expected).max() < 0.05


def _projected_corner_error(img, T, dist=None):
    det = detect_charuco(img, SPEC, "view")
    rvec, _ = cv2.Rodrigues(T[:3, :3])
    proj, _ = cv2.projectPoints(det.object_points_m, rvec, T[:3, 3], K, dist)
    return det, np.linalg.norm(proj.reshape(-1, 2) - det.corners_px, axis=1)


def test_rendered_view_corners_match_projection():
    poses = sample_board_poses(SPEC, K, SIZE, 4, rng=11, max_tilt_deg=40)
    for T in poses:
        img = render_board_view(SPEC, K, T, SIZE)
        assert img.shape == (480, 640) and img.dtype == np.uint8
        det, err = _projected_corner_error(img, T)
        assert det.n_corners == SPEC.n_corners
        assert err.max() < 0.3, err.max()


def test_rendered_view_with_distortion_matches_projection():
    dist = np.array([-0.12, 0.04, 0.0, 0.0, 0.0])
    T = look_at_board(SPEC, 0.45, center_ray=(0.1, -0.05))
    img = render_board_view(SPEC, K, T, SIZE, dist=dist, supersample=2)
    _, err = _projected_corner_error(img, T, dist)
    assert err.max() < 0.3, err.max()
    # The undistorted model must be clearly wrong for this image (distortion is really rendered).
    _, err_pinhole = _projected_corner_error(img, T, None)
    assert err_pinhole.max() > 1.0


def test_render_rejects_impossible_poses():
    behind = make_transform(np.eye(3), [-0.14, -0.1, -0.5])
    with pytest.raises(ValueError, match="behind the camera"):
        render_board_view(SPEC, K, behind, SIZE)
    flipped = make_transform(np.diag([1.0, -1.0, -1.0]), [-0.14, 0.1, 0.5])
    with pytest.raises(ValueError, match="seen from behind"):
        render_board_view(SPEC, K, flipped, SIZE)


def test_noise_is_seeded():
    T = look_at_board(SPEC, 0.5)
    a = render_board_view(SPEC, K, T, SIZE, noise_sigma=3.0, rng=5)
    b = render_board_view(SPEC, K, T, SIZE, noise_sigma=3.0, rng=5)
    c = render_board_view(SPEC, K, T, SIZE, noise_sigma=3.0, rng=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
