"""The recorder's paced real-time loop and dropped-step / dropped-frame accounting, and
``dfp record --config`` end to end: a ROS 2 arm (the simulated driver in its own process, real
DDS on loopback), an OpenCV camera reading a real video file, keyboard keys on stdin.

Timing asserts are loose (the machine is shared): what is checked exactly is what the
recorder guarantees whatever the timing (no frame used twice, counters consistent, frame and
state stamps within ``max_skew_s``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from data_collection.cameras.base import CameraConfig
from data_collection.cameras.simulated import SimulatedCamera, make_test_pattern
from data_collection.recorder import Recorder, RecorderConfig
from data_collection.robots.base import RobotLimits
from data_collection.robots.simulated import SimulatedRobot, SimulatedRobotConfig
from data_collection.teleop.keyboard import KeyboardTeleop
from df_policy.data.ops import validate_store
from df_policy.data.store import EpisodeStore

# rosidl_generator_py imports lark, which imports the deprecated sre_* modules
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
W, H = 200, 32  # test pattern: blue = 8k mod 256 (period 32), square at 4k mod 200 (period 50): unique for k < 800


def _frame_number(img: np.ndarray) -> int:
    """The frame number a test-pattern image was made for (exact match required)."""
    for k in range(int(img[0, 0, 2]) // 8, 800, 32):
        if np.array_equal(img, make_test_pattern(k, W, H)):
            return k
    raise AssertionError("image is not a test-pattern frame")


def _paced_run(tmp_path: Path, *, loop_hz: float, cam_fps: float, seconds: float, max_skew_s: float,
               frame_timeout_s: float, drop_frames=(), status: io.StringIO | None = None, robot_hz: float = 100.0,
               camera_threads: bool = False, max_queue: int = 1):
    limits = RobotLimits.uniform(("a", "b", "c"), -1.0, 1.0, velocity_max=1.0)
    robot = SimulatedRobot(SimulatedRobotConfig(limits, rate_hz=robot_hz, initial_positions=(0.1, -0.2, 0.3),
                                                realtime=True))  # state stamps advance in steps of 1 / robot_hz
    cam = SimulatedCamera(CameraConfig(name="cam", width=W, height=H, fps=cam_fps), realtime=True,
                          drop_frames=drop_frames, max_queue=max_queue)
    r, w = os.pipe()  # keyboard teleop on a pipe nobody writes to: no events, the time limit ends the episode
    try:
        config = RecorderConfig(store_path=tmp_path / "store", fps=loop_hz, max_episode_s=seconds, episodes=1,
                                realtime=True, frame_timeout_s=frame_timeout_s, max_skew_s=max_skew_s,
                                flush_every=5, status=status is not None, camera_threads=camera_threads)
        recorder = Recorder(config, robot, [cam], KeyboardTeleop(fd=r), status_stream=status)
        summary = recorder.run()
    finally:
        os.close(r)
        os.close(w)
    assert not robot.is_connected and not cam.is_running  # the recorder stops what it started
    store = EpisodeStore.open(tmp_path / "store")
    assert validate_store(tmp_path / "store") == []
    ep = store.episode(0)
    frames = [_frame_number(img) for img in ep["cam"]]
    return summary, cam, ep, np.array(frames), config.max_episode_steps


def _check_common(summary, cam, ep, frames, iterations, max_skew_s, cam_fps):
    steps = summary["steps"]
    assert summary["episodes_saved"] == 1 and len(frames) == steps == len(ep["stamp_s"])
    assert steps + summary["dropped_steps"] == iterations  # every iteration is recorded or counted as dropped
    # never a frame twice: the frame numbers encoded in the stored images strictly increase
    assert np.all(np.diff(frames) > 0), frames
    assert steps <= cam.stats.frames_delivered
    # gaps between frames the recorder read are the camera's own drop count (one episode)
    assert summary["dropped_frames"] == cam.stats.frames_dropped
    # one matching answer per iteration (cameras.matching, the rule MultiCamera uses); a step
    # dropped for its state alone still matched its frame
    matching = summary["camera_matching"]["cam"]
    assert matching["matched"] + matching["missing"] + matching["stale_refused"] == iterations, matching
    assert matching["matched"] >= steps and matching["camera_dropped"] == cam.stats.frames_dropped, matching
    assert 0.0 <= matching["skew_ms_p50"] <= matching["skew_ms_p99"] <= matching["skew_ms_max"] <= max_skew_s * 1e3
    stamps = ep["stamp_s"][:, 0].astype(np.float64)
    assert stamps[0] == 0.0 and np.all(np.diff(stamps) > 0)
    # frame k was captured at t0 + k / fps and matched to a state within max_skew_s, so stamp
    # differences follow frame-number differences (a guarantee of the matching, not a timing)
    expected = np.diff(frames) / cam_fps
    np.testing.assert_array_less(np.abs(np.diff(stamps) - expected), 2 * max_skew_s + 1e-3)
    # the arm was held where it started: the commands are the measured positions
    np.testing.assert_allclose(ep["joint_pos"], np.tile([0.1, -0.2, 0.3], (steps, 1)), atol=1e-6)
    np.testing.assert_array_equal(ep["action"], ep["joint_pos"])
    return stamps


@pytest.mark.parametrize("camera_threads", [False, True])
def test_loop_faster_than_camera_drops_steps_never_reuses_frames(tmp_path, camera_threads):
    loop_hz, cam_fps, seconds, skew = 20.0, 10.0, 3.0, 0.08
    summary, cam, ep, frames, iterations = _paced_run(
        tmp_path, loop_hz=loop_hz, cam_fps=cam_fps, seconds=seconds, max_skew_s=skew, frame_timeout_s=0.01,
        camera_threads=camera_threads,
    )
    stamps = _check_common(summary, cam, ep, frames, iterations, skew, cam_fps)
    assert iterations == 60
    # the camera made at most duration * fps + 1 frames: the other iterations must be dropped
    made = summary["duration_s"] * cam_fps + 1
    assert summary["dropped_steps"] >= iterations - made > 0, summary
    assert summary["steps"] >= 10, summary
    # paced: about loop_hz iterations per second, and recorded steps ~1 / camera fps apart
    assert abs(summary["mean_loop_hz"] - loop_hz) < 0.3 * loop_hz, summary
    assert abs(np.median(np.diff(stamps)) - 1 / cam_fps) < 0.3 / cam_fps, np.diff(stamps)


@pytest.mark.parametrize("camera_threads", [False, True])
def test_camera_dropping_frames_is_counted(tmp_path, camera_threads):
    loop_hz = cam_fps = 20.0
    skew = 0.06
    dropped = (15, 16, 30)
    status = io.StringIO()
    summary, cam, ep, frames, iterations = _paced_run(
        tmp_path, loop_hz=loop_hz, cam_fps=cam_fps, seconds=3.0, max_skew_s=skew, frame_timeout_s=0.02,
        drop_frames=dropped, status=status, camera_threads=camera_threads,
    )
    stamps = _check_common(summary, cam, ep, frames, iterations, skew, cam_fps)
    assert frames[0] < 15 and frames[-1] > 30, frames  # the episode spans the injected drops
    assert not set(dropped) & set(frames.tolist())
    assert cam.stats.extra["injected_drops"] == 3
    assert summary["dropped_frames"] >= 3, summary
    # the recorded frames around the holes are (at least) 3 and 2 frame periods apart
    for before, after in ((14, 17), (29, 31)):
        i, j = np.searchsorted(frames, before, side="right") - 1, np.searchsorted(frames, after)
        assert frames[j] - frames[i] >= after - before
        assert stamps[j] - stamps[i] > (after - before) / cam_fps - 2 * skew - 1e-3
    assert abs(summary["mean_loop_hz"] - loop_hz) < 0.3 * loop_hz, summary
    assert abs(np.median(np.diff(stamps)) - 1 / loop_hz) < 0.3 / loop_hz, np.diff(stamps)
    # the live status line: episode, elapsed time, steps, rate, dropped steps
    last = status.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("episode 0 |") and " steps | " in last and " Hz | dropped " in last, last

    # the training windows never span the holes: the steps across a gap are padding
    from df_policy.data.dataset import DatasetConfig, make_datasets

    train, _ = make_datasets(str(tmp_path / "store"), DatasetConfig(n_obs_steps=2, horizon=8, val_ratio=0.0,
                                                                      crop_shape=None), progress=False)
    idx = np.arange(len(train))
    for (steps, pad) in (train.index.obs_indices(idx), train.index.action_indices(idx)):
        for row, mask in zip(steps, pad):
            real = stamps[row[~mask]]
            assert np.all(np.diff(real) <= 1.5 / loop_hz), real  # consecutive real steps: one period apart
    hole = int(np.searchsorted(frames, 17))  # the first step after the injected drop of frames 15 and 16
    assert np.any(train.index.ep_start == hole), "the hole starts a new segment"


def test_camera_threads_record_the_frame_nearest_the_state_from_a_queueing_camera(tmp_path):
    """A 40 fps camera that queues 4 frames, a 10 Hz loop, frames accepted within 15 ms of the
    state. Read in turn on the loop's thread, the next frame would be the oldest queued, ~75 ms
    old, and every step dropped (``test_cameras_multi``); with camera_threads the reader keeps
    the frames and the one nearest the state (at most 12.5 ms away) is recorded."""
    summary, cam, ep, frames, iterations = _paced_run(
        tmp_path, loop_hz=10.0, cam_fps=40.0, seconds=2.0, max_skew_s=0.015, frame_timeout_s=0.05,
        camera_threads=True, max_queue=4)
    _check_common(summary, cam, ep, frames, iterations, 0.015, 40.0)
    # (locally every step; a loaded machine may starve the reader past a period's wait)
    assert summary["steps"] >= 0.75 * iterations, summary


def test_an_episode_with_every_step_dropped_stops_the_session_with_the_reason(tmp_path):
    """Read in turn, the queueing camera of the test above gives frames ~75 ms old against a 15 ms
    max_skew_s: the episode records nothing. The session stops with an error that says why and
    shows the per-camera matching, instead of discarding empty episodes forever."""
    from data_collection.recorder import RecorderError

    with pytest.raises(RecorderError, match=r"episode 0: nothing recorded in 10 steps, every one dropped .*"
                                            r"'cam': \{'matched': 0, 'missing': 10.*max_skew_s=0.015"):
        _paced_run(tmp_path, loop_hz=10.0, cam_fps=40.0, seconds=1.0, max_skew_s=0.015, frame_timeout_s=0.05,
                   camera_threads=False, max_queue=4)
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 0 and store.partial is None


def test_a_camera_lost_with_camera_threads_ends_the_episode_and_the_session(tmp_path):
    """The camera stops under a threaded recorder (every read of its reader fails, as after an
    unplug): no new frame reaches the loop, and after camera_lost_s the episode is saved marked
    bad and the session stops with a CameraError naming the camera and the reader's error."""
    from data_collection.cameras.base import CameraError

    limits = RobotLimits.uniform(("a", "b", "c"), -1.0, 1.0, velocity_max=1.0)
    robot = SimulatedRobot(SimulatedRobotConfig(limits, rate_hz=100.0, initial_positions=(0.1, -0.2, 0.3),
                                                realtime=True))
    cam = SimulatedCamera(CameraConfig(name="cam", width=W, height=H, fps=20.0), realtime=True)
    r, w = os.pipe()
    try:
        config = RecorderConfig(store_path=tmp_path / "store", fps=20.0, max_episode_s=10.0, episodes=1,
                                realtime=True, frame_timeout_s=0.02, max_skew_s=0.03, flush_every=5, status=False,
                                camera_threads=True, camera_lost_s=0.5)
        recorder = Recorder(config, robot, [cam], KeyboardTeleop(fd=r))
        recorder.log = lambda line: cam.stop() if line == "episode=0 flushed steps=10" else None
        with pytest.raises(CameraError, match=r"camera cam delivered no frame for 0.5 s .* cam: .*before start"):
            recorder.run()
    finally:
        os.close(r)
        os.close(w)
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 1 and store.episode_meta[0].bad and store.episode_meta[0].length >= 10
    assert validate_store(tmp_path / "store") == []


def test_robot_state_slower_than_loop_is_never_recorded_twice(tmp_path):
    # The simulated robot's state advances every 0.2 s: 4 loop iterations see the same state.
    loop_hz = cam_fps = 20.0
    robot_hz, skew = 5.0, 0.25
    summary, cam, ep, frames, iterations = _paced_run(
        tmp_path, loop_hz=loop_hz, cam_fps=cam_fps, seconds=2.0, max_skew_s=skew, frame_timeout_s=0.02,
        robot_hz=robot_hz,
    )
    stamps = _check_common(summary, cam, ep, frames, iterations, skew, cam_fps)  # stamps strictly increase
    assert summary["steps"] <= summary["duration_s"] * robot_hz + 1, summary  # one step per new state at most
    assert summary["dropped_steps"] >= iterations - (summary["duration_s"] * robot_hz + 1) > 0, summary
    # state stamps are multiples of the robot's step: recorded ones are whole steps apart
    steps_apart = np.diff(stamps) * robot_hz
    np.testing.assert_allclose(steps_apart, np.round(steps_apart), atol=1e-3)
    assert np.all(np.round(steps_apart) >= 1)


# ---------------------------------------------------------------------- CLI end to end (ROS 2 + OpenCV + keys)

JOINTS_DRIVER = ("shoulder", "elbow", "wrist")
JOINTS_RIG = ("wrist", "shoulder", "elbow")  # another order: the recorder must pick joints by name
POSE = {"shoulder": 0.3, "elbow": -0.2, "wrist": 0.1}
VW, VH, VFPS = 64, 48, 20


def _video_frame(i: int) -> np.ndarray:
    """BGR frame ``i``: blue = i, green / red = x / y gradients."""
    ys, xs = np.mgrid[0:VH, 0:VW]
    return np.stack([np.full((VH, VW), i), xs * 4, ys * 5], axis=-1).astype(np.uint8)


def _write_video(path: Path, n: int) -> None:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), float(VFPS), (VW, VH))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for i in range(n):
        writer.write(_video_frame(i))
    writer.release()


def _rig_yaml(prefix: str) -> str:
    return f"""
name: e2e
robot:
  type: ros2
  joint_names: [{", ".join(JOINTS_RIG)}]
  position_lower: -1.5
  position_upper: 1.5
  velocity_max: 2.0
  state_topic: {prefix}/joint_states
  command_topic: {prefix}/command
  command_type: trajectory
  max_state_age_s: 1.0
  connect_timeout_s: 30.0
  node_name: e2e_recorder
cameras:
  - type: opencv
    name: front
    path: clip.avi             # relative to this file
    width: {VW}
    height: {VH}
    fps: {VFPS}
    intrinsics: {{fx: 60.0, fy: 60.0, cx: 31.5, cy: 23.5}}
teleop:
  device: keyboard
recorder:
  fps: 20
  max_episode_s: 60
  task: hold still
  flush_every: 5
  frame_timeout_s: 0.2
  max_skew_s: 0.1
"""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_cli_records_ros2_arm_video_camera_keyboard(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("trajectory_msgs.msg")
    from fixtures.ros_env import loopback_ros_env, loopback_ros_environment

    from data_collection.robots import Ros2Robot, Ros2RobotConfig
    from df_policy.ros.node_thread import wait_until

    prefix = f"/rec{os.getpid()}"
    n_video = 240
    _write_video(tmp_path / "clip.avi", n_video)
    (tmp_path / "rig.yaml").write_text(_rig_yaml(prefix))
    env = dict(os.environ, **loopback_ros_env(), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")

    driver_cmd = [
        sys.executable, "-m", "data_collection.robots.ros2_sim_driver", "--joints", ",".join(JOINTS_DRIVER),
        "--lower", "-1.5", "--upper", "1.5", "--vmax", "2.0", "--reverse-joint-order", "--extra-joints", "finger",
        "--state-topic", f"{prefix}/joint_states", "--command-topic", f"{prefix}/command", "--node-name", "e2e_driver",
    ]  # fmt: skip
    driver_log = tmp_path / "driver.log"
    with open(driver_log, "w") as log:
        driver = subprocess.Popen(driver_cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    recorder = None
    try:
        assert driver.stdout.readline().strip() == "READY", driver_log.read_text()
        # Move the arm to a pose where every joint differs, then let the recorder hold it there.
        with loopback_ros_environment():
            limits = RobotLimits.uniform(JOINTS_DRIVER, -1.5, 1.5, velocity_max=2.0)
            with Ros2Robot(Ros2RobotConfig(limits, state_topic=f"{prefix}/joint_states",
                                           command_topic=f"{prefix}/command", connect_timeout_s=30.0,
                                           max_state_age_s=1.0, node_name="e2e_mover")) as mover:
                mover.send_command([POSE[j] for j in JOINTS_DRIVER])
                target = np.array([POSE[j] for j in JOINTS_DRIVER], np.float32)
                assert wait_until(lambda: np.allclose(mover.read_state(allow_stale=True).positions, target,
                                                      atol=2e-3), 10.0, poll_s=0.02)

        recorder = subprocess.Popen(
            [sys.executable, "-m", "data_collection.recorder", "--config", str(tmp_path / "rig.yaml"),
             "--out", str(tmp_path / "store"), "--no-status"],
            env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        watchdog = threading.Timer(120.0, recorder.kill)
        watchdog.start()
        lines: list[str] = []
        try:
            for raw in recorder.stdout:
                line = raw.decode().strip()
                lines.append(line)
                if line == "episode=0 waiting":  # rig files idle before every episode
                    recorder.stdin.write(b"n ")  # a verdict while idle is ignored; space starts episode 0
                    recorder.stdin.flush()
                elif line == "episode=0 flushed steps=10":
                    recorder.stdin.write(b"ys")  # success, save
                    recorder.stdin.flush()
                elif line == "episode=1 waiting":
                    recorder.stdin.write(b"s")  # start episode 1
                    recorder.stdin.flush()
                elif line == "episode=1 flushed steps=5":
                    recorder.stdin.write(b"q")  # quit: episode 1 is discarded
                    recorder.stdin.flush()
            rc = recorder.wait(30)
        finally:
            watchdog.cancel()
        stderr = recorder.stderr.read().decode()
        assert rc == 0, f"{lines}\n{stderr}"
    finally:
        for proc in (recorder, driver):
            if proc is not None:
                _stop(proc)
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
    assert driver.returncode == 0, driver_log.read_text()

    summary = json.loads(lines[-1])
    assert summary["episodes_saved"] == 1 and summary["episodes_discarded"] == 1 and summary["quit"], summary
    assert summary["ignored_events"] == 1 and summary["idle_s"] > 0, summary
    assert lines[:3] == ["episode=0 waiting", "idle ignored=failure", "episode=0 started"], lines
    assert "episode=0 committed steps=" in lines[lines.index("episode=0 flushed steps=10") + 1]
    assert "episode=1 discarded" in lines
    store_path = tmp_path / "store"
    assert validate_store(store_path) == []
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 1 and store.episode_meta[0].success is True
    assert store.episode_meta[0].task == "hold still"
    schema = store.schema
    assert schema.joint_names == list(JOINTS_RIG) and schema.keys["joint_pos"].names == JOINTS_RIG
    assert schema.cameras["front"]["intrinsics"]["fx"] == 60.0
    ep = store.episode(0)
    n = len(ep["joint_pos"])
    assert n >= 10 and n == summary["steps"]
    # joint_pos by name: the driver publishes (wrist, elbow, shoulder, finger), the rig wants (wrist, shoulder, elbow)
    np.testing.assert_allclose(ep["joint_pos"], np.tile([POSE[j] for j in JOINTS_RIG], (n, 1)), atol=5e-3)
    np.testing.assert_array_equal(ep["action"], ep["joint_pos"])  # keyboard teleop holds the measured pose
    assert np.all(np.diff(ep["stamp_s"][:, 0]) > 0)
    # every image is a video frame (RGB of the BGR written), frames in file order, none twice
    import cv2

    index = ep["front"][:, 0, 0, 2].astype(int)  # blue (BGR channel 0) is RGB channel 2
    assert np.all(np.diff(index) > 0) and index[-1] < n_video, index
    for img, i in zip(ep["front"], index, strict=True):
        np.testing.assert_array_equal(img, cv2.cvtColor(_video_frame(int(i)), cv2.COLOR_BGR2RGB))
