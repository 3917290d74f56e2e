"""Depth aligned to colour in the episode store: the ``depth`` key kind, the recorder's
``<camera>_depth`` keys (simulated camera and RealSense through the real pyrealsense2 library),
old stores without depth, and the training dataset ignoring depth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from fixtures.recording import RampTeleop, StepRobot, pattern_frame_number

from data_collection.bag_config import recording_schema
from data_collection.cameras.base import CameraConfig
from data_collection.cameras.simulated import SimulatedCamera, make_test_pattern
from data_collection.recorder import Recorder, RecorderConfig, RecorderError
from df_policy.cli import main as dfp
from df_policy.data.ops import merge, store_info, validate_store
from df_policy.data.schema import SCHEMA_ATTR, KeySpec, SchemaError, StoreSchema
from df_policy.data.store import EpisodeStore

W, H = 200, 32  # test-pattern frames are unique for k < 800
SCALE = 0.00025  # metres per unit (a D405-like 0.25 mm)


class HoleyCamera(SimulatedCamera):
    """Test pattern with depth, except that frames in ``no_depth`` come without it and frames
    ``>= rescale_at`` report another depth scale."""

    def __init__(self, *args, no_depth=(), rescale_at=None, **kw):
        super().__init__(*args, **kw)
        self.no_depth, self.rescale_at = set(no_depth), rescale_at

    def _make_frame(self, k, t_k):
        frame = super()._make_frame(k, t_k)
        if k in self.no_depth:
            return dataclasses.replace(frame, depth=None, depth_scale=None, depth_hw_timestamp_ms=None)
        if self.rescale_at is not None and k >= self.rescale_at:
            return dataclasses.replace(frame, depth_scale=2 * frame.depth_scale)
        return frame


def _camera(name="cam", depth=True, cls=SimulatedCamera, **kw):
    return cls(CameraConfig(name=name, width=W, height=H, fps=10.0, enable_depth=depth), realtime=False,
               depth_scale=SCALE, **kw)


def _record(path: Path, cameras, events, **kw):
    config = RecorderConfig(store_path=path, fps=10.0, max_episode_s=100.0, realtime=False, max_skew_s=0.5,
                            flush_every=3, status=False, **kw)
    robot = StepRobot()
    lines: list[str] = []
    summary = Recorder(config, robot, cameras, RampTeleop(events), log=lines.append).run()
    return summary, lines


# ---------------------------------------------------------------------- schema


def test_depth_key_spec_validation_and_json():
    spec = KeySpec("depth", (48, 64), "uint16", unit="m", camera="front", scale=0.001)
    assert spec.scale == 0.001 and spec.dim == 48 * 64
    good = {"kind": "depth", "shape": (48, 64), "dtype": "uint16", "unit": "m", "scale": 0.001}
    for kw, match in (
        ({"dtype": "uint8"}, "uint16"), ({"shape": (48, 64, 1)}, r"\(H, W\)"), ({"unit": "mm"}, "unit 'm'"),
        ({"scale": None}, "positive scale"), ({"scale": 0.0}, "positive scale"), ({"scale": True}, "positive"),
    ):
        with pytest.raises(SchemaError, match=match):
            KeySpec(**{**good, **kw})
    with pytest.raises(SchemaError, match="scale is for depth keys only"):
        KeySpec("lowdim", (3,), "float32", scale=1.0)

    schema = recording_schema(("a",), {"front": (48, 64), "side": (24, 32)}, 10.0, depth_scales={"front": 0.001})
    assert list(schema.keys) == ["front", "front_depth", "side", "joint_pos", "stamp_s", "action"]
    assert schema.depth_keys == ["front_depth"] and schema.image_keys == ["front", "side"]
    assert "front_depth" not in schema.lowdim_keys
    d = schema.to_dict()
    assert d["keys"]["front_depth"]["scale"] == 0.001
    assert all("scale" not in d["keys"][k] for k in d["keys"] if k != "front_depth")  # old keys' JSON unchanged
    assert StoreSchema.from_dict(json.loads(json.dumps(d))).keys == schema.keys
    # a different scale is incompatible (merge / append)
    other = recording_schema(("a",), {"front": (48, 64), "side": (24, 32)}, 10.0, depth_scales={"front": 0.002})
    assert any("depth scale 0.002 m != expected 0.001 m" in e for e in schema.compatibility_errors(other))
    with pytest.raises(SchemaError, match="another key"):
        recording_schema(("a",), {"c": (4, 4), "c_depth": (4, 4)}, 10.0, depth_scales={"c": 0.001})
    with pytest.raises(SchemaError, match="no image key"):
        recording_schema(("a",), {"c": (4, 4)}, 10.0, depth_scales={"d": 0.001})
    # steps are checked: depth must be uint16
    arrays = {"front": np.zeros((1, 48, 64, 3), np.uint8), "front_depth": np.zeros((1, 48, 64), np.float32),
              "side": np.zeros((1, 24, 32, 3), np.uint8), "joint_pos": np.zeros((1, 1), np.float32),
              "stamp_s": np.zeros((1, 1), np.float32), "action": np.zeros((1, 1), np.float32)}
    with pytest.raises(SchemaError, match="'front_depth': depth must be uint16"):
        schema.check_step_arrays(arrays)


def test_store_written_without_depth_keys_still_opens(synth_store):
    # Rewrite the schema document exactly as the code before depth keys wrote it (no "scale").
    group = zarr.open_group(zarr.storage.LocalStore(synth_store), mode="r+", zarr_format=3)
    doc = dict(group.attrs[SCHEMA_ATTR])
    doc["keys"] = {k: {f: v for f, v in spec.items() if f != "scale"} for k, spec in doc["keys"].items()}
    assert all(set(spec) == {"kind", "shape", "dtype", "unit", "names", "camera", "description"}
               for spec in doc["keys"].values())
    group.attrs[SCHEMA_ATTR] = doc
    store = EpisodeStore.open(synth_store)
    assert store.schema.depth_keys == [] and store.n_episodes > 0
    assert validate_store(synth_store) == []
    info = store_info(store)
    assert info["depth_keys"] == [] and all("scale" not in k for k in info["keys"].values())


# ---------------------------------------------------------------------- recorder, simulated camera


def test_recorded_depth_equals_the_frames_depth(tmp_path, capsys):
    out = tmp_path / "store"
    # the first frame (0) is read to learn the depth scale; iteration i then reads frame i
    summary, _ = _record(out, [_camera()], {8: ["save"]}, episodes=1)
    assert summary["steps"] == 8 and summary["dropped_steps"] == summary["missing_depth"] == 0
    store = EpisodeStore.open(out)
    spec = store.schema.keys["cam_depth"]
    assert (spec.kind, spec.shape, spec.dtype, spec.unit, spec.camera, spec.scale) == (
        "depth", (H, W), "uint16", "m", "cam", SCALE)
    assert store.schema.keys["cam"].shape == (H, W, 3)
    ep = store.episode(0)
    assert ep["cam_depth"].dtype == np.uint16 and ep["cam_depth"].shape == (8, H, W)
    frames = [pattern_frame_number(img, W, H) for img in ep["cam"]]
    assert frames == list(range(1, 9))
    for k, depth in zip(frames, ep["cam_depth"], strict=True):
        np.testing.assert_array_equal(depth, make_test_pattern(k, W, H, with_depth=True)[1])
    assert validate_store(out) == []
    info = store_info(store)
    assert info["depth_keys"] == ["cam_depth"]
    assert info["keys"]["cam_depth"] == {"kind": "depth", "shape": [H, W], "dtype": "uint16", "unit": "m",
                                         "scale": SCALE, "camera": "cam"}
    assert dfp(["data", "info", str(out)]) == 0
    assert f"x {SCALE:g} (depth scale)" in next(line for line in capsys.readouterr().out.splitlines() if "cam_depth" in line)
    # depth arrays are chunked by frames, like images (not 1024 steps of H x W)
    assert store.array("cam_depth").chunks[0] == store.array("cam").chunks[0]
    # appending with the same camera works; stores with depth merge
    _record(out, [_camera()], {3: ["save"]}, episodes=1)
    assert EpisodeStore.open(out).n_episodes == 2
    merged = merge([out, out], tmp_path / "merged", progress=False)
    assert merged.n_episodes == 4 and merged.schema.keys["cam_depth"].scale == SCALE
    np.testing.assert_array_equal(merged.episode(2)["cam_depth"], ep["cam_depth"])


def test_frames_without_depth_drop_the_step_never_zeros(tmp_path):
    out = tmp_path / "store"
    cam = _camera(cls=HoleyCamera, no_depth={3, 4, 7})
    other = _camera(name="side", depth=False)
    summary, _ = _record(out, [cam, other], {10: ["save"]}, episodes=1)
    assert summary["missing_depth"] == 3 and summary["dropped_steps"] == 3 and summary["steps"] == 7
    ep = EpisodeStore.open(out).episode(0)
    assert list(EpisodeStore.open(out).schema.keys) == ["cam", "cam_depth", "side", "joint_pos", "stamp_s", "action"]
    frames = [pattern_frame_number(img, W, H) for img in ep["cam"]]
    assert frames == [1, 2, 5, 6, 8, 9, 10]
    assert all(d.min() > 0 for d in ep["cam_depth"])
    for k, depth in zip(frames, ep["cam_depth"], strict=True):
        np.testing.assert_array_equal(depth, make_test_pattern(k, W, H, with_depth=True)[1])


def test_depth_scale_changes_and_mismatches_are_refused(tmp_path):
    out = tmp_path / "store"
    with pytest.raises(RecorderError, match="depth scale changed from 0.00025 m"):
        _record(out, [_camera(cls=HoleyCamera, rescale_at=5)], {20: ["save"]}, episodes=1)
    store = EpisodeStore.open(out)
    assert store.n_episodes == 0 and store.partial is None  # the episode in progress was discarded

    _record(out, [_camera()], {3: ["save"]}, episodes=1)
    other = SimulatedCamera(CameraConfig(name="cam", width=W, height=H, fps=10.0, enable_depth=True),
                            realtime=False, depth_scale=0.001)
    with pytest.raises(RecorderError, match="depth scale 0.00025 m != expected 0.001 m"):
        _record(out, [other], {3: ["save"]}, episodes=1)
    with pytest.raises(RecorderError, match="the store has key 'cam_depth' that this setup does not record"):
        _record(out, [_camera(depth=False)], {3: ["save"]}, episodes=1)
    assert EpisodeStore.open(out).n_episodes == 1


def test_depth_camera_that_never_delivers_depth(tmp_path, monkeypatch):
    from data_collection import recorder

    monkeypatch.setattr(recorder, "DEPTH_PROBE_S", 0.2)
    cam = _camera(cls=HoleyCamera, no_depth=range(10_000))
    with pytest.raises(RecorderError, match="cam: depth is enabled .* but no frame with depth arrived"):
        _record(tmp_path / "store", [cam], {3: ["save"]}, episodes=1)
    assert not cam.is_running
    with pytest.raises(RecorderError, match="records depth as key 'cam_depth', which is another camera's name"):
        Recorder(RecorderConfig(store_path=tmp_path / "x"), StepRobot(),
                 [_camera(), _camera(name="cam_depth", depth=False)], RampTeleop())


def test_training_dataset_ignores_depth(tmp_path):
    from df_policy.data.dataset import DatasetConfig, make_datasets

    out = tmp_path / "store"
    _record(out, [_camera()], {12: ["save"]}, episodes=1)
    cfg = DatasetConfig(n_obs_steps=2, horizon=4, crop_shape=None, val_ratio=0.0, cache="ram")
    train, _ = make_datasets(str(out), cfg, progress=False)
    assert train.image_keys == ["cam"] and "cam_depth" not in train.lowdim_keys
    assert "cam_depth" not in train.arrays.keys
    batch = train.__getitems__([0, 1])
    assert not any("depth" in k for k in batch)
    with pytest.raises(ValueError, match="'cam_depth' .* is a depth key"):
        make_datasets(str(out), dataclasses.replace(cfg, image_keys=["cam", "cam_depth"]), progress=False)


# ---------------------------------------------------------------------- rig


def test_rig_allows_depth_for_realsense_and_simulated(tmp_path):
    import textwrap

    from data_collection.rig import load_rig
    from data_collection.rig_build import build

    path = tmp_path / "rig.yaml"
    path.write_text(textwrap.dedent("""
        robot: {type: simulated, joint_names: [a], position_lower: -1, position_upper: 1}
        cameras:
          - {type: realsense, name: front, serial: "123", width: 64, height: 48, fps: 30, depth: true}
          - {type: simulated, name: pattern, width: 32, height: 24, fps: 10, depth: true}
        teleop: {device: keyboard}
    """))
    rig = load_rig(path)
    assert "+ depth (front_depth)" in rig.describe() and "+ depth (pattern_depth)" in rig.describe()
    _, cameras, _, _ = build(rig, store_path=tmp_path / "s")
    assert [c.config.enable_depth for c in cameras] == [True, True]
    with cameras[1] as cam:
        frame = cam.read(1.0)
    assert frame.depth is not None and frame.depth.shape == (24, 32)


# ---------------------------------------------------------------------- RealSense (real pyrealsense2)


def test_realsense_software_device_depth_is_recorded(tmp_path):
    # SoftwareRealSense: an rs.software_device streamed through rs.pipeline + syncer + rs.align
    # (skips this test when pyrealsense2 is not usable)
    from test_cameras_realsense import DEPTH_UNITS, FPS, SERIAL, SoftwareRealSense, config  # noqa: I001

    from data_collection.cameras.realsense import RealSenseCamera

    sw = SoftwareRealSense()
    w, h = sw.color_profile.as_video_stream_profile().width(), sw.color_profile.as_video_stream_profile().height()

    class FedRealSense(RealSenseCamera):
        """Feeds the next software frame (depth, then colour) just before each read."""

        fed = 0

        def _read(self, timeout_s):
            self.fed += 1
            sw.feed(self.fed, ts_ms=1000.0 + self.fed * 1000.0 / FPS)
            return super()._read(timeout_s)

    cam = FedRealSense(config(serial=SERIAL), device=sw.dev)
    out = tmp_path / "store"
    config_ = RecorderConfig(store_path=out, fps=10.0, max_episode_s=100.0, realtime=False, max_skew_s=0.5,
                             flush_every=2, status=False, episodes=1, wait_for_start=True)
    lines: list[str] = []
    summary = Recorder(config_, StepRobot(wall_clock=True), [cam], RampTeleop({3: ["toggle"], 10: ["toggle"]}),
                       log=lines.append).run()
    assert lines[0] == "episode=0 waiting" and "episode=0 committed steps=" in lines[-1], lines
    assert not cam.is_running
    store = EpisodeStore.open(out)
    spec = store.schema.keys["wrist_depth"]
    assert spec.kind == "depth" and spec.shape == (h, w) and spec.scale == DEPTH_UNITS  # exact: 2**-10
    assert store.schema.cameras["wrist"]["intrinsics"]["fx"] == 64.0
    ep = store.episode(0)
    n = len(ep["wrist"])
    assert n == summary["steps"] >= 5, (summary, lines)  # 7 recording iterations, a late frameset may drop one
    candidates = range(1, cam.fed + 1)
    fed = []
    for color, depth in zip(ep["wrist"], ep["wrist_depth"], strict=True):
        k = next(k for k in candidates if np.array_equal(color, sw.color_image(k)))
        fed.append(k)
        np.testing.assert_array_equal(depth, sw.depth_image(k))  # aligned depth = injected depth
    assert np.all(np.diff(fed) > 0) and fed[0] > 4  # nothing from the probe or the idle iterations
    assert validate_store(out) == []
