"""ROS 2 boundary of df_policy: message <-> array conversion, observation assembly, node threads.

Importing this package (and :mod:`df_policy.ros.messages`, :mod:`df_policy.ros.observation`)
does **not** import ``rclpy`` or any ROS message package: message classes are imported inside
the functions that build messages, and reading a message only touches its attributes. So the
converters work on any object with the right fields, and ``df_policy`` installs and imports on
machines without ROS 2. Only :mod:`df_policy.ros.node_thread` and the policy node
(:mod:`df_policy.ros.policy_node`, settings in :mod:`df_policy.ros.node_config`) need ``rclpy``
at run time; the policy node imports ``torch`` only when it starts.

Conventions shared by every converter
-------------------------------------
* Joint arrays are ``float32`` in the **configured joint order**, units as in the message
  (``rad`` / ``m`` for positions, ``rad/s`` / ``m/s`` for velocities, ``N·m`` / ``N`` effort).
* The action space is **joint position targets**, ``float32 (D,)`` in configured joint order;
  recorded commands and policy outputs both go through :class:`CommandConverter`.
* Images are ``uint8 (H, W, 3)`` **RGB**, C-contiguous, owned (never a view of message data).
* Times are ``builtin_interfaces/Time`` <-> float seconds or exact integer nanoseconds.
"""

from .messages import (
    DEPTH_ENCODINGS,
    IMAGE_ENCODINGS,
    CommandConverter,
    JointStateConverter,
    JointStateSample,
    MessageConversionError,
    TrajectoryArrays,
    camera_info_to_intrinsics,
    depth_to_image,
    duration_to_ns,
    duration_to_sec,
    image_to_depth,
    image_to_rgb,
    ns_to_duration,
    ns_to_time,
    rgb_to_image,
    sec_to_duration,
    sec_to_time,
    time_to_ns,
    time_to_sec,
)
from .node_config import PolicyNodeConfig, PolicyNodeConfigError
from .node_thread import NodeThread, NodeThreadConfig, RosUnavailableError, wait_until
from .observation import (
    MissingInputError,
    ObservationAssembler,
    ObservationAssemblerConfig,
    ObservationError,
    ObservationInput,
    ObservationStep,
    StaleInputError,
)

__all__ = [
    "DEPTH_ENCODINGS",
    "IMAGE_ENCODINGS",
    "CommandConverter",
    "JointStateConverter",
    "JointStateSample",
    "MessageConversionError",
    "MissingInputError",
    "NodeThread",
    "NodeThreadConfig",
    "ObservationAssembler",
    "ObservationAssemblerConfig",
    "ObservationError",
    "ObservationInput",
    "ObservationStep",
    "PolicyNode",
    "PolicyNodeConfig",
    "PolicyNodeConfigError",
    "RosUnavailableError",
    "StaleInputError",
    "TrajectoryArrays",
    "camera_info_to_intrinsics",
    "depth_to_image",
    "duration_to_ns",
    "duration_to_sec",
    "image_to_depth",
    "image_to_rgb",
    "ns_to_duration",
    "ns_to_time",
    "rgb_to_image",
    "sec_to_duration",
    "sec_to_time",
    "time_to_ns",
    "time_to_sec",
    "wait_until",
]


def __getattr__(name: str):
    """``PolicyNode`` is imported on first use, so that ``python -m df_policy.ros.policy_node``
    does not find its own module already imported by this package."""
    if name == "PolicyNode":
        from .policy_node import PolicyNode

        return PolicyNode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
