"""Intel RealSense cameras through ``pyrealsense2`` (optional extra ``realsense``).

Sources (exactly one per camera):

* a connected device, selected by ``CameraConfig.serial`` (:func:`list_realsense_devices`
  lists what is connected; with one device ``serial=None`` picks it);
* a recording (``playback_file``): ``.db3`` (ROS 2 bag, what ``rs.recorder`` writes since
  librealsense 2.57) or legacy ``.bag`` (ROS 1), through ``rs.config.enable_device_from_file``;
* an ``rs.device`` object (``device=``), e.g. an ``rs.software_device`` fed with synthetic
  frames; it is handed to ``rs.pipeline.set_device`` (a software device added to an
  ``rs.context`` is not listed by ``query_devices`` in librealsense 2.59).

Streams: colour as ``rgb8`` at the configured size/fps; with ``enable_depth`` also ``z16``
depth at ``config.depth_size``, aligned onto the colour grid with ``rs.align(rs.stream.color)``
(needs depth→colour extrinsics on the device). ``Frame.depth_scale`` is the depth frame's
units (metres per unit).

Timestamps: ``hw_timestamp_ms`` is the colour frame's ``get_timestamp()`` (ms) and
``hw_timestamp_domain`` its ``get_frame_timestamp_domain()`` name: ``"hardware_clock"``
(device clock), ``"system_time"`` (host wall clock at arrival) or ``"global_time"`` (device
clock mapped onto host wall clock; the default on D400 with global time enabled). For a live
source ``timestamp_s`` (host monotonic) is derived from a wall-clock-domain timestamp when there
is one (``system_time`` / ``global_time``, or the ``time_of_arrival`` metadata), else it is
the time the frameset reached this process. For playback it is the time the frame was read
(the recording's own times stay in ``hw_timestamp_ms``).

Frame pairing: the pipeline's syncer may emit a colour frame more than once (with different
depth frames); ``read`` returns each colour frame once, with the first depth frame it was
paired with, and skips framesets that have colour but no depth while depth is enabled.

Recordings made with librealsense 2.59's ``rs.recorder`` store the depth units with 6 decimals
(``0.0009765625`` plays back as ``0.000977``); the D400 default ``0.001`` is exact.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    DISTORTION_MODELS,
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
    host_clock_offset_s,
)

__all__ = ["PLAYBACK_SUFFIXES", "RealSenseCamera", "RealSenseDeviceInfo", "list_realsense_devices"]

PLAYBACK_SUFFIXES = (".bag", ".db3")
_WALL_CLOCK_DOMAINS = ("system_time", "global_time")
_PLAYBACK_POLL_S = 0.1


def _import_rs() -> Any:
    """Import pyrealsense2 (after rclpy when ROS 2 is installed, see below)."""
    # Loading librealsense before rclpy/Fast DDS makes the process crash in its exit handlers
    # (a double free among static destructors, seen with pyrealsense2 2.59 and the Kilted
    # wheels); loading rclpy first does not. Recorders use both, so fix the order here.
    try:
        import rclpy  # noqa: F401
    except ImportError:
        pass
    try:
        import pyrealsense2 as rs
    except ImportError as e:  # also raised when libusb-1.0 is missing
        raise CameraError(
            f"pyrealsense2 is not usable ({e}); install the 'realsense' extra "
            "(pip install 'df-policy[realsense]'), which on Linux also needs libusb-1.0 "
            "(apt-get install libusb-1.0-0)"
        ) from e
    return rs


@dataclass(frozen=True)
class RealSenseDeviceInfo:
    """One connected device (strings as librealsense reports them; ``""`` when not reported)."""

    serial: str
    name: str
    product_line: str
    firmware_version: str
    usb_type: str


def _info(dev: Any, rs: Any, key: str) -> str:
    ci = getattr(rs.camera_info, key)
    return str(dev.get_info(ci)) if dev.supports(ci) else ""


def list_realsense_devices(context: Any | None = None) -> list[RealSenseDeviceInfo]:
    """Connected RealSense devices (empty list when none). ``context``: an ``rs.context`` to query."""
    rs = _import_rs()
    ctx = context if context is not None else rs.context()
    out = []
    for dev in ctx.query_devices():
        out.append(
            RealSenseDeviceInfo(
                serial=_info(dev, rs, "serial_number"),
                name=_info(dev, rs, "name"),
                product_line=_info(dev, rs, "product_line"),
                firmware_version=_info(dev, rs, "firmware_version"),
                usb_type=_info(dev, rs, "usb_type_descriptor"),
            )
        )
    return out


def _describe_devices(devs: list[RealSenseDeviceInfo]) -> str:
    if not devs:
        return "none (librealsense found no RealSense devices)"
    return ", ".join(f"{d.serial} ({d.name}{', USB ' + d.usb_type if d.usb_type else ''})" for d in devs)


def _video_modes(dev: Any, rs: Any) -> list[str]:
    """``"color 640x480 rgb8 @30"``-style list of the device's video stream profiles."""
    modes = set()
    for sensor in dev.query_sensors():
        for p in sensor.get_stream_profiles():
            if p.is_video_stream_profile():
                v = p.as_video_stream_profile()
                modes.add(f"{p.stream_type().name} {v.width()}x{v.height()} {p.format().name} @{p.fps()}")
    return sorted(modes)


class RealSenseCamera(Camera):
    """Colour (+ aligned depth) from a RealSense device, recording or ``rs.device``.

    Args:
        config: size/fps (fps must be an integer for librealsense), ``enable_depth``,
            ``depth_width/height``, ``exposure`` (``rs.option.exposure`` units of the colour
            sensor; ``None`` = auto), ``white_balance`` (K). ``serial`` selects the device.
        playback_file: read this ``.bag`` / ``.db3`` recording instead of a live device;
            exposure / white balance are not applied to recordings.
        playback_realtime: pace playback at the recorded rate (``False``: as fast as read, no
            frame skipped; the default, deterministic).
        device: an ``rs.device`` to stream from (e.g. ``rs.software_device``); if
            ``config.serial`` is set it must match the device's serial.
        context: ``rs.context`` used to find devices (default: a new one).
    """

    def __init__(
        self,
        config: CameraConfig,
        *,
        playback_file: str | Path | None = None,
        playback_realtime: bool = False,
        device: Any | None = None,
        context: Any | None = None,
    ) -> None:
        super().__init__(config)
        if playback_file is not None and device is not None:
            raise CameraConfigError(f"{config.name}: give playback_file or device, not both")
        if float(config.fps) != int(config.fps):
            raise CameraConfigError(f"{config.name}: RealSense fps must be an integer, got {config.fps}")
        self.playback_file = Path(playback_file) if playback_file is not None else None
        if self.playback_file is not None and self.playback_file.suffix not in PLAYBACK_SUFFIXES:
            raise CameraConfigError(
                f"{config.name}: playback file must end in {PLAYBACK_SUFFIXES}, got {str(self.playback_file)!r}"
            )
        self._playback_realtime = bool(playback_realtime)
        self._device = device
        self._context = context
        self._rs: Any = None
        self._pipe: Any = None
        self._profile: Any = None
        self._align: Any = None
        self._playback: Any = None
        self._intrinsics: CameraIntrinsics | None = None
        self._last_color_number: int | None = None
        self._resumed = threading.Event()
        self._resume_thread: threading.Thread | None = None
        self.serial: str | None = None
        """Serial of the streaming device (set by :meth:`start`; the recorded one for playback)."""

    @property
    def is_playback(self) -> bool:
        return self.playback_file is not None

    # -- Camera hooks
    def _open(self) -> None:
        rs = self._rs = _import_rs()
        c = self.config
        ctx = self._context if self._context is not None else rs.context()
        pipe = rs.pipeline(ctx)
        cfg = rs.config()
        dev = None
        if self.playback_file is not None:
            if not self.playback_file.is_file():
                raise CameraNotFoundError(f"{self.name}: playback file {str(self.playback_file)!r} does not exist")
            cfg.enable_device_from_file(str(self.playback_file), False)
        elif self._device is not None:
            dev = self._device
            serial = _info(dev, rs, "serial_number")
            if c.serial is not None and str(c.serial) != serial:
                raise CameraNotFoundError(
                    f"{self.name}: the given device has serial {serial!r}, config asks for {str(c.serial)!r}"
                )
            if not hasattr(pipe, "set_device"):
                raise CameraError(
                    f"{self.name}: this pyrealsense2 has no pipeline.set_device, needed to stream from a "
                    "device object (tested with 2.59)"
                )
            pipe.set_device(dev)
            cfg.enable_device(serial)
            self.serial = serial
        else:
            dev = self._find_device(ctx, rs)
            self.serial = _info(dev, rs, "serial_number")
            cfg.enable_device(self.serial)
        cfg.enable_stream(rs.stream.color, c.width, c.height, rs.format.rgb8, int(c.fps))
        if c.enable_depth:
            dw, dh = c.depth_size
            cfg.enable_stream(rs.stream.depth, dw, dh, rs.format.z16, int(c.fps))
        if dev is not None:
            self._apply_options(dev, rs)
        playback = None
        try:
            if self.playback_file is not None:
                # Pause the playback device before the pipeline starts it and resume once the
                # pipeline is streaming: otherwise (librealsense 2.59, non-real-time) the first
                # frames, or all of a short recording, are played before the pipeline can take
                # them. resume() is called from a helper thread: called alone right after
                # start() it sometimes blocks for 10 s; concurrent with the first read it returns
                # at once.
                playback = cfg.resolve(rs.pipeline_wrapper(pipe)).get_device().as_playback()
                playback.set_real_time(self._playback_realtime)
                playback.pause()
            profile = pipe.start(cfg)
        except RuntimeError as e:
            raise self._start_error(e, dev, rs) from e
        self._pipe, self._profile = pipe, profile
        try:
            self.serial = _info(profile.get_device(), rs, "serial_number")
            self._align = rs.align(rs.stream.color) if c.enable_depth else None
            self._intrinsics = self._read_intrinsics(profile, rs)
            self._last_color_number = None
            if playback is not None:
                self._playback = playback
                self._resumed.clear()
                self._resume_thread = threading.Thread(
                    target=self._resume_playback, args=(playback,), name=f"rs-resume-{self.name}", daemon=True
                )
                self._resume_thread.start()
        except BaseException:
            pipe.stop()
            self._pipe = None
            raise

    def _close(self) -> None:
        pipe, self._pipe = self._pipe, None
        self._playback = None
        self._align = None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError:
                pass
        if self._resume_thread is not None:
            self._resume_thread.join(timeout=1.0)
            self._resume_thread = None

    def _resume_playback(self, playback: Any) -> None:
        try:
            playback.resume()
        finally:
            self._resumed.set()

    def _device_intrinsics(self) -> CameraIntrinsics:
        if self._intrinsics is None:
            raise CameraError(f"{self.name}: intrinsics come from the stream profile; call start() first")
        return self._intrinsics

    def _read(self, timeout_s: float) -> Frame:
        rs, pipe = self._rs, self._pipe
        if pipe is None:
            raise CameraError(f"{self.name}: stopped")
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CameraTimeoutError(f"{self.name}: no new frame within {timeout_s} s")
            wait_s = min(remaining, _PLAYBACK_POLL_S) if self._playback is not None else remaining
            ok, fs = pipe.try_wait_for_frames(max(1, int(wait_s * 1000)))
            if not ok:
                if (
                    self._playback is not None
                    and self._resumed.is_set()
                    and self._playback.current_status() == rs.playback_status.stopped
                ):
                    raise EndOfStream(f"{self.name}: end of recording {str(self.playback_file)!r}")
                continue
            t_arrival = time.monotonic()
            color = fs.get_color_frame()
            if not color:
                continue
            number = int(color.get_frame_number())
            if self._last_color_number is not None and number <= self._last_color_number:
                continue  # frameset re-emitted with an already delivered colour frame
            depth = None
            if self._align is not None:
                depth = self._align.process(fs).get_depth_frame()
                if not depth:
                    continue  # wait for the frameset that pairs this colour frame with depth
            frame = self._to_frame(color, depth, t_arrival, rs)
            self._last_color_number = number
            return frame

    # -- internals
    def _find_device(self, ctx: Any, rs: Any) -> Any:
        c = self.config
        devices = list(ctx.query_devices())
        infos = list_realsense_devices(ctx)
        if c.serial is None:
            if len(devices) == 1:
                return devices[0]
            if not devices:
                raise CameraNotFoundError(f"{self.name}: no RealSense device connected")
            raise CameraNotFoundError(
                f"{self.name}: {len(devices)} RealSense devices connected, set CameraConfig.serial to one of: "
                f"{_describe_devices(infos)}"
            )
        for dev, info in zip(devices, infos):
            if info.serial == str(c.serial):
                return dev
        raise CameraNotFoundError(
            f"{self.name}: no RealSense device with serial {str(c.serial)!r}; "
            f"connected devices: {_describe_devices(infos)}"
        )

    def _start_error(self, err: RuntimeError, dev: Any, rs: Any) -> CameraError:
        c = self.config
        wanted = f"color {c.width}x{c.height} rgb8 @{int(c.fps)}"
        if c.enable_depth:
            wanted += f" + depth {c.depth_size[0]}x{c.depth_size[1]} z16 @{int(c.fps)}"
        if self.playback_file is not None:
            source = f"recording {str(self.playback_file)!r}"
        else:
            source = f"device {self.serial!r}"
        if "resolve" not in str(err):  # librealsense: "Couldn't resolve requests" = no such mode
            return CameraError(f"{self.name}: failed to start {wanted} from {source}: {err}")
        modes: list[str] = []
        try:
            if dev is None and self.playback_file is not None:
                # a fresh context: the pipeline's context already holds the file
                dev = rs.context().load_device(str(self.playback_file))
            if dev is not None:
                modes = _video_modes(dev, rs)
        except RuntimeError:
            pass  # the original error is the one to report
        if modes:
            return UnsupportedModeError(
                f"{self.name}: cannot stream {wanted} from {source} ({err}); available modes: {'; '.join(modes)}"
            )
        return CameraError(f"{self.name}: failed to start {wanted} from {source}: {err}")

    def _apply_options(self, dev: Any, rs: Any) -> None:
        """Exposure / white balance on the sensor that streams colour (before streaming)."""
        c = self.config
        sensor = None
        for s in dev.query_sensors():
            if any(p.stream_type() == rs.stream.color for p in s.get_stream_profiles()):
                sensor = s
                break
        if sensor is None:
            raise UnsupportedModeError(f"{self.name}: device has no colour sensor; modes: {_video_modes(dev, rs)}")
        self._set_auto_or_manual(sensor, rs, "exposure", "enable_auto_exposure", c.exposure)
        self._set_auto_or_manual(sensor, rs, "white_balance", "enable_auto_white_balance", c.white_balance)

    def _set_auto_or_manual(self, sensor: Any, rs: Any, option: str, auto_option: str, value: float | None) -> None:
        opt, auto = getattr(rs.option, option), getattr(rs.option, auto_option)
        if value is None:
            if sensor.supports(auto):
                self._set_option(sensor, auto, auto_option, 1.0)
            return
        if not sensor.supports(opt):
            raise UnsupportedModeError(f"{self.name}: colour sensor does not support manual {option}")
        r = sensor.get_option_range(opt)
        if not r.min <= value <= r.max:
            raise UnsupportedModeError(
                f"{self.name}: {option} {value} outside the colour sensor's range [{r.min}, {r.max}]"
            )
        if sensor.supports(auto):
            self._set_option(sensor, auto, auto_option, 0.0)
        self._set_option(sensor, opt, option, float(value))

    def _set_option(self, sensor: Any, opt: Any, label: str, value: float) -> None:
        try:
            sensor.set_option(opt, value)
        except RuntimeError as e:
            raise CameraError(f"{self.name}: setting {label}={value} failed: {e}") from e

    def _read_intrinsics(self, profile: Any, rs: Any) -> CameraIntrinsics:
        vp = profile.get_stream(rs.stream.color).as_video_stream_profile()
        i = vp.get_intrinsics()
        model = i.model.name
        if model not in DISTORTION_MODELS:
            raise CameraError(f"{self.name}: unsupported distortion model {model!r} reported by librealsense")
        return CameraIntrinsics(
            width=i.width, height=i.height, fx=i.fx, fy=i.fy, cx=i.ppx, cy=i.ppy,
            distortion_model=model, coeffs=tuple(i.coeffs),
        )

    def _host_time_s(self, color: Any, domain: str, t_arrival: float, rs: Any) -> float:
        if self._playback is not None:
            return t_arrival
        if domain in _WALL_CLOCK_DOMAINS:
            return color.get_timestamp() / 1000.0 - host_clock_offset_s()
        toa = rs.frame_metadata_value.time_of_arrival
        if color.supports_frame_metadata(toa):
            return color.get_frame_metadata(toa) / 1000.0 - host_clock_offset_s()
        return t_arrival

    def _to_frame(self, color: Any, depth: Any | None, t_arrival: float, rs: Any) -> Frame:
        rgb = np.array(np.asanyarray(color.get_data()), dtype=np.uint8, copy=True)
        domain = color.get_frame_timestamp_domain().name
        depth_arr = depth_scale = depth_ts = None
        if depth is not None:
            depth_arr = np.array(np.asanyarray(depth.get_data()), dtype=np.uint16, copy=True)
            depth_scale = float(depth.as_depth_frame().get_units())
            depth_ts = float(depth.get_timestamp())
            if not (math.isfinite(depth_scale) and depth_scale > 0):
                raise CameraError(f"{self.name}: depth frame reports invalid units {depth_scale}")
        return Frame(
            color=rgb,
            depth=depth_arr,
            depth_scale=depth_scale,
            timestamp_s=self._host_time_s(color, domain, t_arrival, rs),
            frame_number=int(color.get_frame_number()),
            hw_timestamp_ms=float(color.get_timestamp()),
            hw_timestamp_domain=domain,
            depth_hw_timestamp_ms=depth_ts,
            camera=self.name,
        )
