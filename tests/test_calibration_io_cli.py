"""Calibration YAML files (round trips, malformed input) and the CLI end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from calibration.board import CharucoBoardSpec
from calibration.cli import add_calibration_commands, main
from calibration.detection import detect_charuco
from calibration.hand_eye import calibrate_hand_eye
from calibration.intrinsics import CameraIntrinsics, IntrinsicsCalibration, RejectedView, ViewResult
from calibration.io import (
    CalibrationFileError,
    RobotPose,
    load_board_spec,
    load_hand_eye,
    load_intrinsics,
    load_robot_poses,
    save_hand_eye,
    save_intrinsics,
    save_robot_poses,
)
from calibration.render import render_board_view, sample_board_poses
from calibration.synthetic import make_hand_eye_scenario
from calibration.transforms import make_transform, rotation_angle_rad, transform_to_xyz_quat

SPEC = CharucoBoardSpec(squares_x=7, squares_y=5, square_length_m=0.04, marker_length_m=0.03)
K = np.array([[600.0, 0.0, 322.5], [0.0, 605.0, 238.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
REPO = Path(__file__).resolve().parents[1]


def _intrinsics_result():
    return IntrinsicsCalibration(
        camera_name="wrist_cam",
        camera=CameraIntrinsics(K=K, dist=np.array([-0.1, 0.01, 1e-4, -2e-4, 0.0]), image_size=SIZE),
        rms_px=0.123,
        board=SPEC,
        views=(ViewResult("a.png", 24, 0.1), ViewResult("b.png", 20, 0.15)),
        rejected=(RejectedView("c.png", "board not detected"),),
        std_dev={"fx": 0.4, "fy": 0.4, "cx": 0.6, "cy": 0.5},
        date="2025-01-02T03:04:05+00:00",
    )


def _hand_eye_result():
    X = make_transform(cv2.Rodrigues(np.array([0.1, -0.2, 1.5]))[0], [0.03, -0.05, 0.08])
    T_base_board = make_transform(np.diag([1.0, -1.0, -1.0]), [0.6, 0.1, 0.0])
    sc = make_hand_eye_scenario("eye_in_hand", X, T_base_board, SPEC, K, SIZE, 8, rng=1, max_roll_deg=60)
    return calibrate_hand_eye(sc.T_base_gripper, sc.T_cam_board, mode="eye_in_hand", method="TSAI"), X


def test_intrinsics_yaml_round_trip(tmp_path):
    res = _intrinsics_result()
    path = save_intrinsics(res, tmp_path / "cam.yaml")
    raw = yaml.safe_load(path.read_text())
    assert raw["kind"] == "camera_intrinsics" and raw["image_size"] == {"width": 640, "height": 480}
    loaded = load_intrinsics(path)
    assert np.array_equal(loaded.camera.K, res.camera.K)
    assert np.array_equal(loaded.camera.dist, res.camera.dist)
    assert loaded.camera.image_size == SIZE
    assert loaded.board == SPEC and loaded.camera_name == "wrist_cam"
    assert loaded.rms_px == res.rms_px and loaded.n_views == 2 and loaded.date == res.date
    assert loaded.rejected == res.rejected and loaded.std_dev == res.std_dev


def test_hand_eye_yaml_round_trip(tmp_path):
    res, X = _hand_eye_result()
    path = save_hand_eye(res, tmp_path / "he.yaml")
    raw = yaml.safe_load(path.read_text())
    assert raw["mode"] == "eye_in_hand" and raw["transform"] == "T_gripper_cam" and raw["method"] == "TSAI"
    assert set(raw["residuals"]) == {"translation_rms_mm", "translation_max_mm", "rotation_rms_deg", "rotation_max_deg"}
    loaded = load_hand_eye(path)
    assert np.array_equal(loaded.T, res.T)
    assert np.allclose(loaded.T, X, atol=1e-6)
    assert loaded.residual == res.residual
    assert loaded.n_poses == 8 and loaded.pose_names == res.pose_names


def test_robot_poses_round_trip_and_quaternion_form(tmp_path):
    T = make_transform(cv2.Rodrigues(np.array([0.3, 0.2, -0.1]))[0], [0.4, -0.1, 0.3])
    path = save_robot_poses([RobotPose(T, "x.png"), RobotPose(np.eye(4), "y.png")], tmp_path / "poses.yaml")
    poses = load_robot_poses(path)
    assert [p.image for p in poses] == ["x.png", "y.png"] and np.allclose(poses[0].T_base_gripper, T)
    xyz, q = transform_to_xyz_quat(T)
    qpath = tmp_path / "q.yaml"
    qpath.write_text(yaml.safe_dump({"poses": [{"translation_m": xyz.tolist(), "quaternion_xyzw": q.tolist()}]}))
    assert np.allclose(load_robot_poses(qpath)[0].T_base_gripper, T)


def _edit(path, **changes):
    data = yaml.safe_load(path.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(K=None), "missing required field 'K'"),
        (dict(K=[[600, 0, 320], [0, 600, 240]]), r"field 'K' must have shape \(3, 3\)"),
        (dict(K=[[600, 0, 320], [0, 600, 240], [0, 0, "x"]]), "field 'K' must be numeric"),
        (dict(dist=[0.1, 0.2, 0.3]), "dist must have"),
        (dict(image_size=[640]), "field 'image_size'"),
        (dict(kind="hand_eye"), "expected kind 'camera_intrinsics', found 'hand_eye'"),
        (dict(format_version=99), "unsupported format_version 99"),
        (dict(board={"squares_x": 7}), "invalid board: board spec is missing required key"),
        (dict(rms_px="small"), "field 'rms_px' must be a number"),
    ],
)
def test_malformed_intrinsics_file(tmp_path, changes, match):
    path = _edit(save_intrinsics(_intrinsics_result(), tmp_path / "cam.yaml"), **changes)
    with pytest.raises(CalibrationFileError, match=match) as info:
        load_intrinsics(path)
    assert "cam.yaml" in str(info.value)


def test_malformed_files_misc(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("K: [[1, 2\nrms_px: : :\n")
    with pytest.raises(CalibrationFileError, match="broken.yaml: invalid YAML"):
        load_intrinsics(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(CalibrationFileError, match="expected a YAML mapping"):
        load_hand_eye(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_intrinsics(tmp_path / "missing.yaml")
    he = save_hand_eye(_hand_eye_result()[0], tmp_path / "he.yaml")
    T = yaml.safe_load(he.read_text())["T"]
    T[0][0] = 2.0
    with pytest.raises(CalibrationFileError, match="he.yaml: T: rotation block is not a proper rotation"):
        load_hand_eye(_edit(he, T=T))
    with pytest.raises(CalibrationFileError, match="mode 'eye_to_hand' solves T_base_cam"):
        load_hand_eye(_edit(he, mode="eye_to_hand", T=np.eye(4).tolist()))
    mm = tmp_path / "poses_mm.yaml"
    mm.write_text(yaml.safe_dump({"poses": [{"T_base_gripper": make_transform(np.eye(3), [400, 0, 300]).tolist()}]}))
    with pytest.raises(CalibrationFileError, match="must be in metres"):
        load_robot_poses(mm)


# ----------------------------------------------------------------------------- CLI
def _write_views(folder: Path, spec: CharucoBoardSpec, poses, prefix="view"):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, T in enumerate(poses):
        name = f"{prefix}_{i:02d}.png"
        cv2.imwrite(str(folder / name), render_board_view(spec, K, T, SIZE, noise_sigma=1.5, rng=i))
        names.append(name)
    return names


def test_cli_board_intrinsics_handeye_round_trip(tmp_path, capsys):
    board_yaml, board_png = tmp_path / "board.yaml", tmp_path / "board.png"
    rc = main(["board", "--spec", str(board_yaml), "--out", str(board_png), "--dpi", "150",
               "--squares-x", "7", "--squares-y", "5", "--square-mm", "40", "--marker-mm", "30"])
    assert rc == 0
    spec = load_board_spec(board_yaml)
    assert spec == SPEC
    printable = cv2.imread(str(board_png), cv2.IMREAD_GRAYSCALE)
    assert detect_charuco(printable, spec, "board.png").n_corners == spec.n_corners
    assert "print at 150 dpi" in capsys.readouterr().out

    # intrinsics from images on disk (one image without a board, which must be reported and skipped)
    poses = sample_board_poses(spec, K, SIZE, 12, rng=5, max_tilt_deg=45)
    _write_views(tmp_path / "shots", spec, poses)
    cv2.imwrite(str(tmp_path / "shots" / "view_99.png"), np.full((480, 640), 128, np.uint8))
    cam_yaml = tmp_path / "out" / "cam.yaml"
    rc = main(["intrinsics", "--images", str(tmp_path / "shots" / "*.png"), "--board", str(board_yaml),
               "--out", str(cam_yaml), "--camera-name", "scene"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "RMS reprojection error" in out and "rejected view_99.png" in out
    intr = load_intrinsics(cam_yaml)
    assert intr.camera_name == "scene" and intr.n_views == 12 and intr.rms_px < 0.5
    assert abs(intr.camera.fx / K[0, 0] - 1) < 0.01 and abs(intr.camera.cy - K[1, 2]) < 3.0

    # hand-eye (eye_to_hand) from images on disk + robot poses YAML, using the intrinsics just written
    X = make_transform(cv2.Rodrigues(np.array([2.5, 0.3, -0.2]))[0], [0.5, -0.3, 0.7])
    T_gripper_board = make_transform(np.eye(3), [0.0, 0.0, 0.05])
    sc = make_hand_eye_scenario("eye_to_hand", X, T_gripper_board, spec, K, SIZE, 10, rng=8, max_roll_deg=60)
    names = _write_views(tmp_path / "he", spec, sc.T_cam_board, prefix="he")
    poses_yaml = save_robot_poses(
        [RobotPose(T, n) for T, n in reversed(list(zip(sc.T_base_gripper, names)))], tmp_path / "robot.yaml"
    )  # reversed order: pairing must go by image name
    he_yaml = tmp_path / "he.yaml"
    rc = main(["handeye", "--mode", "eye_to_hand", "--images", str(tmp_path / "he" / "*.png"),
               "--robot-poses", str(poses_yaml), "--intrinsics", str(cam_yaml), "--out", str(he_yaml),
               "--method", "daniilidis"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "T_base_cam" in out
    he = load_hand_eye(he_yaml)
    assert he.mode == "eye_to_hand" and he.method == "DANIILIDIS" and he.camera_name == "scene"
    assert he.intrinsics_file == str(cam_yaml)
    assert np.linalg.norm(he.T[:3, 3] - X[:3, 3]) < 0.003  # calibrated (not true) intrinsics here
    assert np.rad2deg(rotation_angle_rad(he.T[:3, :3].T @ X[:3, :3])) < 0.5


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    board_yaml = tmp_path / "board.yaml"
    board_yaml.write_text(yaml.safe_dump(SPEC.to_dict()))
    rc = main(["intrinsics", "--images", str(tmp_path / "nothing" / "*.png"), "--board", str(board_yaml),
               "--out", str(tmp_path / "cam.yaml")])
    assert rc == 2
    assert "no image files match" in capsys.readouterr().err
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"blank{i}.png"), np.full((48, 64), 255, np.uint8))
    rc = main(["intrinsics", "--images", str(tmp_path / "imgs" / "*.png"), "--board", str(board_yaml),
               "--out", str(tmp_path / "cam.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "too few usable views" in err and "blank0.png (board not detected" in err
    assert not (tmp_path / "cam.yaml").exists()


def test_add_calibration_commands_plugs_into_a_host_parser(tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="dfp")
    top = parser.add_subparsers(dest="cmd", required=True)
    calib = top.add_parser("calib").add_subparsers(dest="calib_cmd", required=True)
    add_calibration_commands(calib)
    spec_path = tmp_path / "b.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC.to_dict()))
    args = parser.parse_args(["calib", "board", "--spec", str(spec_path), "--out", str(tmp_path / "b.png")])
    assert args.func(args) == 0 and (tmp_path / "b.png").is_file()


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "calibration.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert all(cmd in proc.stdout for cmd in ("board", "intrinsics", "handeye"))
