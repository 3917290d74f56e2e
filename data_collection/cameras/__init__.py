"""Camera layer: one :class:`Camera` interface over simulated, OpenCV/V4L2 and RealSense cameras.

See :mod:`data_collection.cameras.base` for the frame / timestamp contracts. ``pyrealsense2``
is optional (extra ``realsense``); it is imported only when a RealSense camera is used.
"""

from .base import (
    DISTORTION_MODELS,
    Camera,
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraStats,
    CameraTimeoutError,
    EndOfStream,
    Frame,
    UnsupportedModeError,
)
from .multi import MatchResult, MatchStats, MultiCamera
from .opencv_camera import OpenCVCamera
from .realsense import RealSenseCamera, RealSenseDeviceInfo, list_realsense_devices
from .simulated import SimulatedCamera, make_test_pattern

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
    "MatchResult",
    "MatchStats",
    "MultiCamera",
    "OpenCVCamera",
    "RealSenseCamera",
    "RealSenseDeviceInfo",
    "SimulatedCamera",
    "UnsupportedModeError",
    "list_realsense_devices",
    "make_test_pattern",
]
