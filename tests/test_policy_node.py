"""The ROS 2 policy node over real DDS on 127.0.0.1: a real (tiny) checkpoint, the simulated driver
node, an in-test camera node, real services and /diagnostics. Nothing is mocked.

The checkpoint is built once per module: 2 scripted demonstrations of the simulated SO-101 arm
(64x64 ``scene`` camera + ``joint_pos``) recorded through the real recorder, then 2 training
steps of the ``arm_demo`` policy shrunk to a toy size. Its outputs are meaningless, which is
fine: the tests check the node's contract (when it commands, what it sends, when it holds).
"""

from __future__ import annotations

import collections
import importlib.util
import os
import py_compile
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
pytest.importorskip("trajectory_msgs.msg")
pytest.importorskip("diagnostic_msgs.msg")
pytest.importorskip("std_srvs.srv")

from fixtures.policy_node_harness import JOINTS, LOWER, UPPER, Camera, Monitor
from fixtures.policy_node_harness import checkpoint, ros_env  # noqa: F401 - pytest fixtures
from fixtures.policy_node_harness import node_config as _config
from fixtures.policy_node_harness import set_bool as _set_bool
from fixtures.policy_node_harness import sim_driver as _driver
from fixtures.policy_node_harness import status_values as _values
from fixtures.ros_env import loopback_ros_env

from df_policy.ros.node_config import PolicyNodeConfig, PolicyNodeConfigError
from df_policy.ros.node_thread import wait_until
from df_policy.ros.policy_node import PolicyNode, build_arg_parser

# rosidl_generator_py imports lark, which imports the deprecated sre_* modules
pytestmark = [pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

REPO = Path(__file__).resolve().parents[1]
RUN = f"/pn{os.getpid()}"  # topic prefix: even a domain-id collision with another run cannot cross-talk


def test_node_commands_only_when_enabled_and_holds_on_stale_camera(checkpoint):
    from diagnostic_msgs.msg import DiagnosticStatus

    from df_policy.runtime.safety import Command

    prefix = f"{RUN}/main"
    camera = Camera(f"{prefix}/camera/image_raw")
    monitor = Monitor(f"{prefix}/command")
    node = PolicyNode(_config(checkpoint, prefix)).start()
    driver = _driver(prefix)
    try:
        # no joint state yet: enabling fails and says why
        response = _set_bool(monitor, True)
        assert not response.success
        assert f"no sensor_msgs/JointState received on {prefix}/joint_states" in response.message
        assert not node.enabled

        driver.start()
        assert wait_until(lambda: all(a is not None and a < 0.3 for a in node.input_ages().values()), 10.0), \
            f"inputs never arrived: {node.input_ages()}"
        # the monitor (and the driver) are matched to the command publisher, yet nothing is commanded
        assert wait_until(lambda: node.command_subscriber_count >= 2, 10.0)
        t_disabled = time.monotonic()
        status = monitor.wait_status(lambda s: True, since=t_disabled)
        assert status.level == DiagnosticStatus.OK and "disabled" in status.message
        time.sleep(0.5)
        assert monitor.commands == [] and driver.stats.commands_executed == 0
        assert node.counters["commands_published"] == 0 and node.runtime.stats()["ticks"] == 0

        # enable: commands at ~10 Hz, finite, within the limits, in the checkpoint's joint order
        response = _set_bool(monitor, True)
        assert response.success, response.message
        assert "enabled from measured position" in response.message
        assert wait_until(lambda: len(monitor.commands) > 0, 10.0), "no command after enable"
        t_first = monitor.commands[0][0]
        time.sleep(3.0)
        window = [(t, m) for t, m in list(monitor.commands) if t_first <= t <= t_first + 3.0]
        rate = (len(window) - 1) / 3.0
        assert 5.0 <= rate <= 15.0, f"command rate {rate:.1f} Hz, configured 10 Hz"
        positions = []
        for _, msg in list(monitor.commands):
            assert tuple(msg.joint_names) == JOINTS
            assert len(msg.points) == 1
            point = msg.points[0]
            assert point.time_from_start.sec == 0 and point.time_from_start.nanosec == 100_000_000
            positions.append(np.asarray(point.positions, dtype=np.float64))
        positions = np.stack(positions)
        assert np.isfinite(positions).all()
        assert (positions >= np.asarray(LOWER)).all() and (positions <= np.asarray(UPPER)).all(), \
            f"command outside limits: min {positions.min(0)}, max {positions.max(0)}"
        # the driver (joints in another order + an extra one) executed them all (the window's last
        # command may still be in flight to the driver when the monitor already has it)
        assert wait_until(lambda: driver.stats.commands_executed >= len(window), 2.0), (driver.stats, len(window))
        assert driver.stats.commands_rejected == 0
        gaps = np.diff([t for t, _ in window])
        print(f"\ncommands: {rate:.2f} Hz over 3 s, inter-arrival p50 {np.percentile(gaps, 50) * 1e3:.1f} ms, "
              f"p99 {np.percentile(gaps, 99) * 1e3:.1f} ms; node: {node.loop.report()}; "
              f"inference p50/p99 {node.runtime.stats()['inference_ms_p50']:.1f}/"
              f"{node.runtime.stats()['inference_ms_p99']:.1f} ms")
        status = monitor.wait_status(lambda s: "commanding" in s.message, since=time.monotonic())
        values = _values(status)
        assert int(values["commands"]) > 0 and float(values["inference_ms_p50"]) > 0
        assert int(values["clipped.position"]) > 0  # the wrist_roll limit was hit, and held

        # the camera stops: the node holds (publishes nothing) and /diagnostics says why
        camera.on = False
        t_stop = time.monotonic()
        status = monitor.wait_status(lambda s: _values(s).get("hold_kind") == "stale_observation", since=t_stop)
        assert status.level == DiagnosticStatus.WARN
        assert "newest observation is" in _values(status)["hold_reason"]
        assert int(_values(status)["holds.stale_observation"]) > 0
        n_held = len(monitor.commands)
        time.sleep(1.0)
        assert len(monitor.commands) == n_held, "commands were published from a stale observation"
        assert node.enabled

        # the camera resumes: so do the commands
        camera.on = True
        assert wait_until(lambda: len(monitor.commands) > n_held + 3, 10.0), "commands did not resume"

        # last line of defence: a command outside the limits reaching the publishing step (a bug
        # upstream; the safety layer never emits one) is not published and latches a fault
        now = time.monotonic()
        bad = np.zeros(6)
        bad[4] = 1.5  # wrist_roll, limit 1.0
        assert node._last_line_check(Command(bad, now, now, 0))[0] == "unsafe"
        assert node._last_line_check(Command(np.full(6, np.nan), now, now, 0))[0] == "unsafe"
        from sensor_msgs.msg import JointState

        raw = []
        monitor.node.create_subscription(JointState, "/policy_node/command_raw", raw.append, 100)
        time.sleep(0.5)  # discovery of the new subscription
        node._on_result(Command(bad, now, now, 0, raw=bad))  # what the control loop calls with each tick's result
        assert node.fault == "command outside the position limits: wrist_roll=1.5000"
        # the refused command is still recorded as what the policy wanted
        assert wait_until(lambda: any(m.position[4] == 1.5 for m in raw), 5.0)
        status = monitor.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, since=now)
        assert "fault" in status.message and "wrist_roll=1.5000" in status.message
        assert wait_until(lambda: not node.enabled, 3.0), "a fault must stop commanding"
        assert all(abs(m.points[0].positions[4]) <= 1.0 for _, m in list(monitor.commands))
        n_fault = len(monitor.commands)
        time.sleep(0.5)
        assert len(monitor.commands) == n_fault
        response = _set_bool(monitor, True)  # enabling again clears the fault
        assert response.success and node.fault is None, response.message
        assert wait_until(lambda: len(monitor.commands) > n_fault + 3, 10.0), "commands did not resume"

        # disable: nothing more is published
        response = _set_bool(monitor, False)
        assert response.success and not node.enabled
        time.sleep(0.3)
        n_disabled = len(monitor.commands)
        time.sleep(0.7)
        assert len(monitor.commands) == n_disabled
        # no callback or control-loop sink ever raised (e.g. while logging a hold)
        assert node.loop.sink_errors == 0, node.loop.last_error
        assert node.counters["callback_errors"] == 0
    finally:
        node.stop()
        driver.stop()
        camera.stop()
        monitor.stop()
    assert node.node is None


def test_startup_fails_clearly_on_joint_or_camera_mismatch(checkpoint, tmp_path):
    prefix = f"{RUN}/bad"
    with pytest.raises(PolicyNodeConfigError, match=r"do not match the checkpoint's joint order .*different order"):
        PolicyNode(_config(checkpoint, prefix, joint_names=JOINTS[::-1])).start()
    renamed = ("base", *JOINTS[1:])
    with pytest.raises(PolicyNodeConfigError, match=r"joint_names \['base', .*do not match"):
        PolicyNode(_config(checkpoint, prefix, joint_names=renamed)).start()
    with pytest.raises(PolicyNodeConfigError, match=r"reads camera images \['scene'\].*camera_topics\.scene"):
        PolicyNode(_config(checkpoint, prefix, camera_topics={"wrist": "/b"})).start()
    with pytest.raises(PolicyNodeConfigError, match=r"camera_topics names \['wrist'\], which the checkpoint"):
        PolicyNode(_config(checkpoint, prefix, camera_topics={"scene": "/a", "wrist": "/b"})).start()
    with pytest.raises(PolicyNodeConfigError, match="cannot load checkpoint"):
        PolicyNode(_config(checkpoint.parent / "missing", prefix)).start()
    # a typo in a -p override is refused, not silently ignored
    with pytest.raises(PolicyNodeConfigError, match=r"unknown parameters \['max_velocty'\]"):
        PolicyNode(_config(checkpoint, prefix), ros_args=["-p", "max_velocty:=0.5"]).start()
    # ... and so is one in a parameters file (what launch's params_file passes); known names apply
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"max_velocity": 0.7, "tracking_mod": "clip"}}}))
    with pytest.raises(PolicyNodeConfigError, match=r"unknown parameters \['tracking_mod'\]"):
        PolicyNode(_config(checkpoint, prefix), ros_args=["--params-file", str(params)]).start()
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"max_velocity": 0.7}}}))
    with PolicyNode(_config(checkpoint, prefix), ros_args=["--params-file", str(params)]) as node:
        assert node.config.max_velocity == 0.7
    # a camera topic can come from a ROS parameter alone; YAML lists may mix ints and floats
    settings = {**_config(checkpoint, prefix, camera_topics={}).to_dict(),
                "position_lower": [-1.9, -1.7, -1.6, -1.6, -1, 0], "max_tracking_error": [0.5, 0.5, 0.5, 0.5, 1, 1]}
    node = PolicyNode(settings, ros_args=["-p", f"camera_topics.scene:={prefix}/cam"])
    try:
        node.start()
        assert node.config.camera_topics == {"scene": f"{prefix}/cam"}
        assert node.config.position_lower[-2:] == (-1.0, 0.0) and node.config.max_tracking_error[-1] == 1.0
        assert not node.enabled
    finally:
        node.stop()


def test_the_checkpoint_alone_starts_the_node_with_the_recorded_robot(checkpoint, tmp_path):
    """No config: joint names and limits come from the checkpoint's store schema (the recorder
    stores the robot's limits), the camera from realsense2_camera's default topic; a checkpoint
    whose data recorded no limits is refused with what to set."""
    import json

    from df_policy.sim import SimArmEnv
    from df_policy.sim.tasks import demo_task_config

    with SimArmEnv(demo_task_config()) as env:
        names, lower, upper = env.joint_names, env.lower, env.upper
        vmax = env.config.velocity_max_rad_s
    with PolicyNode({"checkpoint": str(checkpoint), "node_name": "checkpoint_only_node"}) as node:
        cfg = node.config
        assert cfg.joint_names == tuple(names)
        np.testing.assert_allclose(cfg.position_lower, lower)
        np.testing.assert_allclose(cfg.position_upper, upper)
        # the schema's hardware speed limit, lowered so one step uses at most 0.4 of the tracking
        # bound (default 0.5 rad) at the checkpoint's rate: a legal motion cannot trip the fault
        fps = 1.0 / node.period_s
        assert vmax > 0.4 * 0.5 * fps, "the test needs a hardware limit above what the bound allows"
        np.testing.assert_allclose(cfg.max_velocity, 0.4 * 0.5 * fps)
        assert cfg.camera_topics == {"scene": "/camera/color/image_raw"} and not node.enabled
    from df_policy.ros.node_setup import checkpoint_defaults

    per_joint = checkpoint_defaults({"checkpoint": str(checkpoint), "max_tracking_error": [0.5] * 5 + [100.0]})
    np.testing.assert_allclose(per_joint["max_velocity"], [0.2 * fps] * 5 + [vmax])  # the gripper keeps its limit
    unbounded = checkpoint_defaults({"checkpoint": str(checkpoint), "max_tracking_error": None})
    np.testing.assert_allclose(unbounded["max_velocity"], vmax)  # no bound: nothing to stay within
    # the config wins over the schema
    with PolicyNode({"checkpoint": str(checkpoint), "node_name": "checkpoint_only_node", "max_velocity": 0.5}) as node:
        assert node.config.max_velocity == 0.5 and node.config.joint_names == tuple(names)
    bare = tmp_path / "no_limits"
    shutil.copytree(checkpoint / "checkpoints" / "last", bare)
    schema = json.loads((bare / "schema.json").read_text())
    assert schema.pop("joint_limits")["velocity_max"] == [vmax] * len(names)
    (bare / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(PolicyNodeConfigError, match=r"missing required settings \['position_lower', "
                       r"'position_upper', 'max_velocity'\]: give them in the node config"):
        PolicyNode({"checkpoint": str(bare), "node_name": "checkpoint_only_node"}).start()


class SimClock:
    """Publishes ``/clock`` every 5 ms of wall time, simulation time running at ``speed`` x real
    time from 1000 s, while ``on`` (off = the simulation is paused)."""

    def __init__(self, speed: float) -> None:
        from rosgraph_msgs.msg import Clock

        from df_policy.ros.node_thread import NodeThread, NodeThreadConfig

        self.speed, self.on, self.sim_s, self._wall = speed, True, 1000.0, time.monotonic()
        self.thread = NodeThread(NodeThreadConfig("test_sim_clock"))
        node = self.thread.start()
        self._msg = Clock
        self.pub = node.create_publisher(Clock, "/clock", 10)
        node.create_timer(0.005, self._tick)

    def _tick(self) -> None:
        wall = time.monotonic()
        if self.on:
            self.sim_s += self.speed * (wall - self._wall)
            msg = self._msg()
            msg.clock.sec, msg.clock.nanosec = int(self.sim_s), int((self.sim_s % 1.0) * 1e9)
            self.pub.publish(msg)
        self._wall = wall

    def stop(self) -> None:
        self.thread.stop()


def test_use_sim_time_runs_the_control_loop_on_the_simulation_clock(checkpoint):
    """use_sim_time: commands at the configured rate in simulation time (half the rate in wall
    time for a simulation at half speed), timed in simulation time; nothing while it is paused."""
    from df_policy.ros.ros_clock import RosNodeClock
    from df_policy.runtime.safety import Command, Hold

    prefix = f"{RUN}/simtime"
    sim_clock = SimClock(speed=0.5)
    camera = Camera(f"{prefix}/camera/image_raw")
    monitor = Monitor(f"{prefix}/command")
    driver = _driver(prefix)
    node = PolicyNode(_config(checkpoint, prefix, tracking_grace_s=1.0),
                      ros_args=["-p", "use_sim_time:=true"])
    try:
        node.start()
        assert isinstance(node.clock, RosNodeClock) and node.runtime.clock is node.clock
        assert wait_until(lambda: node.clock.now() > 1000.0, 10.0), "the node never saw /clock"
        driver.start()
        assert wait_until(lambda: all(a is not None and a < 0.3 for a in node.input_ages().values()), 10.0), \
            f"inputs never arrived: {node.input_ages()}"
        assert wait_until(lambda: node.command_subscriber_count >= 2, 10.0)
        response = _set_bool(monitor, True)
        assert response.success, response.message
        assert wait_until(lambda: len(monitor.commands) > 2, 10.0), "no command after enable"
        t0, ticks0 = monitor.commands[-1][0], node.loop.ticks
        time.sleep(3.0)
        wall_rate = (node.loop.ticks - ticks0) / 3.0
        window = [(t, m) for t, m in list(monitor.commands) if t0 <= t <= t0 + 3.0]
        # every tick (a Command, or a Hold when inference fell behind on a loaded machine) is
        # stamped with its start on the node clock: simulation time, one simulated period apart
        results = list(node.loop.results)[-int(wall_rate * 3.0):]
        sim_period = float(np.median(np.diff([r.time for r in results])))
        holds = collections.Counter(r.kind for r in results if isinstance(r, Hold))
        print(f"\nuse_sim_time at 0.5x: {wall_rate:.2f} ticks per wall second, median {sim_period * 1e3:.1f} ms "
              f"of simulation time apart, {len(window)} commands published, holds {dict(holds)}")
        assert 3.0 <= wall_rate <= 7.0, f"{wall_rate:.1f} ticks/s of wall time; expected ~5 (10 Hz at 0.5x)"
        assert 0.08 <= sim_period <= 0.12, f"ticks {sim_period:.3f} s of simulation time apart, expected 0.1"
        commands = [r for r in results if isinstance(r, Command)]
        assert len(commands) >= len(results) // 2, f"mostly holds: {dict(holds)}"
        assert min(c.target_time for c in commands) > 1000.0  # command times are simulation times
        # and so are the trajectories' stamps (trajectory_stamp: plan = the command's target time,
        # or half a period ago for a late one): in the ticks' simulated span, at least about a
        # simulated period apart (more where a tick held)
        header = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in window])
        assert results[0].time - 1.0 < header.min() and header.max() < results[-1].time + 1.0, \
            (header.min(), header.max(), results[0].time, results[-1].time)
        assert np.all(np.diff(header) > 0.04), np.diff(header)

        sim_clock.on = False  # paused: time stands still, nothing is commanded, nothing faults
        time.sleep(0.3)
        n_paused = len(monitor.commands)
        time.sleep(1.0)
        assert len(monitor.commands) == n_paused, "commands while the simulation was paused"
        assert node.fault is None and node.enabled
        sim_clock.on = True
        assert wait_until(lambda: len(monitor.commands) > n_paused + 3, 10.0), "commands did not resume"
        assert node.fault is None and node.loop.failure is None
    finally:
        node.stop()
        driver.stop()
        camera.stop()
        monitor.stop()
        sim_clock.stop()


def test_the_simulated_arm_is_the_time_source_with_publish_clock():
    """sim_arm_node --publish-clock: /clock carries simulated time (half the wall time at
    real_time_factor 0.5) and the JointState stamps are on it, so use_sim_time nodes follow it."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from df_policy.ros.node_thread import NodeThread, NodeThreadConfig
    from df_policy.ros.sim_arm_node import SimArmNode, SimArmNodeConfig
    from df_policy.sim.gl import NoGLBackendError, select_gl_backend

    try:
        select_gl_backend()
    except NoGLBackendError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no headless OpenGL backend: {exc}")
    prefix = f"{RUN}/clocked_sim"
    clocks: list[tuple[float, float]] = []
    stamps: list[float] = []
    listener = NodeThread(NodeThreadConfig("clock_listener"))
    node = listener.start()
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(
        (time.monotonic(), m.clock.sec + m.clock.nanosec * 1e-9)), 100)
    node.create_subscription(JointState, f"{prefix}/joint_states",
                             lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 100)
    sim = SimArmNode(SimArmNodeConfig(publish_clock=True, real_time_factor=0.5, node_name="clocked_sim_arm",
                                      joint_state_topic=f"{prefix}/joint_states", command_topic=f"{prefix}/command",
                                      camera_topics={"scene": f"{prefix}/image"}))
    try:
        sim.start()
        assert wait_until(lambda: len(clocks) > 10 and len(stamps) > 10, 10.0), "no /clock or JointState"
        time.sleep(2.0)
        (w0, c0), (w1, c1) = clocks[5], clocks[-1]
        rate = (c1 - c0) / (w1 - w0)
        print(f"\n/clock advances {rate:.3f} simulated s per wall s at real_time_factor 0.5")
        assert 0.35 <= rate <= 0.55, f"/clock ran at {rate:.2f}x wall time, expected 0.5x"
        assert c1 < 20.0 and c1 == pytest.approx(sim.sim_time_s, abs=0.2)  # simulated seconds since start-up
        assert stamps[-1] <= c1 + 1e-9 and stamps[-1] >= c1 - 0.5  # JointState stamped in simulated time
    finally:
        sim.stop()
        listener.stop()


def _stream_lines(proc: subprocess.Popen, sink: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: sink.extend(iter(proc.stdout.readline, "")), daemon=True)
    thread.start()
    return thread


def test_command_line_yaml_ros_parameters_enable_and_sigint(checkpoint, tmp_path):
    """``python -m df_policy.ros.policy_node --config --enable`` with a ROS parameter override, stopped
    by SIGINT; JPEG frames (CompressedImage) in, Float64MultiArray commands out."""
    prefix = f"{RUN}/cli"
    config = yaml.safe_load((REPO / "df_policy" / "configs" / "node_so101.yaml").read_text())
    config.update(joint_state_topic=f"{prefix}/joint_states", command_topic=f"{prefix}/unused",
                  command_type="multiarray", node_name="cli_policy_node",
                  camera_topics={"scene": f"{prefix}/camera/image_raw/compressed"})
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    camera = Camera(f"{prefix}/camera/image_raw/compressed", compressed=True)
    driver = _driver(prefix, "multiarray")  # listens on {prefix}/command: only the -p override routes commands there
    driver.start()
    env = {**os.environ, **loopback_ros_env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "df_policy.ros.policy_node", "--checkpoint", str(checkpoint), "--config", str(path),
           "--enable", "--ros-args", "-p", f"command_topic:={prefix}/command", "-p", "max_velocity:=0.5",
           "-p", "planner_block_tokens:=3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = _stream_lines(proc, lines)
    try:
        assert wait_until(lambda: any("READY" in line for line in lines) or proc.poll() is not None, 60.0)
        assert proc.poll() is None, "".join(lines)
        assert wait_until(lambda: driver.stats.commands_executed >= 5, 20.0), "".join(lines)
        assert driver.stats.commands_rejected == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        driver.stop()
        camera.stop()
    reader.join(5)
    out = "".join(lines)
    assert "Traceback" not in out, out
    assert "enabled from measured position" in out and "commanding stopped: node shutting down" in out
    assert "stream: blocks of 3 token(s), 1 call(s) per tick" in out  # the -p override reached the planner


def test_command_line_errors_and_dfp_serve(checkpoint, tmp_path, capsys):
    from df_policy.cli import build_parser
    from df_policy.cli import main as dfp

    # a joint-name mismatch fails at start-up with exit code 2 and a clear message
    config = yaml.safe_load((REPO / "df_policy" / "configs" / "node_so101.yaml").read_text())
    config["joint_names"] = list(JOINTS[::-1])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert dfp(["serve", "--checkpoint", str(checkpoint), "--config", str(path)]) == 2
    assert "do not match the checkpoint's joint order" in capsys.readouterr().err
    assert dfp(["serve", "--config", str(path)]) == 2
    assert "missing required settings ['checkpoint']" in capsys.readouterr().err

    assert dfp(["serve", "--print-config"]) == 0
    example = yaml.safe_load(capsys.readouterr().out)
    assert example == yaml.safe_load((REPO / "df_policy" / "configs" / "node_so101.yaml").read_text())
    args = build_parser().parse_args(["serve", "--checkpoint", "runs/x", "--enable", "--namespace", "arm",
                                      "--ros-args", "-p", "rate_hz:=5.0"])
    assert (args.checkpoint, args.enable, args.namespace, args.ros_args) == ("runs/x", True, "arm", ["-p", "rate_hz:=5.0"])


def _load_launch_file(path: Path):
    spec = importlib.util.spec_from_file_location("df_policy_run_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports without launch / launch_ros (they are imported lazily)
    return module


def test_launch_file_maps_arguments_onto_the_node_command_line(tmp_path):
    from df_policy.ros import launch_description as launch

    # the repository's launch file and the ROS package's (a real file: the package is copyable,
    # no symlink out of ros_ws/) are the same thin import of df_policy.ros.launch_description
    files = [REPO / "launch" / "run.launch.py", REPO / "ros_ws" / "src" / "df_policy" / "launch" / "run.launch.py"]
    assert not any(f.is_symlink() or f.parent.is_symlink() for f in files)
    assert files[0].read_text() == files[1].read_text()
    example = [REPO / "df_policy" / "configs" / "node_so101.yaml", REPO / "ros_ws" / "src" / "df_policy" / "config" / "node_so101.yaml"]
    assert not example[1].is_symlink() and example[0].read_text() == example[1].read_text(), \
        "ros_ws/src/df_policy/config/node_so101.yaml must be a copy of df_policy/configs/node_so101.yaml"
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / "launch.pyc"), doraise=True)
        assert _load_launch_file(f).generate_launch_description is launch.generate_launch_description
    assert [a[0] for a in launch.LAUNCH_ARGUMENTS] == ["checkpoint", "config", "enable", "device", "namespace",
                                                        "params_file", "log_level", "use_sim", "use_sim_time"]
    assert launch.sim_node_settings("false") is None
    sim = launch.sim_node_settings("true", "/arm/")
    assert sim["namespace"] == "arm"
    from df_policy.ros.sim_arm_node import build_arg_parser as sim_parser, config_from_args

    assert config_from_args(sim_parser().parse_args(sim["arguments"])).task == "demo"
    assert not config_from_args(sim_parser().parse_args(sim["arguments"])).publish_clock
    clocked = launch.sim_node_settings("true", "", use_sim_time="true")  # the simulation is the time source
    assert config_from_args(sim_parser().parse_args(clocked["arguments"])).publish_clock
    with pytest.raises(ValueError, match="use_sim"):
        launch.sim_node_settings("maybe")
    assert (launch.PACKAGE, launch.EXECUTABLE) == ("df_policy", "policy_node")
    assert callable(launch.generate_launch_description)

    settings = launch.node_settings(checkpoint="runs/r", config="/etc/node.yaml", enable="True", device="cuda:0",
                                    namespace="/arm/")
    assert settings["namespace"] == "arm"
    # launch_ros runs: policy_node <arguments> --ros-args -r __ns:=/<namespace> ...
    args = build_arg_parser().parse_args([*settings["arguments"], "--ros-args", "-r", f"__ns:=/{settings['namespace']}"])
    assert (args.checkpoint, args.config, args.enable, args.device) == ("runs/r", "/etc/node.yaml", True, "cuda:0")
    assert args.ros_args == ["-r", "__ns:=/arm"]
    defaults = {name: default for name, default, _ in launch.LAUNCH_ARGUMENTS if name != "use_sim"}
    settings = launch.node_settings(**{**defaults, "config": "n.yaml"})
    args = build_arg_parser().parse_args(settings["arguments"])
    assert settings["namespace"] == ""
    assert (args.checkpoint, args.config, args.enable, args.device) == (None, "n.yaml", False, None)
    with pytest.raises(ValueError, match="must be true or false"):
        launch.node_settings(checkpoint="r", enable="maybe")
    with pytest.raises(ValueError, match="give checkpoint"):
        launch.node_settings(**defaults)
    with pytest.raises(ValueError, match="not a valid ROS namespace"):
        launch.node_settings(checkpoint="r", namespace="my arm")
    # params_file / log_level: what launch_ros turns into --ros-args --params-file F --log-level L
    settings = launch.node_settings(checkpoint="r", params_file=" /etc/p.yaml ", log_level="DEBUG")
    assert settings["parameters"] == ["/etc/p.yaml"] and settings["ros_arguments"] == ["--log-level", "debug"]
    args = build_arg_parser().parse_args([*settings["arguments"], "--ros-args", "--params-file", "/etc/p.yaml",
                                          *settings["ros_arguments"]])
    assert args.ros_args == ["--params-file", "/etc/p.yaml", "--log-level", "debug"]
    assert launch.node_settings(checkpoint="r")["parameters"] == []
    assert launch.node_settings(checkpoint="r", params_file="p.yaml", use_sim_time="true")["parameters"] == [
        "p.yaml", {"use_sim_time": True}]
    with pytest.raises(ValueError, match="use_sim_time"):
        launch.node_settings(checkpoint="r", use_sim_time="sometimes")
    with pytest.raises(ValueError, match="log_level"):
        launch.node_settings(checkpoint="r", log_level="loud")


def test_config_yaml_params_file_and_validation(tmp_path):
    example = REPO / "df_policy" / "configs" / "node_so101.yaml"
    cfg = PolicyNodeConfig.from_yaml(example, checkpoint="runs/x")
    assert cfg.joint_names == JOINTS and cfg.start_enabled is False and cfg.rate_hz is None
    assert cfg.camera_type("scene") == "image" and cfg.command_type == "trajectory"
    assert PolicyNodeConfig.from_mapping(cfg.to_dict()) == cfg
    # a ROS 2 parameters file with flat dotted names is the same config
    params = {"/**": {"ros__parameters": {**{k: v for k, v in cfg.to_dict().items() if k != "camera_topics"},
                                          "camera_topics.scene": "/cam/compressed", "rate_hz": 0.0}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    from_params = PolicyNodeConfig.from_yaml(path)
    assert from_params.camera_topics == {"scene": "/cam/compressed"} and from_params.rate_hz is None
    assert from_params.camera_type("scene") == "compressed"

    base = cfg.to_dict()
    for change, match in [
        ({"joint_names": list(JOINTS[:5])}, r"position_lower needs one value per joint \(5"),
        ({"position_lower": [0.0] * 6, "position_upper": [0.0] * 6}, "position_lower must be < position_upper"),
        ({"max_velocity": None}, r"missing required settings \['max_velocity'\]"),
        ({"max_velocity": [1.0, 2.0]}, "max_velocity needs one number or one per joint"),
        ({"command_type": "twist"}, "command_type must be one of"),
        ({"trajectory_stamp": "now"}, "trajectory_stamp must be one of"),
        ({"camera_types": {"wrist": "image"}}, "camera_types.wrist names no camera"),
        ({"joint_state_topic": base["command_topic"]}, "must all differ"),
        ({"max_obs_age_s": 0}, "max_obs_age_s must be > 0"),
        ({"tracking_fault_after_s": -0.1}, "tracking_fault_after_s must be >= 0"),
        ({"tracking_grace_s": "soon"}, "tracking_grace_s must be a number"),
        ({"lowdim_fields": {"joint_pos": "torque"}}, "lowdim_fields.joint_pos must be one of"),
        ({"max_velocity_typo": 1.0}, "unknown config key 'max_velocity_typo'"),
        ({"planner_block_tokens": -1}, "planner_block_tokens must be an integer >= 0"),
        ({"planner_mode": "chunk", "planner_block_tokens": 4}, "planner_block_tokens applies to planner_mode stream"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"precision": "bf16", "accelerate": "onnx"}, "precision bf16 needs accelerate channels_last or compile"),
    ]:
        with pytest.raises(PolicyNodeConfigError, match=match):
            PolicyNodeConfig.from_mapping({**base, **change})


def _colcon() -> str | None:
    return os.environ.get("DFP_COLCON") or shutil.which("colcon")


@pytest.mark.skipif(_colcon() is None, reason="colcon not installed (pip install colcon-common-extensions)")
def test_colcon_builds_the_ros_package(tmp_path):
    """``colcon build`` of ros_ws/src/df_policy, copied into another workspace, installs the
    executable and the launch file (~3 s)."""
    colcon = _colcon()
    src = tmp_path / "other_ws" / "src"
    shutil.copytree(REPO / "ros_ws" / "src" / "df_policy", src / "df_policy")  # copyable: nothing points outside
    listed = subprocess.run([colcon, "--log-base", str(tmp_path / "log"), "list", "--base-paths", str(src)],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "df_policy" in listed.stdout and "(ros.ament_python)" in listed.stdout, listed.stdout
    build = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(src),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    prefix = tmp_path / "install" / "df_policy"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "df_policy").is_file()
    assert (prefix / "share" / "df_policy" / "package.xml").is_file()
    installed_launch = prefix / "share" / "df_policy" / "launch" / "run.launch.py"
    assert installed_launch.read_text() == (REPO / "launch" / "run.launch.py").read_text()
    installed_config = prefix / "share" / "df_policy" / "config" / "node_so101.yaml"
    assert installed_config.read_text() == (REPO / "df_policy" / "configs" / "node_so101.yaml").read_text()
    # no Python module named df_policy is installed next to the pip-installed one
    assert not list(prefix.glob("lib/python*/site-packages/df_policy")), "the ROS package would shadow df_policy"
    script = prefix / "lib" / "df_policy" / "policy_node"
    site = next(prefix.glob("lib/python*/site-packages"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script), "--help"], check=False, capture_output=True, text=True,
                         env=env, timeout=60)
    assert run.returncode == 0 and "--checkpoint" in run.stdout, run.stdout + run.stderr


def test_command_groups_config_validation_and_ros_parameter_names():
    from df_policy.ros.node_setup import flatten_parameters

    base = {"checkpoint": "r", "joint_names": JOINTS, "position_lower": LOWER, "position_upper": UPPER,
            "max_velocity": 1.0}
    groups = {"arm": {"joints": list(JOINTS[:5]), "topic": "/arm/joint_trajectory"},
              "gripper": {"joints": ["gripper"], "topic": "/gripper/commands", "type": "multiarray"}}
    cfg = PolicyNodeConfig.from_mapping({**base, "command_groups": groups})
    outputs = cfg.command_outputs()
    assert list(outputs) == ["arm", "gripper"] and outputs["arm"].type == "trajectory"
    assert outputs["gripper"].joints == ("gripper",)
    assert PolicyNodeConfig.from_mapping(cfg.to_dict()) == cfg  # round trip through plain values
    # as ROS parameters (what a params file or -p gives): command_groups.<group>.<attribute>
    flat = flatten_parameters(cfg.to_dict())
    assert flat["command_groups.gripper.joints"] == ["gripper"] and flat["command_groups.arm.topic"] == "/arm/joint_trajectory"
    assert PolicyNodeConfig.from_mapping({k: v for k, v in flat.items()}) == cfg
    # without groups: one output, the command topic
    single = PolicyNodeConfig.from_mapping(base).command_outputs()
    assert list(single) == ["command"] and single["command"].joints == JOINTS
    bad = [
        ({"arm": {**groups["arm"], "joints": list(JOINTS)}, "gripper": groups["gripper"]}, "exactly one group"),
        ({"arm": groups["arm"]}, r"in none \['gripper'\]"),
        ({**groups, "gripper": {**groups["gripper"], "joints": ["grip"]}}, r"\['grip'\] are not in joint_names"),
        ({**groups, "gripper": {**groups["gripper"], "type": "effort"}}, "gripper.type must be one of"),
        ({**groups, "gripper": {**groups["gripper"], "topic": "/arm/joint_trajectory"}}, "must be distinct"),
        ({**groups, "gripper": {"joints": ["gripper"]}}, "needs joints and topic"),
        ({**groups, "gripper": {**groups["gripper"], "speed": 1}}, r"unknown keys \['speed'\]"),
    ]
    for value, why in bad:
        with pytest.raises(PolicyNodeConfigError, match=why):
            PolicyNodeConfig.from_mapping({**base, "command_groups": value})
    with pytest.raises(PolicyNodeConfigError, match="command_groups.<group>"):
        PolicyNodeConfig.from_mapping({**base, "command_groups.arm.topics": "/x"})


def test_enable_checks_the_joint_order_of_a_multiarray_controller(checkpoint):
    """Float64MultiArray values carry no names: with controller_node set, ~/enable reads that
    controller's `joints` parameter (a real ROS parameter service) and refuses a missing
    controller or another order, naming both orders."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float64MultiArray

    from df_policy.ros.node_thread import NodeThread, NodeThreadConfig

    prefix = f"{RUN}/order"
    controller = f"forward_controller_{os.getpid()}"
    camera = Camera(f"{prefix}/camera/image_raw")
    driver = _driver(prefix, command_type="multiarray")
    monitor = Monitor(f"{prefix}/command", command_msg=Float64MultiArray)
    node = PolicyNode(_config(checkpoint, prefix, command_type="multiarray", controller_node=f"/{controller}")).start()
    stand_in = NodeThread(NodeThreadConfig(controller, parameter_services=True))
    try:
        driver.start()
        assert wait_until(lambda: all(a is not None and a < 0.3 for a in node.input_ages().values()), 10.0)
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        ok, msg = node.enable()  # no controller node yet
        assert not ok and f"/{controller} did not answer" in msg, msg
        ros_node = stand_in.start()
        ros_node.declare_parameter("joints", list(reversed(JOINTS)))  # a controller configured in another order
        ok, msg = node.enable()
        assert not ok and "expects the joints in the order ['gripper', 'wrist_roll'" in msg, msg
        ros_node.set_parameters([Parameter("joints", Parameter.Type.STRING_ARRAY, list(JOINTS))])
        ok, msg = node.enable()
        assert ok, msg
        assert wait_until(lambda: len(monitor.commands) >= 3, 10.0)
        assert all(len(m.data) == len(JOINTS) for _, m in list(monitor.commands))
    finally:
        node.stop()
        for n in (stand_in, monitor, camera, driver):
            n.stop()
    with pytest.raises(PolicyNodeConfigError, match="controller_node must be a fully qualified node name"):
        _config(checkpoint, prefix, controller_node="forward controller")


def test_command_groups_split_each_command_between_controllers(checkpoint):
    """A 5-joint arm on a JTC-style topic and the gripper on a forward controller's topic: each gets
    its joints by name / in its order; enabling needs both controllers."""
    from std_msgs.msg import Float64MultiArray

    prefix = f"{RUN}/groups"
    groups = {"arm": {"joints": list(JOINTS[:5]), "topic": f"{prefix}/arm/joint_trajectory"},
              "gripper": {"joints": ["gripper"], "topic": f"{prefix}/gripper/commands", "type": "multiarray"}}
    camera = Camera(f"{prefix}/camera/image_raw")
    driver = _driver(prefix)  # joint states; nothing is sent to its own command topic
    arm = Monitor(groups["arm"]["topic"])
    node = PolicyNode(_config(checkpoint, prefix, command_groups=groups, trajectory_stamp="zero")).start()
    gripper = None
    try:
        driver.start()
        assert wait_until(lambda: all(a is not None and a < 0.3 for a in node.input_ages().values()), 10.0)
        assert wait_until(lambda: arm.node.count_publishers(groups["arm"]["topic"]) > 0, 10.0)
        response = _set_bool(arm, True)  # the gripper controller is not running
        assert not response.success and groups["gripper"]["topic"] in response.message, response.message
        gripper = Monitor(groups["gripper"]["topic"], command_msg=Float64MultiArray)
        assert wait_until(lambda: node.command_subscriber_count >= 1, 10.0)
        response = _set_bool(arm, True)
        assert response.success, response.message
        assert wait_until(lambda: len(arm.commands) >= 5 and len(gripper.commands) >= 5, 10.0)
        assert driver.stats.commands_executed == 0  # the single command_topic is not used
        for _, msg in list(arm.commands):
            assert tuple(msg.joint_names) == JOINTS[:5] and len(msg.points) == 1
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # trajectory_stamp: zero
            q = np.asarray(msg.points[0].positions)
            assert np.isfinite(q).all() and (q >= np.asarray(LOWER[:5])).all() and (q <= np.asarray(UPPER[:5])).all()
        for _, msg in list(gripper.commands):
            assert len(msg.data) == 1 and LOWER[5] <= msg.data[0] <= UPPER[5]
        assert _set_bool(arm, False).success
    finally:
        node.stop()
        for n in (arm, gripper, camera, driver):
            if n is not None:
                n.stop()
