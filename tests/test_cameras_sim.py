"""Camera interface types and SimulatedCamera."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from data_collection.cameras import (
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraTimeoutError,
    EndOfStream,
    Frame,
    SimulatedCamera,
    make_test_pattern,
)


def cfg(**kw) -> CameraConfig:
    base = dict(name="sim", width=32, height=24, fps=100.0)
    base.update(kw)
    return CameraConfig(**base)


# ----------------------------------------------------------------- config / intrinsics / frame


def test_config_validation_names_the_field():
    with pytest.raises(CameraConfigError, match="name"):
        CameraConfig(name="bad name")
    with pytest.raises(CameraConfigError, match="width"):
        CameraConfig(name="a", width=0)
    with pytest.raises(CameraConfigError, match="fps"):
        CameraConfig(name="a", fps=-1)
    with pytest.raises(CameraConfigError, match="exposure"):
        CameraConfig(name="a", exposure=0)
    with pytest.raises(CameraConfigError, match="depth_width"):
        CameraConfig(name="a", depth_width=10)
    with pytest.raises(CameraConfigError, match="intrinsics are for"):
        CameraConfig(name="a", width=32, height=24, intrinsics=CameraIntrinsics.from_fov(64, 48))
    assert CameraConfig(name="a", width=32, height=24).depth_size == (32, 24)
    assert CameraConfig(name="a", depth_width=16, depth_height=12).depth_size == (16, 12)


def test_intrinsics_roundtrip_and_validation():
    k = CameraIntrinsics(640, 480, 600.5, 601.0, 319.5, 239.5, "brown_conrady", (0.1, -0.2, 0.001, 0.002, 0.03))
    d = k.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-ready for the store schema
    assert CameraIntrinsics.from_dict(d) == k
    np.testing.assert_allclose(k.camera_matrix, [[600.5, 0, 319.5], [0, 601.0, 239.5], [0, 0, 1]])
    with pytest.raises(CameraConfigError, match="distortion model"):
        CameraIntrinsics(640, 480, 600, 600, 320, 240, "fisheye9000")
    with pytest.raises(CameraConfigError, match="focal"):
        CameraIntrinsics(640, 480, 0, 600, 320, 240)
    with pytest.raises(CameraConfigError, match="unknown intrinsics keys"):
        CameraIntrinsics.from_dict({**d, "fxx": 1})


def test_frame_validation():
    c = np.zeros((4, 5, 3), np.uint8)
    Frame(color=c, timestamp_s=1.0, frame_number=0)
    with pytest.raises(CameraError, match="uint8"):
        Frame(color=c.astype(np.float32), timestamp_s=1.0, frame_number=0)
    with pytest.raises(CameraError, match="aligned"):
        Frame(color=c, depth=np.zeros((4, 4), np.uint16), depth_scale=0.001, timestamp_s=1.0, frame_number=0)
    with pytest.raises(CameraError, match="depth_scale"):
        Frame(color=c, depth=np.zeros((4, 5), np.uint16), timestamp_s=1.0, frame_number=0)
    f = Frame(color=c, depth=np.full((4, 5), 250, np.uint16), depth_scale=0.002, timestamp_s=1.0, frame_number=0)
    np.testing.assert_allclose(f.depth_m(), 0.5)


# ----------------------------------------------------------------- SimulatedCamera


def test_sim_frames_shape_dtype_and_pattern():
    with SimulatedCamera(cfg(enable_depth=True), realtime=False) as cam:
        f0, f1 = cam.read(), cam.read()
    for f in (f0, f1):
        assert f.color.shape == (24, 32, 3) and f.color.dtype == np.uint8
        assert f.depth is not None and f.depth.shape == (24, 32) and f.depth.dtype == np.uint16
        assert f.depth_scale == pytest.approx(0.001)
        assert f.camera == "sim"
    assert (f0.frame_number, f1.frame_number) == (0, 1)
    exp_c, exp_d = make_test_pattern(1, 32, 24, with_depth=True)
    np.testing.assert_array_equal(f1.color, exp_c)
    np.testing.assert_array_equal(f1.depth, exp_d)
    assert not np.array_equal(f0.color, f1.color)  # the pattern moves


def test_sim_virtual_clock_timestamps_exact():
    cam = SimulatedCamera(cfg(fps=30.0), realtime=False)
    with cam:
        frames = [cam.read() for _ in range(10)]
    ts = np.array([f.timestamp_s for f in frames])
    np.testing.assert_allclose(np.diff(ts), 1 / 30.0, rtol=1e-9)
    assert [f.frame_number for f in frames] == list(range(10))
    assert frames[3].hw_timestamp_ms == pytest.approx(100.0)


def test_sim_realtime_monotonic_at_fps():
    fps = 100.0
    cam = SimulatedCamera(cfg(fps=fps), realtime=True, max_queue=1000)
    with cam:
        t_start = time.monotonic()
        frames = [cam.read(timeout_s=1.0) for _ in range(15)]
        t_end = time.monotonic()
    ts = np.array([f.timestamp_s for f in frames])
    assert np.all(np.diff(ts) > 0)
    np.testing.assert_allclose(np.diff(ts), 1 / fps, rtol=1e-6)  # scheduled capture times
    # paced on the host clock: the last frame is not delivered before its capture time
    assert ts[0] <= t_start + 1 / fps and ts[-1] <= t_end
    assert t_end - ts[0] >= 14 / fps
    assert cam.stats.frames_delivered == 15 and cam.stats.frames_dropped == 0


def test_sim_injected_drops_are_counted():
    cam = SimulatedCamera(cfg(), realtime=False, drop_frames={2, 3, 7})
    with cam:
        nums = [cam.read().frame_number for _ in range(7)]
    assert nums == [0, 1, 4, 5, 6, 8, 9]
    assert cam.stats.frames_dropped == 3
    assert cam.stats.extra["injected_drops"] == 3
    assert cam.stats.frames_delivered == 7


def test_sim_random_drops_are_deterministic():
    def run():
        cam = SimulatedCamera(cfg(), realtime=False, drop_probability=0.3, seed=7)
        with cam:
            return [cam.read().frame_number for _ in range(50)], cam.stats.frames_dropped

    (a, da), (b, db) = run(), run()
    assert a == b and da == db
    assert 5 < da < 45 and da == a[-1] + 1 - 50


def test_sim_slow_reader_loses_old_frames():
    cam = SimulatedCamera(cfg(fps=200.0), realtime=True)  # one-frame buffer, like a webcam
    with cam:
        f0 = cam.read()
        time.sleep(0.05)  # ~10 frame periods
        f = cam.read()
    assert f.frame_number >= f0.frame_number + 5
    assert cam.stats.frames_dropped == f.frame_number - f0.frame_number - 1
    assert cam.stats.extra["injected_drops"] == 0


def test_sim_render_fn_and_errors():
    seen = []

    def render(n, t):
        seen.append((n, t))
        return np.full((24, 32, 3), n, np.uint8)

    with SimulatedCamera(cfg(), render, realtime=False, max_frames=2) as cam:
        assert cam.read().color[0, 0, 0] == 0
        assert cam.read().color[0, 0, 0] == 1
        with pytest.raises(EndOfStream):
            cam.read()
    assert [n for n, _ in seen] == [0, 1]
    with SimulatedCamera(cfg(), lambda n, t: np.zeros((24, 32), np.uint8), realtime=False) as cam:
        with pytest.raises(CameraError, match=r"uint8 \(24, 32, 3\)"):
            cam.read()
    with SimulatedCamera(cfg(enable_depth=True), render, realtime=False) as cam:
        with pytest.raises(CameraError, match="no depth"):
            cam.read()


def test_sim_lifecycle_errors_and_timeout():
    cam = SimulatedCamera(cfg(fps=1.0), realtime=True)
    with pytest.raises(CameraError, match="before start"):
        cam.read()
    with cam:
        cam.read()  # frame 0 is due at start
        with pytest.raises(CameraTimeoutError):
            cam.read(timeout_s=0.05)
    assert not cam.is_running
    k = cam.intrinsics()
    assert (k.width, k.height) == (32, 24) and k.cx == pytest.approx(15.5)
