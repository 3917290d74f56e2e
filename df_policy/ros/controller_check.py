"""Reads a controller's ``joints`` parameter, so a ``Float64MultiArray`` command (values without
names) is sent in the order the controller expects, verified rather than assumed.

ros2_control's ``forward_command_controller`` / ``JointGroupPositionController`` and
``joint_trajectory_controller`` declare a ``joints`` string-array parameter on their own node
(``/forward_position_controller``); any ROS 2 node answers ``<node>/get_parameters``. The query
runs on a short-lived node with its own executor in the caller's context, so it can be called
from inside another node's callback (the policy node's ``~/enable`` service).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ._imports import import_ros


class ControllerCheckError(RuntimeError):
    """The controller's joint order could not be read or does not match. The message says which."""


def controller_joints(context: Any, controller: str, timeout_s: float = 2.0) -> list[str]:
    """The ``joints`` parameter of node ``controller`` (fully qualified name) in ``context``."""
    rclpy = import_ros("rclpy")
    executors = import_ros("rclpy.executors")
    srv = import_ros("rcl_interfaces.srv")
    msg = import_ros("rcl_interfaces.msg")
    node = rclpy.create_node(f"dfp_controller_check_{os.getpid()}", context=context)
    executor = executors.SingleThreadedExecutor(context=context)
    try:
        client = node.create_client(srv.GetParameters, f"{controller}/get_parameters")
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise ControllerCheckError(f"the controller node {controller} did not answer (no {controller}/get_parameters "
                                       f"service within {timeout_s:g} s): is it loaded?")
        future = client.call_async(srv.GetParameters.Request(names=["joints"]))
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done() or future.result() is None:
            raise ControllerCheckError(f"the controller node {controller} did not return its parameters "
                                       f"within {timeout_s:g} s")
        (value,) = future.result().values
        if value.type != msg.ParameterType.PARAMETER_STRING_ARRAY:
            raise ControllerCheckError(f"the controller node {controller} has no string-array parameter 'joints'")
        return list(value.string_array_value)
    finally:
        executor.shutdown()
        node.destroy_node()


def joint_order_error(controller: str, expected: Sequence[str], actual: Sequence[str]) -> str | None:
    """Why ``actual`` (the controller's ``joints``) does not fit ``expected``; ``None`` if equal."""
    if list(actual) == list(expected):
        return None
    if sorted(actual) == sorted(expected):
        return (f"{controller} expects the joints in the order {list(actual)}, the node would send "
                f"{list(expected)}: a Float64MultiArray carries no names, so every value would go to the wrong joint")
    return f"{controller} controls joints {list(actual)}, the node would send {list(expected)}"
