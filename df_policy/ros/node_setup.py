"""What the policy node checks and converts before it starts: its settings as ROS parameters,
and the fit between its config and the checkpoint (joint order, cameras, low-dim inputs, units).

Pure functions over :class:`~df_policy.ros.node_config.PolicyNodeConfig` and a loaded
checkpoint; no rclpy needed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from .node_config import MAPPING_FIELDS, PolicyNodeConfig, PolicyNodeConfigError
from .observation import ObservationInput

log = logging.getLogger(__name__)


def flatten_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Config values -> ROS parameter name -> value (``<mapping field>.<key>``; tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(PolicyNodeConfig):
        name = f.name
        if name in values:
            value = values[name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:  # required (no default) or a mapping (empty by default)
            value = None
        if name == "command_groups":
            for group, attrs in dict(value or {}).items():
                attrs = attrs.to_dict() if hasattr(attrs, "to_dict") else dict(attrs or {})
                for attribute, item in attrs.items():
                    out[f"{name}.{group}.{attribute}"] = list(item) if isinstance(item, tuple) else item
        elif name in MAPPING_FIELDS:
            for key, item in dict(value or {}).items():
                out[f"{name}.{key}"] = item
        elif isinstance(value, (tuple, list)):
            items = list(value)
            numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers and len(numbers) == len(items) and any(isinstance(v, float) for v in items):
                items = [float(v) for v in items]  # [-1.9, 0, 1.2]: ROS parameters need one element type
            out[name] = items
        else:
            out[name] = value
    return out


def parameter_value(value: Any) -> Any:
    """A ROS parameter value as a plain Python value (arrays -> lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return list(value)




CHECKPOINT_DEFAULTS = ("joint_names", "position_lower", "position_upper", "max_velocity")
"""Settings the policy node takes from the checkpoint's store schema when its config leaves them out."""

STEP_SHARE_OF_TRACKING = 0.4
"""A speed limit taken from the schema (the robot's hardware limit) is lowered per joint so one
control period's step uses at most this share of ``max_tracking_error``: the measured arm lags a
command by that step plus its own following error and the observation latency (1.5 steps on the
simulated SO-101 at full speed), and a legal motion must not trip the tracking fault. A speed
limit the config gives is used as given (the node warns when it is too fast for the bound)."""


def velocity_within_tracking(max_velocity: Any, max_tracking_error: Any, period_s: float,
                             share: float = STEP_SHARE_OF_TRACKING) -> list[float]:
    """Per-joint ``min(max_velocity, share * max_tracking_error / period_s)`` (units/s), rounded
    to 4 decimals; either limit may be a scalar. ``max_tracking_error`` ``None`` (no bound) leaves
    ``max_velocity`` as it is."""
    vmax = np.atleast_1d(np.asarray(max_velocity, dtype=np.float64))
    if max_tracking_error is None:
        return [float(v) for v in vmax]
    track = np.atleast_1d(np.asarray(max_tracking_error, dtype=np.float64))
    return [round(float(v), 4) for v in np.minimum(vmax, share * track / float(period_s))]


def checkpoint_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (node settings) with the :data:`CHECKPOINT_DEFAULTS` it leaves out (``None``)
    filled from the store schema the checkpoint was trained on: ``joint_names`` (the action
    order) and, where the recording stored the robot's limits (``schema.joint_limits``, finite
    for every joint), ``position_lower`` / ``position_upper`` / ``max_velocity``. What the config
    gives always wins; what the schema lacks stays missing (and is reported as such). Reads only
    ``schema.json``, not the weights; an unreadable checkpoint is left to the checkpoint loader."""
    from df_policy.data.schema import SchemaError, StoreSchema
    from df_policy.training.checkpoint import CheckpointError, resolve_checkpoint

    out = dict(values)
    wanted = [k for k in CHECKPOINT_DEFAULTS if out.get(k) is None]
    if not wanted or not out.get("checkpoint"):
        return out
    try:
        path = resolve_checkpoint(str(out["checkpoint"])) / "schema.json"
        schema = StoreSchema.from_dict(json.loads(path.read_text()))
    except (CheckpointError, OSError, ValueError, SchemaError):
        return out
    limits = schema.joint_limits
    found = {"joint_names": list(schema.joint_names) or None,
             "position_lower": limits.get("position_lower"), "position_upper": limits.get("position_upper"),
             "max_velocity": limits.get("velocity_max")}
    for key in wanted:
        value = found[key]
        if value is not None and all(v is not None for v in value):
            out[key] = value
            log.info("%s from the checkpoint's schema (%s): %s", key, path, value)
    if "max_velocity" in wanted and out.get("max_velocity") is not None:
        track = out.get("max_tracking_error", _field_default("max_tracking_error"))
        rate = out.get("rate_hz") or schema.fps
        if rate:
            capped = velocity_within_tracking(out["max_velocity"], track, 1.0 / float(rate))
            if capped != [float(v) for v in out["max_velocity"]]:
                log.info("max_velocity lowered to %s: at %g Hz one step uses at most %g of max_tracking_error %s "
                         "(the schema's hardware limit would let a legal motion trip the tracking fault); "
                         "set max_velocity to choose", capped, float(rate), STEP_SHARE_OF_TRACKING, track)
                out["max_velocity"] = capped
    return out


def _field_default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(PolicyNodeConfig) if f.name == name)


def default_camera_topic(key: str, image_keys: list[str]) -> str:
    """The camera topic of image key ``key`` when no config names one: realsense2_camera's
    defaults, ``/camera/color/image_raw`` for a single-camera policy and
    ``/<key>/color/image_raw`` (``camera_name:=<key>``) for each camera of a multi-camera one."""
    return "/camera/color/image_raw" if len(image_keys) == 1 else f"/{key}/color/image_raw"


def observation_inputs(config: PolicyNodeConfig, loaded: Any) -> dict[str, ObservationInput]:
    """Where each raw observation key the checkpoint needs comes from, checked against the checkpoint.

    Raises :class:`PolicyNodeConfigError` naming the key when the joint names differ from the
    checkpoint's, a checkpoint image key has no camera topic (or a camera topic names no
    checkpoint image key), or a low-dim key does not fit the joint state.
    """
    from df_policy.runtime.preprocess import Preprocessor

    schema, pcfg = loaded.schema, loaded.policy.config
    path = getattr(loaded, "path", config.checkpoint)
    joints = list(config.joint_names)
    trained = list(schema.joint_names) or list(schema.keys[schema.action_key].names or [])
    if trained and trained != joints:
        order = " (same joints, different order)" if sorted(trained) == sorted(joints) else ""
        raise PolicyNodeConfigError(
            f"joint_names {joints} do not match the checkpoint's joint order {trained}{order} ({path}); "
            "joint_names must list the checkpoint's joints in its action order"
        )
    if not trained:
        log.warning("checkpoint %s records no joint names; trusting joint_names=%s", path, joints)
    if pcfg.action_dim != len(joints):
        raise PolicyNodeConfigError(
            f"the checkpoint's action has {pcfg.action_dim} dimensions but joint_names lists {len(joints)} joints"
        )
    unit = schema.keys[schema.action_key].unit
    if unit and unit != config.action_unit:
        raise PolicyNodeConfigError(
            f"the checkpoint's actions are in {unit!r} ({path}) but the node commands {config.action_unit!r} "
            f"(action_unit): its actions would be clipped into limits of another unit; convert the data or set "
            f"action_unit, position limits and speeds in {unit!r} for a driver that takes {unit!r}"
        )
    if not unit:
        log.warning("checkpoint %s records no action unit; trusting action_unit=%s", path, config.action_unit)
    image_keys = list(pcfg.image_shapes)
    missing = [k for k in image_keys if k not in config.camera_topics]
    if missing:
        raise PolicyNodeConfigError(
            f"the checkpoint reads camera images {missing} but camera_topics has no topic for them "
            f"(configured: {dict(config.camera_topics)}); set camera_topics.{missing[0]}: <image topic>"
        )
    extra = [k for k in config.camera_topics if k not in image_keys]
    if extra:
        raise PolicyNodeConfigError(
            f"camera_topics names {extra}, which the checkpoint does not read (its image keys: {image_keys})"
        )
    inputs: dict[str, ObservationInput] = {}
    for key in image_keys:
        spec = schema.keys.get(key)
        size = tuple(int(s) for s in spec.shape[:2]) if spec is not None and len(spec.shape) == 3 else None
        inputs[key] = ObservationInput("camera", config.camera_topics[key], size)
    lowdim_sources = [k for k in Preprocessor.from_loaded(loaded).source_keys() if k not in pcfg.image_shapes]
    unknown = [k for k in config.lowdim_fields if k not in lowdim_sources]
    if unknown:
        raise PolicyNodeConfigError(
            f"lowdim_fields names {unknown}, which the checkpoint does not read (its low-dim inputs: {lowdim_sources})"
        )
    for key in lowdim_sources:
        spec = schema.keys.get(key)
        dim = int(np.prod(spec.shape)) if spec is not None else pcfg.lowdim_shapes.get(key)
        if dim != len(joints):
            raise PolicyNodeConfigError(
                f"the checkpoint's low-dim input {key!r} has {dim} values; the node reads low-dim inputs from "
                f"the JointState, which gives {len(joints)} (one per joint)"
            )
        names = list(spec.names or []) if spec is not None else []
        if names and names != joints:
            raise PolicyNodeConfigError(f"the checkpoint's {key!r} is ordered {names}, joint_names is {joints}")
        inputs[key] = ObservationInput("joint_state", config.lowdim_fields.get(key, "position"))
    return inputs
