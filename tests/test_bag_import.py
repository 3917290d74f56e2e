"""ROS 2 bag import: real rosbag2 bags (sqlite3 and MCAP) written with rosbags, imported into a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
cv2 = pytest.importorskip("cv2")

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from data_collection.bag_import import (
    BagImportConfig,
    BagImportError,
    import_bags,
    recording_schema,
)
from df_policy.data.ops import merge, validate_store
from df_policy.data.store import EpisodeStore, StoreError
from df_policy.ros.messages import (
    CommandConverter,
    JointStateConverter,
    compressed_image_to_rgb,
    image_to_rgb,
    time_to_ns,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
M = TS.types
JOINTS = ("shoulder", "elbow", "wrist")
BAG_JOINTS = ("wrist", "extra", "shoulder", "elbow")  # other order + one extra joint
H, W = 24, 32
BASE_S = 1_700_000_000  # ROS (Unix) time of "0 ms"
MS = 1_000_000


def ns(ms: float) -> int:
    return BASE_S * 1_000_000_000 + round(ms * MS)


def header(ms: float | None) -> object:
    t = 0 if ms is None else ns(ms)
    return M["std_msgs/msg/Header"](stamp=M["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                    frame_id="base")


# --------------------------------------------------------------------------- message builders
# A record is (topic, msgtype, receive time ns, message).


def joint_states(ms_list, *, topic="/joint_states", latency_ms=2.0, nan_at=None, stamp_fn=ns):
    """JointState k: shoulder = k, elbow = 1000 + k, wrist = -k (listed as BAG_JOINTS), extra = 99."""
    out = []
    for k, ms in ms_list:
        values = {"shoulder": float(k), "elbow": 1000.0 + k, "wrist": -float(k), "extra": 99.0}
        if nan_at == k:
            values["elbow"] = float("nan")
        t = stamp_fn(ms)
        msg = M["sensor_msgs/msg/JointState"](
            header=M["std_msgs/msg/Header"](stamp=M["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                            frame_id=""),
            name=list(BAG_JOINTS),
            position=np.array([values[n] for n in BAG_JOINTS]),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        out.append((topic, "sensor_msgs/msg/JointState", ns(ms + latency_ms), msg))
    return out


def multiarrays(ms_list, *, topic="/cmd", nan_at=None):
    """Float64MultiArray j (no header, so its time is the receive time ms): [j, 2j, 3j] in JOINTS order."""
    out = []
    for j, ms in ms_list:
        data = np.array([j, 2.0 * j, 3.0 * j])
        if nan_at == j:
            data[1] = np.nan
        layout = M["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        out.append((topic, "std_msgs/msg/Float64MultiArray", ns(ms),
                    M["std_msgs/msg/Float64MultiArray"](layout=layout, data=data)))
    return out


TRAJ_ORDER = ("elbow", "wrist", "shoulder")
TFS_MS = (100, 200, 300)


def traj_value(n: int, p: int) -> list[float]:
    """Point p of trajectory n in JOINTS order."""
    return [10.0 * n + p, 100.0 + 10 * n + p, 200.0 + 10 * n + p]


def trajectories(items, *, topic="/arm/joint_trajectory"):
    """items: (n, stamp_ms or None for a zero stamp, receive_ms); points at 100/200/300 ms."""
    out = []
    for n, stamp_ms, recv_ms in items:
        points = []
        for p, tfs in enumerate(TFS_MS):
            by_name = dict(zip(JOINTS, traj_value(n, p)))
            points.append(M["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=np.array([by_name[j] for j in TRAJ_ORDER]), velocities=np.zeros(0),
                accelerations=np.zeros(0), effort=np.zeros(0),
                time_from_start=M["builtin_interfaces/msg/Duration"](sec=0, nanosec=tfs * MS)))
        msg = M["trajectory_msgs/msg/JointTrajectory"](header=header(stamp_ms), joint_names=list(TRAJ_ORDER),
                                                       points=points)
        out.append((topic, "trajectory_msgs/msg/JointTrajectory", ns(recv_ms), msg))
    return out


def frame_rgb(i: int, smooth: bool = False) -> np.ndarray:
    """Frame i's pixels: random (exact codecs) or a flat colour (JPEG)."""
    if smooth:
        img = np.empty((H, W, 3), np.uint8)
        img[:] = (20 * i % 256, 255 - 20 * i % 256, 90)
        return img
    return np.random.default_rng(1000 + i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def images(ms_list, *, topic, kind="rgb8", latency_ms=15.0, size=(H, W)):
    """Frame i stamped at ms; kind: rgb8, bgr8 (raw Image), png or jpeg (CompressedImage)."""
    out = []
    for i, ms in ms_list:
        rgb = frame_rgb(i, smooth=kind == "jpeg")
        if size != (H, W):
            rgb = np.zeros((*size, 3), np.uint8)
        if kind in ("rgb8", "bgr8"):
            data = rgb if kind == "rgb8" else rgb[:, :, ::-1]
            msg = M["sensor_msgs/msg/Image"](header=header(ms), height=rgb.shape[0], width=rgb.shape[1],
                                             encoding=kind, is_bigendian=0, step=rgb.shape[1] * 3,
                                             data=np.ascontiguousarray(data).reshape(-1))
            out.append((topic, "sensor_msgs/msg/Image", ns(ms + latency_ms), msg))
        else:
            ok, buf = cv2.imencode("." + ("jpg" if kind == "jpeg" else "png"), rgb[:, :, ::-1])
            assert ok
            fmt = "jpeg" if kind == "jpeg" else "rgb8; png compressed bgr8"
            msg = M["sensor_msgs/msg/CompressedImage"](header=header(ms), format=fmt, data=buf.reshape(-1))
            out.append((topic, "sensor_msgs/msg/CompressedImage", ns(ms + latency_ms), msg))
    return out


INTRINSICS = {"width": W, "height": H, "fx": 30.0, "fy": 31.0, "cx": 15.5, "cy": 11.5,
              "distortion_model": "brown_conrady", "coeffs": [0.1, -0.05, 0.001, 0.002, 0.0]}


def camera_info(ms_list, *, topic):
    out = []
    for _, ms in ms_list:
        i = INTRINSICS
        msg = M["sensor_msgs/msg/CameraInfo"](
            header=header(ms), height=H, width=W, distortion_model="plumb_bob", d=np.array(i["coeffs"]),
            k=np.array([i["fx"], 0, i["cx"], 0, i["fy"], i["cy"], 0, 0, 1.0]), r=np.eye(3).reshape(-1),
            p=np.zeros(12), binning_x=0, binning_y=0,
            roi=M["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
        out.append((topic, "sensor_msgs/msg/CameraInfo", ns(ms + 1), msg))
    return out


def write_bag(path: Path, storage: str, records) -> Path:
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, msgtype, recv, msg in sorted(records, key=lambda r: r[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], recv, TS.serialize_cdr(msg, msgtype))
    return path


# --------------------------------------------------------------------------- scenarios
# Grid: t0 = 40 ms (first frame), fps 10 -> t_m = 40 + 100 m ms.
# JointState k stamped 10 k + 3 ms -> at t_m the latest is k = 3 + 10 m.
# Float64MultiArray j received 20 j + 5 ms -> at t_m the latest is j = 1 + 5 m.

JS_MS = [(k, 10.0 * k + 3) for k in range(121)]  # 3 .. 1203 ms
CMD_MS = [(j, 20.0 * j + 5) for j in range(61)]  # 5 .. 1205 ms
FRAMES_MS = [(i, 40.0 + 100 * i + (0 if i == 0 else (i % 3) - 1)) for i in range(12)]  # jitter -1..1 ms
WRIST_MS = [(i, 40.0 + 50 * i) for i in range(23)]  # 20 Hz, 40 .. 1140 ms


def multiarray_bag(tmp_path: Path, storage: str, *, skip=(), name="bag", extra=()) -> Path:
    records = (joint_states(JS_MS) + multiarrays(CMD_MS)
               + images([f for f in FRAMES_MS if f[0] not in skip], topic="/front/image_raw", kind="rgb8")
               + images(WRIST_MS, topic="/wrist/image/compressed", kind="png") + list(extra))
    return write_bag(tmp_path / name, storage, records)


def multiarray_config(**kw) -> BagImportConfig:
    d = {"joint_names": list(JOINTS), "command_topic": "/cmd", "fps": 10.0,
         "cameras": {"front": "/front/image_raw", "wrist": {"topic": "/wrist/image/compressed"}},
         "task": "stack the cubes"}
    d.update(kw)
    return BagImportConfig.from_dict(d)


# --------------------------------------------------------------------------- import: arrays


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_multiarray_raw_and_png_bag_exact_arrays(tmp_path, storage):
    bag = multiarray_bag(tmp_path, storage, skip=(3, 7))
    (report,) = import_bags([bag], multiarray_config(), tmp_path / "store", progress=False)

    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 1 and report.episodes == [0]
    # grid 40 .. 1140 ms (the last front frame) = 12 steps; frames 3 and 7 skipped -> 2 dropped
    assert report.grid_steps == 12 and report.steps == 10 and report.dropped_steps == 2
    assert report.drop_reasons == {"front: no frame within max_skew_s=0.02 s": 2}
    kept = [m for m in range(12) if m not in (3, 7)]
    ep = store.episode(0)
    k = np.array([3 + 10 * m for m in kept], np.float32)
    np.testing.assert_array_equal(ep["joint_pos"], np.stack([k, 1000 + k, -k], axis=1))
    j = np.array([1 + 5 * m for m in kept], np.float32)
    np.testing.assert_array_equal(ep["action"], np.stack([j, 2 * j, 3 * j], axis=1))
    # stamp_s: the JointState times relative to the first step, on the 0.1 s grid
    np.testing.assert_allclose(ep["stamp_s"][:, 0], [0.1 * m for m in kept], atol=1e-6)
    for row, m in enumerate(kept):
        np.testing.assert_array_equal(ep["front"][row], frame_rgb(m))  # raw rgb8, frame m
        np.testing.assert_array_equal(ep["wrist"][row], frame_rgb(2 * m))  # png at 20 Hz, frame 2 m
    assert store.episode_meta[0].task == "stack the cubes"
    assert store.episode_meta[0].start_time.startswith("2023-11-14T22:13:20.040")
    assert store.schema.fps == 10.0 and store.schema.joint_names == list(JOINTS)
    assert store.schema.cameras["front"] == {"topic": "/front/image_raw"}
    assert validate_store(tmp_path / "store") == []
    # report: rates and fallbacks per topic (the commands have no header -> receive time)
    assert report.topics["/joint_states"]["messages"] == 121
    assert report.topics["/joint_states"]["rate_hz"] == pytest.approx(100.0)
    assert report.topics["/wrist/image/compressed"]["rate_hz"] == pytest.approx(20.0)
    assert report.topics["/cmd"]["receive_time_fallbacks"] == 61
    assert report.topics["/joint_states"]["receive_time_fallbacks"] == 0
    assert report.duration_s == pytest.approx(1.1)


def test_action_at_next_takes_the_command_issued_after_the_step(tmp_path):
    """action_at=next: the first command within one period after t_k (the recorder's convention), else the
    one in effect; in_effect: the latest command at or before t_k."""
    bag = multiarray_bag(tmp_path, "sqlite3")
    (report,) = import_bags([bag], multiarray_config(action_at="next"), tmp_path / "next", progress=False)
    assert report.steps == 12
    j = np.array([2 + 5 * m for m in range(12)], np.float32)  # first command after 40 + 100 m ms: 45 + 100 m
    np.testing.assert_array_equal(EpisodeStore.open(tmp_path / "next").episode(0)["action"][:, 0], j)

    # sparse commands (5, 605, 1205 ms): no command within a period after most steps -> the one in effect
    records = (joint_states(JS_MS) + multiarrays([(0, 5.0), (1, 605.0), (2, 1205.0)])
               + images(FRAMES_MS, topic="/front/image_raw", kind="rgb8"))
    sparse = write_bag(tmp_path / "sparse", "mcap", records)
    cams = {"front": "/front/image_raw"}
    import_bags([sparse], multiarray_config(action_at="next", cameras=cams), tmp_path / "sparse_next", progress=False)
    import_bags([sparse], multiarray_config(cameras=cams), tmp_path / "sparse_in_effect", progress=False)
    nxt = EpisodeStore.open(tmp_path / "sparse_next").episode(0)["action"][:, 0]
    eff = EpisodeStore.open(tmp_path / "sparse_in_effect").episode(0)["action"][:, 0]
    # steps at 40 + 100 m ms: command 1 (605 ms) is "next" for the step at 540 ms, in effect from 640 ms
    np.testing.assert_array_equal(nxt, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])
    np.testing.assert_array_equal(eff, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    with pytest.raises(BagImportError, match=r"action_at must be one of \['in_effect', 'next'\]"):
        multiarray_config(action_at="later")


@pytest.mark.parametrize(("storage", "suffix"), [("sqlite3", ".db3"), ("mcap", ".mcap")])
def test_bare_storage_file_and_receive_time_source(tmp_path, storage, suffix):
    """A bare .db3 / .mcap storage file is a bag; time_source=receive shifts which messages are picked."""
    bag = multiarray_bag(tmp_path, storage)
    (storage_file,) = bag.glob("*" + suffix)
    cfg = multiarray_config(time_source="receive", cameras={"front": "/front/image_raw"})
    (report,) = import_bags([storage_file], cfg, tmp_path / "store", progress=False)
    ep = EpisodeStore.open(tmp_path / "store").episode(0)
    # receive times: frames +15 ms (t0 = 55 ms), joint states +2 ms -> k = floor((t - 5) / 10) = 5 + 10 m
    assert report.steps == 12 and report.dropped_steps == 0
    k = np.array([5 + 10 * m for m in range(12)], np.float32)
    np.testing.assert_array_equal(ep["joint_pos"][:, 0], k)
    j = np.array([2 + 5 * m for m in range(12)], np.float32)  # floor((55 + 100 m - 5) / 20)
    np.testing.assert_array_equal(ep["action"][:, 0], j)
    assert report.topics["/cmd"]["receive_time_fallbacks"] == 0


def test_trajectory_bgr8_jpeg_camera_info_mcap(tmp_path):
    # trajectory n stamped 200 n + 10 ms (n = 3 has a zero stamp: its receive time, 610 ms, is used);
    # n = 4 is missing, so trajectory 3 runs out: its last point holds
    items = [(n, None if n == 3 else 200 * n + 10, 200 * n + 10) for n in range(7) if n != 4]
    frames = [(i, 40.0 + 100 * i) for i in range(12)]
    records = (joint_states(JS_MS) + trajectories(items)
               + images(frames, topic="/front/image_raw", kind="bgr8")
               + images(frames, topic="/wrist/compressed", kind="jpeg")
               + camera_info(frames, topic="/front/camera_info"))
    bag = write_bag(tmp_path / "traj", "mcap", records)
    cams = {"front": {"topic": "/front/image_raw", "info_topic": "/front/camera_info"}, "wrist": "/wrist/compressed"}
    cfg = BagImportConfig(JOINTS, "/arm/joint_trajectory", 10, cameras=cams)
    (report,) = import_bags([bag], cfg, tmp_path / "in_effect", progress=False)
    store = EpisodeStore.open(tmp_path / "in_effect")
    ep = store.episode(0)
    assert report.steps == 12 and report.dropped_steps == 0
    assert report.topics["/arm/joint_trajectory"]["receive_time_fallbacks"] == 1

    # rule: latest trajectory started at or before t; its first point with start + time_from_start > t
    expected_np = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 2), (5, 0), (5, 1)]
    for m, (n, p) in enumerate(expected_np):
        np.testing.assert_array_equal(ep["action"][m], traj_value(n, p), err_msg=f"step {m} at {40 + 100 * m} ms")
    for m in range(12):
        np.testing.assert_array_equal(ep["front"][m], frame_rgb(m))  # bgr8 -> RGB exactly
        assert np.abs(ep["wrist"][m].astype(int) - frame_rgb(m, smooth=True)).mean() < 3  # JPEG
    assert store.schema.cameras["front"]["intrinsics"] == INTRINSICS
    assert "intrinsics" not in store.schema.cameras["wrist"]

    first = BagImportConfig(JOINTS, "/arm/joint_trajectory", 10, cameras=cams, trajectory_point="first")
    import_bags([bag], first, tmp_path / "first", progress=False)
    actions = EpisodeStore.open(tmp_path / "first").episode(0)["action"]
    for m, (n, _) in enumerate(expected_np):
        np.testing.assert_array_equal(actions[m], traj_value(n, 0))


@pytest.mark.parametrize(("skew", "reason"), [
    (0.1, "front: frame reused (nearest frame already in the previous step)"),
    (0.05, "front: no frame within max_skew_s=0.05 s"),
])
def test_camera_slower_than_fps_never_duplicates_a_frame(tmp_path, skew, reason):
    # 5 Hz camera, 10 Hz grid: odd steps lie halfway between frames (tie -> earlier = already used)
    frames = [(i, 40.0 + 200 * i) for i in range(6)]
    bag = write_bag(tmp_path / "slow", "sqlite3",
                    joint_states(JS_MS) + multiarrays(CMD_MS) + images(frames, topic="/front/image_raw"))
    cfg = multiarray_config(cameras={"front": "/front/image_raw"}, max_skew_s=skew)
    (report,) = import_bags([bag], cfg, tmp_path / "store", progress=False)
    assert report.grid_steps == 11 and report.steps == 6 and report.dropped_steps == 5
    assert report.drop_reasons == {reason: 5}
    ep = EpisodeStore.open(tmp_path / "store").episode(0)
    for row in range(6):
        np.testing.assert_array_equal(ep["front"][row], frame_rgb(row))
    np.testing.assert_array_equal(ep["joint_pos"][:, 0], [3 + 20 * i for i in range(6)])


def test_split_on_gaps_and_min_episode_steps(tmp_path):
    js = [(k, ms) for k, ms in JS_MS if not 500 < ms < 800]
    frames = [(i, 40.0 + 100 * i) for i in range(12) if not 500 < 40 + 100 * i < 800]
    bag = write_bag(tmp_path / "gap", "mcap",
                    joint_states(js) + multiarrays(CMD_MS) + images(frames, topic="/front/image_raw"))
    cams = {"front": "/front/image_raw"}
    (report,) = import_bags([bag], multiarray_config(cameras=cams, split_gap_s=0.15), tmp_path / "a", progress=False)
    store = EpisodeStore.open(tmp_path / "a")
    assert report.episodes == [0, 1] and report.gap_steps == 3 and report.steps == 9
    first, second = store.episode(0), store.episode(1)
    np.testing.assert_array_equal(first["joint_pos"][:, 0], [3, 13, 23, 33, 43])
    np.testing.assert_array_equal(second["joint_pos"][:, 0], [83, 93, 103, 113])
    np.testing.assert_allclose(second["stamp_s"][:, 0], [0.0, 0.1, 0.2, 0.3], atol=1e-6)  # per episode
    np.testing.assert_array_equal(second["front"][0], frame_rgb(8))
    assert "part 2 of 2" in store.episode_meta[1].notes

    cfg = multiarray_config(cameras=cams, split_gap_s=0.15, min_episode_steps=5)
    (report,) = import_bags([bag], cfg, tmp_path / "b", progress=False)
    assert report.episodes == [0] and report.short_episodes == 1 and report.steps == 5
    # without splitting, the gap steps are dropped (no frame) and joint states are held
    (report,) = import_bags([bag], multiarray_config(cameras=cams), tmp_path / "c", progress=False)
    assert report.episodes == [0] and report.dropped_steps == 3 and report.gap_steps == 0


# --------------------------------------------------------------------------- store compatibility


class _Robot:
    name = "so101"
    joint_names = JOINTS


class _Camera:
    name = "front"

    def intrinsics(self):
        from data_collection.cameras.base import CameraIntrinsics

        return CameraIntrinsics.from_dict(INTRINSICS)


def _recorder_schema():
    from data_collection.recorder import Recorder, RecorderConfig

    recorder = Recorder(RecorderConfig(store_path=Path("unused"), fps=10.0, robot_model="so101"),
                        _Robot(), [_Camera()], teleop=None)
    return recorder.build_schema()


def test_schema_is_the_recorders_and_stores_merge(tmp_path):
    rec_schema = _recorder_schema()
    mine = recording_schema(JOINTS, {"front": (H, W)}, 10.0, cameras={"front": {"intrinsics": INTRINSICS}},
                            robot="so101")
    assert mine.to_dict() == rec_schema.to_dict()

    recorded = EpisodeStore.create(tmp_path / "recorded", rec_schema)
    rng = np.random.default_rng(0)
    recorded.append_episode({
        "front": rng.integers(0, 256, (5, H, W, 3), dtype=np.uint8),
        "joint_pos": rng.normal(size=(5, 3)).astype(np.float32),
        "stamp_s": np.arange(5, dtype=np.float32)[:, None] / 10,
        "action": rng.normal(size=(5, 3)).astype(np.float32),
    })
    recorded.close()
    bag = multiarray_bag(tmp_path, "mcap")
    # the recorder pairs an observation with the command sent after it: bags imported with the
    # command in effect (the default) do not mix with its stores; with action_at=next they do
    assert rec_schema.action_alignment == "next"
    in_effect = multiarray_config(cameras={"front": {"topic": "/front/image_raw"}})
    with pytest.raises(BagImportError, match=r"action alignment 'next' != expected 'in_effect'"):
        import_bags([bag], in_effect, tmp_path / "recorded", progress=False)
    import_bags([bag], in_effect, tmp_path / "in_effect", progress=False)
    assert EpisodeStore.open(tmp_path / "in_effect").schema.action_alignment == "in_effect"
    with pytest.raises(StoreError, match=r"action alignment 'in_effect' != expected 'next'"):
        merge([tmp_path / "recorded", tmp_path / "in_effect"], tmp_path / "mixed", progress=False)
    cfg = multiarray_config(cameras={"front": {"topic": "/front/image_raw"}}, action_at="next")
    # appended to the recorder's store, and imported on its own then merged
    (report,) = import_bags([bag], cfg, tmp_path / "recorded", progress=False)
    assert report.episodes == [1]
    import_bags([bag], cfg, tmp_path / "imported", progress=False)
    merged = merge([tmp_path / "recorded", tmp_path / "imported"], tmp_path / "merged", progress=False)
    assert merged.n_episodes == 3 and merged.n_steps == 5 + 12 + 12
    assert validate_store(tmp_path / "recorded") == [] and validate_store(tmp_path / "merged") == []
    np.testing.assert_array_equal(merged.episode(2)["front"], EpisodeStore.open(tmp_path / "imported").episode(0)["front"])


def test_append_refuses_incompatible_store(tmp_path):
    bag = multiarray_bag(tmp_path, "sqlite3")
    cfg = multiarray_config(cameras={"front": "/front/image_raw"})
    import_bags([bag], cfg, tmp_path / "store", progress=False)
    with pytest.raises(BagImportError, match=r"existing store does not match.*'wrist' is missing"):
        import_bags([bag], multiarray_config(), tmp_path / "store", progress=False)
    with pytest.raises(BagImportError, match=r"fps 10.0 != expected 20.0"):
        import_bags([bag], multiarray_config(cameras={"front": "/front/image_raw"}, fps=20), tmp_path / "store",
                    progress=False)
    reordered = multiarray_config(cameras={"front": "/front/image_raw"}, joint_names=["elbow", "shoulder", "wrist"])
    with pytest.raises(BagImportError, match=r"joint order"):
        import_bags([bag], reordered, tmp_path / "store", progress=False)
    assert EpisodeStore.open(tmp_path / "store").n_episodes == 1


def test_bags_with_different_image_sizes_write_nothing(tmp_path):
    a = multiarray_bag(tmp_path, "sqlite3", name="a")
    b = write_bag(tmp_path / "b", "sqlite3", joint_states(JS_MS) + multiarrays(CMD_MS)
                  + images(FRAMES_MS, topic="/front/image_raw", size=(H, W + 8)))
    with pytest.raises(BagImportError, match=r"'front' images are 40x24 but .* has 32x24"):
        import_bags([a, b], multiarray_config(cameras={"front": "/front/image_raw"}), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- errors


def test_errors_name_the_problem(tmp_path):
    bag = multiarray_bag(tmp_path, "mcap")
    out = tmp_path / "store"
    with pytest.raises(BagImportError, match=r"topic /nope \(commands\) is not in the bag; it has: .*/cmd "
                                             r"\(std_msgs/msg/Float64MultiArray\).*/joint_states"):
        import_bags([bag], multiarray_config(command_topic="/nope"), out, progress=False)
    with pytest.raises(BagImportError, match=r"topic /front/image_raw \(commands\) has type sensor_msgs/msg/Image, "
                                             r"expected trajectory_msgs/msg/JointTrajectory or std_msgs/msg/Float64"):
        import_bags([bag], multiarray_config(command_topic="/front/image_raw", cameras={}), out, progress=False)
    with pytest.raises(BagImportError, match=r"/joint_states message 0 .*missing joints \['gripper'\]"):
        import_bags([bag], multiarray_config(joint_names=[*JOINTS, "gripper"]), out, progress=False)
    with pytest.raises(BagImportError, match=r"no such bag"):
        import_bags([tmp_path / "missing"], multiarray_config(), out, progress=False)
    with pytest.raises(BagImportError, match=r"given twice"):
        import_bags([bag, bag], multiarray_config(), out, progress=False)
    (tmp_path / "notabag").mkdir()
    with pytest.raises(BagImportError, match=r"not a rosbag2 directory \(no metadata.yaml\)"):
        import_bags([tmp_path / "notabag"], multiarray_config(), out, progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: [this is not, a bag")
    with pytest.raises(BagImportError, match=r"broken: cannot read the bag"):
        import_bags([broken], multiarray_config(), out, progress=False)
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"\x00definitely not sqlite" * 50)
    with pytest.raises(BagImportError, match=r"garbage.db3: cannot read the bag"):
        import_bags([garbage], multiarray_config(), out, progress=False)
    assert not out.exists()  # nothing was written by any failed import


def test_corrupt_frame_discards_the_episode_being_written(tmp_path):
    # 100 Hz everything -> 120 steps; frame 100 is a truncated PNG, found after the first flush (64 steps)
    frames = images([(i, 10.0 * i + 3) for i in range(121)], topic="/cam", kind="png")
    frames[100][3].data = frames[100][3].data[:40]
    bag = write_bag(tmp_path / "corrupt", "mcap", joint_states(JS_MS) + multiarrays(CMD_MS) + frames)
    cfg = multiarray_config(cameras={"cam": "/cam"}, fps=100)
    with pytest.raises(BagImportError, match=r"/cam message 100 .*could not be decoded"):
        import_bags([bag], cfg, tmp_path / "store", progress=False)
    store = EpisodeStore.open(tmp_path / "store")
    assert store.n_episodes == 0 and store.partial is None and store.array("cam").shape[0] == 0
    assert validate_store(tmp_path / "store") == []


def test_nan_and_time_base_errors(tmp_path):
    nan_js = write_bag(tmp_path / "nan_js", "sqlite3", joint_states(JS_MS, nan_at=7) + multiarrays(CMD_MS))
    cfg = multiarray_config(cameras={})
    with pytest.raises(BagImportError, match=r"/joint_states message 7 .*JointState position is not finite: elbow=nan"):
        import_bags([nan_js], cfg, tmp_path / "s", progress=False)
    nan_cmd = write_bag(tmp_path / "nan_cmd", "mcap", joint_states(JS_MS) + multiarrays(CMD_MS, nan_at=4))
    with pytest.raises(BagImportError, match=r"/cmd message 4 .*not finite"):
        import_bags([nan_cmd], cfg, tmp_path / "s", progress=False)
    # joint states stamped with a simulated clock (seconds since start), commands on the wall clock
    sim = write_bag(tmp_path / "sim", "sqlite3", joint_states(JS_MS, stamp_fn=lambda ms: round(ms * MS) + 10**9)
                    + multiarrays(CMD_MS))
    with pytest.raises(BagImportError, match=r"never all have data at the same time .*joint states \[1.003"):
        import_bags([sim], cfg, tmp_path / "s", progress=False)
    with pytest.raises(BagImportError, match=r"/cmd message 0 .*has no header and receive_time_fallback is off"):
        import_bags([sim], multiarray_config(cameras={}, receive_time_fallback=False), tmp_path / "s", progress=False)
    (report,) = import_bags([sim], multiarray_config(cameras={}, time_source="receive"), tmp_path / "s",
                            progress=False)
    assert report.steps > 0


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(BagImportError, match=r"unknown settings \['fsp'\]"):
        BagImportConfig.from_dict({"joint_names": ["a"], "command_topic": "/c", "fps": 10, "fsp": 3})
    with pytest.raises(BagImportError, match=r"missing required settings \['command_topic'\]"):
        BagImportConfig.from_dict({"joint_names": ["a"], "fps": 10})
    with pytest.raises(BagImportError, match=r"duplicate joint names \['a'\]"):
        BagImportConfig(["a", "a"], "/c", 10)
    with pytest.raises(BagImportError, match=r"fps must be > 0"):
        BagImportConfig(["a"], "/c", 0)
    with pytest.raises(BagImportError, match=r"camera name 'action' cannot be a store key"):
        BagImportConfig(["a"], "/c", 10, cameras={"action": "/img"})
    with pytest.raises(BagImportError, match=r"topic /joint_states is used twice"):
        BagImportConfig(["a"], "/c", 10, cameras={"cam": "joint_states"})
    with pytest.raises(BagImportError, match=r"time_source must be one of"):
        BagImportConfig(["a"], "/c", 10, time_source="wall")
    with pytest.raises(BagImportError, match=r"split_gap_s must be a positive"):
        BagImportConfig(["a"], "/c", 10, split_gap_s=-1)
    with pytest.raises(BagImportError, match=r"typestore 'ros2_nope' is not a rosbags store"):
        BagImportConfig(["a"], "/c", 10, typestore="ros2_nope")
    path = tmp_path / "import.yaml"
    path.write_text("joint_names: [a, b]\ncommand_topic: cmd\nfps: 15\n"
                    "cameras:\n  top: {topic: /top/image, info_topic: /top/info}\n  side: side/image\n")
    cfg = BagImportConfig.from_yaml(path, task="t")
    assert cfg.command_topic == "/cmd" and cfg.fps == 15.0 and cfg.task == "t"
    assert cfg.cameras["top"].info_topic == "/top/info" and cfg.cameras["side"].topic == "/side/image"
    assert BagImportConfig.from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path, capsys):
    from df_policy.cli import main

    a = multiarray_bag(tmp_path, "sqlite3", name="a", skip=(5,))
    b = multiarray_bag(tmp_path, "mcap", name="b")
    cfg = tmp_path / "import.yaml"
    cfg.write_text("joint_names: [shoulder, elbow, wrist]\ncommand_topic: /cmd\nfps: 10\n"
                   "cameras:\n  front: /front/image_raw\ntask: from yaml\n")
    out = tmp_path / "store"
    assert main(["data", "import-bag", str(a), str(b), "--config", str(cfg), "--out", str(out),
                 "--task", "from flag", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "imported 2 bags: 2 episodes, 23 steps" in text
    assert "dropped: front: no frame within max_skew_s=0.02 s: 1" in text
    store = EpisodeStore.open(out)
    assert store.n_episodes == 2 and [m.task for m in store.episode_meta] == ["from flag"] * 2
    assert validate_store(out) == []

    # flags only, JSON report
    out2 = tmp_path / "store2"
    assert main(["data", "import-bag", str(b), "--out", str(out2), "--joints", "shoulder,elbow,wrist",
                 "--command-topic", "/cmd", "--fps", "10", "--camera", "front=/front/image_raw",
                 "--camera", "wrist=/wrist/image/compressed", "--json", "--no-progress"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["steps"] == 12 and report["episodes"] == [0]
    assert EpisodeStore.open(out2).schema.image_keys == ["front", "wrist"]

    assert main(["data", "import-bag", str(b), "--out", str(tmp_path / "x"), "--config", str(cfg),
                 "--command-topic", "/missing", "--no-progress"]) == 2
    assert "topic /missing (commands) is not in the bag" in capsys.readouterr().err
    assert main(["data", "import-bag", str(b), "--out", str(tmp_path / "x"), "--command-topic", "/cmd",
                 "--no-progress"]) == 2
    assert "missing required settings ['joint_names', 'fps']" in capsys.readouterr().err


# --------------------------------------------------------------------------- one converter for node and importer


def test_rclpy_deserialised_messages_convert_identically(tmp_path):
    pytest.importorskip("rclpy")
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    items = [(n, 200 * n + 10, 200 * n + 10) for n in range(3)]
    frames = [(i, 40.0 + 100 * i) for i in range(3)]
    bag = write_bag(tmp_path / "rcl", "sqlite3", joint_states(JS_MS[:20]) + trajectories(items)
                    + images(frames, topic="/raw", kind="bgr8") + images(frames, topic="/png", kind="png"))
    classes = {"/joint_states": JointState, "/arm/joint_trajectory": JointTrajectory, "/raw": Image,
               "/png": CompressedImage}
    joints, commands = JointStateConverter(JOINTS), CommandConverter(JOINTS)
    seen = dict.fromkeys(classes, 0)
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            ours = reader.deserialize(raw, conn.msgtype)
            theirs = deserialize_message(bytes(raw), classes[conn.topic])
            assert time_to_ns(ours.header.stamp) == time_to_ns(theirs.header.stamp)
            if conn.topic == "/joint_states":
                a, b = joints.read(ours), joints.read(theirs)
                np.testing.assert_array_equal(a.position, b.position)
                assert a.stamp_ns == b.stamp_ns
            elif conn.topic == "/arm/joint_trajectory":
                a, b = commands.from_trajectory(ours), commands.from_trajectory(theirs)
                np.testing.assert_array_equal(a.positions, b.positions)
                np.testing.assert_array_equal(a.times_s, b.times_s)
            elif conn.topic == "/raw":
                np.testing.assert_array_equal(image_to_rgb(ours), image_to_rgb(theirs))
                np.testing.assert_array_equal(image_to_rgb(theirs), frame_rgb(seen["/raw"]))
            else:
                np.testing.assert_array_equal(compressed_image_to_rgb(theirs), compressed_image_to_rgb(ours))
                np.testing.assert_array_equal(compressed_image_to_rgb(theirs), frame_rgb(seen["/png"]))
            seen[conn.topic] += 1
    assert seen == {"/joint_states": 20, "/arm/joint_trajectory": 3, "/raw": 3, "/png": 3}
