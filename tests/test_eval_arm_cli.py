"""`dfp eval arm --node KEY=VALUE` / `--sim-arg ARG`: policy-node settings for the run through ROS 2 are parsed,
checked and reach the node's settings; bad items fail before anything starts (no ROS needed)."""

from __future__ import annotations

import numpy as np
import pytest

from df_policy.cli import main as dfp
from df_policy.evaluation.sim_arm_ros import parse_node_overrides, policy_node_settings


def test_node_overrides_reach_the_policy_node_settings():
    overrides = parse_node_overrides(["max_velocity=2.45", "planner_block_tokens=6", "tracking_mode=clip"])
    assert overrides == {"max_velocity": 2.45, "planner_block_tokens": 6, "tracking_mode": "clip"}
    lower, upper = -np.ones(6), np.ones(6)
    settings = policy_node_settings("ckpt", lower, upper, vmax=5.0, period_s=0.1, **overrides)
    assert settings["max_velocity"] == 2.45  # not lowered to what the tracking bound allows
    assert settings["planner_block_tokens"] == 6 and settings["tracking_mode"] == "clip"
    # without the override the limit follows the tracking bound (node_so101.yaml: 0.35 rad arm, 1.0 gripper)
    default = policy_node_settings("ckpt", lower, upper, vmax=5.0, period_s=0.1)["max_velocity"]
    assert default == pytest.approx([1.4] * 5 + [4.0])


@pytest.mark.parametrize("items, message", [
    (["max_velocity"], "expects key=value"),
    (["max_speed=2"], "not a policy node setting"),
    (["command_type=trajectory_chunk"], "use --command-type"),
    (["checkpoint=other"], "set by dfp eval arm itself"),
])
def test_bad_node_overrides_are_named(items, message):
    with pytest.raises(ValueError, match=message):
        parse_node_overrides(items)


def test_eval_arm_refuses_node_settings_without_a_ros_run(tmp_path, capsys):
    assert dfp(["eval", "arm", "--checkpoint", str(tmp_path / "none"), "--node", "max_velocity=1.0",
                "--out", str(tmp_path / "out")]) == 2
    assert "add --ros or --ros-only" in capsys.readouterr().err
    assert dfp(["eval", "arm", "--checkpoint", str(tmp_path / "none"), "--sim-arg=--controller", "--sim-arg=forward",
                "--out", str(tmp_path / "out")]) == 2
    assert "add --ros or --ros-only" in capsys.readouterr().err
    assert dfp(["eval", "arm", "--checkpoint", str(tmp_path / "none"), "--ros", "--node", "max_speed=1.0",
                "--out", str(tmp_path / "out")]) == 2
    assert "max_speed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written
