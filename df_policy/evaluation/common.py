"""Helpers shared by the evaluation commands: the control rate and ``--planner key=value``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from df_policy.runtime.planning import PlannerConfig


def resolve_fps(cli_fps: float | None, checkpoint: float | None, data: float | None, *, data_label: str = "the data",
                example: str = "--fps 10") -> float:
    """The control rate for an evaluation: ``--fps`` if given (it must agree with every rate
    that is known), else the checkpoint's, else the data's. Raises ``ValueError`` naming the
    command-line remedy when none is known."""
    known = {"the checkpoint": checkpoint, data_label: data}
    if cli_fps is not None:
        if not cli_fps > 0:
            raise ValueError(f"--fps must be > 0, got {cli_fps}")
        for who, rate in known.items():
            if rate and abs(rate - cli_fps) > 1e-6:
                raise ValueError(f"--fps {cli_fps:g} contradicts {who}, recorded at {rate:g} fps; "
                                 f"drop --fps or pass --fps {rate:g}")
        return float(cli_fps)
    if checkpoint and data and abs(checkpoint - data) > 1e-6:
        raise ValueError(f"the checkpoint was trained at {checkpoint:g} fps but {data_label} runs at {data:g} fps")
    rate = checkpoint or data
    if not rate:
        raise ValueError(f"neither the checkpoint nor {data_label} records a control rate (fps), e.g. a checkpoint "
                         f"trained on a Diffusion Policy .zarr.zip without dataset.fps: pass the recording rate "
                         f"on the command line, e.g. `{example}` (PushT: 10)")
    return float(rate)


PLANNER_FIELDS = tuple(f.name for f in dataclasses.fields(PlannerConfig))


def parse_key_values(items: Iterable[str], option: str) -> list[tuple[str, Any]]:
    """``["a=1", "b=[1, 2]"]`` -> ``[("a", 1), ("b", [1, 2])]``: command-line ``KEY=VALUE`` items of
    ``option`` (named in the error), values parsed as YAML. Which keys are allowed is the caller's."""
    pairs = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects key=value, got {item!r}")
        pairs.append((key.strip(), yaml.safe_load(value)))
    return pairs


def parse_planner_overrides(items: Iterable[str] | Mapping[str, Any] | None,
                            reserved: Iterable[str] = ()) -> dict[str, Any]:
    """``["ramp_tokens=8", "calls_per_tick=2"]`` -> ``{"ramp_tokens": 8, "calls_per_tick": 2}``:
    values parsed as YAML, keys must be :class:`PlannerConfig` fields and not in ``reserved``
    (fields that have their own option, e.g. ``mode``)."""
    if items is None:
        return {}
    pairs = list(items.items()) if isinstance(items, Mapping) else parse_key_values(items, "--planner")
    reserved = set(reserved)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in PLANNER_FIELDS:
            raise ValueError(f"--planner {key}=...: not a planner setting; choose from {', '.join(PLANNER_FIELDS)}")
        if key in reserved:
            raise ValueError(f"--planner {key}=...: use the --{key.replace('_', '-')} option instead")
        out[key] = value
    return out


def finite(obj: Any) -> Any:
    """Replace NaN/Inf floats by None (recursively) so the result is strict JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
