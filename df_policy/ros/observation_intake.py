"""The policy node's input side: subscriptions, the latest message of every input, observations
pushed to the runtime, and the measured joint position the safety checks use.

:class:`ObservationIntake` subscribes the joint state and one topic per checkpoint image key,
keeps each input's latest message and its receipt time (the runtime's clock), and, while the node
is enabled, assembles them (:class:`~df_policy.ros.observation.ObservationAssembler`) into one
observation per camera frame (per joint state for checkpoints without cameras). The
observation's stamp is the **oldest** receipt time among its inputs, so a stalled input makes
the observation age; an observation is pushed only when something newer than the last one
arrived. Callbacks run on the node's executor thread; :meth:`measured_position` and
:meth:`input_ages` may be called from any thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._imports import import_ros, ros_message_class
from .messages import JointStateConverter, MessageConversionError, compressed_image_to_rgb
from .node_config import PolicyNodeConfig
from .observation import (
    MissingInputError,
    ObservationAssembler,
    ObservationAssemblerConfig,
    ObservationError,
    ObservationInput,
)

__all__ = ["JOINT_STATE_SOURCE", "ObservationIntake"]

JOINT_STATE_SOURCE = "joint_state"


@dataclass(frozen=True)
class _RgbImage:
    """A decoded CompressedImage with the fields :func:`~df_policy.ros.messages.image_to_rgb` reads."""

    height: int
    width: int
    step: int
    data: bytes
    encoding: str = "rgb8"
    is_bigendian: int = 0

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> _RgbImage:
        h, w = rgb.shape[:2]
        return cls(h, w, 3 * w, np.ascontiguousarray(rgb).tobytes())


class ObservationIntake:
    """Inputs of a policy node (see the module docstring).

    Args:
        node: the rclpy node that owns the subscriptions.
        config: the node's settings (joint names and topics, camera topics and types,
            ``max_obs_age_s``, ``hold_log_period_s``).
        inputs: observation key -> where it comes from, for the keys the checkpoint needs
            (:func:`~df_policy.ros.node_setup.observation_inputs`).
        image_keys: the checkpoint's image keys, one camera topic each.
        clock: the runtime's clock (``now()`` in seconds).
        push: gives one assembled observation (``values``, ``stamp``) to the runtime.
        push_errors: exceptions of ``push`` that mean a bad observation (dropped and counted).
        is_enabled: whether observations go to the runtime now.
        counters, window, lock: the node's counters (all time, and since the last diagnostics
            report) and the lock that guards them; this class counts ``joint_states``,
            ``images``, ``observations_pushed`` and ``observation_errors`` there.
    """

    def __init__(self, node: Any, config: PolicyNodeConfig, inputs: Mapping[str, ObservationInput],
                 image_keys: Sequence[str], clock: Any, push: Callable[[dict[str, np.ndarray], float], None],
                 push_errors: tuple[type[BaseException], ...], is_enabled: Callable[[], bool],
                 counters: Counter[str], window: Counter[str], lock: threading.Lock) -> None:
        self.node, self.config, self.clock = node, config, clock
        self._push_to_runtime, self._push_errors, self._is_enabled = push, push_errors, is_enabled
        self.counters, self._window, self._lock = counters, window, lock
        self._latest: dict[str, Any] = {}
        self._receipt: dict[str, float] = {}
        self._last_push_stamp: float | None = None
        self.last_error: str | None = None
        self._has_images = bool(image_keys)
        self._joints = JointStateConverter(config.joint_names, check_finite=())
        self._assembler = ObservationAssembler(ObservationAssemblerConfig(
            inputs=inputs, joint_names=config.joint_names, max_age_s=config.max_obs_age_s,
            stamp_source="receipt", joint_state_source=JOINT_STATE_SOURCE))
        sources = tuple(self._assembler.required_sources)
        if JOINT_STATE_SOURCE not in sources:
            sources = (JOINT_STATE_SOURCE, *sources)  # enable always needs the joint state
        self.sources = sources

        sensor_qos = import_ros("rclpy.qos").qos_profile_sensor_data
        node.create_subscription(ros_message_class("sensor_msgs", "JointState"), config.joint_state_topic,
                                 self._on_joint_state, sensor_qos)
        self.topic_of: dict[str, str] = {JOINT_STATE_SOURCE: node.resolve_topic_name(config.joint_state_topic)}
        """Each source's resolved topic name (sources are the camera topics and ``joint_state``)."""
        self._compressed_topics: set[str] = set()
        for key in image_keys:
            topic = config.camera_topics[key]
            compressed = config.camera_type(key) == "compressed"
            if compressed:
                self._compressed_topics.add(topic)
            msg_type = ros_message_class("sensor_msgs", "CompressedImage" if compressed else "Image")
            node.create_subscription(msg_type, topic, self._camera_callback(topic), sensor_qos)
            self.topic_of[topic] = node.resolve_topic_name(topic)

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _on_joint_state(self, msg: Any) -> None:
        t = self.clock.now()
        with self._lock:
            self._latest[JOINT_STATE_SOURCE], self._receipt[JOINT_STATE_SOURCE] = msg, t
            self.counters["joint_states"] += 1
        if not self._has_images:
            self.push()

    def _camera_callback(self, topic: str) -> Callable[[Any], None]:
        def on_image(msg: Any) -> None:
            t = self.clock.now()
            with self._lock:
                self._latest[topic], self._receipt[topic] = msg, t
                self.counters["images"] += 1
            self.push()

        return on_image

    def _error(self, why: str) -> None:
        with self._lock:
            self.counters["observation_errors"] += 1
            self._window["observation_errors"] += 1
            self.last_error = why
        self.node.get_logger().warning(f"observation dropped: {why}",
                                       throttle_duration_sec=self.config.hold_log_period_s)

    # ------------------------------------------------------------------ observations
    def restart(self) -> None:
        """Forget the last pushed stamp (on ``~/enable``): the next push goes through."""
        self._last_push_stamp = None

    def push(self) -> None:
        """Assemble the latest messages into one observation and give it to the runtime (if enabled)."""
        if not self._is_enabled():
            return
        with self._lock:
            messages, receipts = dict(self._latest), dict(self._receipt)
        if any(src not in receipts for src in self.sources):
            return
        stamp = min(receipts[src] for src in self.sources)  # an observation is as old as its oldest part
        if self._last_push_stamp is not None and stamp <= self._last_push_stamp:
            return  # nothing new since the last push (e.g. a stalled input)
        for topic in self._compressed_topics:  # decoded only when used
            try:
                messages[topic] = _RgbImage.from_rgb(compressed_image_to_rgb(messages[topic]))
            except MessageConversionError as exc:
                self._error(f"{topic}: {exc}")
                return
        try:
            step = self._assembler.assemble(messages, self.clock.now(), receipts)
        except MissingInputError:
            return
        except ObservationError as exc:
            self._error(str(exc))
            return
        self._last_push_stamp = stamp
        try:
            self._push_to_runtime(step.values, stamp)
        except self._push_errors as exc:  # wrong key or shape for the checkpoint
            self._error(str(exc))
            return
        with self._lock:
            self.counters["observations_pushed"] += 1

    # ------------------------------------------------------------------ queries (any thread)
    def input_ages(self) -> dict[str, float | None]:
        """Seconds since the latest message of each input (``None`` = nothing received yet)."""
        now = self.clock.now()
        with self._lock:
            return {src: (now - self._receipt[src]) if src in self._receipt else None for src in self.sources}

    def measured_position(self) -> np.ndarray:
        """The latest joint position in ``joint_names`` order; raises ``RuntimeError`` saying why not."""
        with self._lock:
            msg, t = self._latest.get(JOINT_STATE_SOURCE), self._receipt.get(JOINT_STATE_SOURCE)
        topic = self.topic_of[JOINT_STATE_SOURCE]
        if msg is None:
            raise RuntimeError(f"no sensor_msgs/JointState received on {topic} yet")
        age = self.clock.now() - t
        if age > self.config.max_obs_age_s:
            raise RuntimeError(f"the joint state on {topic} is {age:.2f} s old "
                               f"(max_obs_age_s={self.config.max_obs_age_s})")
        try:
            q = self._joints.position(msg).astype(np.float64)
        except MessageConversionError as exc:
            raise RuntimeError(f"the joint state on {topic} is unusable: {exc}") from exc
        if not np.isfinite(q).all():
            raise RuntimeError(f"the joint state on {topic} has non-finite positions {q.tolist()}")
        return q
