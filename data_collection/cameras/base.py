"""Camera interface shared by every camera backend.

Contracts
---------
* ``Frame.color``: ``uint8`` array, shape ``(H, W, 3)``, **RGB** channel order, C-contiguous,
  owned by the frame (never a view into a driver buffer that may be recycled).
* ``Frame.depth``: optional ``uint16`` array, shape ``(H, W)``, **registered (aligned) to the
  colour image** (same pixel grid and intrinsics as ``color``); metres = ``depth * depth_scale``;
  ``0`` means "no depth".
* ``Frame.timestamp_s``: estimated capture time in seconds in the **host monotonic clock**
  (:func:`time.monotonic`, ``CLOCK_MONOTONIC`` on Linux). All backends use this one clock so
  frames from several cameras and robot state can be matched by time.
* ``Frame.hw_timestamp_ms``: the device's own timestamp in milliseconds, in the clock named by
  ``Frame.hw_timestamp_domain`` (e.g. RealSense ``"hardware_clock"``, ``"global_time"``,
  ``"system_time"``; ``"media"`` for a video file's position). ``None`` when there is none.
* ``Frame.frame_number``: increases strictly from one delivered frame to the next; a gap
  means frames were dropped (counted in :class:`CameraStats`). A camera never delivers the
  same frame twice.
"""

from __future__ import annotations

import abc
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DISTORTION_MODELS",
    "Camera",
    "CameraConfig",
    "CameraConfigError",
    "CameraError",
    "CameraIntrinsics",
    "CameraNotFoundError",
    "CameraStats",
    "CameraTimeoutError",
    "EndOfStream",
    "Frame",
    "UnsupportedModeError",
    "host_clock_offset_s",
]


# --------------------------------------------------------------------------- errors


class CameraError(RuntimeError):
    """A camera failed or was used wrongly. The message names the camera and the problem."""


class CameraConfigError(ValueError):
    """A camera configuration (or intrinsics) is invalid. The message names the field."""


class CameraNotFoundError(CameraError):
    """The requested device does not exist; the message lists the devices that do."""


class UnsupportedModeError(CameraError):
    """The device cannot stream the requested resolution / fps / format."""


class CameraTimeoutError(CameraError, TimeoutError):
    """No new frame arrived within the read timeout."""


class EndOfStream(CameraError):
    """A finite source (recording, video file, finite simulation) has no more frames."""


# --------------------------------------------------------------------------- intrinsics

DISTORTION_MODELS = (
    "none",
    "brown_conrady",  # OpenCV plumb_bob: k1, k2, p1, p2, k3
    "modified_brown_conrady",
    "inverse_brown_conrady",
    "ftheta",
    "kannala_brandt4",
)


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the colour image (and of the depth image aligned to it).

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (pixel centres at integer coordinates, origin at the
            centre of the top-left pixel, the OpenCV / librealsense convention).
        distortion_model: one of :data:`DISTORTION_MODELS` (librealsense names; ``brown_conrady``
            is OpenCV's ``plumb_bob`` order ``k1, k2, p1, p2, k3``).
        coeffs: distortion coefficients in that model's order (librealsense gives 5).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "none"
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or int(v) <= 0:
                raise CameraConfigError(f"intrinsics {name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise CameraConfigError(f"intrinsics {name} must be finite, got {v!r}")
            object.__setattr__(self, name, v)
        if not (self.fx > 0 and self.fy > 0):
            raise CameraConfigError(f"intrinsics focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise CameraConfigError(
                f"unknown distortion model {self.distortion_model!r}; expected one of {DISTORTION_MODELS}"
            )
        coeffs = tuple(float(c) for c in self.coeffs)
        if not all(math.isfinite(c) for c in coeffs):
            raise CameraConfigError(f"distortion coefficients must be finite, got {coeffs}")
        object.__setattr__(self, "coeffs", coeffs)

    @property
    def camera_matrix(self) -> np.ndarray:
        """3x3 float64 ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for ``StoreSchema.cameras[name]["intrinsics"]`` (plain floats/ints/lists)."""
        d = asdict(self)
        d["coeffs"] = list(self.coeffs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraIntrinsics:
        """Inverse of :meth:`to_dict`; unknown keys are an error (catches typos)."""
        known = {"width", "height", "fx", "fy", "cx", "cy", "distortion_model", "coeffs"}
        extra = set(d) - known
        if extra:
            raise CameraConfigError(f"unknown intrinsics keys {sorted(extra)}")
        missing = {"width", "height", "fx", "fy", "cx", "cy"} - set(d)
        if missing:
            raise CameraConfigError(f"intrinsics dict is missing {sorted(missing)}")
        return cls(**{**d, "coeffs": tuple(d.get("coeffs", (0.0,) * 5))})

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = 60.0) -> CameraIntrinsics:
        """Ideal pinhole with square pixels, centred principal point, given horizontal FOV."""
        if not 0.0 < hfov_deg < 180.0:
            raise CameraConfigError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CameraConfig:
    """What to open and how. Backends reject what they cannot honour rather than ignore it.

    Attributes:
        name: camera name, the key used in the episode store (``[A-Za-z0-9_-]+``).
        serial: device selector. RealSense: serial number (``None`` = the only connected one).
            OpenCV: device index or path (e.g. ``/dev/v4l/by-id/...``, stable across reboots),
            unless the backend is given one explicitly.
        width, height: colour image size in pixels.
        fps: colour frame rate in Hz.
        enable_depth: also deliver depth aligned to colour (RealSense / simulated only).
        depth_width, depth_height: native depth stream size (``None`` = same as colour); the
            delivered depth is always resampled onto the colour grid.
        exposure: manual exposure in the device's native units (RealSense colour sensor:
            ``rs.option.exposure``; V4L2: ``CAP_PROP_EXPOSURE``); ``None`` = auto exposure.
        white_balance: manual white balance in Kelvin; ``None`` = auto.
        intrinsics: calibrated intrinsics that override what the device reports (required for
            a webcam whose intrinsics should be recorded; ``None`` = use the device's).
    """

    name: str
    serial: str | int | None = None
    width: int = 640
    height: int = 480
    fps: float = 30.0
    enable_depth: bool = False
    depth_width: int | None = None
    depth_height: int | None = None
    exposure: float | None = None
    white_balance: float | None = None
    intrinsics: CameraIntrinsics | None = None

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise CameraConfigError(f"camera name must be non-empty [A-Za-z0-9_-], got {self.name!r}")
        for attr in ("width", "height", "depth_width", "depth_height"):
            v = getattr(self, attr)
            if v is None and attr.startswith("depth"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise CameraConfigError(f"{self.name}: {attr} must be a positive int, got {v!r}")
        if (self.depth_width is None) != (self.depth_height is None):
            raise CameraConfigError(f"{self.name}: set both depth_width and depth_height, or neither")
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise CameraConfigError(f"{self.name}: fps must be a positive number, got {self.fps!r}")
        if self.exposure is not None and not (math.isfinite(self.exposure) and self.exposure > 0):
            raise CameraConfigError(f"{self.name}: exposure must be > 0 or None (auto), got {self.exposure!r}")
        if self.white_balance is not None and not (
            math.isfinite(self.white_balance) and 1000 <= self.white_balance <= 15000
        ):
            raise CameraConfigError(
                f"{self.name}: white_balance must be in [1000, 15000] K or None (auto), got {self.white_balance!r}"
            )
        if self.intrinsics is not None and (self.intrinsics.width, self.intrinsics.height) != (
            self.width,
            self.height,
        ):
            raise CameraConfigError(
                f"{self.name}: intrinsics are for {self.intrinsics.width}x{self.intrinsics.height}, "
                f"config is {self.width}x{self.height}"
            )

    @property
    def depth_size(self) -> tuple[int, int]:
        """Native depth stream ``(width, height)``."""
        if self.depth_width is None or self.depth_height is None:
            return self.width, self.height
        return self.depth_width, self.depth_height


# --------------------------------------------------------------------------- frame


@dataclass(frozen=True, eq=False)
class Frame:
    """One colour image (+ aligned depth) from one camera. See the module docstring for contracts.

    Attributes:
        color: ``uint8`` ``(H, W, 3)`` RGB.
        timestamp_s: capture time, seconds, host :func:`time.monotonic` clock.
        frame_number: strictly increasing per camera; gaps are dropped frames.
        depth: ``uint16`` ``(H, W)`` aligned to ``color``, or ``None``.
        depth_scale: metres per depth unit (required with ``depth``).
        hw_timestamp_ms: device timestamp in ms, or ``None``.
        hw_timestamp_domain: clock of ``hw_timestamp_ms`` (see module docstring), or ``None``.
        depth_hw_timestamp_ms: device timestamp of the depth image, to check colour/depth skew.
        camera: name of the camera that produced it.
    """

    color: np.ndarray
    timestamp_s: float
    frame_number: int
    depth: np.ndarray | None = None
    depth_scale: float | None = None
    hw_timestamp_ms: float | None = None
    hw_timestamp_domain: str | None = None
    depth_hw_timestamp_ms: float | None = None
    camera: str = ""

    def __post_init__(self) -> None:
        c = self.color
        if not isinstance(c, np.ndarray) or c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 3:
            desc = f"{c.dtype} {c.shape}" if isinstance(c, np.ndarray) else type(c).__name__
            raise CameraError(f"{self.camera}: color must be uint8 (H, W, 3) RGB, got {desc}")
        if self.depth is not None:
            d = self.depth
            if not isinstance(d, np.ndarray) or d.dtype != np.uint16 or d.shape != c.shape[:2]:
                desc = f"{d.dtype} {d.shape}" if isinstance(d, np.ndarray) else type(d).__name__
                raise CameraError(f"{self.camera}: depth must be uint16 {c.shape[:2]} (aligned to color), got {desc}")
            if self.depth_scale is None or not (math.isfinite(self.depth_scale) and self.depth_scale > 0):
                raise CameraError(f"{self.camera}: depth needs a positive depth_scale, got {self.depth_scale!r}")
        if not math.isfinite(self.timestamp_s):
            raise CameraError(f"{self.camera}: timestamp_s must be finite, got {self.timestamp_s!r}")

    @property
    def height(self) -> int:
        return int(self.color.shape[0])

    @property
    def width(self) -> int:
        return int(self.color.shape[1])

    def depth_m(self) -> np.ndarray:
        """Depth in metres as ``float32`` ``(H, W)``; ``0`` where there is no depth."""
        if self.depth is None or self.depth_scale is None:
            raise CameraError(f"{self.camera}: frame {self.frame_number} has no depth")
        return self.depth.astype(np.float32) * np.float32(self.depth_scale)


@dataclass
class CameraStats:
    """Counters since :meth:`Camera.start`.

    Attributes:
        frames_delivered: frames returned by :meth:`Camera.read`.
        frames_dropped: frames skipped between two delivered frames (frame-number gaps), i.e.
            frames the device produced (or was scheduled to) that the reader never saw.
        first_frame_number / last_frame_number: of delivered frames.
        last_timestamp_s: ``timestamp_s`` of the last delivered frame.
    """

    frames_delivered: int = 0
    frames_dropped: int = 0
    first_frame_number: int | None = None
    last_frame_number: int | None = None
    last_timestamp_s: float | None = None
    extra: dict[str, int] = field(default_factory=dict)


def host_clock_offset_s() -> float:
    """``time.time() - time.monotonic()``: add to a monotonic time to get wall-clock (epoch) time."""
    return time.time() - time.monotonic()


# --------------------------------------------------------------------------- interface


class Camera(abc.ABC):
    """A colour (+ depth) camera.

    Lifecycle: ``start()`` → ``read()`` … → ``stop()``; also a context manager. ``read`` blocks
    until a frame **newer than the last one returned** is available (never repeats a frame) or
    ``timeout_s`` passes (:class:`CameraTimeoutError`); finite sources raise :class:`EndOfStream`.
    ``read`` is meant for one consumer thread; ``start``/``stop`` may be called from another.
    """

    def __init__(self, config: CameraConfig) -> None:
        if not isinstance(config, CameraConfig):
            raise CameraConfigError(f"expected a CameraConfig, got {type(config).__name__}")
        self.config = config
        self.stats = CameraStats()
        self._running = False
        self._lock = threading.Lock()

    # -- public API
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Open the device and start streaming. Raises :class:`CameraError` subclasses."""
        with self._lock:
            if self._running:
                raise CameraError(f"{self.name}: already started")
            self.stats = CameraStats()
            self._open()
            self._running = True

    def stop(self) -> None:
        """Stop streaming and release the device; safe to call twice."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._close()

    def read(self, timeout_s: float = 1.0) -> Frame:
        """Next new frame (see class docstring). ``timeout_s`` > 0, seconds."""
        if not self._running:
            raise CameraError(f"{self.name}: read() before start() (or after stop())")
        if not timeout_s > 0:
            raise CameraConfigError(f"{self.name}: timeout_s must be > 0, got {timeout_s!r}")
        frame = self._read(float(timeout_s))
        self._account(frame)
        return frame

    def device_id(self) -> str | None:
        """What identifies the physical camera, recorded in the store schema (``serial``) so a
        swapped or replaced camera is noticed: the device's own serial number where the backend
        reads one (RealSense, once started), else ``config.serial`` (an OpenCV device path or
        index, a simulated camera's label), else ``None`` (nothing to compare)."""
        serial = getattr(self, "serial", None) or self.config.serial
        return None if serial is None else str(serial)

    def intrinsics(self) -> CameraIntrinsics:
        """Intrinsics of ``Frame.color`` (and aligned depth): ``config.intrinsics`` if set, else the device's."""
        if self.config.intrinsics is not None:
            return self.config.intrinsics
        return self._device_intrinsics()

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        c = self.config
        state = "running" if self._running else "stopped"
        return f"{type(self).__name__}({c.name!r}, {c.width}x{c.height}@{c.fps:g}, {state})"

    # -- backend hooks
    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read(self, timeout_s: float) -> Frame: ...

    @abc.abstractmethod
    def _device_intrinsics(self) -> CameraIntrinsics: ...

    # -- helpers
    def _account(self, frame: Frame) -> None:
        if (frame.width, frame.height) != (self.config.width, self.config.height):
            raise CameraError(
                f"{self.name}: got a {frame.width}x{frame.height} frame, configured "
                f"{self.config.width}x{self.config.height}"
            )
        s = self.stats
        last = s.last_frame_number
        if last is not None:
            if frame.frame_number <= last:
                raise CameraError(
                    f"{self.name}: backend delivered frame {frame.frame_number} after {last} "
                    "(duplicate or out of order)"
                )
            s.frames_dropped += frame.frame_number - last - 1
        else:
            s.first_frame_number = frame.frame_number
        s.last_frame_number = frame.frame_number
        s.last_timestamp_s = frame.timestamp_s
        s.frames_delivered += 1
