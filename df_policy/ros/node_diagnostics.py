"""What the policy node reports on ``/diagnostics``: its status values and their level.

Pure functions of the runtime's report (:meth:`PolicyRuntime.stats`), the control loop's
(:meth:`ControlLoop.report`) and the node's own counters, so the rules are testable without ROS;
ROS enters only in :func:`diagnostic_array`, which wraps one status into a
``diagnostic_msgs/DiagnosticArray``.

Levels: ``ERROR`` for a latched fault, new inference errors, and holds for a NaN in the policy's
output or in an observation; ``WARN`` for other holds (stale observation, overrun, no action
yet, late action), dropped observations or stale commands; ``OK`` otherwise (disabled, waiting
for the first tick, commanding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from df_policy.runtime.safety import HOLD_KINDS, Hold

from ._imports import import_ros

ERROR_HOLDS = ("non_finite_action", "invalid_observation")
"""Hold kinds reported as ``ERROR`` (a bug or a broken sensor, not a timing hiccup)."""


def _percentile_ms(seconds: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(seconds, q)) * 1e3, 2) if seconds.size else None


def status_values(*, enabled: bool, fault: str | None, checkpoint: str, rate_hz: float, command_rate_hz: float,
                  obs_to_command_s: np.ndarray, counters: Mapping[str, int], stats: Mapping[str, Any],
                  loop: Mapping[str, Any], input_ages: Mapping[str, float | None], delay_steps: int,
                  last_observation_error: str | None) -> dict[str, Any]:
    """The key/value pairs of one diagnostics status (``hold_kind`` / ``hold_reason`` empty:
    :func:`status_level` fills them). ``input_ages`` maps topic -> seconds since its last message."""
    return {
        "enabled": enabled, "fault": fault or "",
        "checkpoint": checkpoint, "rate_hz": round(rate_hz, 3),
        "command_rate_hz": round(command_rate_hz, 2),
        "obs_to_command_ms_p50": _percentile_ms(obs_to_command_s, 50),
        "obs_to_command_ms_p99": _percentile_ms(obs_to_command_s, 99),
        "hold_kind": "", "hold_reason": "",
        "ticks": stats["ticks"], "commands": stats["commands"],
        "commands_published": counters.get("commands_published", 0),
        "refused_unsafe": counters.get("refused_unsafe", 0), "refused_stale": counters.get("refused_stale", 0),
        **{f"holds.{k}": v for k, v in stats["holds"].items()},
        **{f"clipped.{k}": v for k, v in stats["violations"].items()},
        "tracking_ratio_max": stats["tracking_ratio_max"],
        "tracking_ratio_max_dim": stats["tracking_ratio_max_dim"] or "",
        "observations_pushed": counters.get("observations_pushed", 0),
        "observation_errors": counters.get("observation_errors", 0),
        "last_observation_error": last_observation_error or "",
        "invalid_observations": stats["invalid_observations"],
        "inferences": stats["inferences"], "inference_errors": stats["inference_errors"],
        "last_inference_error": stats["last_error"] or "",
        "inference_ms_p50": stats["inference_ms_p50"], "inference_ms_p99": stats["inference_ms_p99"],
        "recommended_delay_steps": stats["recommended_delay_steps"], "delay_steps": delay_steps,
        "dropped_late": stats["dropped_late"], "missed_ticks": loop["missed_ticks"],
        "tick_jitter_ms_p99": loop["jitter_ms_p99"],
        **{f"input_age_s.{topic}": (None if age is None else round(age, 3)) for topic, age in input_ages.items()},
    }


def status_level(values: dict[str, Any], *, enabled: bool, fault: str | None, window: Mapping[str, int],
                 new_inference_errors: int, last_error: str | None, last_result: Any,
                 last_observation_error: str | None) -> tuple[str, str]:
    """``(level, message)`` of a status; sets ``values["hold_kind"]`` (and ``hold_reason``) when holding.

    ``window`` counts what happened since the previous status (``commands``, ``hold.<kind>``,
    ``refused_stale``, ``refused_unsafe``, ``observation_errors``); ``last_result`` is the last
    control tick's result (a :class:`~df_policy.runtime.safety.Hold` or a command)."""
    if fault is not None:
        return "ERROR", f"fault, commanding stopped until ~/enable: {fault}"
    if not enabled:
        return ("WARN" if window.get("observation_errors", 0) else "OK"), "disabled: not commanding (call ~/enable)"
    if new_inference_errors > 0:
        return "ERROR", f"{new_inference_errors} inference errors: {last_error}"
    holds = {k: window.get(f"hold.{k}", 0) for k in HOLD_KINDS}
    n_holds = sum(holds.values())
    ticks = (window.get("commands", 0) + n_holds + window.get("refused_stale", 0)
             + window.get("refused_unsafe", 0))
    if n_holds and isinstance(last_result, Hold):
        values["hold_kind"], values["hold_reason"] = last_result.kind, last_result.reason
        level = "ERROR" if last_result.kind in ERROR_HOLDS else "WARN"
        return level, f"holding {n_holds}/{ticks} ticks ({last_result.kind}): {last_result.reason}"
    if n_holds:
        kind = max(holds, key=holds.get)
        values["hold_kind"] = kind
        return "WARN", f"commanding, with {n_holds}/{ticks} ticks held ({kind})"
    if window.get("observation_errors", 0) or window.get("refused_stale", 0):
        return "WARN", f"commanding; dropped: {last_observation_error or 'stale commands'}"
    if not ticks:
        return "OK", "enabled, waiting for the first tick"
    return "OK", f"commanding at {values['command_rate_hz']:.1f} Hz"


def diagnostic_array(level: str, message: str, values: Mapping[str, Any], *, name: str, hardware_id: str,
                     stamp: Any) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` holding one status (values as strings, ``None`` as "")."""
    diag = import_ros("diagnostic_msgs.msg")
    status = diag.DiagnosticStatus()
    status.level = {"OK": diag.DiagnosticStatus.OK, "WARN": diag.DiagnosticStatus.WARN,
                    "ERROR": diag.DiagnosticStatus.ERROR}[level]
    status.name = name
    status.message = message
    status.hardware_id = hardware_id
    status.values = [diag.KeyValue(key=k, value="" if v is None else str(v)) for k, v in values.items()]
    array = diag.DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
