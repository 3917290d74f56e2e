"""Robot layer: one :class:`Robot` interface over simulated and ROS 2 robots.

See :mod:`data_collection.robots.base` for the state / command / clock contracts. ROS 2
(``rclpy``) is optional: it is imported only when a :class:`Ros2Robot` connects or a
:class:`Ros2SimDriver` starts.
"""

from .base import (
    CommandRecord,
    CommandRejectedError,
    Robot,
    RobotConfigError,
    RobotError,
    RobotLimits,
    RobotNotConnectedError,
    RobotState,
    StaleStateError,
)
from .ros2_robot import COMMAND_TYPES, Ros2Robot, Ros2RobotConfig, Ros2RobotStats
from .simulated import SimulatedRobot, SimulatedRobotConfig

_LAZY = {"Ros2SimDriver", "Ros2SimDriverConfig", "Ros2SimDriverStats"}


def __getattr__(name: str):
    # ros2_sim_driver is also run as ``python -m``; importing it eagerly here would make runpy
    # warn that the module was imported before being executed as __main__.
    if name in _LAZY:
        from . import ros2_sim_driver

        return getattr(ros2_sim_driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "COMMAND_TYPES",
    "CommandRecord",
    "CommandRejectedError",
    "Robot",
    "RobotConfigError",
    "RobotError",
    "RobotLimits",
    "RobotNotConnectedError",
    "RobotState",
    "Ros2Robot",
    "Ros2RobotConfig",
    "Ros2RobotStats",
    "Ros2SimDriver",
    "Ros2SimDriverConfig",
    "Ros2SimDriverStats",
    "SimulatedRobot",
    "SimulatedRobotConfig",
    "StaleStateError",
]
