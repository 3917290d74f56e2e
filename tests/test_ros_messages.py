"""df_policy.ros.messages with the real ROS 2 message classes (no nodes, no DDS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from df_policy.ros.messages import (
    CommandConverter,
    JointStateConverter,
    MessageConversionError,
    camera_info_to_intrinsics,
    compressed_image_to_rgb,
    depth_to_image,
    duration_to_ns,
    image_to_depth,
    image_to_rgb,
    ns_to_duration,
    ns_to_time,
    rgb_to_image,
    sec_to_duration,
    sec_to_time,
    time_to_ns,
    time_to_sec,
)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
std_msgs = pytest.importorskip("std_msgs.msg")
trajectory_msgs = pytest.importorskip("trajectory_msgs.msg")
builtin = pytest.importorskip("builtin_interfaces.msg")

JOINTS = ("shoulder", "elbow", "wrist")


def joint_state(names, position, velocity=(), effort=(), sec=12, nanosec=345):
    msg = sensor_msgs.JointState()
    msg.header.stamp = builtin.Time(sec=sec, nanosec=nanosec)
    msg.name = list(names)
    msg.position = [float(x) for x in position]
    msg.velocity = [float(x) for x in velocity]
    msg.effort = [float(x) for x in effort]
    return msg


# --------------------------------------------------------------------------- package import


def test_package_imports_without_ros():
    code = textwrap.dedent(
        """
        import sys
        for m in ("rclpy", "sensor_msgs", "std_msgs", "trajectory_msgs", "builtin_interfaces"):
            sys.modules[m] = None  # make any ROS import fail
        import df_policy.ros, df_policy.ros.messages, df_policy.ros.observation, df_policy.ros.node_thread
        import data_collection.robots
        from df_policy.ros import JointStateConverter, RosUnavailableError
        try:
            JointStateConverter(["a"]).to_msg([0.0])
        except RosUnavailableError as e:
            print("OK", "sensor_msgs" in str(e))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK True"


# --------------------------------------------------------------------------- joint state


def test_joint_state_reorders_and_ignores_extra_joints():
    conv = JointStateConverter(JOINTS)
    msg = joint_state(
        ["gripper", "wrist", "shoulder", "elbow"], [9.0, 3.0, 1.0, 2.0], velocity=[0.9, 0.3, 0.1, 0.2]
    )
    sample = conv.read(msg)
    assert sample.position.dtype == np.float32
    np.testing.assert_array_equal(sample.position, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(sample.velocity, [0.1, 0.2, 0.3], rtol=1e-6)
    assert sample.effort is None
    assert sample.stamp_ns == 12_000_000_345
    np.testing.assert_array_equal(conv.position(msg), [1.0, 2.0, 3.0])
    # a different order on the next message (the index cache must follow)
    np.testing.assert_array_equal(conv.position(joint_state(JOINTS[::-1], [3.0, 2.0, 1.0])), [1.0, 2.0, 3.0])


def test_joint_state_missing_joint_names_it():
    conv = JointStateConverter(JOINTS)
    with pytest.raises(MessageConversionError, match=r"missing joints \['elbow'\]"):
        conv.read(joint_state(["shoulder", "wrist"], [0.0, 0.0]))


def test_joint_state_rejects_nan_and_malformed():
    conv = JointStateConverter(JOINTS)
    with pytest.raises(MessageConversionError, match=r"position is not finite: elbow=nan"):
        conv.read(joint_state(JOINTS, [0.0, float("nan"), 0.0]))
    with pytest.raises(MessageConversionError, match="velocity is not finite: wrist=inf"):
        conv.read(joint_state(JOINTS, [0.0] * 3, velocity=[0.0, 0.0, float("inf")]))
    with pytest.raises(MessageConversionError, match="3 names but 2 position"):
        conv.read(joint_state(JOINTS, [0.0, 0.0]))
    with pytest.raises(MessageConversionError, match="'elbow' twice"):
        conv.read(joint_state(["shoulder", "elbow", "elbow", "wrist"], [0.0] * 4))
    with pytest.raises(MessageConversionError, match="no velocity values"):
        conv.read(joint_state(JOINTS, [0.0] * 3), require_velocity=True)
    # NaN effort is accepted when effort is not checked (drivers that do not measure it)
    lenient = JointStateConverter(JOINTS, check_finite=("position", "velocity"))
    assert np.isnan(lenient.read(joint_state(JOINTS, [0.0] * 3, effort=[float("nan")] * 3)).effort).all()
    with pytest.raises(MessageConversionError, match="duplicate joint names"):
        JointStateConverter(["a", "a"])


def test_joint_state_to_msg_round_trip():
    conv = JointStateConverter(JOINTS)
    msg = conv.to_msg([0.5, -0.25, 1.0], velocity=[1.0, 2.0, 3.0], stamp=ns_to_time(1_700_000_000_123_456_789))
    assert isinstance(msg, sensor_msgs.JointState)
    assert list(msg.name) == list(JOINTS) and len(msg.effort) == 0
    sample = conv.read(msg)
    np.testing.assert_array_equal(sample.position, np.float32([0.5, -0.25, 1.0]))
    np.testing.assert_array_equal(sample.velocity, np.float32([1.0, 2.0, 3.0]))
    assert sample.stamp_ns == 1_700_000_000_123_456_789
    with pytest.raises(MessageConversionError, match=r"shape \(3,\)"):
        conv.to_msg([0.0, 1.0])
    with pytest.raises(MessageConversionError, match="shoulder=nan"):
        conv.to_msg([float("nan"), 0.0, 0.0])


# --------------------------------------------------------------------------- commands


def test_multiarray_round_trip_and_validation():
    conv = CommandConverter(JOINTS)
    action = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    msg = conv.to_multiarray(action)
    assert isinstance(msg, std_msgs.Float64MultiArray) and len(msg.data) == 3
    back = conv.from_multiarray(msg)
    assert back.dtype == np.float32 and back.shape == (3,)
    np.testing.assert_array_equal(back, action)
    np.testing.assert_array_equal(conv.to_action(msg), action)

    chunk = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    np.testing.assert_array_equal(conv.from_multiarray(conv.to_multiarray(chunk)), chunk)

    plain = std_msgs.Float64MultiArray(data=[1.0, 2.0, 3.0])  # empty layout, as forward controllers use
    np.testing.assert_array_equal(conv.from_multiarray(plain), [1.0, 2.0, 3.0])
    with pytest.raises(MessageConversionError, match="4 values, expected 3"):
        conv.from_multiarray(std_msgs.Float64MultiArray(data=[1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(MessageConversionError, match=r"shape \(2,\), expected \(3,\)"):
        conv.to_multiarray([1.0, 2.0])
    with pytest.raises(MessageConversionError, match="elbow=inf"):
        conv.to_multiarray([0.0, np.inf, 0.0])
    with pytest.raises(MessageConversionError, match="not finite"):
        conv.from_multiarray(std_msgs.Float64MultiArray(data=[0.0, float("nan"), 0.0]))


def test_trajectory_round_trip_with_times_and_velocities():
    conv = CommandConverter(JOINTS)
    chunk = np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.4], [0.3, 0.4, 0.5]], dtype=np.float32)
    vel = np.ones_like(chunk)
    msg = conv.to_trajectory(chunk, dt_s=0.1, velocities=vel)
    assert isinstance(msg, trajectory_msgs.JointTrajectory)
    assert list(msg.joint_names) == list(JOINTS)
    assert [duration_to_ns(p.time_from_start) for p in msg.points] == [100_000_000, 200_000_000, 300_000_000]
    back = conv.from_trajectory(msg)
    np.testing.assert_array_equal(back.positions, chunk)
    np.testing.assert_array_equal(back.velocities, vel)
    np.testing.assert_allclose(back.times_s, [0.1, 0.2, 0.3])
    assert back.stamp_ns == 0

    single = conv.to_trajectory(chunk[0], dt_s=0.05, start_s=0.0)
    assert len(single.points) == 1 and duration_to_ns(single.points[0].time_from_start) == 0
    assert len(single.points[0].velocities) == 0
    np.testing.assert_array_equal(conv.to_action(single), chunk[0])


def test_trajectory_from_other_joint_order_and_errors():
    conv = CommandConverter(JOINTS)
    msg = trajectory_msgs.JointTrajectory()
    msg.joint_names = ["wrist", "extra", "shoulder", "elbow"]
    p = trajectory_msgs.JointTrajectoryPoint(positions=[3.0, 9.0, 1.0, 2.0])
    p.time_from_start = sec_to_duration(0.5)
    msg.points = [p]
    np.testing.assert_array_equal(conv.to_action(msg), [1.0, 2.0, 3.0])

    msg.joint_names = ["wrist", "extra", "shoulder", "knee"]
    with pytest.raises(MessageConversionError, match=r"JointTrajectory is missing joints \['elbow'\]"):
        conv.from_trajectory(msg)
    with pytest.raises(MessageConversionError, match="no points"):
        conv.from_trajectory(trajectory_msgs.JointTrajectory(joint_names=list(JOINTS)))
    with pytest.raises(MessageConversionError, match="dt_s must be > 0"):
        conv.to_trajectory([0.0, 0.0, 0.0], dt_s=0.0)
    with pytest.raises(MessageConversionError, match=r"shape \(2, 2\)"):
        conv.to_trajectory(np.zeros((2, 2)), dt_s=0.1)
    with pytest.raises(MessageConversionError, match="wrist=nan"):
        conv.to_trajectory([0.0, 0.0, np.nan], dt_s=0.1)
    bad = conv.to_trajectory(np.zeros((2, 3)), dt_s=0.1)
    bad.points[1].time_from_start = bad.points[0].time_from_start
    with pytest.raises(MessageConversionError, match="strictly increasing"):
        conv.from_trajectory(bad)
    with pytest.raises(MessageConversionError, match="not a JointTrajectory or Float64MultiArray"):
        conv.to_action(sensor_msgs.JointState())


# --------------------------------------------------------------------------- images


def _pattern(h=4, w=5):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _raw_image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: int = 0):
    """Image message from raw pixel bytes (H, W, C) with ``pad`` garbage bytes per row."""
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = sensor_msgs.Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def test_image_rgb_round_trip_and_bgr():
    rgb = _pattern()
    msg = rgb_to_image(rgb, stamp=1.25, frame_id="cam")
    assert msg.encoding == "rgb8" and msg.step == 15 and msg.header.frame_id == "cam"
    assert time_to_ns(msg.header.stamp) == 1_250_000_000
    out = image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.owndata
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(rgb, encoding="bgr8")), rgb)
    bgr_msg = _raw_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8")
    np.testing.assert_array_equal(image_to_rgb(bgr_msg), rgb)


def test_image_row_padding_alpha_and_mono():
    rgb = _pattern(3, 7)
    np.testing.assert_array_equal(image_to_rgb(_raw_image(rgb, "rgb8", pad=3)), rgb)
    np.testing.assert_array_equal(image_to_rgb(_raw_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", pad=11)), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    np.testing.assert_array_equal(image_to_rgb(_raw_image(np.concatenate([rgb, alpha], 2), "rgba8", pad=4)), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], 2)
    np.testing.assert_array_equal(image_to_rgb(_raw_image(bgra, "bgra8", pad=2)), rgb)
    grey = rgb[:, :, :1].copy()
    out = image_to_rgb(_raw_image(grey, "mono8", pad=5))
    assert out.shape == (3, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey[:, :, 0])
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(grey[:, :, 0], encoding="mono8"))[:, :, 1], grey[:, :, 0])
    # last row without its padding is still complete
    msg = _raw_image(rgb, "rgb8", pad=3)
    msg.data = bytes(msg.data)[:-3]
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_image_errors_are_clear():
    with pytest.raises(MessageConversionError, match=r"unsupported image encoding 'yuv422'"):
        image_to_rgb(sensor_msgs.Image(height=1, width=1, encoding="yuv422", step=2, data=b"\x00\x00"))
    msg = _raw_image(_pattern(), "rgb8")
    msg.data = bytes(msg.data)[:-4]
    with pytest.raises(MessageConversionError, match="bytes, expected 60"):
        image_to_rgb(msg)
    msg = _raw_image(_pattern(), "rgb8")
    msg.step = 10
    with pytest.raises(MessageConversionError, match="step 10 is smaller"):
        image_to_rgb(msg)
    with pytest.raises(MessageConversionError, match=r"\(H, W, 3\)"):
        rgb_to_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(MessageConversionError, match="uint8"):
        rgb_to_image(np.zeros((4, 4, 3), np.float32))


def _compressed(img: np.ndarray, ext: str, fmt: str) -> object:
    import cv2

    ok, buf = cv2.imencode(ext, img)
    assert ok
    msg = sensor_msgs.CompressedImage()
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg


def test_compressed_image_png_exact_jpeg_close_grey_and_alpha():
    rgb = np.random.default_rng(3).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    for fmt in ("png", "rgb8; png compressed bgr8", ""):
        out = compressed_image_to_rgb(_compressed(bgr, ".png", fmt))
        assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.owndata
        np.testing.assert_array_equal(out, rgb)
    smooth = np.zeros((16, 16, 3), np.uint8)
    smooth[:] = (200, 40, 90)  # RGB
    jpeg = _compressed(np.ascontiguousarray(smooth[:, :, ::-1]), ".jpg", "bgr8; jpeg compressed bgr8")
    out = compressed_image_to_rgb(jpeg)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - smooth).max() <= 3  # colour order right (R high, G low)
    grey = rgb[:, :, 0].copy()
    out = compressed_image_to_rgb(_compressed(grey, ".png", "mono8; png compressed mono8"))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)
    bgra = np.concatenate([bgr, np.full((6, 9, 1), 5, np.uint8)], axis=2)
    np.testing.assert_array_equal(compressed_image_to_rgb(_compressed(bgra, ".png", "png")), rgb)


def test_compressed_image_errors_are_clear():
    bgr = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(MessageConversionError, match=r"format 'jpeg' says jpeg but the data is png"):
        compressed_image_to_rgb(_compressed(bgr, ".png", "jpeg"))
    with pytest.raises(MessageConversionError, match=r"compressedDepth"):
        compressed_image_to_rgb(_compressed(bgr, ".png", "16UC1; compressedDepth png"))
    with pytest.raises(MessageConversionError, match=r"mono16 \(16-bit / depth\)"):
        compressed_image_to_rgb(_compressed(np.zeros((4, 4), np.uint16), ".png", "mono16; png compressed mono16"))
    with pytest.raises(MessageConversionError, match=r"decodes to uint16; only 8-bit"):
        compressed_image_to_rgb(_compressed(np.zeros((4, 4), np.uint16), ".png", "png"))
    msg = sensor_msgs.CompressedImage()
    msg.format = "jpeg"
    with pytest.raises(MessageConversionError, match=r"format 'jpeg'\) has no data"):
        compressed_image_to_rgb(msg)
    msg.data = b"GIF89a" + bytes(40)
    with pytest.raises(MessageConversionError, match=r"is neither JPEG nor PNG"):
        compressed_image_to_rgb(msg)
    truncated = _compressed(bgr, ".png", "png")
    truncated.data = bytes(truncated.data)[:30]
    with pytest.raises(MessageConversionError, match=r"could not be decoded"):
        compressed_image_to_rgb(truncated)


def test_depth_honours_endianness_and_padding():
    depth = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000 + 7)
    np.testing.assert_array_equal(image_to_depth(depth_to_image(depth)), depth)
    big = _raw_image(depth.astype(">u2")[:, :, None], "16UC1", pad=6, bigendian=1)
    out = image_to_depth(big)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, depth)
    little = _raw_image(depth.astype("<u2")[:, :, None], "mono16", pad=2, bigendian=0)
    np.testing.assert_array_equal(image_to_depth(little), depth)
    metres = depth.astype(np.float32) / 1000
    np.testing.assert_array_equal(image_to_depth(depth_to_image(metres)), metres)
    with pytest.raises(MessageConversionError, match="unsupported depth encoding 'rgb8'"):
        image_to_depth(rgb_to_image(_pattern()))


# --------------------------------------------------------------------------- camera info


def camera_info(**kw):
    msg = sensor_msgs.CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    msg.k = [600.0, 0.0, 320.5, 0.0, 610.0, 240.25, 0.0, 0.0, 1.0]
    msg.d = [0.1, -0.05, 0.001, 0.002, 0.01]
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


def test_camera_info_to_intrinsics():
    d = camera_info_to_intrinsics(camera_info())
    assert d == {
        "width": 640, "height": 480, "fx": 600.0, "fy": 610.0, "cx": 320.5, "cy": 240.25,
        "distortion_model": "brown_conrady", "coeffs": [0.1, -0.05, 0.001, 0.002, 0.01],
    }
    cameras = pytest.importorskip("data_collection.cameras")
    assert cameras.CameraIntrinsics.from_dict(d).fx == 600.0

    none = camera_info_to_intrinsics(camera_info(d=[0.0] * 5))
    assert none["distortion_model"] == "none" and none["coeffs"] == [0.0] * 5
    fisheye = camera_info_to_intrinsics(camera_info(distortion_model="equidistant", d=[0.1, 0.2, 0.3, 0.4]))
    assert fisheye["distortion_model"] == "kannala_brandt4" and fisheye["coeffs"] == [0.1, 0.2, 0.3, 0.4]
    rational_info = camera_info(distortion_model="rational_polynomial", d=[0.1, 0.2, 0.0, 0.0, 0.3, 0, 0, 0])
    rational = camera_info_to_intrinsics(rational_info)
    assert rational["distortion_model"] == "brown_conrady" and rational["coeffs"] == [0.1, 0.2, 0.0, 0.0, 0.3]

    binned = camera_info_to_intrinsics(camera_info(binning_x=2, binning_y=2))
    assert (binned["width"], binned["height"], binned["fx"], binned["cx"]) == (320, 240, 300.0, 160.25)
    roi = camera_info(roi=sensor_msgs.RegionOfInterest(x_offset=100, y_offset=40, width=200, height=100))
    r = camera_info_to_intrinsics(roi)
    assert (r["width"], r["height"], r["cx"], r["cy"]) == (200, 100, 220.5, 200.25)


def test_camera_info_errors():
    with pytest.raises(MessageConversionError, match="uncalibrated"):
        camera_info_to_intrinsics(sensor_msgs.CameraInfo(width=640, height=480))
    with pytest.raises(MessageConversionError, match="non-zero k4..k6"):
        camera_info_to_intrinsics(camera_info(distortion_model="rational_polynomial", d=[0.1] * 8))
    with pytest.raises(MessageConversionError, match="unsupported CameraInfo distortion_model 'weird'"):
        camera_info_to_intrinsics(camera_info(distortion_model="weird"))


# --------------------------------------------------------------------------- time


def test_time_integer_path_is_exact():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, (2**31 - 1) * 10**9 + 999_999_999):
        stamp = ns_to_time(ns)
        assert isinstance(stamp, builtin.Time)
        assert 0 <= stamp.nanosec < 10**9
        assert time_to_ns(stamp) == ns
    assert (ns_to_time(1_700_000_000_123_456_789).sec, ns_to_time(1_700_000_000_123_456_789).nanosec) == (
        1_700_000_000,
        123_456_789,
    )
    with pytest.raises(MessageConversionError, match=">= 0"):
        ns_to_time(-1)
    with pytest.raises(MessageConversionError, match="int32"):
        ns_to_time(2**31 * 10**9)
    with pytest.raises(MessageConversionError, match="must be an int"):
        ns_to_time(1.5)
    neg = ns_to_duration(-1)  # -1 ns = -1 s + 999999999 ns
    assert (neg.sec, neg.nanosec) == (-1, 999_999_999) and duration_to_ns(neg) == -1


def test_time_float_path():
    assert time_to_ns(sec_to_time(1.5)) == 1_500_000_000
    assert time_to_ns(sec_to_time(0.1)) == 100_000_000  # nearest ns, not float truncation
    for t in (0.0, 0.1, 1.5, 1_700_000_000.123456, 1_234_567.000000001):
        assert time_to_sec(sec_to_time(t)) == pytest.approx(t, abs=1e-9, rel=0)
    # epoch-scale floats: the nearest-ns stamp converts back to the very same float
    t = 1_700_000_000.123456
    assert time_to_sec(sec_to_time(t)) == t
    assert time_to_ns(sec_to_time(t)) == 1_700_000_000_123_456_001  # the float's exact value, rounded to ns
    with pytest.raises(MessageConversionError, match="finite"):
        sec_to_time(float("nan"))
    assert duration_to_ns(sec_to_duration(-0.25)) == -250_000_000
