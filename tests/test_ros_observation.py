"""ObservationAssembler: latest messages + clock time -> one model-input step with input ages."""

from __future__ import annotations

import numpy as np
import pytest

from df_policy.ros.messages import JointStateConverter, ns_to_time, rgb_to_image, sec_to_time
from df_policy.ros.observation import (
    MissingInputError,
    ObservationAssembler,
    ObservationAssemblerConfig,
    ObservationError,
    ObservationInput,
    StaleInputError,
)

pytest.importorskip("sensor_msgs.msg")

JOINTS = ("j1", "j2")
TOPIC = "/camera/color/image_raw"


def _messages(js_stamp=100.0, img_stamp=100.0):
    js = JointStateConverter(JOINTS).to_msg([0.5, -0.5], velocity=[1.0, 2.0], stamp=js_stamp)
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :, 0] = 200
    img = rgb_to_image(rgb, encoding="bgr8", stamp=img_stamp)
    return {"joint_state": js, TOPIC: img}


def _assembler(**kw):
    inputs = {
        "agent_pos": ("joint_state", "position"),
        "agent_vel": ("joint_state", "velocity"),
        "image": ("camera", TOPIC),
        "image_small": ("camera", TOPIC, (3, 4)),
    }
    return ObservationAssembler(ObservationAssemblerConfig(inputs=inputs, joint_names=JOINTS, **kw))


def test_assembles_step_with_ages():
    asm = _assembler(max_age_s=0.2)
    assert asm.required_sources == {"joint_state": ("agent_pos", "agent_vel"), TOPIC: ("image", "image_small")}
    step = asm.assemble(_messages(js_stamp=99.95, img_stamp=99.9), now_s=100.0)
    assert set(step.values) == {"agent_pos", "agent_vel", "image", "image_small"}
    pos = step.values["agent_pos"]
    assert pos.dtype == np.float32 and pos.shape == (2,)
    np.testing.assert_array_equal(pos, [0.5, -0.5])
    np.testing.assert_array_equal(step.values["agent_vel"], [1.0, 2.0])
    img = step.values["image"]
    assert img.dtype == np.uint8 and img.shape == (6, 8, 3)
    assert (img[:, :, 0] == 200).all() and (img[:, :, 1:] == 0).all()  # bgr8 on the wire, RGB out
    assert step.values["image_small"].shape == (3, 4, 3)
    assert step.ages_s["agent_pos"] == pytest.approx(0.05, abs=1e-9)
    assert step.ages_s["image"] == pytest.approx(0.1, abs=1e-9)
    assert step.is_fresh and step.raise_if_stale() is step


def test_stale_inputs_are_reported_and_raised():
    step = _assembler(max_age_s=0.2).assemble(_messages(js_stamp=99.99, img_stamp=99.5), now_s=100.0)
    assert step.stale == ("image", "image_small")
    assert not step.is_fresh
    with pytest.raises(StaleInputError, match=r"image=0\.500s"):
        step.raise_if_stale()
    # no threshold: ages only
    assert _assembler().assemble(_messages(img_stamp=1.0), now_s=100.0).stale == ()


def test_receipt_clock_and_errors():
    asm = _assembler(stamp_source="receipt", max_age_s=0.1)
    msgs = _messages()
    step = asm.assemble(msgs, now_s=5.0, receipt_s={"joint_state": 4.95, TOPIC: 4.7})
    assert step.ages_s["agent_pos"] == pytest.approx(0.05) and step.stale == ("image", "image_small")
    with pytest.raises(ObservationError, match="no receipt time"):
        asm.assemble(msgs, now_s=5.0, receipt_s={"joint_state": 4.95})
    with pytest.raises(MissingInputError, match=r"/camera/color/image_raw \(for \['image', 'image_small'\]\)"):
        _assembler().assemble({"joint_state": msgs["joint_state"]}, now_s=100.0)
    unstamped = _messages()
    unstamped[TOPIC].header.stamp = ns_to_time(0)
    with pytest.raises(ObservationError, match="zero header.stamp"):
        _assembler().assemble(unstamped, now_s=100.0)
    no_vel = dict(msgs, joint_state=JointStateConverter(JOINTS).to_msg([0.0, 0.0], stamp=sec_to_time(100.0)))
    with pytest.raises(ObservationError, match="'agent_vel'.*no velocity"):
        _assembler().assemble(no_vel, now_s=100.0)
    bad = dict(msgs, joint_state=JointStateConverter(("j1",)).to_msg([0.0], stamp=100.0))
    with pytest.raises(ObservationError, match=r"'agent_pos'.*missing joints \['j2'\]"):
        _assembler().assemble(bad, now_s=100.0)


def test_config_validation():
    with pytest.raises(ObservationError, match="joint_names is required"):
        ObservationAssemblerConfig(inputs={"agent_pos": ("joint_state", "position")})
    with pytest.raises(ObservationError, match="'torque' is not one of"):
        ObservationAssemblerConfig(inputs={"x": ("joint_state", "torque")}, joint_names=JOINTS)
    with pytest.raises(ObservationError, match="kind 'lidar'"):
        ObservationInput("lidar", "/scan")
    with pytest.raises(ObservationError, match="stamp_source"):
        ObservationAssemblerConfig(inputs={"image": ("camera", TOPIC)}, stamp_source="wall")
