"""USB / V4L2 webcams (and video files) through ``cv2.VideoCapture``.

Live device: a background thread grabs continuously into a one-frame buffer, so ``read``
always returns the newest frame (never a stale one queued in the driver) and frames the
reader did not take count as dropped. Timestamps: V4L2 buffer timestamps are
``CLOCK_MONOTONIC`` on Linux (the clock of :func:`time.monotonic`); when OpenCV reports a
plausible one (``CAP_PROP_POS_MSEC``, within 1 s before the grab returned) it is the capture
time and ``hw_timestamp_domain == "v4l2_monotonic"``; otherwise the time ``grab()`` returned is
used (``hw_timestamp_domain == None``, includes transfer latency).

Video file (any path to a regular file): by default read sequentially, no pacing, no drops;
``frame_number`` is the index in the file, ``hw_timestamp_ms`` the media time
(``hw_timestamp_domain == "media"``), ``timestamp_s`` the host time it was decoded. Reading
past the end raises :class:`EndOfStream`.

The requested size and fps are verified after opening: a device that silently falls back to
another mode raises :class:`UnsupportedModeError` instead of recording the wrong images.
Webcams do not report intrinsics: set ``CameraConfig.intrinsics`` from a calibration.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time

import cv2
import numpy as np

from .base import (
    Camera,
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraTimeoutError,
    EndOfStream,
    Frame,
    UnsupportedModeError,
)

__all__ = ["OpenCVCamera"]

_FPS_REL_TOL = 0.01
# V4L2 control values OpenCV passes through for CAP_PROP_AUTO_EXPOSURE.
_V4L2_EXPOSURE_MANUAL = 1
_V4L2_EXPOSURE_APERTURE_PRIORITY = 3


class OpenCVCamera(Camera):
    """Colour-only camera via ``cv2.VideoCapture`` (delivers RGB; OpenCV's BGR is converted).

    Args:
        config: size, fps, exposure / white balance; ``enable_depth`` must be False.
        device: camera index, ``/dev/video*`` or ``/dev/v4l/by-id/...`` path, or a video file
            path. ``None`` = ``config.serial``.
        backend: ``cv2.CAP_*`` API preference; ``None`` = V4L2 for devices on Linux, any for files.
        fourcc: pixel format to request from a device (``"MJPG"`` is needed by most UVC cameras
            for high resolution at 30 fps); ``None`` = leave the driver default.
        threaded: grab in a background thread into a one-frame buffer; ``None`` = yes for
            devices, no for video files (``True`` on a file plays it as fast as it decodes).
    """

    def __init__(
        self,
        config: CameraConfig,
        device: int | str | None = None,
        *,
        backend: int | None = None,
        fourcc: str | None = "MJPG",
        threaded: bool | None = None,
    ) -> None:
        super().__init__(config)
        if config.enable_depth:
            raise CameraConfigError(f"{config.name}: OpenCVCamera has no depth; set enable_depth=False")
        dev = config.serial if device is None else device
        if dev is None:
            raise CameraConfigError(f"{config.name}: no device given (pass device= or set config.serial)")
        if isinstance(dev, str) and dev.isdigit():
            dev = int(dev)
        if fourcc is not None and len(fourcc) != 4:
            raise CameraConfigError(f"{config.name}: fourcc must be 4 characters, got {fourcc!r}")
        self.device: int | str = dev
        self.is_file = isinstance(dev, str) and os.path.isfile(dev) and not dev.startswith("/dev/")
        self.threaded = (not self.is_file) if threaded is None else bool(threaded)
        self._backend = backend
        self._fourcc = fourcc
        self._cap: cv2.VideoCapture | None = None
        # live-mode shared state (guarded by _cond)
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float, float | None] | None = None
        self._grab_error: CameraError | None = None
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._delivered = -1

    # -- Camera hooks
    def _open(self) -> None:
        cap = self._open_capture()
        try:
            if not self.is_file:
                self._configure_device(cap)
            self._verify_mode(cap)
        except BaseException:
            cap.release()
            raise
        self._cap = cap
        self._latest = None
        self._grab_error = None
        self._delivered = -1
        if self.threaded:
            self._stop_evt.clear()
            self._thread = threading.Thread(target=self._grab_loop, name=f"opencv-cam-{self.name}", daemon=True)
            self._thread.start()

    def _close(self) -> None:
        self._stop_evt.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _device_intrinsics(self) -> CameraIntrinsics:
        raise CameraError(
            f"{self.name}: a webcam does not report intrinsics; set CameraConfig.intrinsics from a calibration"
        )

    def _read(self, timeout_s: float) -> Frame:
        if not self.threaded:
            return self._read_file()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._latest is not None and self._latest[1] > self._delivered:
                    bgr, number, t_s, hw_ms = self._latest
                    break
                if self._grab_error is not None:
                    raise self._grab_error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraTimeoutError(f"{self.name}: no new frame from {self.device!r} within {timeout_s} s")
                self._cond.wait(remaining)
        self._delivered = number
        return Frame(
            color=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            timestamp_s=t_s,
            frame_number=number,
            hw_timestamp_ms=hw_ms,
            hw_timestamp_domain="v4l2_monotonic" if hw_ms is not None else None,
            camera=self.name,
        )

    # -- internals
    def _open_capture(self) -> cv2.VideoCapture:
        if self._backend is not None:
            api = self._backend
        elif not self.is_file and sys.platform.startswith("linux"):
            api = cv2.CAP_V4L2
        else:
            api = cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if cap.isOpened():
            return cap
        cap.release()
        if isinstance(self.device, str) and not self.device.startswith("/dev/") and not os.path.exists(self.device):
            raise CameraNotFoundError(f"{self.name}: video file {self.device!r} does not exist")
        present = sorted(glob.glob("/dev/video*"))
        listing = ", ".join(present) if present else "none (no /dev/video* devices on this machine)"
        raise CameraNotFoundError(
            f"{self.name}: cannot open camera {self.device!r} with cv2.VideoCapture; "
            f"video devices present: {listing}. Check the index/path, permissions (video group) "
            "and that no other process holds the camera."
        )

    def _configure_device(self, cap: cv2.VideoCapture) -> None:
        c = self.config
        if self._fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self._fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
        cap.set(cv2.CAP_PROP_FPS, c.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if c.exposure is None:
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_APERTURE_PRIORITY)
        else:
            manual = cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_MANUAL)
            if not (manual and cap.set(cv2.CAP_PROP_EXPOSURE, c.exposure)):
                raise UnsupportedModeError(f"{self.name}: device {self.device!r} rejected manual exposure {c.exposure}")
        if c.white_balance is None:
            cap.set(cv2.CAP_PROP_AUTO_WB, 1)
        else:
            if not (cap.set(cv2.CAP_PROP_AUTO_WB, 0) and cap.set(cv2.CAP_PROP_WB_TEMPERATURE, c.white_balance)):
                raise UnsupportedModeError(
                    f"{self.name}: device {self.device!r} rejected manual white balance {c.white_balance} K"
                )

    def _verify_mode(self, cap: cv2.VideoCapture) -> None:
        c = self.config
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        what = "video file" if self.is_file else "device"
        if (w, h) != (c.width, c.height):
            raise UnsupportedModeError(
                f"{self.name}: {what} {self.device!r} gives {w}x{h}, configured {c.width}x{c.height}"
            )
        # fps <= 0: the backend cannot tell; frame timestamps still reveal the real rate.
        if fps > 0 and abs(fps - c.fps) > _FPS_REL_TOL * c.fps:
            raise UnsupportedModeError(f"{self.name}: {what} {self.device!r} runs at {fps:g} fps, configured {c.fps:g}")

    def _read_file(self) -> Frame:
        assert self._cap is not None
        index = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfStream(f"{self.name}: end of video file {self.device!r} after {index} frames")
        return Frame(
            color=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            timestamp_s=time.monotonic(),
            frame_number=index,
            hw_timestamp_ms=float(self._cap.get(cv2.CAP_PROP_POS_MSEC)),
            hw_timestamp_domain="media",
            camera=self.name,
        )

    def _grab_loop(self) -> None:
        cap = self._cap
        assert cap is not None
        number = 0
        failures = 0
        while not self._stop_evt.is_set():
            ok = cap.grab()
            t_arrival = time.monotonic()
            if ok:
                ok, bgr = cap.retrieve()
            if not ok:
                failures += 1
                if failures >= 10:
                    with self._cond:
                        if self.is_file:
                            self._grab_error = EndOfStream(f"{self.name}: end of video file {self.device!r}")
                        else:
                            self._grab_error = CameraError(
                                f"{self.name}: device {self.device!r} stopped delivering frames (10 failed grabs)"
                            )
                        self._cond.notify_all()
                    return
                time.sleep(0.01)
                continue
            failures = 0
            hw_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            hw_s = hw_ms / 1000.0
            if 0.0 < hw_s <= t_arrival and t_arrival - hw_s < 1.0:
                t_capture, hw = hw_s, hw_ms
            else:
                t_capture, hw = t_arrival, None
            with self._cond:
                self._latest = (bgr, number, t_capture, hw)
                self._cond.notify_all()
            number += 1
