"""Store schema: what each array in an episode store holds.

The schema lives in the store's root attributes under ``"df_policy"`` (JSON) and travels
with every checkpoint trained on the store, so a policy can refuse data or a robot whose
layout does not match what it was trained on.

Conventions
-----------
* Arrays are concatenated over time: ``data/<key>`` has shape ``(n_steps, *shape)``.
* ``kind == "image"``: ``uint8``, ``shape == (H, W, C)`` (HWC, RGB), one camera each.
* ``kind == "lowdim"`` (observations) and ``kind == "action"``: ``float32``, ``shape == (D,)``
  or any small fixed shape; ``names`` optionally labels the flattened dimensions.
* ``kind == "depth"``: ``uint16``, ``shape == (H, W)``, a depth image **aligned to the colour
  image** of ``camera`` (same pixel grid and intrinsics); ``unit == "m"`` and ``scale`` is the
  size of one unit in metres (metres = value * scale); ``0`` means "no depth". Depth keys are
  stored, copied and validated like the others, but the training dataset does not read them
  (:attr:`StoreSchema.image_keys` / :attr:`StoreSchema.lowdim_keys` never include them).
  Stores written before depth keys existed have none and open unchanged; ``scale`` is
  written into the schema only for depth keys, so other keys' JSON is as before.
* ``fps`` is the recording rate in Hz; step ``i`` of an episode was captured at
  ``start_time + i / fps`` (exact capture stamps, when recorded, are a ``lowdim`` key).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA_ATTR = "df_policy"
FORMAT_NAME = "df_policy.episode_store"
FORMAT_VERSION = 2
"""1: episode list in the root attributes; 2: append-only episode log ``meta/episodes.jsonl``
(older df_policy refuses a version-2 store instead of misreading it)."""
KINDS = ("image", "lowdim", "action", "depth")
ACTION_ALIGNMENTS = ("", "next", "in_effect")
"""``StoreSchema.action_alignment`` values (``""`` = unknown)."""
STAMP_KEY = "stamp_s"
"""The capture-time key of recordings (seconds from the episode's first step): the recorder's,
``import-bag``'s and LeRobot imports' (its ``timestamp``)."""
TIME_KEYS = (STAMP_KEY,)
"""Low-dim keys holding capture times (seconds from the episode's first step): stored, never a
default policy input (:attr:`StoreSchema.observation_keys`)."""


class SchemaError(ValueError):
    """A schema, or data checked against one, is malformed. The message names the problem."""


@dataclass(frozen=True)
class KeySpec:
    """One array of the store.

    Attributes:
        kind: ``"image"`` (uint8 HWC), ``"lowdim"`` (float32 observation), ``"action"``
            or ``"depth"`` (uint16 HW, aligned to a camera's colour image).
        shape: per-step shape, e.g. ``(96, 96, 3)``, ``(7,)`` or ``(480, 640)``.
        dtype: numpy dtype name; ``uint8`` for images, ``uint16`` for depth, ``float32`` otherwise.
        unit: physical unit of the values (``"rad"``, ``"m"``, ``"px"``, ``"rgb"`` …); ``"m"``
            for depth (after multiplying by ``scale``).
        names: optional labels of the flattened dimensions (e.g. joint names).
        camera: for images and depth, the camera name (key into ``StoreSchema.cameras``).
        description: free text.
        scale: depth only (required there, ``None`` elsewhere): metres per stored unit, e.g.
            ``0.001`` for a RealSense D400 (the frames' ``depth_scale``).
    """

    kind: str
    shape: tuple[int, ...]
    dtype: str
    unit: str = ""
    names: tuple[str, ...] | None = None
    camera: str | None = None
    description: str = ""
    scale: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
        if self.kind not in KINDS:
            raise SchemaError(f"kind {self.kind!r} is not one of {KINDS}")
        if any(s <= 0 for s in self.shape):
            raise SchemaError(f"shape {self.shape} must be positive")
        if self.kind == "image":
            if self.dtype != "uint8":
                raise SchemaError(f"image keys must be uint8, got {self.dtype}")
            if len(self.shape) != 3 or self.shape[2] not in (1, 3):
                raise SchemaError(f"image shape must be (H, W, C) with C in (1, 3), got {self.shape}")
        elif self.kind == "depth":
            if self.dtype != "uint16":
                raise SchemaError(f"depth keys must be uint16, got {self.dtype}")
            if len(self.shape) != 2:
                raise SchemaError(f"depth shape must be (H, W), got {self.shape}")
            if self.unit != "m":
                raise SchemaError(f"depth keys must have unit 'm' (value * scale = metres), got {self.unit!r}")
            if (isinstance(self.scale, bool) or not isinstance(self.scale, (int, float))
                    or not (math.isfinite(self.scale) and self.scale > 0)):
                raise SchemaError(f"depth keys need a positive scale (metres per unit), got {self.scale!r}")
            object.__setattr__(self, "scale", float(self.scale))
        elif self.dtype != "float32":
            raise SchemaError(f"{self.kind} keys must be float32, got {self.dtype}")
        if self.kind != "depth" and self.scale is not None:
            raise SchemaError(f"scale is for depth keys only, got scale={self.scale!r} on a {self.kind} key")
        if self.names is not None and len(self.names) != int(np.prod(self.shape)):
            raise SchemaError(
                f"names has {len(self.names)} entries but shape {self.shape} has "
                f"{int(np.prod(self.shape))} dimensions"
            )

    @property
    def dim(self) -> int:
        """Number of scalars per step."""
        return int(np.prod(self.shape))


@dataclass
class EpisodeMeta:
    """Per-episode metadata, stored in the store's episode log (``meta/episodes.jsonl``).

    Attributes:
        length: number of steps (filled in by the store).
        start_time: ISO-8601 wall-clock time of the first step.
        task: task description / language instruction.
        notes: operator notes.
        success: operator's verdict (``None`` = not marked).
        bad: excluded from training/evaluation (``dfp data mark-bad``).
    """

    length: int = 0
    start_time: str = ""
    task: str = ""
    notes: str = ""
    success: bool | None = None
    bad: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpisodeMeta":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


JOINT_LIMIT_FIELDS = ("position_lower", "position_upper", "velocity_max")


def _checked_joint_limits(limits: Any, n_joints: int) -> dict[str, list[float | None]]:
    """``joint_limits`` validated: exactly :data:`JOINT_LIMIT_FIELDS`, one number (or ``None`` =
    unlimited) per joint, lower < upper, velocity > 0."""
    if not isinstance(limits, dict) or set(limits) != set(JOINT_LIMIT_FIELDS):
        raise SchemaError(f"joint_limits must have exactly the fields {list(JOINT_LIMIT_FIELDS)}, got {limits!r}")
    out: dict[str, list[float | None]] = {}
    for name in JOINT_LIMIT_FIELDS:
        values = limits[name]
        if not isinstance(values, (list, tuple)) or len(values) != n_joints:
            raise SchemaError(f"joint_limits.{name} needs one value per joint ({n_joints}), got {values!r}")
        try:
            out[name] = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
        except (TypeError, ValueError):
            raise SchemaError(f"joint_limits.{name} must hold numbers or null, got {values!r}") from None
    for i, (lo, hi) in enumerate(zip(out["position_lower"], out["position_upper"])):
        if lo is not None and hi is not None and not lo < hi:
            raise SchemaError(f"joint_limits: position_lower must be < position_upper (joint {i}: {lo}, {hi})")
    if any(v is not None and not v > 0 for v in out["velocity_max"]):
        raise SchemaError(f"joint_limits.velocity_max must be > 0, got {out['velocity_max']}")
    return out


@dataclass
class StoreSchema:
    """Layout and meaning of an episode store.

    Attributes:
        keys: array name -> :class:`KeySpec`. Exactly one ``action`` key is required.
        fps: recording rate in Hz (``None`` if unknown, e.g. imported data).
        cameras: camera name -> info (``intrinsics``: path to a calibration YAML or an
            inline dict, ``serial``, ``extrinsics`` …).
        joint_names: robot joint names, in the order of the state/action vectors.
        action_space: human-readable description of the action (frame, units, absolute or delta).
        robot: robot model name.
        joint_limits: the robot's limits when recorded, in ``joint_names`` order:
            ``position_lower`` / ``position_upper`` (rad / m) and ``velocity_max`` (units/s), each
            a list with ``None`` for unlimited; ``{}`` if unknown (imported data, older stores).
            The policy node takes its safety limits from here when its config gives none.
        action_alignment: which command a step's action is (:data:`ACTION_ALIGNMENTS`):
            ``"next"``, the command issued right after the step's observation (the recorder's
            convention: observation, then the command it led to); ``"in_effect"``, the command
            in effect when the observation was taken (``import-bag``'s default); ``""`` unknown
            (converted data, older stores). Stores with different known alignments do not mix
            (merge, appending): the same observation would be paired with a command one period
            apart.
    """

    keys: dict[str, KeySpec]
    fps: float | None = None
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    joint_names: list[str] = field(default_factory=list)
    action_space: str = ""
    robot: str = ""
    joint_limits: dict[str, list[float | None]] = field(default_factory=dict)
    action_alignment: str = ""

    def __post_init__(self) -> None:
        if self.action_alignment not in ACTION_ALIGNMENTS:
            raise SchemaError(f"action_alignment must be one of {ACTION_ALIGNMENTS}, got {self.action_alignment!r}")
        if not self.keys:
            raise SchemaError("schema has no keys")
        if self.joint_limits:
            self.joint_limits = _checked_joint_limits(self.joint_limits, len(self.joint_names))
        for name in self.keys:
            if not name or "/" in name or name.startswith("."):
                raise SchemaError(f"invalid key name {name!r}")
        actions = [k for k, s in self.keys.items() if s.kind == "action"]
        if len(actions) != 1:
            raise SchemaError(f"schema needs exactly one action key, found {actions or 'none'}")
        if self.fps is not None and not self.fps > 0:
            raise SchemaError(f"fps must be positive, got {self.fps}")

    @property
    def action_key(self) -> str:
        return next(k for k, s in self.keys.items() if s.kind == "action")

    @property
    def image_keys(self) -> list[str]:
        return [k for k, s in self.keys.items() if s.kind == "image"]

    @property
    def lowdim_keys(self) -> list[str]:
        return [k for k, s in self.keys.items() if s.kind == "lowdim"]

    @property
    def observation_keys(self) -> list[str]:
        """Low-dim keys a policy reads by default: :attr:`lowdim_keys` without time stamps
        (:data:`TIME_KEYS`: the capture times the recorder and the importers store)."""
        return [k for k in self.lowdim_keys if k not in TIME_KEYS]

    @property
    def depth_keys(self) -> list[str]:
        """Depth keys (``kind == "depth"``); not used by the training dataset."""
        return [k for k, s in self.keys.items() if s.kind == "depth"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fps": self.fps,
            "keys": {
                k: {
                    f: (list(v) if isinstance(v, tuple) else v)
                    for f, v in dataclasses.asdict(s).items()
                    if not (f == "scale" and v is None)  # only depth keys carry one
                }
                for k, s in self.keys.items()
            },
            "cameras": self.cameras,
            "joint_names": list(self.joint_names),
            "action_space": self.action_space,
            "robot": self.robot,
            **({"joint_limits": self.joint_limits} if self.joint_limits else {}),
            **({"action_alignment": self.action_alignment} if self.action_alignment else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StoreSchema":
        if d.get("format") != FORMAT_NAME:
            raise SchemaError(f"not a df_policy schema (format={d.get('format')!r})")
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise SchemaError(
                f"schema version {d.get('version')} is newer than this df_policy supports ({FORMAT_VERSION})"
            )
        try:
            keys = {k: KeySpec(**v) for k, v in d["keys"].items()}
        except (KeyError, TypeError) as e:
            raise SchemaError(f"malformed schema keys: {e}") from e
        return cls(
            keys=keys,
            fps=d.get("fps"),
            cameras=d.get("cameras", {}),
            joint_names=list(d.get("joint_names", [])),
            action_space=d.get("action_space", ""),
            robot=d.get("robot", ""),
            joint_limits=d.get("joint_limits") or {},
            action_alignment=d.get("action_alignment") or "",
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def compatibility_errors(self, other: "StoreSchema", keys: list[str] | None = None) -> list[str]:
        """Differences that make data of ``other`` unusable where ``self`` is expected.

        Only ``keys`` (default: all of ``self``) are compared: kind, shape and dtype must match
        (and a depth key's ``scale``), and ``fps`` must agree when both are known.
        """
        errors = []
        for k in keys if keys is not None else list(self.keys):
            if k not in self.keys:
                errors.append(f"key {k!r} is not in the expected schema")
                continue
            mine = self.keys[k]
            theirs = other.keys.get(k)
            if theirs is None:
                errors.append(f"key {k!r} is missing")
                continue
            for attr in ("kind", "shape", "dtype"):
                if getattr(mine, attr) != getattr(theirs, attr):
                    errors.append(
                        f"key {k!r}: {attr} {getattr(theirs, attr)} != expected {getattr(mine, attr)}"
                    )
            if (mine.scale is not None and theirs.scale is not None
                    and not math.isclose(mine.scale, theirs.scale, rel_tol=1e-6)):
                errors.append(f"key {k!r}: depth scale {theirs.scale} m != expected {mine.scale} m")
        if self.fps and other.fps and abs(self.fps - other.fps) > 1e-6:
            errors.append(f"fps {other.fps} != expected {self.fps}")
        if self.action_alignment and other.action_alignment and self.action_alignment != other.action_alignment:
            errors.append(f"action alignment {other.action_alignment!r} != expected {self.action_alignment!r} "
                          "(the command after the observation vs the one in effect at it)")
        return errors

    def check_step_arrays(self, arrays: dict[str, np.ndarray]) -> int:
        """Check a block of steps against the schema; return its length in steps.

        ``arrays`` maps every schema key to an array of shape ``(T, *shape)``. Raises
        :class:`SchemaError` naming the key on missing/extra keys, wrong shape, unequal
        lengths, an unsafe dtype cast, or NaN/Inf in low-dim data.
        """
        missing = sorted(set(self.keys) - set(arrays))
        extra = sorted(set(arrays) - set(self.keys))
        if missing or extra:
            raise SchemaError(f"episode keys do not match the schema: missing {missing}, unexpected {extra}")
        length = None
        for k, spec in self.keys.items():
            a = np.asarray(arrays[k])
            if a.shape[1:] != spec.shape:
                raise SchemaError(f"key {k!r}: per-step shape {a.shape[1:]} != schema {spec.shape}")
            if length is None:
                length = a.shape[0]
            elif a.shape[0] != length:
                raise SchemaError(f"key {k!r} has {a.shape[0]} steps, other keys have {length}")
            if spec.kind == "image":
                if a.dtype != np.uint8:
                    raise SchemaError(f"key {k!r}: images must be uint8, got {a.dtype}")
            elif spec.kind == "depth":
                if a.dtype != np.uint16:
                    raise SchemaError(f"key {k!r}: depth must be uint16, got {a.dtype}")
            else:
                if not np.issubdtype(a.dtype, np.number):
                    raise SchemaError(f"key {k!r}: dtype {a.dtype} is not numeric")
                if not np.all(np.isfinite(a)):
                    bad = int(np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))[0])
                    raise SchemaError(f"key {k!r}: NaN or Inf at step {bad}")
        if not length:
            raise SchemaError("an episode needs at least one step")
        return int(length)
