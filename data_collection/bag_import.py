"""Import demonstrations recorded as ROS 2 bags into an episode store.

Bags (rosbag2 directories with ``metadata.yaml``, or a single sqlite3 ``.db3`` / ``.mcap``
storage file) are read with the pure-Python ``rosbags`` package (``pip install
'df-policy[bags]'``; no ROS installation needed). Messages are deserialised to rosbags' message
dataclasses and converted by the converters of :mod:`df_policy.ros.messages`, the same code the
policy node runs, so imported, recorded and served data live in the same spaces.

Contract
--------
Streams (set in :class:`BagImportConfig`): ``sensor_msgs/JointState`` (joints picked by name
into ``joint_names`` order, extra joints ignored), one command topic
(``trajectory_msgs/JointTrajectory`` or ``std_msgs/Float64MultiArray``: joint position
targets), and per camera ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (JPEG / PNG)
plus, optionally, ``sensor_msgs/CameraInfo`` for the intrinsics.

**Time base.** Every message gets one time in integer nanoseconds. ``time_source="header"``
(default): its ``header.stamp``; a message without a header (``Float64MultiArray``) or with a
zero stamp gets the bag's receive time instead (counted per topic in the report as
``receive_time_fallbacks``; ``receive_time_fallback=False`` makes that an error).
``time_source="receive"``: the bag's receive time for every message. A ``JointTrajectory``'s
time is when it takes effect: its stamp (``0`` = "start on receipt" = the receive time).
Each stream is sorted by that time.

**Resampling.** The output is a fixed-rate grid ``t_k = t_0 + k / fps`` (nanoseconds, rounded)
from ``t_0`` = the first time every required stream (joint states, commands, every camera) has
data, to the last time every stream still has data (the earliest last message). Per grid step:

* ``joint_pos``: the latest JointState at or before ``t_k``;
* ``stamp_s``: that JointState's time minus the one of the episode's first step (seconds), as
  the recorder stores the robot state's capture time;
* ``action``: the command in effect at ``t_k`` = the latest command at or before ``t_k``
  (``action_at="in_effect"``, default), or with ``action_at="next"`` the first command issued
  in ``(t_k, t_k + 1/fps]`` (else the one in effect), the recorder's convention of "observation,
  then the command it led to". The choice is stored as ``schema.action_alignment``
  (``in_effect`` / ``next``): a store is never appended to or merged with one of the other
  alignment (the recorder's stores are ``next``; import with ``--action-at next`` to mix them).
  ``Float64MultiArray``: its vector (first row of a ``(T, D)`` layout, as
  ``CommandConverter.to_action``). ``JointTrajectory`` with ``trajectory_point="in_effect"``
  (default): the point the controller is moving to at ``t_k``, i.e. the first point with
  ``start + time_from_start > t_k`` (the last point once all are due). With
  ``trajectory_point="first"``: always its first point (``CommandConverter.to_action``, what
  the recorder stores);
* one image per camera: the frame whose time is nearest ``t_k`` (ties: the earlier frame)
  if it is within ``max_skew_s``.

**Dropped steps.** A step is dropped (nothing written, counted in the report with the reason)
when a camera has no frame within ``max_skew_s`` of ``t_k`` (``no frame``) or its nearest frame
was already used by the previous kept step (``frame reused``): a frame is never duplicated into
two steps. A dropped step counts once in ``dropped_steps``; ``drop_reasons`` counts every camera
that failed, so it may sum to more.

**Episodes.** One bag = one episode. With ``split_gap_s``, the bag is split wherever the joint
state stream or a camera stream has no message for longer than ``split_gap_s``: grid steps inside
such a gap are skipped (``gap_steps``), and the steps after it start a new episode. Episodes
shorter than ``min_episode_steps`` are skipped (``short_episodes``). Commands are held across
gaps (a command stays in effect until the next one).

**Store.** The schema is the recorder's (:func:`recording_schema`, identical to
``data_collection.recorder.Recorder.build_schema``): one ``uint8 (H, W, 3)`` RGB image key per
camera named after the camera, ``joint_pos``, ``stamp_s``, ``action``; ``fps`` of the grid;
colour only: depth topics are not imported (the recorder's ``<camera>_depth`` keys never appear
in an imported store, and a store with depth keys cannot be appended to by an import);
``cameras[name]`` holds the ``intrinsics`` from the first CameraInfo message (when configured)
and the image ``topic``. A new store is created, or an existing one appended to when its schema
is compatible (keys, shapes, fps, joint order). Every bag is read and checked before anything is
written; each episode is then written through :class:`~df_policy.data.store.EpisodeWriter` and
committed atomically. ``EpisodeMeta.start_time`` is the first step's time as UTC (ROS time; it
reads as 1970 under simulated time).

Errors (:class:`BagImportError`, a ``ValueError``) name the bag and the problem: unreadable bag,
missing topic (with the topics the bag has), wrong message type, joint missing from a message,
NaN in a message, image size changing, streams that never overlap in time.

CLI: ``dfp data import-bag BAG [BAG ...] --config import.yaml --out STORE`` (see
``docs/BAG_IMPORT.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data_collection.bag_config import (
    ACTION_AT,
    CAMERA_INFO_TYPE,
    COMMAND_TYPES,
    DEPTH_KEY_SUFFIX,
    IMAGE_TYPES,
    JOINT_STATE_TYPE,
    RECORDING_KEYS,
    TIME_SOURCES,
    TRAJECTORY_POINTS,
    BagImportConfig,
    BagImportError,
    CameraTopics,
    _load_yaml,
    depth_key,
    recording_schema,
)
from df_policy.data.schema import EpisodeMeta, StoreSchema
from df_policy.data.store import EpisodeStore, EpisodeWriter
from df_policy.ros.messages import (
    NS_PER_S,
    CommandConverter,
    JointStateConverter,
    MessageConversionError,
    camera_info_to_intrinsics,
    compressed_image_to_rgb,
    image_to_rgb,
    time_to_ns,
)

__all__ = [
    "DEPTH_KEY_SUFFIX",
    "RECORDING_KEYS",
    "BagImportConfig",
    "BagImportError",
    "BagReport",
    "CameraTopics",
    "add_import_bag_arguments",
    "config_from_args",
    "depth_key",
    "import_bags",
    "recording_schema",
    "run_import_bag_command",
]


# =========================================================================== report


@dataclass
class BagReport:
    """What importing one bag did.

    Attributes:
        bag: the bag's path.
        episodes: store indices of the episodes written from it.
        steps: steps written.
        grid_steps: steps of the fps grid over the span every stream covers.
        dropped_steps: grid steps dropped because a camera had no usable frame.
        drop_reasons: ``"<camera>: <reason>"`` -> count (a step may have several reasons).
        gap_steps: grid steps inside a gap (``split_gap_s``), not written.
        short_episodes: episodes skipped for having fewer than ``min_episode_steps`` steps.
        duration_s: span of the grid (first to last step), seconds.
        bag_duration_s: span of the bag's receive times, seconds.
        topics: topic -> ``type``, ``messages``, ``rate_hz``, ``max_gap_s``,
            ``receive_time_fallbacks`` (in the configured time base).
        warnings: anything unusual that did not stop the import.
    """

    bag: str
    episodes: list[int] = field(default_factory=list)
    steps: int = 0
    grid_steps: int = 0
    dropped_steps: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    gap_steps: int = 0
    short_episodes: int = 0
    duration_s: float = 0.0
    bag_duration_s: float = 0.0
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"{self.bag}: episodes {self.episodes}, {self.steps} steps over {self.duration_s:.2f} s "
            f"(bag {self.bag_duration_s:.2f} s), grid {self.grid_steps}, dropped {self.dropped_steps}"
            + (f", in gaps {self.gap_steps}" if self.gap_steps else "")
            + (f", short episodes skipped {self.short_episodes}" if self.short_episodes else "")
        ]
        for reason, n in self.drop_reasons.items():
            lines.append(f"  dropped: {reason}: {n}")
        for topic, s in self.topics.items():
            fb = f", receive-time fallbacks {s['receive_time_fallbacks']}" if s["receive_time_fallbacks"] else ""
            lines.append(
                f"  {topic:<32} {s['type']:<36} {s['messages']:>6} msgs {s['rate_hz']:8.2f} Hz "
                f"max gap {s['max_gap_s']:.3f} s{fb}"
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


# =========================================================================== reading


def _require_rosbags() -> None:
    try:
        import rosbags.highlevel
        import rosbags.typesys  # noqa: F401
    except ImportError as e:
        raise BagImportError(
            f"reading ROS 2 bags needs the 'rosbags' package ({e}); install it with pip install 'df-policy[bags]'"
        ) from e


def _open_reader(path: Path, cfg: BagImportConfig) -> Any:
    _require_rosbags()
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not path.exists():
        raise BagImportError(f"{path}: no such bag")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        inner = sorted(p.parent.name for p in path.glob("*/metadata.yaml"))
        hint = f"; it contains the bags {inner}" if inner else ""
        raise BagImportError(f"{path}: not a rosbag2 directory (no metadata.yaml){hint}")
    if path.is_file() and path.suffix not in (".db3", ".mcap"):
        raise BagImportError(f"{path}: not a bag (expected a directory, a .db3 or a .mcap file)")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores[cfg.typestore.upper()]))
        reader.open()
    except Exception as e:  # rosbags raises several error types (and sqlite/mcap ones) for bad files
        raise BagImportError(f"{path}: cannot read the bag: {type(e).__name__}: {e}") from e
    return reader


def _iter_messages(reader: Any, connections: list, path: Path) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages`` with storage errors turned into :class:`BagImportError`."""
    it = reader.messages(connections=connections)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as e:
            raise BagImportError(f"{path}: cannot read messages: {type(e).__name__}: {e}") from e
        yield item


def _deserialize(reader: Any, raw: bytes, conn: Any, path: Path, index: int) -> Any:
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as e:
        raise BagImportError(
            f"{path}: {conn.topic} message {index} ({conn.msgtype}) cannot be deserialised: {e}"
        ) from e


@dataclass
class _Stream:
    """One topic's messages in time order (times in the configured time base)."""

    topic: str
    msgtype: str
    times: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    fallbacks: int = 0

    def sorted(self) -> tuple[np.ndarray, list[Any]]:
        t = np.asarray(self.times, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        return t[order], [self.values[i] for i in order]

    def stats(self) -> dict[str, Any]:
        t = np.sort(np.asarray(self.times, dtype=np.int64))
        span = (t[-1] - t[0]) / NS_PER_S if len(t) > 1 else 0.0
        return {
            "type": self.msgtype,
            "messages": len(t),
            "rate_hz": (len(t) - 1) / span if span > 0 else 0.0,
            "max_gap_s": float(np.diff(t).max()) / NS_PER_S if len(t) > 1 else 0.0,
            "receive_time_fallbacks": self.fallbacks,
        }


@dataclass
class _BagScan:
    """Everything of a bag except the image pixels (first pass)."""

    path: Path
    connections: list
    topics: dict[str, dict[str, Any]]
    js_t: np.ndarray
    js_pos: np.ndarray
    cmd_t: np.ndarray
    cmd: list[tuple[np.ndarray, np.ndarray]]  # (positions (T, D), time_from_start ns (T,))
    frames: dict[str, tuple[np.ndarray, np.ndarray]]  # camera -> (times, ordinals), by time
    image_sizes: dict[str, tuple[int, int]]
    intrinsics: dict[str, dict[str, Any]]
    bag_duration_s: float
    warnings: list[str]


def _check_topics(reader: Any, path: Path, cfg: BagImportConfig) -> list:
    topics = reader.topics
    have = ", ".join(f"{t} ({i.msgtype})" for t, i in sorted(topics.items())) or "none"
    expected = {cfg.joint_state_topic: (JOINT_STATE_TYPE,), cfg.command_topic: COMMAND_TYPES}
    for cam in cfg.cameras.values():
        expected[cam.topic] = IMAGE_TYPES
        if cam.info_topic:
            expected[cam.info_topic] = (CAMERA_INFO_TYPE,)
    roles = cfg.required_topics
    connections = []
    for topic, types in expected.items():
        info = topics.get(topic)
        if info is None:
            raise BagImportError(f"{path}: topic {topic} ({roles[topic]}) is not in the bag; it has: {have}")
        if info.msgtype is None:
            found = sorted({c.msgtype for c in info.connections})
            raise BagImportError(f"{path}: topic {topic} carries several message types {found}")
        if info.msgtype not in types:
            raise BagImportError(
                f"{path}: topic {topic} ({roles[topic]}) has type {info.msgtype}, expected "
                + " or ".join(types)
            )
        if info.msgcount == 0:
            raise BagImportError(f"{path}: topic {topic} ({roles[topic]}) has no messages")
        connections.extend(info.connections)
    return connections


def _message_time(msg: Any, recv_ns: int, cfg: BagImportConfig) -> tuple[int, bool]:
    """``(time_ns, fell_back_to_receive_time)``."""
    if cfg.time_source == "receive":
        return recv_ns, False
    header = getattr(msg, "header", None)
    if header is not None:
        ns = time_to_ns(header.stamp)
        if ns != 0:
            return ns, False
    if not cfg.receive_time_fallback:
        why = "has a zero header stamp" if header is not None else "has no header"
        raise MessageConversionError(
            f"{why} and receive_time_fallback is off (use time_source: receive or receive_time_fallback: true)"
        )
    return recv_ns, True


def _scan_bag(path: Path, cfg: BagImportConfig, progress: bool) -> _BagScan:
    """First pass: check topics and types, convert everything but the image pixels."""
    reader = _open_reader(path, cfg)
    try:
        return _scan_open_bag(reader, path, cfg, progress)
    finally:
        reader.close()


def _scan_open_bag(reader: Any, path: Path, cfg: BagImportConfig, progress: bool) -> _BagScan:
    connections = _check_topics(reader, path, cfg)
    joints = JointStateConverter(cfg.joint_names, check_finite=("position",))
    commands = CommandConverter(cfg.joint_names)
    cam_of_topic = {c.topic: n for n, c in cfg.cameras.items()}
    cam_of_info = {c.info_topic: n for n, c in cfg.cameras.items() if c.info_topic}
    streams = {c.topic: _Stream(c.topic, c.msgtype) for c in connections}
    counts = dict.fromkeys(streams, 0)
    image_sizes: dict[str, tuple[int, int]] = {}
    intrinsics: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    total = sum(c.msgcount for c in connections)
    bar = tqdm(total=total, desc=f"read {path.name}", unit="msg", disable=not progress, leave=False)
    for conn, recv_ns, raw in _iter_messages(reader, connections, path):
        bar.update()
        topic = conn.topic
        index = counts[topic]
        counts[topic] += 1
        msg = _deserialize(reader, raw, conn, path, index)
        stream = streams[topic]
        try:
            t, fell_back = _message_time(msg, recv_ns, cfg)
            if topic == cfg.joint_state_topic:
                value: Any = joints.position(msg)
            elif topic == cfg.command_topic:
                value = _command_value(commands, msg, conn.msgtype, cfg)
            elif topic in cam_of_topic:
                cam = cam_of_topic[topic]
                value = index  # ordinal: the second pass decodes only the frames used
                if conn.msgtype == "sensor_msgs/msg/Image":
                    size = (int(msg.height), int(msg.width))
                elif cam not in image_sizes:
                    size = compressed_image_to_rgb(msg).shape[:2]  # decode one frame for its size
                else:
                    size = image_sizes[cam]  # checked when decoded in the second pass
                if image_sizes.setdefault(cam, size) != size:
                    raise MessageConversionError(
                        f"image size changed from {image_sizes[cam][1]}x{image_sizes[cam][0]} to {size[1]}x{size[0]}"
                    )
            else:
                cam = cam_of_info[topic]
                value = camera_info_to_intrinsics(msg)
                first = intrinsics.setdefault(cam, value)
                if value != first and not any(w.startswith(f"camera {cam!r}") for w in warnings):
                    warnings.append(f"camera {cam!r}: CameraInfo changes during the bag; the first one is stored")
        except MessageConversionError as e:
            raise BagImportError(
                f"{path}: {topic} message {index} (receive time {recv_ns / NS_PER_S:.6f} s): {e}"
            ) from e
        stream.times.append(t)
        stream.values.append(value)
        stream.fallbacks += fell_back
    bar.close()

    for cam, intr in intrinsics.items():
        h, w = image_sizes[cam]
        if (intr["height"], intr["width"]) != (h, w):
            raise BagImportError(
                f"{path}: camera {cam!r}: CameraInfo on {cfg.cameras[cam].info_topic} is for "
                f"{intr['width']}x{intr['height']} images but {cfg.cameras[cam].topic} has {w}x{h}"
            )
    js_t, js_pos = streams[cfg.joint_state_topic].sorted()
    cmd_t, cmd = streams[cfg.command_topic].sorted()
    frames = {}
    for name, cam in cfg.cameras.items():
        t, ordinals = streams[cam.topic].sorted()
        frames[name] = (t, np.asarray(ordinals, dtype=np.int64))
    return _BagScan(
        path=path,
        connections=connections,
        topics={t: s.stats() for t, s in streams.items()},
        js_t=js_t,
        js_pos=np.stack(js_pos),
        cmd_t=cmd_t,
        cmd=cmd,
        frames=frames,
        image_sizes=image_sizes,
        intrinsics=intrinsics,
        bag_duration_s=reader.duration / NS_PER_S,
        warnings=warnings,
    )


def _command_value(commands: CommandConverter, msg: Any, msgtype: str, cfg: BagImportConfig) -> tuple:
    """``(positions (T, D), time_from_start ns (T,))``; one row with time 0 = a constant target."""
    if msgtype == "trajectory_msgs/msg/JointTrajectory" and cfg.trajectory_point == "in_effect":
        traj = commands.from_trajectory(msg)
        return traj.positions, np.rint(traj.times_s * NS_PER_S).astype(np.int64)
    return commands.to_action(msg)[None], np.zeros(1, np.int64)


# =========================================================================== resampling


@dataclass
class _Plan:
    """The steps of one bag: grid time, sources and episode of every written step."""

    t: np.ndarray  # int64 (S,) grid times
    js_index: np.ndarray  # intp (S,)
    actions: np.ndarray  # float32 (S, D)
    frames: dict[str, np.ndarray]  # camera -> frame ordinal per step (S,)
    episode: np.ndarray  # int (S,) episode number within the bag
    grid_steps: int
    dropped_steps: int
    drop_reasons: dict[str, int]
    gap_steps: int
    short_episodes: int


def _span(name: str, t: np.ndarray) -> str:
    return f"{name} [{t[0] / NS_PER_S:.3f}, {t[-1] / NS_PER_S:.3f}] s"


def _plan_bag(scan: _BagScan, cfg: BagImportConfig) -> _Plan:
    streams = {"joint states": scan.js_t, "commands": scan.cmd_t}
    streams.update({f"camera {n!r}": t for n, (t, _) in scan.frames.items()})
    t0 = max(int(t[0]) for t in streams.values())
    t_end = min(int(t[-1]) for t in streams.values())
    if t_end < t0:
        spans = ", ".join(_span(n, t) for n, t in streams.items())
        raise BagImportError(
            f"{scan.path}: the streams never all have data at the same time ({spans}, time_source "
            f"{cfg.time_source!r}); check the time base (header stamps from another clock?)"
        )
    n_grid = int((t_end - t0) * cfg.fps // NS_PER_S) + 2  # one extra against float rounding, cut below
    grid = t0 + np.rint(np.arange(n_grid) * (NS_PER_S / cfg.fps)).astype(np.int64)
    grid = grid[grid <= t_end]
    n_grid = len(grid)

    # gaps: (a, b) intervals without joint states or frames; steps strictly inside are skipped
    gaps: list[tuple[int, int]] = []
    if cfg.split_gap_s is not None:
        limit = round(cfg.split_gap_s * NS_PER_S)
        for t in [scan.js_t] + [t for t, _ in scan.frames.values()]:
            (where,) = np.nonzero(np.diff(t) > limit)
            gaps.extend((int(t[i]), int(t[i + 1])) for i in where)
    in_gap = np.zeros(n_grid, bool)
    episode = np.zeros(n_grid, np.int64)
    for a, b in gaps:
        in_gap |= (grid > a) & (grid < b)
        episode += grid >= b

    # joint states and commands: latest at or before t
    js_index = np.searchsorted(scan.js_t, grid, side="right") - 1
    cmd_index = np.searchsorted(scan.cmd_t, grid, side="right") - 1
    if cfg.action_at == "next":  # the first command after t_k within one grid period, else the one in effect
        nxt = np.minimum(cmd_index + 1, len(scan.cmd_t) - 1)
        issued = (nxt > cmd_index) & (scan.cmd_t[nxt] <= grid + round(NS_PER_S / cfg.fps))
        cmd_index = np.where(issued, nxt, cmd_index)
    d = len(cfg.joint_names)
    actions = np.empty((n_grid, d), np.float32)
    for k in range(n_grid):
        positions, tfs = scan.cmd[cmd_index[k]]
        elapsed = max(int(grid[k] - scan.cmd_t[cmd_index[k]]), 0)
        point = min(int(np.searchsorted(tfs, elapsed, side="right")), len(tfs) - 1)
        actions[k] = positions[point]

    # images: nearest frame within max_skew, never the frame of the previous kept step
    skew = round(cfg.max_skew_s * NS_PER_S)
    nearest: dict[str, np.ndarray] = {}
    ok: dict[str, np.ndarray] = {}
    for name, (ft, _) in scan.frames.items():
        j = np.searchsorted(ft, grid, side="left")  # ft[j-1] < t <= ft[j]
        before = np.clip(j - 1, 0, len(ft) - 1)
        after = np.clip(j, 0, len(ft) - 1)
        pick = np.where(np.abs(ft[before] - grid) <= np.abs(ft[after] - grid), before, after)
        nearest[name] = pick
        ok[name] = np.abs(ft[pick] - grid) <= skew
    keep = ~in_gap
    reasons: dict[str, int] = {}
    last_used = dict.fromkeys(scan.frames, -1)
    dropped = 0
    for k in np.flatnonzero(keep):
        failed = []
        for name in scan.frames:
            if not ok[name][k]:
                failed.append(f"{name}: no frame within max_skew_s={cfg.max_skew_s:g} s")
            elif nearest[name][k] == last_used[name]:
                failed.append(f"{name}: frame reused (nearest frame already in the previous step)")
        if failed:
            keep[k] = False
            dropped += 1
            for r in failed:
                reasons[r] = reasons.get(r, 0) + 1
        else:
            for name in scan.frames:
                last_used[name] = nearest[name][k]

    # episodes shorter than min_episode_steps are skipped
    short = 0
    for ep in np.unique(episode[keep]):
        members = keep & (episode == ep)
        if members.sum() < cfg.min_episode_steps:
            keep &= ~members
            short += 1
    episode = episode[keep]
    _, episode = np.unique(episode, return_inverse=True)  # number the remaining episodes 0, 1, ...
    return _Plan(
        t=grid[keep],
        js_index=js_index[keep],
        actions=actions[keep],
        frames={n: scan.frames[n][1][nearest[n][keep]] for n in scan.frames},
        episode=episode.reshape(-1),
        grid_steps=n_grid,
        dropped_steps=dropped,
        drop_reasons=reasons,
        gap_steps=int(in_gap.sum()),
        short_episodes=short,
    )


# =========================================================================== writing


def _decode(msg: Any, msgtype: str) -> np.ndarray:
    return image_to_rgb(msg) if msgtype == "sensor_msgs/msg/Image" else compressed_image_to_rgb(msg)


def _write_bag(
    scan: _BagScan, plan: _Plan, store: EpisodeStore, cfg: BagImportConfig, progress: bool
) -> list[int]:
    """Second pass: decode the frames the plan uses and write the episodes. Returns their indices."""
    n = len(plan.t)
    cams = list(cfg.cameras)
    wanted = {cfg.cameras[c].topic: (c, dict(zip(plan.frames[c].tolist(), range(n)))) for c in cams}
    sizes = {c: (*scan.image_sizes[c], 3) for c in cams}
    n_episodes = len(np.unique(plan.episode))
    written: list[int] = []
    writer: EpisodeWriter | None = None
    state: dict[str, Any] = {"episode": None}  # episode number, its first JointState time and grid time
    bar = tqdm(total=n, desc=f"write {scan.path.name}", unit="step", disable=not progress, leave=False)

    def commit() -> None:
        nonlocal writer
        if writer is None:
            return
        part = f" (part {state['episode'] + 1} of {n_episodes})" if n_episodes > 1 else ""
        meta = EpisodeMeta(
            task=cfg.task,
            notes=f"imported from ROS 2 bag {scan.path.name}{part}",
            start_time=_dt.datetime.fromtimestamp(state["start"] / NS_PER_S, _dt.timezone.utc).isoformat(),
        )
        written.append(writer.commit(meta))
        writer = None

    def emit(k: int, images: dict[str, np.ndarray]) -> None:
        nonlocal writer
        if plan.episode[k] != state["episode"]:
            commit()
            writer = store.begin_episode()
            state.update(episode=plan.episode[k], t0=int(scan.js_t[plan.js_index[k]]), start=int(plan.t[k]))
        step = dict(images)
        step["joint_pos"] = scan.js_pos[plan.js_index[k]]
        step["stamp_s"] = np.array([(scan.js_t[plan.js_index[k]] - state["t0"]) / NS_PER_S], np.float32)
        step["action"] = plan.actions[k]
        writer.add_step(step)
        bar.update()

    try:
        if not cams:
            for k in range(n):
                emit(k, {})
        else:
            reader = _open_reader(scan.path, cfg)
            try:
                pending: dict[int, dict[str, np.ndarray]] = {}
                counts: dict[str, int] = {}
                k_next = 0
                connections = _check_topics(reader, scan.path, cfg)  # this reader's, same order as the first pass
                for conn, recv_ns, raw in _iter_messages(reader, connections, scan.path):
                    if k_next == n:
                        break
                    if conn.topic not in wanted:
                        continue
                    cam, steps_of = wanted[conn.topic]
                    ordinal = counts.get(conn.topic, 0)
                    counts[conn.topic] = ordinal + 1
                    k = steps_of.get(ordinal)
                    if k is None:
                        continue
                    msg = _deserialize(reader, raw, conn, scan.path, ordinal)
                    try:
                        img = _decode(msg, conn.msgtype)
                    except MessageConversionError as e:
                        raise BagImportError(
                            f"{scan.path}: {conn.topic} message {ordinal} (receive time {recv_ns / NS_PER_S:.6f} s): {e}"
                        ) from e
                    if img.shape != sizes[cam]:
                        raise BagImportError(
                            f"{scan.path}: {conn.topic} message {ordinal}: image is {img.shape[1]}x{img.shape[0]}, "
                            f"the camera's images are {sizes[cam][1]}x{sizes[cam][0]}"
                        )
                    pending.setdefault(k, {})[cam] = img
                    while k_next < n and len(pending.get(k_next, ())) == len(cams):
                        emit(k_next, pending.pop(k_next))
                        k_next += 1
            finally:
                reader.close()
            if k_next != n:  # pragma: no cover - the first pass saw these frames
                raise BagImportError(f"{scan.path}: {n - k_next} frames seen in the first pass were not found again")
        commit()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        bar.close()
    return written


def _open_store(out: Path, schema: StoreSchema) -> tuple[EpisodeStore, list[str]]:
    """Create the store, or open it for appending after checking it can take these episodes."""
    if not out.exists():
        return EpisodeStore.create(out, schema), []
    store = EpisodeStore.open(out, "r+")
    try:
        return store, _check_appendable(store, out, schema)
    except BaseException:
        store.close()
        raise


def _check_appendable(store: EpisodeStore, out: Path, schema: StoreSchema) -> list[str]:
    """Warnings about appending to ``store``; raises :class:`BagImportError` when it cannot take them."""
    theirs = store.schema
    errors = schema.compatibility_errors(theirs)
    errors += [f"the store has key {k!r} that the import does not write" for k in theirs.keys if k not in schema.keys]
    if theirs.joint_names and list(theirs.joint_names) != list(schema.joint_names):
        errors.append(f"joint order {list(theirs.joint_names)} != imported {list(schema.joint_names)}")
    if errors:
        raise BagImportError(f"{out}: existing store does not match this import: {'; '.join(errors)}")
    if store.partial is not None:
        raise BagImportError(f"{out}: {store.partial.describe()}")
    warnings = []
    for cam, info in schema.cameras.items():
        mine, stored = info.get("intrinsics"), theirs.cameras.get(cam, {}).get("intrinsics")
        if mine and stored and mine != stored:
            warnings.append(f"camera {cam!r}: intrinsics differ from the ones the store has (kept the store's)")
    return warnings


def import_bags(
    bags: Sequence[str | Path],
    config: BagImportConfig,
    out: str | Path,
    *,
    progress: bool = True,
) -> list[BagReport]:
    """Import ``bags`` into the episode store ``out`` (created, or appended to); one report per bag.

    Every bag is read and checked first (topics, types, joints, NaN, time overlap, image sizes
    agreeing between bags and with the store); nothing is written unless all pass. Then each bag's
    episodes are written and committed one at a time (a failure while decoding images discards
    only the episode being written).
    """
    if not isinstance(config, BagImportConfig):
        raise BagImportError(f"expected a BagImportConfig, got {type(config).__name__}")
    if not bags:
        raise BagImportError("no bags to import")
    paths = [Path(b) for b in bags]
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise BagImportError(f"bag {p} is given twice (also as {seen[key]})")
        seen[key] = p
    out = Path(out)
    scans = [_scan_bag(p, config, progress) for p in paths]
    plans = []
    for scan in scans:
        plan = _plan_bag(scan, config)
        if len(plan.t) == 0:
            why = ", ".join(f"{r}: {n}" for r, n in plan.drop_reasons.items()) or "all steps in gaps or too short"
            raise BagImportError(f"{scan.path}: no step to import out of {plan.grid_steps} grid steps ({why})")
        plans.append(plan)

    first = scans[0]
    for scan in scans[1:]:
        for cam, size in scan.image_sizes.items():
            if size != first.image_sizes[cam]:
                raise BagImportError(
                    f"{scan.path}: camera {cam!r} images are {size[1]}x{size[0]} but {first.path} has "
                    f"{first.image_sizes[cam][1]}x{first.image_sizes[cam][0]} (one store has one size per camera)"
                )
    camera_info: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for name, cam in config.cameras.items():
        camera_info[name] = {"topic": cam.topic}
        intr = [s.intrinsics[name] for s in scans if name in s.intrinsics]
        if intr:
            camera_info[name]["intrinsics"] = intr[0]
            if any(i != intr[0] for i in intr[1:]):
                warnings.append(f"camera {name!r}: intrinsics differ between bags; the first bag's are stored")
    schema = recording_schema(config.joint_names, first.image_sizes, config.fps, cameras=camera_info,
                              robot=config.robot_model, action_alignment=config.action_at)
    store, store_warnings = _open_store(out, schema)
    warnings += store_warnings

    reports = []
    with store:  # the writer lock is released however the import ends
        for scan, plan in zip(scans, plans):
            episodes = _write_bag(scan, plan, store, config, progress)
            reports.append(BagReport(
                bag=str(scan.path),
                episodes=episodes,
                steps=len(plan.t),
                grid_steps=plan.grid_steps,
                dropped_steps=plan.dropped_steps,
                drop_reasons=plan.drop_reasons,
                gap_steps=plan.gap_steps,
                short_episodes=plan.short_episodes,
                duration_s=float(plan.t[-1] - plan.t[0]) / NS_PER_S,
                bag_duration_s=scan.bag_duration_s,
                topics=scan.topics,
                warnings=scan.warnings + warnings,
            ))
    return reports


# =========================================================================== CLI


def _key_value(text: str, flag: str) -> tuple[str, str]:
    name, sep, topic = text.partition("=")
    if not sep or not name or not topic:
        raise BagImportError(f"{flag} expects NAME=TOPIC, got {text!r}")
    return name, topic


def add_import_bag_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``dfp data import-bag``; every setting flag overrides the ``--config`` file."""
    p.add_argument("bags", nargs="+", metavar="BAG",
                   help="rosbag2 directory (with metadata.yaml), .db3 or .mcap file; one episode each")
    p.add_argument("--out", required=True, help="episode store directory (created or appended to)")
    p.add_argument("--config", default=None, help="YAML file with the import settings (docs/BAG_IMPORT.md)")
    p.add_argument("--joints", default=None, help="joint names in store order, comma-separated")
    p.add_argument("--joint-state-topic", default=None, help="sensor_msgs/JointState topic (default /joint_states)")
    p.add_argument("--command-topic", default=None, help="JointTrajectory or Float64MultiArray command topic")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC",
                   help="camera image topic (Image or CompressedImage); repeat for several cameras")
    p.add_argument("--camera-info", action="append", default=[], metavar="NAME=TOPIC",
                   help="CameraInfo topic of camera NAME (intrinsics)")
    p.add_argument("--fps", type=float, default=None, help="rate of the output grid, Hz")
    p.add_argument("--max-skew", type=float, default=None, help="largest image-to-step time difference, s")
    p.add_argument("--time-source", choices=TIME_SOURCES, default=None, help="header stamps or bag receive times")
    p.add_argument("--no-receive-fallback", dest="receive_time_fallback", action="store_const", const=False,
                   default=None, help="error on messages without a header stamp instead of using receive time")
    p.add_argument("--trajectory-point", choices=TRAJECTORY_POINTS, default=None,
                   help="JointTrajectory action: the point in effect at each step, or always the first point")
    p.add_argument("--action-at", choices=ACTION_AT, default=None,
                   help="step k's action: the command in effect at its time, or the next one issued within a period")
    p.add_argument("--split-gap", type=float, default=None, help="split episodes at stream gaps longer than this, s")
    p.add_argument("--min-steps", type=int, default=None, help="skip episodes with fewer steps")
    p.add_argument("--task", default=None, help="task description stored with every episode")
    p.add_argument("--robot-model", default=None, help="robot model stored in a new store's schema")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> BagImportConfig:
    """The ``--config`` file (if any) with the setting flags applied on top."""
    d: dict[str, Any] = _load_yaml(args.config) if args.config else {}
    flags = {
        "joint_names": None if args.joints is None else [j.strip() for j in args.joints.split(",") if j.strip()],
        "joint_state_topic": args.joint_state_topic,
        "command_topic": args.command_topic,
        "fps": args.fps,
        "max_skew_s": args.max_skew,
        "time_source": args.time_source,
        "receive_time_fallback": args.receive_time_fallback,
        "trajectory_point": args.trajectory_point,
        "action_at": args.action_at,
        "split_gap_s": args.split_gap,
        "min_episode_steps": args.min_steps,
        "task": args.task,
        "robot_model": args.robot_model,
    }
    d.update({k: v for k, v in flags.items() if v is not None})
    cameras = d.get("cameras") or {}
    if not isinstance(cameras, Mapping):
        raise BagImportError(f"cameras must map camera names to topics, got {cameras!r}")
    cameras = {str(n): CameraTopics.from_value(str(n), v) for n, v in cameras.items()}
    for text in args.camera:
        name, topic = _key_value(text, "--camera")
        old = cameras.get(name)
        cameras[name] = CameraTopics(topic, old.info_topic if old else None)
    for text in args.camera_info:
        name, topic = _key_value(text, "--camera-info")
        if name not in cameras:
            raise BagImportError(f"--camera-info {text}: no camera {name!r} (give --camera {name}=TOPIC)")
        cameras[name] = CameraTopics(cameras[name].topic, topic)
    d["cameras"] = cameras
    return BagImportConfig.from_dict(d, source=args.config or "command line")


def run_import_bag_command(args: argparse.Namespace) -> int:
    """``dfp data import-bag``: import, print one report per bag (or JSON with ``--json``)."""
    config = config_from_args(args)
    reports = import_bags(args.bags, config, args.out, progress=not args.no_progress)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for r in reports:
            print(r.format())
        steps = sum(r.steps for r in reports)
        episodes = sum(len(r.episodes) for r in reports)
        bags = f"{len(reports)} bag" + ("s" if len(reports) != 1 else "")
        print(f"imported {bags}: {episodes} episodes, {steps} steps into {args.out}")
    sys.stdout.flush()
    return 0
