"""Hand-eye calibration, both mountings: exact synthetic poses and rendered images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from calibration.board import CharucoBoardSpec
from calibration.hand_eye import (
    HAND_EYE_METHODS,
    board_poses_from_images,
    calibrate_hand_eye,
    hand_eye_residual,
)
from calibration.intrinsics import CameraIntrinsics
from calibration.render import render_board_view
from calibration.synthetic import make_hand_eye_scenario
from calibration.transforms import invert, make_transform, rotation_angle_rad

SPEC = CharucoBoardSpec(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
K = np.array([[600.0, 0.0, 322.5], [0.0, 605.0, 238.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
CAMERA = CameraIntrinsics(K=K, dist=np.zeros(5), image_size=SIZE)

# Tolerances stated by this test suite.
EXACT_TRANS_TOL_M = 1e-6
EXACT_ROT_TOL_RAD = 1e-6
IMAGE_TRANS_TOL_M = 0.002  # 2 mm
IMAGE_ROT_TOL_DEG = 0.5


def _T(rpy_deg, t):
    return make_transform(Rotation.from_euler("xyz", rpy_deg, degrees=True).as_matrix(), t)


# Ground truth per mode: (X, fixed board pose).
TRUTH = {
    # camera on the flange, looking along the tool axis, offset 8 cm; board on the table.
    "eye_in_hand": (_T([5, -3, 90], [0.03, -0.05, 0.08]), _T([180, 0, 30], [0.6, 0.1, 0.0])),
    # camera on a tripod looking at the robot; board on the flange.
    "eye_to_hand": (_T([-150, 0, 20], [0.5, -0.3, 0.7]), _T([0, 0, 15], [0.0, 0.0, 0.05])),
}


def _errors(T_est, T_true):
    dt = float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))
    dr = rotation_angle_rad(T_est[:3, :3].T @ T_true[:3, :3])
    return dt, dr


def _scenario(mode, n=15, seed=3):
    X, fixed = TRUTH[mode]
    return make_hand_eye_scenario(mode, X, fixed, SPEC, K, SIZE, n, rng=seed, max_roll_deg=60)


@pytest.mark.parametrize("method", list(HAND_EYE_METHODS))
@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_exact_poses_recover_X(mode, method):
    sc = _scenario(mode, n=10)
    result = calibrate_hand_eye(sc.T_base_gripper, sc.T_cam_board, mode=mode, method=method)
    dt, dr = _errors(result.T, sc.X)
    assert dt < EXACT_TRANS_TOL_M and dr < EXACT_ROT_TOL_RAD, (dt, dr)
    assert result.transform_name == {"eye_in_hand": "T_gripper_cam", "eye_to_hand": "T_base_cam"}[mode]
    assert result.residual.translation_max_mm < 1e-3 and result.residual.rotation_max_deg < 1e-4
    dt_fixed, dr_fixed = _errors(result.T_fixed_board, sc.T_fixed_board)
    assert dt_fixed < 1e-6 and dr_fixed < 1e-6


def test_mode_matters():
    """Eye-to-hand data solved as eye-in-hand must not give the right answer (guards the inversion)."""
    sc = _scenario("eye_to_hand", n=10)
    wrong = calibrate_hand_eye(sc.T_base_gripper, sc.T_cam_board, mode="eye_in_hand")
    dt, _ = _errors(wrong.T, sc.X)
    assert dt > 0.05
    assert wrong.residual.translation_rms_mm > 10.0


def test_residual_detects_wrong_X():
    sc = _scenario("eye_in_hand", n=8)
    X_bad = sc.X @ _T([0, 0, 0], [0.005, 0.0, 0.0])  # 5 mm off
    residual, _ = hand_eye_residual("eye_in_hand", X_bad, sc.T_base_gripper, sc.T_cam_board)
    assert residual.translation_rms_mm > 1.0
    residual_ok, _ = hand_eye_residual("eye_in_hand", sc.X, sc.T_base_gripper, sc.T_cam_board)
    assert residual_ok.translation_rms_mm < 1e-6


@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_images_recover_X(mode):
    sc = _scenario(mode, n=15, seed={"eye_in_hand": 3, "eye_to_hand": 4}[mode])
    images = [
        render_board_view(SPEC, K, T, SIZE, noise_sigma=2.0, blur_sigma=0.5, rng=i)
        for i, T in enumerate(sc.T_cam_board)
    ]
    names = [f"{mode}_{i:02d}.png" for i in range(len(images))]
    obs = board_poses_from_images(images, SPEC, CAMERA, names=names)
    assert len(obs.indices) == len(images) and not obs.rejected
    assert max(obs.reprojection_rms_px) < 0.5
    result = calibrate_hand_eye(
        [sc.T_base_gripper[i] for i in obs.indices], obs.T_cam_board, mode=mode, method="PARK", pose_names=obs.names
    )
    dt, dr = _errors(result.T, sc.X)
    assert dt < IMAGE_TRANS_TOL_M, f"translation error {dt * 1000:.3f} mm"
    assert np.rad2deg(dr) < IMAGE_ROT_TOL_DEG, f"rotation error {np.rad2deg(dr):.3f} deg"
    assert result.residual.translation_rms_mm < 2.0
    assert result.residual.rotation_rms_deg < 0.5
    assert result.pose_names == tuple(names)


def test_board_poses_skip_or_raise_on_bad_images():
    sc = _scenario("eye_in_hand", n=3)
    images = [render_board_view(SPEC, K, T, SIZE) for T in sc.T_cam_board]
    images.insert(1, np.full((480, 640), 90, np.uint8))
    images.append(np.zeros((240, 320), np.uint8))
    names = ["a.png", "nothing.png", "b.png", "c.png", "small.png"]
    obs = board_poses_from_images(images, SPEC, CAMERA, names=names)
    assert obs.indices == (0, 2, 3)
    assert [r.name for r in obs.rejected] == ["nothing.png", "small.png"]
    assert "board not detected" in obs.rejected[0].reason
    assert "does not match the intrinsics" in obs.rejected[1].reason
    with pytest.raises(ValueError, match="nothing.png: board not detected"):
        board_poses_from_images(images, SPEC, CAMERA, names=names, on_bad_view="raise")


def test_bad_inputs_give_clear_errors():
    sc = _scenario("eye_in_hand", n=6)
    Tbg, Tcb = list(sc.T_base_gripper), list(sc.T_cam_board)
    with pytest.raises(ValueError, match="too few poses for hand-eye calibration: 3 < 5"):
        calibrate_hand_eye(Tbg[:3], Tcb[:3])
    with pytest.raises(ValueError, match="6 robot poses but 5 board poses"):
        calibrate_hand_eye(Tbg, Tcb[:5])
    bad = [T.copy() for T in Tbg]
    bad[2][:3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"T_base_gripper\[2\]: rotation block is not a proper rotation"):
        calibrate_hand_eye(bad, Tcb)
    with pytest.raises(ValueError, match="mode must be one of"):
        calibrate_hand_eye(Tbg, Tcb, mode="eye_on_base")
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate_hand_eye(Tbg, Tcb, method="MAGIC")


def test_degenerate_robot_motion_is_rejected():
    X, T_base_board = TRUTH["eye_in_hand"]
    rng = np.random.default_rng(0)
    # Pure translations: rotation of X unobservable.
    Tbg = [_T([180, 0, 0], [0.4, 0.0, 0.4] + rng.uniform(-0.05, 0.05, 3)) for _ in range(6)]
    Tcb = [invert(X) @ invert(T) @ T_base_board for T in Tbg]
    with pytest.raises(ValueError, match="do not rotate the gripper"):
        calibrate_hand_eye(Tbg, Tcb)
    # Rotations about a single (z) axis only.
    Tbg = [_T([180, 0, a], [0.4, 0.0, 0.4] + rng.uniform(-0.05, 0.05, 3)) for a in (0, 20, 40, 60, 80, 100)]
    Tcb = [invert(X) @ invert(T) @ T_base_board for T in Tbg]
    with pytest.raises(ValueError, match="single axis"):
        calibrate_hand_eye(Tbg, Tcb)
