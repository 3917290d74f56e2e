"""Lazy imports of ROS 2 Python packages with one clear error when ROS 2 is missing."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RosUnavailableError", "import_ros", "ros_message_class"]

_INSTALL_HINT = (
    "install the ROS 2 Python packages (pip install 'df-policy[ros]', or source a ROS 2 "
    "installation) to use df_policy.ros with real ROS messages and nodes"
)


class RosUnavailableError(ImportError):
    """A ROS 2 Python package (``rclpy`` or a message package) cannot be imported."""


def import_ros(module: str) -> Any:
    """Import ``module`` (e.g. ``"rclpy"``, ``"sensor_msgs.msg"``) or raise :class:`RosUnavailableError`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RosUnavailableError(f"cannot import {module!r} ({exc}); {_INSTALL_HINT}") from exc


def ros_message_class(package: str, name: str) -> type:
    """The message class ``<package>.msg.<name>``, e.g. ``ros_message_class("sensor_msgs", "JointState")``."""
    module = import_ros(f"{package}.msg")
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise RosUnavailableError(f"message type {package}/msg/{name} does not exist") from exc
