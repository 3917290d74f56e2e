"""OpenCVCamera: error paths, and reading through cv2.VideoCapture from a video file it wrote."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_collection.cameras import (
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    EndOfStream,
    OpenCVCamera,
    UnsupportedModeError,
)

W, H, FPS = 64, 48, 30.0


def rgb_image(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def video_file(tmp_path):
    """6-frame lossless (FFV1) video of ``rgb_image(n)``, written with cv2.VideoWriter."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for n in range(6):
        writer.write(cv2.cvtColor(rgb_image(n), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def config(**kw) -> CameraConfig:
    base = dict(name="webcam", width=W, height=H, fps=FPS)
    base.update(kw)
    return CameraConfig(**base)


def test_bad_device_index_is_a_clear_error():
    cam = OpenCVCamera(config(), device=97)
    with pytest.raises(CameraNotFoundError, match=r"cannot open camera 97 .*video devices present: ") as ei:
        cam.start()
    assert not cam.is_running
    msg = str(ei.value)
    assert "none (no /dev/video* devices" in msg or "/dev/video" in msg


def test_bad_device_path_and_missing_file():
    with pytest.raises(CameraNotFoundError, match="cannot open camera '/dev/video97'"):
        OpenCVCamera(config(), device="/dev/video97").start()
    with pytest.raises(CameraNotFoundError, match="does not exist"):
        OpenCVCamera(config(), device="/nonexistent/clip.avi").start()
    with pytest.raises(CameraConfigError, match="no device"):
        OpenCVCamera(config())
    with pytest.raises(CameraConfigError, match="no depth"):
        OpenCVCamera(config(enable_depth=True), device=0)


def test_serial_is_used_as_device():
    cam = OpenCVCamera(config(serial="5"))
    assert cam.device == 5 and not cam.is_file


def test_reads_video_file_rgb_in_order(video_file):
    cam = OpenCVCamera(config(), device=str(video_file))
    assert cam.is_file
    with cam:
        frames = []
        with pytest.raises(EndOfStream):
            while True:
                frames.append(cam.read())
    assert [f.frame_number for f in frames] == list(range(6))
    for n, f in enumerate(frames):
        assert f.color.dtype == np.uint8 and f.color.shape == (H, W, 3)
        np.testing.assert_array_equal(f.color, rgb_image(n))  # lossless, BGR -> RGB undone
        assert f.hw_timestamp_domain == "media"
        assert f.hw_timestamp_ms == pytest.approx(n * 1000.0 / FPS, abs=1.0)
    ts = [f.timestamp_s for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert cam.stats.frames_delivered == 6 and cam.stats.frames_dropped == 0


def test_video_file_mode_mismatch(video_file):
    with pytest.raises(UnsupportedModeError, match=f"gives {W}x{H}, configured 640x480"):
        OpenCVCamera(config(width=640, height=480), device=str(video_file)).start()
    with pytest.raises(UnsupportedModeError, match="runs at 30 fps, configured 15"):
        OpenCVCamera(config(fps=15.0), device=str(video_file)).start()


def test_intrinsics_must_come_from_calibration(video_file):
    with OpenCVCamera(config(), device=str(video_file)) as cam:
        with pytest.raises(CameraError, match="calibration"):
            cam.intrinsics()
    k = CameraIntrinsics.from_fov(W, H, 70.0)
    with OpenCVCamera(config(intrinsics=k), device=str(video_file)) as cam:
        assert cam.intrinsics() == k


def test_threaded_grabber_on_a_file(video_file):
    # The live-device path (background grab thread, one-frame buffer) run on a file: it decodes
    # faster than we read, so frames may be skipped, but every delivered frame is intact and
    # skipped ones are counted.
    cam = OpenCVCamera(config(), device=str(video_file), threaded=True)
    frames = []
    with cam:
        with pytest.raises(EndOfStream):
            while True:
                frames.append(cam.read(timeout_s=2.0))
    assert frames, "no frame delivered"
    nums = [f.frame_number for f in frames]
    assert nums == sorted(set(nums)) and nums[-1] <= 5
    for f in frames:
        np.testing.assert_array_equal(f.color, rgb_image(f.frame_number))
    assert cam.stats.frames_dropped == nums[-1] - nums[0] + 1 - len(nums)
