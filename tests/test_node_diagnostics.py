"""The policy node's /diagnostics rules (df_policy.ros.node_diagnostics), without ROS: the values
of a real runtime's and control loop's reports, and the level and message of each situation."""

from __future__ import annotations

import numpy as np
import pytest

from df_policy.ros.node_diagnostics import status_level, status_values
from df_policy.runtime import ControlLoop, FakeClock, Hold, RuntimeConfig
from df_policy.runtime.safety import HOLD_KINDS
from df_policy.runtime.testing import make_policy, make_runtime, tiny_policy_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def reports():
    runtime = make_runtime(make_policy(tiny_policy_config(), seed=0), RuntimeConfig(), clock=FakeClock())
    result = runtime.control_tick()  # nothing observed yet: a hold
    assert isinstance(result, Hold)
    return runtime.stats(), ControlLoop(runtime).report(), result


def values(reports, **kw):
    stats, loop, _ = reports
    args = dict(enabled=True, fault=None, checkpoint="runs/x", rate_hz=10.0, command_rate_hz=9.96,
                obs_to_command_s=np.array([0.010, 0.020, 0.030]), counters={"commands_published": 7},
                stats=stats, loop=loop, input_ages={"/joint_states": 0.01234, "/camera": None}, delay_steps=1,
                last_observation_error=None)
    return status_values(**{**args, **kw})


def test_values_carry_every_counter_of_the_reports(reports):
    stats, _, _ = reports
    v = values(reports)
    assert v["ticks"] == stats["ticks"] == 1 and v["commands_published"] == 7 and v["refused_unsafe"] == 0
    assert {f"holds.{k}" for k in stats["holds"]} <= set(v) and {f"clipped.{k}" for k in stats["violations"]} <= set(v)
    assert v["obs_to_command_ms_p50"] == 20.0 and v["command_rate_hz"] == 9.96 and v["fault"] == ""
    assert v["input_age_s./joint_states"] == 0.012 and v["input_age_s./camera"] is None
    assert values(reports, obs_to_command_s=np.array([]))["obs_to_command_ms_p99"] is None


@pytest.mark.parametrize("case, expected", [
    (dict(fault="controller gone"), ("ERROR", "fault, commanding stopped until ~/enable: controller gone")),
    (dict(enabled=False), ("OK", "disabled")),
    (dict(enabled=False, window={"observation_errors": 2}), ("WARN", "disabled")),
    (dict(new_inference_errors=3, last_error="boom"), ("ERROR", "3 inference errors: boom")),
    (dict(window={"hold.stale_observation": 2, "commands": 8}, last="stale_observation"),
     ("WARN", "holding 2/10 ticks (stale_observation): why")),
    (dict(window={"hold.non_finite_action": 1}, last="non_finite_action"),
     ("ERROR", "holding 1/1 ticks (non_finite_action): why")),
    (dict(window={"hold.overrun": 1, "hold.late_action": 3, "commands": 6}),
     ("WARN", "commanding, with 4/10 ticks held (late_action)")),
    (dict(window={"refused_stale": 1, "commands": 9}), ("WARN", "commanding; dropped: stale commands")),
    (dict(window={}), ("OK", "enabled, waiting for the first tick")),
    (dict(window={"commands": 10}), ("OK", "commanding at 10.0 Hz")),
])
def test_level_and_message_of_each_situation(reports, case, expected):
    assert set(HOLD_KINDS) >= {"stale_observation", "non_finite_action", "overrun", "late_action"}
    last = Hold(case.pop("last"), "why", None, 0.0) if "last" in case else None
    v = values(reports, command_rate_hz=10.0)
    kw = dict(enabled=True, fault=None, window={}, new_inference_errors=0, last_error=None, last_result=last,
              last_observation_error=None)
    level, message = status_level(v, **{**kw, **case})
    assert level == expected[0] and message.startswith(expected[1])
    if "held" in message or "holding" in message:
        assert v["hold_kind"] == message.split("(")[1].split(")")[0]
        assert v["hold_reason"] == ("why" if last is not None else "")
    else:
        assert v["hold_kind"] == ""
