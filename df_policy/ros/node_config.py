"""Settings of the ROS 2 policy node (:mod:`df_policy.ros.policy_node`), validated on construction.

ROS-free and light (no ``rclpy``, no ``torch``): a config can be written, loaded and checked on
any machine. :meth:`PolicyNodeConfig.from_mapping` / :meth:`PolicyNodeConfig.from_yaml` accept

* a plain mapping of the fields below (``df_policy/configs/node_so101.yaml`` is an example), or
* a ROS 2 parameters file (``<node name or /**>: {ros__parameters: {...}}``), so the same file
  can be given to ``--config`` and to ``--ros-args --params-file``.

Mapping fields (``camera_topics``, ``camera_types``, ``lowdim_fields``) may also be written
flat with dots (``camera_topics.scene: /camera/image_raw``), which is how they appear as ROS
parameters. Unknown keys are refused (a typo must not silently fall back to a default).

Units: radians (or metres for prismatic joints) for positions, units/s for velocities,
units/s^2 for accelerations, seconds for times, Hz for rates.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CAMERA_TYPES",
    "COMMAND_TYPES",
    "CommandGroup",
    "JOINT_STATE_FIELDS",
    "MAPPING_FIELDS",
    "PLANNER_MODES",
    "TRACKING_MODES",
    "TRAJECTORY_STAMPS",
    "PolicyNodeConfig",
    "PolicyNodeConfigError",
]

COMMAND_TYPES = ("trajectory", "trajectory_chunk", "multiarray")
"""``trajectory_msgs/JointTrajectory`` or ``std_msgs/Float64MultiArray``."""
CAMERA_TYPES = ("image", "compressed")
"""``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``."""
PLANNER_MODES = ("stream", "chunk", "autoregressive")
TRACKING_MODES = ("fault", "clip")
TRAJECTORY_STAMPS = ("plan", "zero")
ACCELERATE_MODES = ("off", "channels_last", "compile", "onnx")
PRECISIONS = ("fp32", "bf16")
"""See :mod:`df_policy.runtime.acceleration` (kept here so the config imports without torch)."""
"""See :class:`df_policy.runtime.planning.PlannerConfig`."""
JOINT_STATE_FIELDS = ("position", "velocity", "effort")
MAPPING_FIELDS = ("camera_topics", "camera_types", "lowdim_fields")
"""Fields that map a checkpoint key to a value (``<field>.<key>`` as ROS parameters)."""
GROUP_ATTRIBUTES = ("joints", "topic", "type", "controller")
"""Attributes of one command group (``command_groups.<group>.<attribute>`` as ROS parameters)."""


class PolicyNodeConfigError(ValueError):
    """The node's settings are invalid or do not fit the checkpoint. The message names the field."""


def _fail(msg: str) -> None:
    raise PolicyNodeConfigError(f"PolicyNodeConfig: {msg}")


def _controller_node(value: Any, name: str) -> str:
    """``""`` or a fully qualified node name (``/ns/forward_position_controller``)."""
    if value is None or value == "":
        return ""
    parts = str(value).split("/")
    if not isinstance(value, str) or parts[0] != "" or not all(
            p and not p[0].isdigit() and all(c.isalnum() or c == "_" for c in p) for p in parts[1:]):
        _fail(f"{name} must be a fully qualified node name such as /forward_position_controller, got {value!r}")
    return value


def _str_tuple(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        # "a,b,c" is accepted (handy on command lines); a YAML list is the normal form
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence):
        _fail(f"{name} must be a list of strings, got {value!r}")
    out = tuple(value)
    if any(not isinstance(v, str) or not v for v in out):
        _fail(f"{name} must hold non-empty strings, got {list(out)}")
    return out


def _float_tuple(value: Any, name: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not hasattr(value, "__iter__"):
        _fail(f"{name} must be a list of numbers, got {value!r}")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        _fail(f"{name} must be a list of numbers, got {value!r}")
    if any(not math.isfinite(v) for v in out):
        _fail(f"{name} must be finite, got {list(out)}")
    return out


def _str_mapping(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail(f"{name} must be a mapping of checkpoint key -> string, got {value!r}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or "." in k or "/" in k:
            _fail(f"{name}: keys must be checkpoint keys (no '.' or '/'), got {k!r}")
        if not isinstance(v, str) or not v:
            _fail(f"{name}.{k} must be a non-empty string, got {v!r}")
        out[k] = v
    return out


def _topic(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or value.endswith("/") or " " in value or "//" in value:
        _fail(f"{name} must be a ROS topic name (e.g. '/joint_states'), got {value!r}")
    return value


def _to_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    _fail(f"{name} must be true or false, got {value!r}")
    raise AssertionError  # unreachable


@dataclass(frozen=True)
class CommandGroup:
    """One controller's share of the command: ``joints`` (a subset of ``joint_names``, sent in this
    order), the ``topic`` it listens on, the message ``type`` (one of :data:`COMMAND_TYPES`) and
    optionally the ``controller`` node (``/forward_position_controller``) whose ``joints``
    parameter must list the same joints in the same order (checked at ``~/enable`` for
    ``multiarray``, whose values carry no names)."""

    joints: tuple[str, ...]
    topic: str
    type: str = "trajectory"
    controller: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"joints": list(self.joints), "topic": self.topic, "type": self.type, "controller": self.controller}


@dataclass(frozen=True)
class PolicyNodeConfig:
    """Settings of the policy node. Every field is also a ROS parameter of the same name.

    Attributes:
        checkpoint: checkpoint directory or training run directory (``checkpoints/last`` is
            used). Required.
        joint_names: the robot joints **in the checkpoint's action / joint_pos order**; the
            node checks them against the checkpoint schema and refuses to start on any
            difference. JointState messages are read by name (any order, extra joints ignored),
            commands are sent in this order. Required.
        camera_topics: checkpoint image key -> image topic, one entry for every image key the
            checkpoint reads (and no other). Images are resized to the size the checkpoint
            was recorded at if the camera publishes another size.
        camera_types: image key -> ``"image"`` (``sensor_msgs/Image``) or ``"compressed"``
            (``sensor_msgs/CompressedImage``, JPEG/PNG). Default per key: ``compressed`` when
            the topic ends in ``/compressed`` (the image_transport convention), else ``image``.
        lowdim_fields: checkpoint low-dim key -> JointState field (``position``, ``velocity``
            or ``effort``) it is read from. Default per key: ``position``.
        joint_state_topic: ``sensor_msgs/JointState`` topic.
        command_topic: where position targets are published.
        command_type: ``"trajectory"`` (``JointTrajectory``, one point reached one control
            period after receipt, e.g. ros2_control's joint_trajectory_controller) or
            ``"trajectory_chunk"`` (``JointTrajectory`` of the tick's command plus up to
            ``chunk_points`` planned clean actions, one period apart, replacing the previous
            one each tick: the controller interpolates through the plan and keeps moving
            smoothly if a tick is late) or ``"multiarray"`` (``Float64MultiArray`` of
            ``len(joint_names)`` positions, e.g. a forward_command_controller).
        chunk_points: ``trajectory_chunk`` only: planned points after the tick's command (>= 0).
        trajectory_stamp: ``header.stamp`` of every ``JointTrajectory`` the node publishes
            (commands and ``~/planned_trajectory``). ``plan`` (default): the ROS time of the
            tick the command belongs to, so point ``i`` is due at that time + ``(i + 1)`` periods
            and a controller that honours stamps (JTC) compensates transport delay instead of
            shifting the plan by it (a late command is stamped no earlier than half a period
            before sending, so no trajectory ends in the past); needs the controller's clock in step with the node's
            (same host, chrony/PTP, or ``use_sim_time`` on both). ``zero``: stamp 0, "start when
            received" (clocks that are not synchronised).
        controller_node: the controller's node (e.g. ``/forward_position_controller``): with
            ``multiarray``, whose values carry no joint names, ``~/enable`` reads that node's
            ``joints`` parameter and refuses unless it lists ``joint_names`` in the same order
            (or the node does not answer). Empty = not verified (a warning at start-up).
            Per group: ``command_groups.<group>.controller``.
        command_groups: several controllers instead of one (e.g. a 5-joint arm on a JTC and the
            gripper on a forward position controller): group name -> ``{joints: [...], topic:
            ..., type: ...}``. Every joint of ``joint_names`` belongs to exactly one group; each
            group's message carries its joints in the group's order (a ``Float64MultiArray``
            in exactly that order, so the list must match the controller's ``joints``). When
            set, ``command_topic`` / ``command_type`` are not used. ROS parameters:
            ``command_groups.<group>.joints`` / ``.topic`` / ``.type``.
        position_lower, position_upper: per-joint position limits (rad / m), one value per
            joint. Required: every command is clipped into them and re-checked before publishing.
        max_velocity: joint speed limit between consecutive commands (units/s), one number for
            all joints or one per joint. Required; left out, the checkpoint's recorded hardware
            limit is used, lowered so one period's step stays within 0.4 of
            ``max_tracking_error`` (:func:`~df_policy.ros.node_setup.checkpoint_defaults`).
        max_acceleration: optional acceleration limit (units/s^2), scalar or per joint.
        max_tracking_error: largest allowed distance between a command and the latest
            **measured** joint position (units), scalar or per joint; ``null`` turns the bound
            off (not recommended on hardware). A gripper that squeezes an object needs a larger
            value than the arm joints.
        tracking_mode: ``fault`` (a command beyond the bound is never published; once commands
            have stayed beyond it for ``tracking_fault_after_s`` the node latches a fault, ERROR
            on ``/diagnostics``, until ``~/enable``) or ``clip`` (clip the
            command into ``measured ± max_tracking_error`` and count it, like LeRobot's
            ``ensure_safe_goal_position``).
        tracking_grace_s: for this long after enabling (from the first command), a command
            beyond ``max_tracking_error`` is clipped into the bound even in ``fault`` mode: the
            policy's first targets lead an arm that has not moved yet (with ``delay_steps: 1``
            the first command is the plan's second step). A controller that does not follow is
            still caught when the grace ends. ``0`` = strict from the first command.
        tracking_fault_after_s: in ``fault`` mode, how long commands may stay beyond
            ``max_tracking_error`` (each clipped into the bound, counted as ``clipped.tracking``)
            before the fault latches, timed from the excursion's first command: a late joint state
            or command message leaves the measured arm a period further behind a legal motion for
            a tick, while a dead controller or a blocked arm stays behind. ``0`` = fault at the
            first command beyond the bound. Nothing beyond the bound is published either way.
        action_unit: unit of the joint positions the node commands (``rad``; ``deg`` for a
            driver in degrees); a checkpoint whose action unit is recorded and differs is refused.
        max_obs_age_s: the node holds when the newest complete observation (every camera and
            the joint state) is older than this; enabling needs every input younger than this.
        device: torch device for inference (``cpu``, ``cuda``, ``cuda:1``).
        accelerate: inference fast path (``off``, ``channels_last``, ``compile``, ``onnx``; see
            :mod:`df_policy.runtime.acceleration`); the node warms it up at start-up, before
            ``~/enable`` can succeed, so compilation never happens on the control path.
        precision: ``fp32`` (exact) or ``bf16`` (encoder and denoiser under bf16 autocast, for
            GPUs; not with ``onnx``): ``RuntimeConfig.precision``.
        rate_hz: control rate; ``None`` or 0 = the checkpoint's fps (running at another rate
            than the policy was trained at changes its dynamics; a warning is logged).
        planner_mode: ``stream`` (Diffusion Forcing pyramid or blocks, one network call per tick),
            ``chunk`` (denoise a chunk every ``n_action_steps``) or ``autoregressive``.
        planner_block_tokens: ``stream`` schedule (``PlannerConfig.block_tokens``): ``null`` =
            the checkpoint's default (``stream_block_tokens``), 0 = the per-token pyramid,
            ``B`` = blocks of ``B`` tokens denoised jointly over ``B`` ticks.
        delay_steps: control periods one inference may take (see
            :class:`~df_policy.runtime.planning.PlannerConfig`); the diagnostics report
            ``recommended_delay_steps`` from the measured latency.
        start_enabled: command as soon as every input is fresh, without calling ``~/enable``.
            Default false: the node does not move the robot until enabled.
        node_name: ROS node name (a ``__node:=`` remap overrides it).
        qos_depth: queue depth of the command and diagnostics publishers.
        diagnostics_period_s: period of ``/diagnostics`` reports.
        hold_log_period_s: a hold of one kind is logged at most once per this period.
    """

    checkpoint: str
    joint_names: tuple[str, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    max_velocity: float | tuple[float, ...]
    camera_topics: Mapping[str, str] = field(default_factory=dict)
    camera_types: Mapping[str, str] = field(default_factory=dict)
    lowdim_fields: Mapping[str, str] = field(default_factory=dict)
    joint_state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    command_type: str = "trajectory"
    chunk_points: int = 7
    trajectory_stamp: str = "plan"
    controller_node: str = ""
    command_groups: Mapping[str, Any] = field(default_factory=dict)
    max_acceleration: float | tuple[float, ...] | None = None
    max_tracking_error: float | tuple[float, ...] | None = 0.5
    tracking_mode: str = "fault"
    tracking_grace_s: float = 0.5
    tracking_fault_after_s: float = 0.25
    action_unit: str = "rad"
    max_obs_age_s: float = 0.5
    device: str = "cpu"
    accelerate: str = "channels_last"
    precision: str = "fp32"
    rate_hz: float | None = None
    planner_mode: str = "stream"
    planner_block_tokens: int | None = None
    delay_steps: int = 1
    start_enabled: bool = False
    node_name: str = "policy_node"
    qos_depth: int = 10
    diagnostics_period_s: float = 1.0
    hold_log_period_s: float = 2.0

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.checkpoint, (str, os.PathLike)) or not str(self.checkpoint):
            _fail("checkpoint is required (a checkpoint or training run directory)")
        s(self, "checkpoint", str(self.checkpoint))
        names = _str_tuple(self.joint_names, "joint_names")
        if not names:
            _fail("joint_names is required (the checkpoint's action order)")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            _fail(f"joint_names has duplicates {dupes}")
        s(self, "joint_names", names)
        n = len(names)
        lo = _float_tuple(self.position_lower, "position_lower")
        hi = _float_tuple(self.position_upper, "position_upper")
        for name, v in (("position_lower", lo), ("position_upper", hi)):
            if len(v) != n:
                _fail(f"{name} needs one value per joint ({n} for {list(names)}), got {len(v)}")
        bad = [f"{j}: [{a}, {b}]" for j, a, b in zip(names, lo, hi) if not a < b]
        if bad:
            _fail(f"position_lower must be < position_upper for every joint, got {bad}")
        s(self, "position_lower", lo)
        s(self, "position_upper", hi)
        s(self, "max_velocity", self._rate_limit(self.max_velocity, "max_velocity", n, required=True))
        s(self, "max_acceleration", self._rate_limit(self.max_acceleration, "max_acceleration", n, required=False))
        s(self, "max_tracking_error",
          self._rate_limit(self.max_tracking_error, "max_tracking_error", n, required=False))
        if self.trajectory_stamp not in TRAJECTORY_STAMPS:
            _fail(f"trajectory_stamp must be one of {TRAJECTORY_STAMPS}, got {self.trajectory_stamp!r}")
        if self.tracking_mode not in TRACKING_MODES:
            _fail(f"tracking_mode must be one of {TRACKING_MODES}, got {self.tracking_mode!r}")
        if not isinstance(self.action_unit, str) or not self.action_unit:
            _fail(f"action_unit must be a unit name such as 'rad' or 'deg', got {self.action_unit!r}")

        cams = _str_mapping(self.camera_topics, "camera_topics")
        for k, topic in cams.items():
            _topic(topic, f"camera_topics.{k}")
        types = _str_mapping(self.camera_types, "camera_types")
        for k, t in types.items():
            if k not in cams:
                _fail(f"camera_types.{k} names no camera in camera_topics ({sorted(cams)})")
            if t not in CAMERA_TYPES:
                _fail(f"camera_types.{k} must be one of {CAMERA_TYPES}, got {t!r}")
        topics = list(cams.values())
        if len(set(topics)) != len(topics):
            _fail(f"camera_topics must name distinct topics, got {cams}")
        fields_ = _str_mapping(self.lowdim_fields, "lowdim_fields")
        for k, f in fields_.items():
            if f not in JOINT_STATE_FIELDS:
                _fail(f"lowdim_fields.{k} must be one of {JOINT_STATE_FIELDS}, got {f!r}")
        s(self, "camera_topics", cams)
        s(self, "camera_types", types)
        s(self, "lowdim_fields", fields_)

        _topic(self.joint_state_topic, "joint_state_topic")
        _topic(self.command_topic, "command_topic")
        if self.joint_state_topic in topics or self.command_topic in topics or self.joint_state_topic == self.command_topic:
            _fail("joint_state_topic, command_topic and camera topics must all differ")
        if self.command_type not in COMMAND_TYPES:
            _fail(f"command_type must be one of {COMMAND_TYPES}, got {self.command_type!r}")
        s(self, "controller_node", _controller_node(self.controller_node, "controller_node"))
        s(self, "command_groups", self._groups(self.command_groups, names, {self.joint_state_topic, *topics}))
        if self.planner_mode not in PLANNER_MODES:
            _fail(f"planner_mode must be one of {PLANNER_MODES}, got {self.planner_mode!r}")
        for name in ("tracking_grace_s", "tracking_fault_after_s"):
            value = self._number(getattr(self, name), name)
            if not value >= 0:
                _fail(f"{name} must be >= 0, got {getattr(self, name)!r}")
            s(self, name, value)
        for name in ("max_obs_age_s", "diagnostics_period_s", "hold_log_period_s"):
            value = self._number(getattr(self, name), name)
            if not value > 0:
                _fail(f"{name} must be > 0, got {value}")
            s(self, name, value)
        rate = self.rate_hz
        if rate is not None:
            rate = self._number(rate, "rate_hz")
            if rate < 0:
                _fail(f"rate_hz must be > 0 (or 0 / null for the checkpoint's fps), got {rate}")
            rate = rate or None
        s(self, "rate_hz", rate)
        for name, low in (("delay_steps", 0), ("qos_depth", 1), ("chunk_points", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                _fail(f"{name} must be an integer >= {low}, got {value!r}")
        blocks = self.planner_block_tokens
        if blocks is not None:
            if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
                _fail(f"planner_block_tokens must be an integer >= 0 (0 = the pyramid) or null, got {blocks!r}")
            if blocks and self.planner_mode != "stream":
                _fail(f"planner_block_tokens applies to planner_mode stream, not {self.planner_mode!r}")
        s(self, "start_enabled", _to_bool(self.start_enabled, "start_enabled"))
        if self.accelerate not in ACCELERATE_MODES:
            _fail(f"accelerate must be one of {ACCELERATE_MODES}, got {self.accelerate!r}")
        if self.precision not in PRECISIONS:
            _fail(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "bf16" and self.accelerate == "onnx":
            _fail("precision bf16 needs accelerate channels_last or compile (the onnx graphs are fp32)")
        if not isinstance(self.device, str) or not self.device:
            _fail(f"device must be a torch device string (cpu, cuda, cuda:0), got {self.device!r}")
        nn = self.node_name
        if not isinstance(nn, str) or not nn or nn[0].isdigit() or not all(c.isalnum() or c == "_" for c in nn):
            _fail(f"node_name must be letters, digits and underscores, not starting with a digit, got {nn!r}")

    @staticmethod
    def _groups(value: Any, joint_names: tuple[str, ...], input_topics: set[str]) -> dict[str, CommandGroup]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            _fail(f"command_groups must map a group name to {{joints, topic, type}}, got {value!r}")
        groups: dict[str, CommandGroup] = {}
        for name, g in value.items():
            where = f"command_groups.{name}"
            if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
                _fail(f"command_groups: group names must be letters, digits and underscores, got {name!r}")
            if isinstance(g, CommandGroup):
                g = g.to_dict()
            if not isinstance(g, Mapping):
                _fail(f"{where} must be a mapping with joints, topic and type, got {g!r}")
            unknown = sorted(set(g) - set(GROUP_ATTRIBUTES))
            if unknown or "joints" not in g or "topic" not in g:
                _fail(f"{where} needs joints and topic (and optionally type); unknown keys {unknown}")
            joints = _str_tuple(g["joints"], f"{where}.joints")
            if not joints or len(set(joints)) != len(joints):
                _fail(f"{where}.joints must list distinct joints, got {list(joints)}")
            stray = [j for j in joints if j not in joint_names]
            if stray:
                _fail(f"{where}.joints {stray} are not in joint_names {list(joint_names)}")
            kind = g.get("type", "trajectory")
            if kind not in COMMAND_TYPES:
                _fail(f"{where}.type must be one of {COMMAND_TYPES}, got {kind!r}")
            controller = _controller_node(g.get("controller", ""), f"{where}.controller")
            groups[name] = CommandGroup(joints, _topic(g["topic"], f"{where}.topic"), kind, controller)
        if groups:
            owners: dict[str, list[str]] = {}
            for name, g in groups.items():
                for j in g.joints:
                    owners.setdefault(j, []).append(name)
            twice = {j: o for j, o in owners.items() if len(o) > 1}
            missing = [j for j in joint_names if j not in owners]
            if twice or missing:
                _fail(f"command_groups must give every joint exactly one group: in several {twice}, in none {missing}")
            topics = [g.topic for g in groups.values()]
            if len(set(topics)) != len(topics) or set(topics) & input_topics:
                _fail(f"command_groups topics must be distinct and differ from the input topics, got {topics}")
        return groups

    def command_outputs(self) -> dict[str, CommandGroup]:
        """The command groups, or the single group ``command`` of ``command_topic`` / ``command_type``."""
        if self.command_groups:
            return dict(self.command_groups)
        return {"command": CommandGroup(self.joint_names, self.command_topic, self.command_type, self.controller_node)}

    @staticmethod
    def _number(value: Any, name: str) -> float:
        if isinstance(value, bool):
            _fail(f"{name} must be a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            _fail(f"{name} must be a number, got {value!r}")
        if not math.isfinite(out):
            _fail(f"{name} must be finite, got {value!r}")
        return out

    @classmethod
    def _rate_limit(cls, value: Any, name: str, n: int, required: bool) -> float | tuple[float, ...] | None:
        if value is None or (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 0):
            if required:
                _fail(f"{name} is required (one number, or one per joint)")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out: float | tuple[float, ...] = cls._number(value, name)
            values: tuple[float, ...] = (out,)
        else:
            out = values = _float_tuple(value, name)
            if len(values) != n:
                _fail(f"{name} needs one number or one per joint ({n}), got {len(values)}")
        if any(not v > 0 for v in values):
            _fail(f"{name} must be > 0, got {value!r}")
        return out

    # ------------------------------------------------------------------ derived
    def camera_type(self, key: str) -> str:
        """``"image"`` or ``"compressed"`` for the camera of image key ``key``."""
        explicit = self.camera_types.get(key)
        if explicit:
            return explicit
        return "compressed" if self.camera_topics[key].rstrip("/").endswith("/compressed") else "image"

    @property
    def command_period_s(self) -> float | None:
        """``1 / rate_hz``, or ``None`` for the checkpoint's fps."""
        return None if self.rate_hz is None else 1.0 / self.rate_hz

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def normalize_mapping(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Unwrap a ROS parameters file, nest dotted mapping keys, refuse unknown keys."""
        if not isinstance(data, Mapping):
            _fail(f"a node config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if len(data) == 1:
            (only,) = data.values()
            if isinstance(only, Mapping) and "ros__parameters" in only:
                data = dict(only["ros__parameters"] or {})
        known = set(cls.field_names())
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                _fail(f"config keys must be strings, got {key!r}")
            head, _, rest = key.partition(".")
            if rest and head == "command_groups":
                group, _, attribute = rest.partition(".")
                if not attribute or attribute not in GROUP_ATTRIBUTES:
                    _fail(f"unknown config key {key!r}; command groups take command_groups.<group>."
                          f"{{{','.join(GROUP_ATTRIBUTES)}}}")
                groups = out.setdefault("command_groups", {})
                groups.setdefault(group, {})[attribute] = value
                continue
            if rest:
                if head not in MAPPING_FIELDS:
                    _fail(f"unknown config key {key!r}; only {list(MAPPING_FIELDS)} take '<field>.<key>'")
                out.setdefault(head, {})
                if not isinstance(out[head], dict):
                    _fail(f"{head} is given both as a mapping and as {key!r}")
                out[head][rest] = value
                continue
            if key not in known:
                _fail(f"unknown config key {key!r}; known keys: {sorted(known)}")
            if key == "command_groups" and isinstance(value, Mapping):
                merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
                for group, attrs in out.get(key, {}).items():  # dotted keys win
                    merged[group] = {**(merged.get(group) or {}), **attrs}
                out[key] = merged
            elif key in MAPPING_FIELDS and isinstance(value, Mapping):
                out.setdefault(key, {})
                out[key] = {**dict(value), **out[key]}
            else:
                out[key] = value
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **overrides: Any) -> PolicyNodeConfig:
        """Build and validate from a mapping (see the module docstring); ``overrides`` win."""
        values = cls.normalize_mapping(data)
        values.update({k: v for k, v in overrides.items()})
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and values.get(f.name) is None]
        if missing:
            _fail(f"missing required settings {missing}")
        return cls(**values)

    @staticmethod
    def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
        """The normalised mapping of a YAML config file (not yet validated)."""
        import yaml

        p = os.fspath(path)
        if not os.path.isfile(p):
            raise PolicyNodeConfigError(f"node config file {p} does not exist")
        with open(p, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise PolicyNodeConfigError(f"node config file {p} is not valid YAML: {exc}") from exc
        try:
            return PolicyNodeConfig.normalize_mapping(data or {})
        except PolicyNodeConfigError as exc:
            raise PolicyNodeConfigError(f"{p}: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> PolicyNodeConfig:
        """Load and validate a YAML config file; ``overrides`` (e.g. ``checkpoint=``) win."""
        try:
            return cls.from_mapping(cls.load_yaml(path), **overrides)
        except PolicyNodeConfigError as exc:
            if str(path) in str(exc):
                raise
            raise PolicyNodeConfigError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts), loadable by :meth:`from_mapping`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "command_groups":
                out[f.name] = {k: g.to_dict() for k, g in v.items()}
                continue
            out[f.name] = dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v
        return out
