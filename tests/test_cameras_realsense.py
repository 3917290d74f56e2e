"""RealSenseCamera through the real pyrealsense2 library, without hardware.

Frames come from an ``rs.software_device`` (librealsense's own in-process device): either
streamed live through ``RealSenseCamera(device=...)`` (rs.pipeline + syncer + rs.align), or
recorded with ``rs.recorder`` to a ``.db3`` and played back with
``RealSenseCamera(playback_file=...)`` (``rs.config.enable_device_from_file``).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import pytest

# Optional extra 'realsense'. Like pytest.importorskip, but also skips on a plain ImportError:
# the pyrealsense2 wheel is found but fails to load when the system lacks libusb-1.0, which
# pytest 9's importorskip reports as an error (and pytest < 8.2 has no exc_type argument).
from data_collection.cameras.realsense import _import_rs  # noqa: E402  (imports in a safe order)

try:
    rs = _import_rs()
except Exception as e:
    pytest.skip(f"pyrealsense2 not usable: {e}", allow_module_level=True)

from data_collection.cameras import (  # noqa: E402
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    EndOfStream,
    RealSenseCamera,
    UnsupportedModeError,
    list_realsense_devices,
)

W, H, FPS = 64, 48, 30
SERIAL = "SW-000123"
# Values exactly representable in float32 (librealsense stores floats), so they round-trip exactly.
DEPTH_UNITS = 2.0**-10  # ~1 mm
# Pinhole shared by colour and depth with identity extrinsics: rs.align maps every depth pixel
# onto the same colour pixel, so aligned depth must equal the depth that was fed.
PINHOLE_K = CameraIntrinsics(W, H, 64.0, 64.0, 31.5, 23.5)
DISTORTED_K = CameraIntrinsics(
    W, H, 50.0, 51.0, 31.5, 24.25, "brown_conrady", (0.125, -0.0625, 2.0**-10, 2.0**-9, 2.0**-11)
)


def _rs_intrinsics(k: CameraIntrinsics):
    i = rs.intrinsics()
    i.width, i.height, i.fx, i.fy, i.ppx, i.ppy = k.width, k.height, k.fx, k.fy, k.cx, k.cy
    i.model = getattr(rs.distortion, k.distortion_model)
    i.coeffs = list(k.coeffs)
    return i


def _option_range(lo, hi, step, default):
    # pyrealsense2 2.59's option_range(min, max, step, default) stores step and default swapped;
    # set the fields by name instead.
    r = rs.option_range()
    r.min, r.max, r.step, r.default = lo, hi, step, default
    return r


class SoftwareRealSense:
    """An ``rs.software_device`` with an rgb8 colour sensor and optionally a z16 depth sensor.

    Feeds deterministic images: colour ``color_image(n)``, depth ``depth_image(n)``. Depth and
    colour have identity extrinsics; with the default intrinsics (both ``PINHOLE_K``) depth
    aligned to colour equals the depth that was fed.
    """

    def __init__(
        self, color_k=PINHOLE_K, depth=True, depth_k=PINHOLE_K, exposure_option=False, serial=SERIAL,
        depth_units=DEPTH_UNITS,
    ):
        self.depth_units = depth_units
        self.dev = rs.software_device()
        self.dev.register_info(rs.camera_info.serial_number, serial)
        self.dev.register_info(rs.camera_info.name, "Software RealSense")
        self.color_sensor = self.dev.add_sensor("RGB Camera")
        if exposure_option:
            self.color_sensor.add_option(rs.option.enable_auto_exposure, _option_range(0, 1, 1, 1), True)
            self.color_sensor.add_option(rs.option.exposure, _option_range(1, 10000, 1, 156), True)
        self.color_profile = self._add_stream(self.color_sensor, rs.stream.color, rs.format.rgb8, 3, 1, color_k)
        self.depth_sensor = self.depth_profile = None
        if depth:
            self.depth_k = depth_k
            self.depth_sensor = self.dev.add_sensor("Stereo Module")
            self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
            self.depth_profile = self._add_stream(self.depth_sensor, rs.stream.depth, rs.format.z16, 2, 2, depth_k)
            ident = rs.extrinsics()
            ident.rotation = [1, 0, 0, 0, 1, 0, 0, 0, 1]
            ident.translation = [0, 0, 0]
            self.depth_profile.register_extrinsics_to(self.color_profile, ident)
            self.color_profile.register_extrinsics_to(self.depth_profile, ident)
        self._keep: list = []

    @staticmethod
    def _add_stream(sensor, stream, fmt, bpp, uid, k):
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = stream, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = k.width, k.height, FPS, bpp, fmt
        vs.intrinsics = _rs_intrinsics(k)
        return sensor.add_video_stream(vs, True)

    @staticmethod
    def color_image(n: int) -> np.ndarray:
        return np.random.default_rng(n).integers(0, 256, (H, W, 3), dtype=np.uint8)

    def depth_image(self, n: int) -> np.ndarray:
        h, w = self.depth_k.height, self.depth_k.width
        return np.random.default_rng(1000 + n).integers(300, 5000, (h, w), dtype=np.uint16)

    def _inject(self, sensor, profile, pixels, bpp, n, ts_ms, domain):
        f = rs.software_video_frame()
        f.pixels = pixels
        f.stride = pixels.shape[1] * bpp
        f.bpp = bpp
        f.timestamp = ts_ms
        f.domain = domain
        f.frame_number = n
        f.profile = profile.as_video_stream_profile()
        if bpp == 2:
            f.depth_units = self.depth_units
        sensor.on_video_frame(f)

    def feed(self, n: int, ts_ms: float, domain=None, sensors=None) -> None:
        """Inject depth (if any) then colour frame ``n`` stamped ``ts_ms`` in ``domain``."""
        domain = rs.timestamp_domain.hardware_clock if domain is None else domain
        if self.depth_sensor is not None:
            self._inject(self.depth_sensor, self.depth_profile, self.depth_image(n), 2, n, ts_ms, domain)
        self._inject(self.color_sensor, self.color_profile, self.color_image(n), 3, n, ts_ms, domain)


def config(**kw) -> CameraConfig:
    base = dict(name="wrist", width=W, height=H, fps=FPS, enable_depth=True)
    base.update(kw)
    return CameraConfig(**base)


# ----------------------------------------------------------------- device discovery / errors


def test_missing_serial_error_lists_devices():
    connected = list_realsense_devices()
    cam = RealSenseCamera(config(serial="000000000000"))
    with pytest.raises(CameraNotFoundError, match="no RealSense device with serial '000000000000'") as ei:
        cam.start()
    if not connected:  # this machine: no hardware
        assert "connected devices: none" in str(ei.value)
    else:
        assert all(d.serial in str(ei.value) for d in connected)
    assert not cam.is_running


def test_no_device_without_serial():
    if list_realsense_devices():
        pytest.skip("a RealSense device is connected")
    with pytest.raises(CameraNotFoundError, match="no RealSense device connected"):
        RealSenseCamera(config()).start()


def test_bad_arguments():
    with pytest.raises(CameraConfigError, match="integer"):
        RealSenseCamera(config(fps=29.97))
    with pytest.raises(CameraConfigError, match=".db3"):
        RealSenseCamera(config(), playback_file="x.mp4")
    with pytest.raises(CameraNotFoundError, match="does not exist"):
        RealSenseCamera(config(), playback_file="/nonexistent/rec.db3").start()


# ----------------------------------------------------------------- live software device


def test_software_device_pixels_depth_intrinsics_timestamps():
    sw = SoftwareRealSense()
    cam = RealSenseCamera(config(serial=SERIAL), device=sw.dev)
    with cam:
        assert cam.serial == SERIAL
        assert cam.intrinsics() == PINHOLE_K
        frames = []
        for n in range(1, 6):
            sw.feed(n, ts_ms=5000.0 + n * 1000.0 / FPS)
            frames.append(cam.read(timeout_s=2.0))
    for n, f in zip(range(1, 6), frames):
        assert f.frame_number == n
        np.testing.assert_array_equal(f.color, sw.color_image(n))
        # identical intrinsics + identity extrinsics: aligned depth is the fed depth
        np.testing.assert_array_equal(f.depth, sw.depth_image(n))
        assert f.depth_scale == pytest.approx(DEPTH_UNITS)
        assert f.hw_timestamp_ms == pytest.approx(5000.0 + n * 1000.0 / FPS)
        assert f.depth_hw_timestamp_ms == pytest.approx(f.hw_timestamp_ms)
        assert f.hw_timestamp_domain == "hardware_clock"
    # hardware_clock has no host mapping: host time is the arrival time
    ts = [f.timestamp_s for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert cam.stats.frames_delivered == 5 and cam.stats.frames_dropped == 0


def test_intrinsics_with_distortion_come_from_the_stream_profile():
    sw = SoftwareRealSense(color_k=DISTORTED_K, depth=False)
    with RealSenseCamera(config(enable_depth=False), device=sw.dev) as cam:
        k = cam.intrinsics()
    assert k == DISTORTED_K
    assert k.to_dict()["distortion_model"] == "brown_conrady"


def test_software_device_system_time_maps_to_monotonic_and_counts_gaps():
    sw = SoftwareRealSense(depth=False)
    with RealSenseCamera(config(enable_depth=False), device=sw.dev) as cam:
        out = []
        for n in (10, 11, 14):  # 12, 13 never arrive: dropped
            t_mono = time.monotonic()
            sw.feed(n, ts_ms=time.time() * 1000.0, domain=rs.timestamp_domain.system_time)
            f = cam.read(timeout_s=2.0)
            out.append((t_mono, f))
    for t_mono, f in out:
        assert f.hw_timestamp_domain == "system_time" and f.depth is None
        assert f.timestamp_s == pytest.approx(t_mono, abs=0.01)  # wall clock -> monotonic
    assert [f.frame_number for _, f in out] == [10, 11, 14]
    assert cam.stats.frames_dropped == 2


def test_depth_lower_resolution_is_aligned_to_colour_grid():
    # depth at half resolution, same field of view: aligned depth has colour's size
    dk = CameraIntrinsics(W // 2, H // 2, 32.0, 32.0, 15.5, 11.5)
    sw = SoftwareRealSense(depth_k=dk)
    sw.depth_image = lambda n: np.full((H // 2, W // 2), 800 + n, np.uint16)
    with RealSenseCamera(config(depth_width=W // 2, depth_height=H // 2), device=sw.dev) as cam:
        sw.feed(1, 100.0)
        f = cam.read(timeout_s=2.0)
    assert f.depth.shape == (H, W)
    valid = f.depth[f.depth > 0]
    assert valid.size > 0.9 * H * W and np.all(valid == 801)


def test_unsupported_mode_lists_available_modes():
    sw = SoftwareRealSense()
    cam = RealSenseCamera(config(width=640, height=480), device=sw.dev)
    with pytest.raises(UnsupportedModeError) as ei:
        cam.start()
    msg = str(ei.value)
    assert "color 640x480 rgb8 @30" in msg and f"color {W}x{H} rgb8 @30" in msg and f"depth {W}x{H} z16 @30" in msg


def test_device_serial_mismatch():
    sw = SoftwareRealSense()
    with pytest.raises(CameraNotFoundError, match="serial 'SW-000123', config asks for 'OTHER'"):
        RealSenseCamera(config(serial="OTHER"), device=sw.dev).start()


def test_manual_exposure_is_applied_and_range_checked():
    sw = SoftwareRealSense(depth=False, exposure_option=True)
    with RealSenseCamera(config(enable_depth=False, exposure=300), device=sw.dev):
        assert sw.color_sensor.get_option(rs.option.enable_auto_exposure) == 0
        assert sw.color_sensor.get_option(rs.option.exposure) == 300
    with pytest.raises(UnsupportedModeError, match=r"outside .* range \[1.0, 10000.0\]"):
        RealSenseCamera(config(enable_depth=False, exposure=20000), device=sw.dev).start()
    with RealSenseCamera(config(enable_depth=False), device=sw.dev):  # exposure=None -> auto
        assert sw.color_sensor.get_option(rs.option.enable_auto_exposure) == 1
    no_opt = SoftwareRealSense(depth=False)
    with pytest.raises(UnsupportedModeError, match="does not support manual exposure"):
        RealSenseCamera(config(enable_depth=False, exposure=300), device=no_opt.dev).start()


# ----------------------------------------------------------------- record + playback


def record(path: Path, sw: SoftwareRealSense, numbers, ts_of) -> None:
    """Record frames ``numbers`` of ``sw`` to ``path`` (.db3) with librealsense's rs.recorder."""
    rec = rs.recorder(str(path), sw.dev)
    sensors = rec.query_sensors()
    for s in sensors:
        s.open(s.get_stream_profiles()[0])
        s.start(lambda f: None)
    for n in numbers:
        sw.feed(n, ts_of(n))
    for s in sensors:
        s.stop()
        s.close()
    del s, sensors, rec  # the recorder writes the file when destroyed
    gc.collect()
    assert path.stat().st_size > 0


def test_record_and_playback_roundtrip(tmp_path):
    # The recorder stores depth units with 6 decimals (0.0009765625 comes back as 0.000977),
    # which would shift aligned pixels; 2**-6 m survives exactly.
    units = 2.0**-6
    sw = SoftwareRealSense(depth_units=units)
    path = tmp_path / "rec.db3"
    record(path, sw, range(1, 9), lambda n: 1000.0 + n * 1000.0 / FPS)
    cam = RealSenseCamera(config(), playback_file=path)
    frames = []
    with cam:
        assert cam.serial == SERIAL  # device info is recorded
        assert cam.intrinsics() == PINHOLE_K
        with pytest.raises(EndOfStream):
            while True:
                frames.append(cam.read(timeout_s=2.0))
    assert [f.frame_number for f in frames] == list(range(1, 9))
    for f in frames:
        n = f.frame_number
        np.testing.assert_array_equal(f.color, sw.color_image(n))
        np.testing.assert_array_equal(f.depth, sw.depth_image(n))
        assert f.depth_scale == units
        assert f.hw_timestamp_ms == pytest.approx(1000.0 + n * 1000.0 / FPS)
        assert f.depth_hw_timestamp_ms == pytest.approx(f.hw_timestamp_ms)
        assert f.hw_timestamp_domain == "hardware_clock"
    assert cam.stats.frames_dropped == 0


def test_playback_unsupported_mode(tmp_path):
    sw = SoftwareRealSense(depth=False)
    path = tmp_path / "rec.db3"
    record(path, sw, range(1, 3), lambda n: float(n))
    with pytest.raises(UnsupportedModeError, match=f"available modes: color {W}x{H} rgb8 @30"):
        RealSenseCamera(config(enable_depth=False, fps=15), playback_file=path).start()
    with pytest.raises(CameraError):  # depth requested, recording has none
        RealSenseCamera(config(enable_depth=True), playback_file=path).start()


def test_process_using_realsense_and_ros_exits_cleanly():
    """librealsense loaded before rclpy crashes the process at exit; _import_rs fixes the order."""
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    code = ("from data_collection.cameras.realsense import _import_rs; rs = _import_rs(); rs.software_device(); "
            "import rclpy; rclpy.init(); rclpy.shutdown(); print('ok')")
    from fixtures.ros_env import loopback_ros_env

    env = {**__import__("os").environ, **loopback_ros_env()}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-500:])
