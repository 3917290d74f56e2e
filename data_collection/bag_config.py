"""What a bag import reads and writes: the import settings and the recording schema.

:class:`BagImportConfig` (topics, time base, resampling and episode-splitting settings, loaded
from YAML or a mapping and validated in ``__post_init__``), :class:`CameraTopics`,
:class:`BagImportError` (every import error, naming the bag or setting), and
:func:`recording_schema`, the store schema shared by imported bags and the recorder. The import
itself (reading, resampling, writing) is :mod:`data_collection.bag_import`, whose docstring is
the contract.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from df_policy.data.schema import KeySpec, SchemaError, StoreSchema
from df_policy.ros.messages import MessageConversionError, check_joint_names

__all__ = [
    "DEPTH_KEY_SUFFIX",
    "RECORDING_KEYS",
    "BagImportConfig",
    "BagImportError",
    "CameraTopics",
    "depth_key",
    "recording_schema",
]

RECORDING_KEYS = ("joint_pos", "stamp_s", "action")
"""Non-image keys of a recording (the recorder's ``RESERVED_KEYS``); camera names must differ."""

DEPTH_KEY_SUFFIX = "_depth"
"""A camera ``name`` recorded with depth also has the key ``name + DEPTH_KEY_SUFFIX``."""


def depth_key(camera: str) -> str:
    """The store key of ``camera``'s aligned depth (``<camera>_depth``)."""
    return camera + DEPTH_KEY_SUFFIX


ACTION_SPACE = "absolute joint position targets (rad), robot.joint_names order"

JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
COMMAND_TYPES = ("trajectory_msgs/msg/JointTrajectory", "std_msgs/msg/Float64MultiArray")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"

TIME_SOURCES = ("header", "receive")
TRAJECTORY_POINTS = ("in_effect", "first")
ACTION_AT = ("in_effect", "next")


class BagImportError(ValueError):
    """A bag cannot be imported with this configuration. The message names the bag and the problem."""


# =========================================================================== schema


def recording_schema(
    joint_names: Sequence[str],
    image_sizes: Mapping[str, tuple[int, int]],
    fps: float,
    *,
    cameras: Mapping[str, Mapping[str, Any]] | None = None,
    robot: str = "",
    depth_scales: Mapping[str, float] | None = None,
    joint_limits: Mapping[str, Any] | None = None,
    action_alignment: str = "next",
) -> StoreSchema:
    """The store schema of a recording (what ``Recorder.build_schema`` writes).

    Args:
        joint_names: joint order of ``joint_pos`` and ``action``.
        image_sizes: camera name -> ``(height, width)``; one ``uint8 (H, W, 3)`` RGB key each,
            in this order.
        fps: recording rate, Hz.
        cameras: camera name -> info stored in ``schema.cameras`` (e.g. ``{"intrinsics": ...}``);
            cameras without an entry get ``{}``.
        robot: robot model name (``schema.robot``).
        depth_scales: camera name -> metres per depth unit, for the cameras recorded with
            aligned depth: each gets a ``depth`` key :func:`depth_key` (``uint16 (H, W)``,
            unit ``m``, ``scale``) right after its image key.
        joint_limits: the robot's limits (``schema.joint_limits``: ``position_lower``,
            ``position_upper``, ``velocity_max``, one value or ``None`` per joint).
        action_alignment: ``schema.action_alignment``: ``"next"`` (the recorder's: the command
            issued after the observation) or ``"in_effect"`` (``import-bag``'s default).

    Raises:
        SchemaError: a depth camera that is not in ``image_sizes``, or a key name used twice
            (a depth key named like another camera).
    """
    depth_scales = dict(depth_scales or {})
    unknown = sorted(set(depth_scales) - set(image_sizes))
    if unknown:
        raise SchemaError(f"depth for cameras {unknown} that have no image key")
    keys: dict[str, KeySpec] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, (h, w) in image_sizes.items():
        keys[name] = KeySpec("image", (h, w, 3), "uint8", unit="rgb", camera=name)
        info[name] = dict((cameras or {}).get(name, {}))
        if name in depth_scales:
            dk = depth_key(name)
            if dk in image_sizes or dk in RECORDING_KEYS:
                raise SchemaError(f"camera {name!r}: its depth key {dk!r} is also the name of another key")
            keys[dk] = KeySpec("depth", (h, w), "uint16", unit="m", camera=name, scale=depth_scales[name],
                               description=f"depth aligned to {name}'s colour image; metres = value * scale, "
                                           "0 = no depth")
    joints = tuple(joint_names)
    d = len(joints)
    keys["joint_pos"] = KeySpec("lowdim", (d,), "float32", unit="rad", names=joints,
                                description="measured joint positions")
    keys["stamp_s"] = KeySpec("lowdim", (1,), "float32", unit="s",
                              description="robot state capture time relative to the episode's first step")
    keys["action"] = KeySpec("action", (d,), "float32", unit="rad", names=joints,
                             description="joint position targets as sent to the robot")
    limits = {k: v for k, v in (joint_limits or {}).items() if k != "joint_names"}
    return StoreSchema(keys=keys, fps=fps, cameras=info, joint_names=list(joints), action_space=ACTION_SPACE,
                       robot=robot, joint_limits=limits, action_alignment=action_alignment)


# =========================================================================== config


def _topic(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip("/ "):
        raise BagImportError(f"{what} must be a topic name, got {value!r}")
    value = value.strip()
    return value if value.startswith("/") else "/" + value  # bags store absolute names


@dataclass(frozen=True)
class CameraTopics:
    """Where one camera's data is in the bags.

    Attributes:
        topic: ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` topic.
        info_topic: optional ``sensor_msgs/CameraInfo`` topic; its first message gives the
            intrinsics stored in ``schema.cameras[name]["intrinsics"]``.
    """

    topic: str
    info_topic: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "topic", _topic(self.topic, "camera topic"))
        if self.info_topic is not None:
            object.__setattr__(self, "info_topic", _topic(self.info_topic, "camera info_topic"))

    @classmethod
    def from_value(cls, name: str, value: Any) -> CameraTopics:
        """A topic string or a mapping ``{topic, info_topic}``."""
        if isinstance(value, CameraTopics):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"topic", "info_topic"})
            if unknown or "topic" not in value:
                raise BagImportError(
                    f"camera {name!r}: expected keys 'topic' and optionally 'info_topic', got {sorted(value)}"
                )
            return cls(value["topic"], value.get("info_topic"))
        raise BagImportError(f"camera {name!r}: expected a topic or {{topic, info_topic}}, got {value!r}")


@dataclass(frozen=True)
class BagImportConfig:
    """How to turn bags into episodes (see the module docstring for the exact rules).

    Attributes:
        joint_names: joints in the order of ``joint_pos`` and ``action``; messages are read by
            name (any order, extra joints ignored, a missing joint is an error).
        command_topic: ``trajectory_msgs/JointTrajectory`` or ``std_msgs/Float64MultiArray``
            topic with the commanded joint position targets.
        fps: rate of the output grid, Hz (the store's ``fps``).
        joint_state_topic: ``sensor_msgs/JointState`` topic.
        cameras: camera name (= image key in the store) -> :class:`CameraTopics` (or a topic
            string, or ``{topic, info_topic}``). Names must be valid store keys and must not be
            ``joint_pos``, ``stamp_s`` or ``action``. May be empty.
        max_skew_s: largest accepted ``|frame time - t_k|`` when matching images to a step.
        time_source: ``"header"`` (header stamps) or ``"receive"`` (bag receive times).
        receive_time_fallback: with ``time_source="header"``, use the receive time for messages
            without a header or with a zero stamp (``False``: such a message is an error).
        trajectory_point: ``"in_effect"`` (the point being moved to at ``t_k``) or ``"first"``
            (always the first point) for ``JointTrajectory`` commands.
        action_at: which command becomes step ``k``'s action. ``"in_effect"``: the latest
            command at or before ``t_k`` (the target being executed when the observation was
            taken). ``"next"``: the first command issued in ``(t_k, t_k + 1/fps]`` (the one
            computed after seeing step ``k``), else the one in effect; this is the recorder's
            convention (observation, then the command it led to) and matters when commands
            come at about the grid rate: with ``"in_effect"`` they would lag one step.
        split_gap_s: split a bag into episodes where the joint state or a camera stream is
            silent for longer than this (``None``: one bag = one episode).
        min_episode_steps: episodes with fewer steps are skipped (reported).
        task: ``EpisodeMeta.task`` of every imported episode.
        robot_model: ``schema.robot`` of a new store.
        typestore: rosbags type store (``rosbags.typesys.Stores`` name, case-insensitive) for
            bags that do not embed their message definitions (sqlite3 bags before Iron).
    """

    joint_names: tuple[str, ...]
    command_topic: str
    fps: float
    joint_state_topic: str = "/joint_states"
    cameras: Mapping[str, CameraTopics] = field(default_factory=dict)
    max_skew_s: float = 0.02
    time_source: str = "header"
    receive_time_fallback: bool = True
    trajectory_point: str = "in_effect"
    action_at: str = "in_effect"
    split_gap_s: float | None = None
    min_episode_steps: int = 1
    task: str = ""
    robot_model: str = ""
    typestore: str = "ros2_humble"

    def __post_init__(self) -> None:
        names = self.joint_names
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise BagImportError(f"joint_names must be a list of joint names, got {names!r}")
        try:
            names = check_joint_names(names, "import config")
        except MessageConversionError as e:
            raise BagImportError(str(e)) from None
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "joint_state_topic", _topic(self.joint_state_topic, "joint_state_topic"))
        object.__setattr__(self, "command_topic", _topic(self.command_topic, "command_topic"))
        if not isinstance(self.cameras, Mapping):
            raise BagImportError(f"cameras must map camera names to topics, got {self.cameras!r}")
        cams = {str(k): CameraTopics.from_value(str(k), v) for k, v in self.cameras.items()}
        for name in cams:
            if not name or "/" in name or name.startswith(".") or name in RECORDING_KEYS:
                raise BagImportError(
                    f"camera name {name!r} cannot be a store key (non-empty, no '/', not starting with '.', "
                    f"not one of {list(RECORDING_KEYS)})"
                )
        object.__setattr__(self, "cameras", cams)
        roles: dict[str, str] = {}
        for topic, role in [(self.joint_state_topic, "joint_state_topic"), (self.command_topic, "command_topic")] + [
            (t, f"camera {n!r}") for n, c in cams.items() for t in (c.topic, c.info_topic) if t
        ]:
            if topic in roles:
                raise BagImportError(f"topic {topic} is used twice: as {roles[topic]} and as {role}")
            roles[topic] = role
        for name in ("fps", "max_skew_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BagImportError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not self.fps > 0:
            raise BagImportError(f"fps must be > 0, got {self.fps}")
        if not self.max_skew_s >= 0:
            raise BagImportError(f"max_skew_s must be >= 0, got {self.max_skew_s}")
        if self.time_source not in TIME_SOURCES:
            raise BagImportError(f"time_source must be one of {list(TIME_SOURCES)}, got {self.time_source!r}")
        if self.trajectory_point not in TRAJECTORY_POINTS:
            raise BagImportError(
                f"trajectory_point must be one of {list(TRAJECTORY_POINTS)}, got {self.trajectory_point!r}"
            )
        if self.action_at not in ACTION_AT:
            raise BagImportError(f"action_at must be one of {list(ACTION_AT)}, got {self.action_at!r}")
        if not isinstance(self.receive_time_fallback, bool):
            raise BagImportError(f"receive_time_fallback must be true or false, got {self.receive_time_fallback!r}")
        if self.split_gap_s is not None:
            gap = self.split_gap_s
            if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not (math.isfinite(gap) and gap > 0):
                raise BagImportError(f"split_gap_s must be a positive number of seconds or null, got {gap!r}")
            object.__setattr__(self, "split_gap_s", float(gap))
        if isinstance(self.min_episode_steps, bool) or not isinstance(self.min_episode_steps, int) \
                or self.min_episode_steps < 1:
            raise BagImportError(f"min_episode_steps must be an integer >= 1, got {self.min_episode_steps!r}")
        for name in ("task", "robot_model", "typestore"):
            if not isinstance(getattr(self, name), str):
                raise BagImportError(f"{name} must be a string, got {getattr(self, name)!r}")
        try:
            from rosbags.typesys import Stores
        except ImportError:  # reported when a bag is opened
            return
        if self.typestore.upper() not in Stores.__members__:
            raise BagImportError(
                f"typestore {self.typestore!r} is not a rosbags store; one of {[s.lower() for s in Stores.__members__]}"
            )

    @property
    def required_topics(self) -> dict[str, str]:
        """Topic -> role of every topic the bags must contain."""
        topics = {self.joint_state_topic: "joint states", self.command_topic: "commands"}
        for name, cam in self.cameras.items():
            topics[cam.topic] = f"camera {name!r} images"
            if cam.info_topic:
                topics[cam.info_topic] = f"camera {name!r} CameraInfo"
        return topics

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the YAML layout :meth:`from_dict` reads)."""
        d = dataclasses.asdict(self)
        d["joint_names"] = list(self.joint_names)
        d["cameras"] = {n: {"topic": c.topic, "info_topic": c.info_topic} for n, c in self.cameras.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> BagImportConfig:
        """Build from a mapping with the field names as keys; unknown or missing keys are errors."""
        if not isinstance(d, Mapping):
            raise BagImportError(f"{source}: expected a mapping of settings, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise BagImportError(f"{source}: unknown settings {unknown}; known: {known}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if d.get(k) is None]
        if missing:
            raise BagImportError(f"{source}: missing required settings {missing}")
        values = dict(d)
        if values.get("cameras") is None:
            values["cameras"] = {}
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> BagImportConfig:
        """Load a YAML file (see ``docs/BAG_IMPORT.md``); ``overrides`` replace its values."""
        return cls.from_dict({**_load_yaml(path), **overrides}, source=str(path))


def _load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise BagImportError(f"{path}: cannot read the import config: {e}") from e
    except yaml.YAMLError as e:
        raise BagImportError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BagImportError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


