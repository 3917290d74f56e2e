"""Start / stop-and-save with idle time between episodes (``RecorderConfig.wait_for_start``).

Keys are typed on a pseudo-terminal by the robot's ``read_state`` hook, so each key reaches
the KeyboardTeleop in a known loop iteration: the assertions below are exact, not timing.
Iteration ``i`` (1-based) reads state ``i``, test-pattern frame ``i - 1``, sends command
``i - 1`` (0-based) and then polls the events typed before it.
"""

from __future__ import annotations

import io
import os
import pty
from pathlib import Path

import numpy as np
import pytest
from fixtures.recording import KeyWriter, RampTeleop, StepRobot, pattern_frame_number

from data_collection.cameras.base import CameraConfig
from data_collection.cameras.simulated import SimulatedCamera
from data_collection.recorder import Recorder, RecorderConfig, RecorderError
from data_collection.teleop.base import TELEOP_EVENTS
from data_collection.teleop.keyboard import KeyboardTeleop
from df_policy.data.ops import validate_store
from df_policy.data.store import EpisodeStore

W, H = 200, 32  # test-pattern frames are unique for k < 800


def _camera(realtime: bool = False, fps: float = 10.0) -> SimulatedCamera:
    return SimulatedCamera(CameraConfig(name="cam", width=W, height=H, fps=fps), realtime=realtime)


def _config(tmp_path: Path, **kw) -> RecorderConfig:
    base = {"store_path": tmp_path / "store", "fps": 10.0, "max_episode_s": 100.0, "realtime": False,
            "max_skew_s": 0.5, "flush_every": 100, "status": False, "wait_for_start": True}
    base.update(kw)
    return RecorderConfig(**base)


def test_keyboard_start_save_idle_and_quit(tmp_path):
    master, slave = pty.openpty()
    keys = {
        3: b"y", 4: b"d",  # verdict / discard while idle: ignored
        5: b"s",           # start episode 0 (iterations 6..12)
        12: b"s",          # stop and save it
        15: b"n",          # ignored
        17: b"n y",        # n ignored, space starts episode 1 (18..22), y follows start: episode 1's
        22: b"s",
        25: b"q",          # quit while idle
    }
    robot = StepRobot(on_read=KeyWriter(master, keys))
    cam = _camera()
    ramp = RampTeleop()
    lines: list[str] = []
    status = io.StringIO()
    try:
        rec = Recorder(_config(tmp_path, status=True), robot, [cam], KeyboardTeleop(inner=ramp, fd=slave),
                       log=robot.log(lines), status_stream=status)
        summary = rec.run()
    finally:
        os.close(master)
        os.close(slave)

    assert lines == [
        "episode=0 waiting", "idle ignored=success", "idle ignored=discard", "episode=0 started",
        "episode=0 committed steps=7 success=None",
        "episode=1 waiting", "idle ignored=failure", "idle ignored=failure", "episode=1 started",
        "episode=1 committed steps=5 success=True",
        "episode=2 waiting",
    ]
    assert summary["quit"] and summary["episodes_saved"] == 2 and summary["episodes_discarded"] == 0
    assert summary["steps"] == 12 and summary["dropped_steps"] == 0 and summary["ignored_events"] == 4
    assert summary["idle_s"] > 0
    assert not robot.is_connected and not cam.is_running  # stopped what it started

    # the robot was commanded in every iteration, idle ones included ...
    assert robot.reads == 25 and len(robot.sent) == 25
    assert robot.marks["episode=0 started"] == 5 and robot.marks["episode=2 waiting"] == 22
    # ... and without a reset of the teleop at start: the ramp continues, no jump back to the
    # measured position (which lags the commands)
    assert ramp.resets == 0
    sent = np.array(robot.sent)
    np.testing.assert_allclose(sent[:, 0], 0.1 + 0.01 * np.arange(25), atol=1e-12)

    store = EpisodeStore.open(tmp_path / "store")
    assert store.partial is None and validate_store(tmp_path / "store") == []
    assert [m.length for m in store.episode_meta] == [7, 5]
    assert [m.success for m in store.episode_meta] == [None, True]  # idle y never reached episode 0
    for ep, iterations in ((0, range(6, 13)), (1, range(18, 23))):
        data = store.episode(ep)
        frames = [pattern_frame_number(img, W, H) for img in data["cam"]]
        assert frames == [i - 1 for i in iterations]  # frames read while idle were never recorded
        np.testing.assert_array_equal(data["action"], sent[[i - 1 for i in iterations]].astype(np.float32))
        stamps = data["stamp_s"][:, 0]
        assert stamps[0] == 0 and np.all(np.diff(stamps) > 0)
    assert "idle | press s to start episode 0 | q quits" in status.getvalue()


def test_quit_while_idle_leaves_nothing_behind(tmp_path):
    robot = StepRobot()
    cam = _camera()
    teleop = RampTeleop({3: ["success", "quit"]})
    summary = Recorder(_config(tmp_path), robot, [cam], teleop).run()
    assert summary["quit"] and summary["episodes_saved"] == summary["episodes_discarded"] == 0
    assert summary["steps"] == 0 and summary["ignored_events"] == 1
    assert len(robot.sent) == 3 and not teleop.is_started
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 0 and store.n_steps == 0 and store.partial is None
    assert validate_store(tmp_path / "store") == []
    assert all(store.array(k).shape[0] == 0 for k in store.schema.keys)


def test_start_and_save_events_and_the_scene_hook(tmp_path):
    # A device with separate start / save buttons; a scene hook (simulation): the hook runs at
    # start, then the teleop is reset (its targets belonged to the old scene).
    robot = StepRobot()
    teleop = RampTeleop({2: ["save"], 3: ["start"], 5: ["start"], 7: ["save"]})
    calls: list[tuple[int, int]] = []

    def hook(i: int) -> str:
        calls.append((i, teleop.calls))
        return f"scene {i}"

    lines: list[str] = []
    summary = Recorder(_config(tmp_path, episodes=1), robot, [_camera()], teleop, on_episode_start=hook,
                       log=lines.append).run()
    assert calls == [(0, 3)]  # after the idle iterations, not before them
    assert teleop.resets == 1
    assert lines == ["episode=0 waiting", "idle ignored=save", "episode=0 started", "episode=0 ignored=start",
                     "episode=0 committed steps=4 success=None"]
    assert summary["steps"] == 4 and summary["ignored_events"] == 2 and not summary["quit"]
    assert EpisodeStore.open(tmp_path / "store").episode_meta[0].notes == "scene 0"


def test_without_wait_toggle_saves_and_episodes_start_at_once(tmp_path):
    robot = StepRobot()
    teleop = RampTeleop({3: ["start"], 5: ["toggle"], 8: ["save"]})
    lines: list[str] = []
    summary = Recorder(_config(tmp_path, episodes=2, wait_for_start=False), robot, [_camera()], teleop,
                       log=lines.append).run()
    assert lines == ["episode=0 started", "episode=0 ignored=start", "episode=0 committed steps=5 success=None",
                     "episode=1 started", "episode=1 committed steps=3 success=None"]
    assert summary["idle_s"] == 0 and summary["ignored_events"] == 1
    assert teleop.resets == 2  # auto-start: reset before every episode, as before


def test_paced_idle_runs_at_fps(tmp_path):
    fps = 20.0
    robot = StepRobot(fps=fps, wall_clock=True)
    cam = _camera(realtime=True, fps=fps)
    teleop = RampTeleop({10: ["toggle"], 20: ["toggle"]})
    config = _config(tmp_path, fps=fps, realtime=True, episodes=1, max_skew_s=0.2, frame_timeout_s=0.2)
    summary = Recorder(config, robot, [cam], teleop).run()
    assert len(robot.sent) == 20
    assert summary["steps"] + summary["dropped_steps"] == 10
    assert 9 / fps - 0.02 <= summary["idle_s"] < 5.0, summary  # 10 paced idle iterations


def test_event_contracts_and_defaults():
    from data_collection.teleop import gamepad, spacemouse
    from data_collection.teleop.jog import BUTTON_ACTIONS
    from data_collection.teleop.keyboard import KEY_EVENTS

    assert {"start", "toggle"} <= set(TELEOP_EVENTS) and {"start", "toggle"} <= set(BUTTON_ACTIONS)
    assert KEY_EVENTS["s"] == KEY_EVENTS[" "] == "toggle"
    assert gamepad.GamepadTeleop.default_buttons()["BTN_START"] == "toggle"
    assert spacemouse.SpaceMouseTeleop.default_buttons()["BTN_1"] == "toggle"
    assert gamepad.GamepadConfig(buttons={"BTN_START": "start", "BTN_SELECT": "save"}).buttons["BTN_START"] == "start"
    assert RecorderConfig(store_path=Path("x")).wait_for_start is False  # Python default: as before
    with pytest.raises(RecorderError, match="wait_for_start"):
        RecorderConfig(store_path=Path("x"), wait_for_start="yes")


def test_rig_files_wait_for_start_by_default(tmp_path):
    import textwrap

    from data_collection.rig import example_configs, load_rig
    from data_collection.rig_build import build

    rig_text = textwrap.dedent("""
        robot: {type: simulated, joint_names: [a, b], position_lower: -1, position_upper: 1}
        cameras: [{type: simulated, name: cam, width: 32, height: 24, fps: 10}]
        teleop: {device: keyboard}
    """)
    path = tmp_path / "rig.yaml"
    path.write_text(rig_text)
    rig = load_rig(path)
    assert rig.recorder.wait_for_start is None and rig.wait_for_start
    assert build(rig, store_path=tmp_path / "s").recorder_config.wait_for_start is True
    assert "idle between episodes (s starts)" in rig.describe()
    path.write_text(rig_text + "recorder: {wait_for_start: false}\n")
    assert build(load_rig(path), store_path=tmp_path / "s").recorder_config.wait_for_start is False
    # the shipped scripted-expert example starts at once
    sim = load_rig(example_configs()["sim_arm_scripted"])
    assert sim.recorder.wait_for_start is False and not sim.wait_for_start
    assert sim.recorder.to_config(tmp_path / "s", scripted=True).wait_for_start is False
    # null with the scripted teleop: no start button, so no waiting
    assert load_rig(example_configs()["so101_ros2_realsense"]).wait_for_start
