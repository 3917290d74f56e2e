"""Demonstration recorder: robot + cameras + teleop device -> episode store.

Loop (one iteration per period of ``1 / fps`` s)
------------------------------------------------
1. ``state = robot.read_state()`` (host monotonic stamp ``state.timestamp_s``);
2. the cameras' frames for the state's stamp, from a
   :class:`~data_collection.cameras.multi.MultiCamera`: by default one ``camera.read(...)``
   per camera on this thread; with ``camera_threads`` the frame nearest to the stamp among
   those each camera's reader thread buffered. Either way all cameras together wait at most
   ``frame_timeout_s`` and, when paced (``realtime``), never past the end of the period (half
   a period when the loop already runs late): a camera that stops delivering (unplugged, USB
   reset) costs the loop at most the rest of one period, not ``frame_timeout_s`` per camera,
   so the arm keeps being commanded at ``fps``;
3. **matching**: a step is *recorded* only if the robot state is **new** (``timestamp_s``
   later than the state of the last recorded step) and every camera gave a **new** frame
   (``frame_number`` greater than the last one used) whose ``timestamp_s`` is within
   ``max_skew_s`` of the state's stamp, with its depth if the camera records depth: the rule
   of :mod:`data_collection.cameras.matching`, with its per-camera counters in the summary
   (``camera_matching``).
   Otherwise the step is **dropped**: nothing is written for it (a frame or a joint state is
   never duplicated or reused, and a missing depth image is never written as zeros), and it
   is counted in ``dropped_steps`` (frames without their depth also in ``missing_depth``);
   gaps in a camera's ``frame_number`` are counted separately in ``dropped_frames``. So
   ``stamp_s`` strictly increases within an episode;
4. ``action = teleop.action(state)`` and ``sent = robot.send_command(action)``: the robot is
   commanded on every iteration, dropped or not, so control never stalls;
5. the recorded step stores the observation taken **before** the action and the action as
   the robot accepted it (``sent``, float32);
6. teleop events are handled (see :mod:`data_collection.teleop.base`).

Episodes: start, idle, stop
---------------------------
Without ``wait_for_start`` (the simulation, the Python default) the next episode begins right
after the previous one is saved or discarded. With ``wait_for_start`` (the default of rig
files) the recorder is **idle** before every episode: the loop keeps running at ``fps``
(state read, teleop action commanded, so the operator can drive the arm back and reset the
scene; camera frames are read and thrown away, so no stale frame is recorded later), nothing
is written, and the status line reads ``idle | press s to start episode N | q quits``.
``start`` or ``toggle`` (keyboard ``s`` / space) begins the episode: ``on_episode_start`` is
called, then ``teleop.reset()`` only if there is such a hook (it resets a simulated scene);
on hardware the device is not reset, so the commanded target continues without a jump.
While recording, ``toggle`` / ``save`` stop and save the episode, then the recorder is idle
again. ``quit`` while idle ends the session (nothing is in progress, nothing is left
behind); ``save`` / ``discard`` / ``success`` / ``failure`` while idle are ignored (counted in
``ignored_events``, logged as ``idle ignored=EVENT``) and never reach the next episode; events
that follow the start in the same poll belong to the new episode. ``start`` while recording is
ignored too (``episode=N ignored=start``).

Store schema
------------
* one ``image`` key per camera, named after the camera: ``uint8 (H, W, 3)`` RGB; the camera's
  intrinsics (``Camera.intrinsics().to_dict()``) are in ``schema.cameras[name]["intrinsics"]``;
* ``<camera>_depth`` for a camera whose ``config.enable_depth`` is set (rig ``depth: true``):
  ``depth uint16 (H, W)`` aligned to the colour image (same intrinsics), unit ``m`` with
  ``KeySpec.scale`` = metres per unit, taken from the camera's first frame with depth when
  the session starts (a frame whose ``depth_scale`` later differs stops the recording with a
  :class:`RecorderError`; appending to a store recorded at another scale is refused);
* ``joint_pos``: ``lowdim float32 (D,)`` rad / m, names = ``robot.joint_names``;
* ``stamp_s``: ``lowdim float32 (1,)``: the robot state's capture time **relative to the
  first recorded step of the episode**, seconds (store low-dim keys must be float32, so
  absolute monotonic stamps would lose precision; float32 keeps ~0.1 ms resolution over
  an hour-long episode). The episode's absolute start is ``EpisodeMeta.start_time`` (UTC);
* ``action``: ``action float32 (D,)``: joint position targets as sent, rad / m.

Command line (``dfp record`` / ``python -m data_collection.recorder``; :mod:`data_collection.record_cli`)
--------------------------------------------------------------------
``--sim arm`` records the simulated arm with its scripted expert (lockstep, unpaced);
``--config RIG.yaml`` builds robot, cameras, teleop device and :class:`RecorderConfig` from a
rig file (:mod:`data_collection.rig`; ``--list-configs`` / ``--print-config NAME`` show the
shipped examples, ``--check`` only validates). ``--episodes``, ``--task`` and ``--fps``
override the rig's ``recorder`` section. Progress lines (``episode=N started`` /
``flushed steps=K`` / ``committed steps=K success=..`` / ``discarded``; with ``wait_for_start``
also ``episode=N waiting``, ``idle ignored=EVENT``, ``episode=N ignored=start``) and finally the JSON
summary go to stdout, the status line and errors to stderr. Exit status: 0 done, 1 a device
failed while recording, 2 invalid arguments, rig file or store (the message names the file,
the key and the problem), 130 interrupted.

Durability: steps are flushed every ``flush_every`` steps, on a writer thread
(:mod:`data_collection.writer_thread`), never in the loop; a ``kill -9`` loses at most the
unflushed steps of the episode in progress, never earlier episodes (see
:mod:`df_policy.data.store`). A full disk stops the session and keeps the episode's flushed
steps; a camera without frames for ``camera_lost_s`` ends the episode and the session. The
interrupted episode is reported on the next open as ``store.partial``; keep or drop it with
``dfp data recover``.
"""

from __future__ import annotations

import errno
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from data_collection.bag_config import DEPTH_KEY_SUFFIX, recording_schema
from data_collection.bag_config import RECORDING_KEYS as RESERVED_KEYS
from data_collection.cameras.base import Camera, CameraError, EndOfStream, Frame
from data_collection.cameras.multi import MultiCamera
from data_collection.robots.base import Robot, RobotState
from data_collection.teleop.base import TeleopDevice
from data_collection.writer_thread import ThreadedEpisodeWriter
from df_policy.data.schema import EpisodeMeta, SchemaError, StoreSchema
from df_policy.data.store import EpisodeStore

__all__ = [
    "Recorder",
    "RecorderConfig",
    "RecorderError",
    "camera_changes",
]

DEPTH_PROBE_S = 5.0
"""Longest wait for a depth camera's first frame with depth (its scale goes into the schema)."""


def records_depth(camera: Camera) -> bool:
    """Whether the recorder stores ``camera``'s aligned depth: its ``config.enable_depth``."""
    return bool(getattr(getattr(camera, "config", None), "enable_depth", False))


class RecorderError(RuntimeError):
    """The recorder was misconfigured or cannot write; the message names the problem."""


INTRINSICS_RTOL = 0.02
"""Relative difference of fx, fy, cx or cy above which a camera's intrinsics count as changed."""


def camera_changes(recorded: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """How the cameras of this setup differ from those a store was recorded with: another
    ``serial``, or intrinsics (fx, fy, cx, cy) more than :data:`INTRINSICS_RTOL` apart. Only what
    both sides recorded is compared (a store without serials accepts any camera)."""
    changes = []
    for name, info in current.items():
        old = recorded.get(name) or {}
        if old.get("serial") and info.get("serial") and str(old["serial"]) != str(info["serial"]):
            changes.append(f"camera {name!r}: serial {old['serial']!r} recorded, {info['serial']!r} now")
        a, b = old.get("intrinsics"), info.get("intrinsics")
        if isinstance(a, dict) and isinstance(b, dict):
            moved = [f"{k} {a[k]:.1f} -> {b[k]:.1f}" for k in ("fx", "fy", "cx", "cy")
                     if k in a and k in b and abs(a[k] - b[k]) > INTRINSICS_RTOL * max(abs(a[k]), 1.0)]
            if moved:
                changes.append(f"camera {name!r}: intrinsics changed ({', '.join(moved)})")
    return changes


@dataclass(frozen=True)
class RecorderConfig:
    """Settings of :class:`Recorder`.

    Attributes:
        store_path: episode store directory; created if missing, appended to if it exists
            (its schema must match; a partial episode must be recovered/discarded first).
        fps: loop and recording rate, Hz.
        max_episode_s: an episode ends after ``ceil(max_episode_s * fps)`` loop iterations
            (counted in periods, not wall time, so paced and unpaced runs agree) and is then
            saved with ``success=None`` unless the teleop gave a verdict. An episode that
            reaches it with every step dropped stops the session (:class:`RecorderError` with
            the per-camera matching): the next one would record nothing either.
        episodes: stop after this many saved episodes (``None`` = until ``quit``).
        task: stored in every episode's ``EpisodeMeta.task``.
        realtime: pace the loop to ``fps`` with sleeps. ``False`` runs as fast as the robot
            allows (lockstep simulation).
        flush_every: steps buffered before writing them to disk (on the writer thread).
        write_queue_steps: steps the writer thread may lag behind the loop before ``add_step``
            waits (counted as ``writer_stalls`` in the summary; a step is never dropped). ``0``
            writes in the loop itself, without a thread (only to measure what the thread buys).
        frame_timeout_s: longest wait for the cameras' frames per step (all cameras together);
            when paced, the wait also ends with the period (see step 2 of the loop).
        max_skew_s: largest accepted ``|frame stamp - state stamp|``.
        robot_model: stored as ``schema.robot``.
        camera_lost_s: a camera that delivers no frame (read errors or timeouts) for this long,
            counted in loop periods like ``max_episode_s``, is lost (unplugged, crashed): the
            episode ends (``on_camera_lost``) and the session stops with a :class:`CameraError`
            (``dfp record`` exits 1).
        on_camera_lost: ``"save"``: keep the episode's steps, marked bad with a note naming the
            camera (``dfp data mark --good`` reverses it); ``"discard"``: drop the episode.
        allow_camera_change: append to a store recorded with another camera under the same name
            (another serial, or intrinsics more than :data:`INTRINSICS_RTOL` apart): the store's
            camera info is updated and the old one kept in its ``history`` (with the number of
            episodes recorded with it). ``False``: such a store is refused, naming the change.
        status: print a live one-line status (``\\r``) to ``status_stream``.
        camera_threads: read every camera on a thread of its own and match the frame nearest to
            each state among those it buffered (:class:`~data_collection.cameras.multi.MultiCamera`
            ``threaded``): reading and decoding leave the control thread, and a camera faster
            than ``fps`` gives the frame closest to the state instead of the next one queued.
            ``False`` (default): one read per camera per step on the loop's thread, no extra
            threads (see step 2 of the loop). Same matching either way; both work with the
            lock-step simulated arm.
        wait_for_start: idle before every episode until the teleop sends ``start`` /
            ``toggle`` (see "Episodes" in the module docstring). ``False`` (the default here,
            in :func:`~data_collection.sim.record.record_sim` and with the scripted teleop) starts the next episode at
            once; rig files default to ``True``.
    """

    store_path: Path
    fps: float = 10.0
    max_episode_s: float = 60.0
    episodes: int | None = None
    task: str = ""
    realtime: bool = True
    flush_every: int = 10
    frame_timeout_s: float = 0.5
    max_skew_s: float = 0.02
    robot_model: str = ""
    status: bool = True
    wait_for_start: bool = False
    allow_camera_change: bool = False
    camera_lost_s: float = 2.0
    on_camera_lost: str = "save"
    write_queue_steps: int = 256
    camera_threads: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "store_path", Path(self.store_path))
        for name in ("wait_for_start", "allow_camera_change", "camera_threads"):
            if not isinstance(getattr(self, name), bool):
                raise RecorderError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise RecorderError(f"fps must be a positive number, got {self.fps!r}")
        if not (math.isfinite(self.max_episode_s) and self.max_episode_s * self.fps >= 1):
            raise RecorderError(f"max_episode_s must cover at least one period (1/fps), got {self.max_episode_s!r}")
        if self.episodes is not None and self.episodes < 1:
            raise RecorderError(f"episodes must be >= 1 or None, got {self.episodes}")
        if self.flush_every < 1:
            raise RecorderError(f"flush_every must be >= 1, got {self.flush_every}")
        if self.write_queue_steps < 0:
            raise RecorderError(f"write_queue_steps must be >= 0, got {self.write_queue_steps}")
        if not self.frame_timeout_s > 0:
            raise RecorderError(f"frame_timeout_s must be > 0, got {self.frame_timeout_s}")
        if not self.max_skew_s >= 0:
            raise RecorderError(f"max_skew_s must be >= 0, got {self.max_skew_s}")
        if not (math.isfinite(self.camera_lost_s) and self.camera_lost_s > 0):
            raise RecorderError(f"camera_lost_s must be a positive number, got {self.camera_lost_s!r}")
        if self.on_camera_lost not in ("save", "discard"):
            raise RecorderError(f"on_camera_lost must be 'save' or 'discard', got {self.on_camera_lost!r}")

    @property
    def max_episode_steps(self) -> int:
        return math.ceil(self.max_episode_s * self.fps - 1e-9)

    @property
    def camera_lost_steps(self) -> int:
        return max(1, math.ceil(self.camera_lost_s * self.fps - 1e-9))


@dataclass
class _Counts:
    """Session counters (see :meth:`Recorder.run`)."""

    saved: int = 0
    discarded: int = 0
    steps: int = 0
    dropped_steps: int = 0
    dropped_frames: int = 0
    missing_depth: int = 0
    iterations: int = 0
    idle_iterations: int = 0
    ignored_events: int = 0
    writer_stalls: int = 0
    writer_stall_s: float = 0.0


@dataclass
class _EpisodeEnd:
    """How one episode's loop ended (:meth:`Recorder._record_episode`)."""

    end: str | None = None  # "save" / "discard" (a teleop event), "camera_lost"; None: time limit or quit
    verdict: bool | None = None  # the operator's success / failure mark
    quit: bool = False
    lost: list[str] = field(default_factory=list)  # cameras without a frame for camera_lost_s
    steps: int = 0  # loop iterations run
    dropped: int = 0  # iterations without a new frame or joint state


class Recorder:
    """Records demonstrations (see the module docstring).

    ``on_episode_start(i)`` is called before episode ``i`` (0-based, this session) begins,
    e.g. to reset a simulation; it may return a string stored in ``EpisodeMeta.notes``.
    ``log`` receives one machine-readable progress line per event (``episode=.. started``,
    ``flushed``, ``committed``, ``discarded``, ``waiting``, ``idle ignored=..``); :func:`main`
    prints them to stdout.
    """

    def __init__(
        self,
        config: RecorderConfig,
        robot: Robot,
        cameras: Sequence[Camera],
        teleop: TeleopDevice,
        on_episode_start: Callable[[int], str | None] | None = None,
        log: Callable[[str], None] | None = None,
        status_stream: TextIO | None = None,
    ) -> None:
        if not isinstance(config, RecorderConfig):
            raise RecorderError(f"expected a RecorderConfig, got {type(config).__name__}")
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise RecorderError(f"camera names must be unique, got {names}")
        clash = sorted(set(names) & set(RESERVED_KEYS))
        if clash:
            raise RecorderError(f"camera names {clash} clash with recorder keys {RESERVED_KEYS}")
        for c in cameras:
            dk = c.name + DEPTH_KEY_SUFFIX
            if records_depth(c) and dk in names:
                raise RecorderError(f"camera {c.name!r} records depth as key {dk!r}, which is another camera's name")
        self.config = config
        self.robot = robot
        self.cameras = list(cameras)
        self.teleop = teleop
        self.on_episode_start = on_episode_start
        self.log = log or (lambda _line: None)
        self.status_stream = status_stream if status_stream is not None else sys.stderr
        self.store: EpisodeStore | None = None
        self._frames: MultiCamera | None = None  # the cameras' frames, matched to the states (run)
        self._new_episode: set[str] = set()
        self._depth_scales: dict[str, float] = {}
        self._missing: dict[str, int] = {}  # consecutive loop iterations without a frame, per camera
        self._last_camera_error: dict[str, str] = {}
        self._skews: dict[str, list[float]] = {}  # |frame stamp - state stamp| of matched frames (s)
        self._last_status = 0.0
        self._n = _Counts()
        self._keep_partial = False  # a write failed: the episode's flushed steps stay for `dfp data recover`
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ store
    def build_schema(self) -> StoreSchema:
        """The store schema for this robot and these (started) cameras.

        A camera that records depth (:func:`records_depth`) is read until a frame with depth
        arrives (at most :data:`DEPTH_PROBE_S` s) to learn its depth scale; that frame is not
        recorded. The schema is :func:`data_collection.bag_config.recording_schema`'s.
        """
        sizes: dict[str, tuple[int, int]] = {}
        cameras: dict[str, dict[str, Any]] = {}
        for cam in self.cameras:
            intr = cam.intrinsics()
            sizes[cam.name] = (intr.height, intr.width)
            device_id = getattr(cam, "device_id", None)  # Camera subclasses have it; duck-typed cameras may not
            serial = device_id() if callable(device_id) else None
            cameras[cam.name] = {"intrinsics": intr.to_dict(), **({"serial": serial} if serial else {})}
        depth = {cam.name: self._depth_scale(cam) for cam in self.cameras if records_depth(cam)}
        limits = getattr(self.robot, "limits", None)  # RobotLimits of robots built on the Robot base
        try:
            return recording_schema(self.robot.joint_names, sizes, self.config.fps, cameras=cameras,
                                    robot=self.config.robot_model or self.robot.name, depth_scales=depth,
                                    joint_limits=limits.to_dict() if limits is not None else None)
        except SchemaError as e:
            raise RecorderError(str(e)) from None

    def _write_failed(self, exc: OSError, writer: ThreadedEpisodeWriter, index: int) -> RecorderError:
        """The error for a failed write (disk full, I/O error) during episode ``index``: the
        episode's flushed steps stay in the store as a partial episode (the writer is closed, not
        discarded, when the session ends), earlier ones are intact."""
        self._keep_partial = True
        path = self.config.store_path
        what = "the disk is full" if exc.errno == errno.ENOSPC else "writing to the store failed"
        return RecorderError(
            f"{path}: {what} while recording episode {index} ({exc}); the episode's {writer.written} flushed "
            f"steps are kept as a partial episode and the {index} earlier episodes are intact: free space, then "
            f"`dfp data recover {path}` keeps those steps (`--discard` drops them)")

    def _depth_scale(self, cam: Camera) -> float:
        """Metres per depth unit of ``cam``, from its first frame with depth (cached)."""
        if cam.name in self._depth_scales:
            return self._depth_scales[cam.name]
        deadline = time.monotonic() + max(DEPTH_PROBE_S, self.config.frame_timeout_s)
        last_error = "no frame"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = cam.read(remaining)
            except EndOfStream as e:
                raise RecorderError(f"camera {cam.name}: records depth, but the stream ended first: {e}") from None
            except (CameraError, TimeoutError) as e:
                last_error = str(e) or type(e).__name__
                continue
            if frame.depth is not None and frame.depth_scale is not None:
                self._depth_scales[cam.name] = float(frame.depth_scale)
                return self._depth_scales[cam.name]
            last_error = f"frame {frame.frame_number} had no depth"
        raise RecorderError(
            f"camera {cam.name}: depth is enabled (config.enable_depth / rig 'depth: true') but no frame with "
            f"depth arrived within {max(DEPTH_PROBE_S, self.config.frame_timeout_s):g} s ({last_error})"
        )

    def _open_store(self, schema: StoreSchema) -> EpisodeStore:
        path = self.config.store_path
        if not path.exists():
            return EpisodeStore.create(path, schema)
        store = EpisodeStore.open(path, "r+")
        errors = schema.compatibility_errors(store.schema)
        errors += [f"the store has key {k!r} that this setup does not record" for k in store.schema.keys
                   if k not in schema.keys]
        if store.schema.joint_names and list(store.schema.joint_names) != list(schema.joint_names):
            errors.append(f"joint order {list(store.schema.joint_names)} != this robot's {list(schema.joint_names)}")
        if store.partial is not None:
            errors.append(store.partial.describe())
        changed = camera_changes(store.schema.cameras, schema.cameras)
        if changed and not self.config.allow_camera_change:
            errors += [f"{c} (a swapped or replaced camera: re-calibrate, or allow_camera_change / "
                       "--allow-camera-change to record on)" for c in changed]
        if errors:
            store.close()
            raise RecorderError(f"{path}: existing store cannot be appended to: {'; '.join(errors)}")
        if changed:
            cameras = {}
            for name, info in schema.cameras.items():
                old = dict(store.schema.cameras.get(name, {}))
                history = old.pop("history", [])
                if any(c.startswith(f"camera {name!r}") for c in changed):
                    history = [*history, {**old, "episodes_before": store.n_episodes}]
                cameras[name] = {**info, **({"history": history} if history else {})}
            store.update_schema(cameras=cameras)
            self.log(f"camera change allowed, recorded in the store's camera history: {'; '.join(changed)}")
        return store

    # ------------------------------------------------------------------ loop
    def _frame_deadline(self, period_start: float) -> float:
        """Monotonic time by which this step's camera reads must end: ``frame_timeout_s`` from
        now, and (paced) no later than the end of the period that began at ``period_start``;
        a loop running late (the period nearly over) still gives the cameras half a period, so
        lateness alone never makes a healthy camera miss its frame."""
        now = time.monotonic()
        deadline = now + self.config.frame_timeout_s
        if self.config.realtime:
            period = 1.0 / self.config.fps
            deadline = min(deadline, max(period_start + period, now + 0.5 * period))
        return deadline

    def _read_frames(self, state: RobotState, deadline: float) -> tuple[dict[str, Frame] | None, int]:
        """Frames matched to ``state`` (or None if the step must be dropped), and frame gaps seen;
        waits end by ``deadline`` (monotonic s)."""
        assert self._frames is not None
        result = self._frames.match(state.timestamp_s, deadline - time.monotonic())  # at least MIN_WAIT_S
        frames: dict[str, Frame] = {}
        gaps = 0
        ok = True
        for cam in self.cameras:
            if result.fresh[cam.name]:
                self._missing[cam.name] = 0
            else:
                self._missing[cam.name] = self._missing.get(cam.name, 0) + 1
                self._last_camera_error[cam.name] = result.errors.get(cam.name, "no new frame")
            if cam.name not in self._new_episode:
                gaps += result.gaps[cam.name]
            elif result.fresh[cam.name]:
                self._new_episode.discard(cam.name)  # frames between episodes are not gaps
            # within max_skew_s of the state, never a frame used before (never a duplicate image)
            frame = result.frames[cam.name]
            if frame is None:
                ok = False
                continue
            self._skews.setdefault(cam.name, []).append(abs(frame.timestamp_s - state.timestamp_s))
            scale = self._depth_scales.get(cam.name)
            if scale is not None:
                if frame.depth is None or frame.depth_scale is None:
                    self._n.missing_depth += 1
                    ok = False  # never store a step without its depth (nor zeros in its place)
                    continue
                if not math.isclose(frame.depth_scale, scale, rel_tol=1e-6):
                    raise RecorderError(
                        f"camera {cam.name}: depth scale changed from {scale} m (stored in the schema) to "
                        f"{frame.depth_scale} m during the session"
                    )
            frames[cam.name] = frame
        return (frames if ok else None), gaps

    def _camera_matching(self) -> dict[str, dict[str, Any]]:
        """Per camera, the recording steps' frame matching this session
        (:class:`~data_collection.cameras.matching.MatchStats`: ``matched``, ``missing`` = no
        frame within ``max_skew_s`` of the state or none read by the deadline,
        ``stale_refused``, ``camera_dropped`` = the camera's own drop count) and
        ``skew_ms_p50`` / ``_p99`` / ``_max``: ``|frame stamp - state stamp|`` of the matched
        frames, ms (what ``max_skew_s`` has to cover; ``None`` before any match)."""
        if self._frames is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for cam in self.cameras:
            self._frames.stats[cam.name].camera_dropped = cam.stats.frames_dropped
            skews = np.asarray(self._skews.get(cam.name, []), dtype=np.float64) * 1e3
            out[cam.name] = {**self._frames.stats[cam.name].to_dict(),
                             **{f"skew_ms_{name}": (round(float(np.percentile(skews, q)), 3) if skews.size else None)
                                for name, q in (("p50", 50), ("p99", 99), ("max", 100))}}
        return out

    def _skip_frames(self, deadline: float) -> None:
        """Idle: no frame of this time may be recorded later (unthreaded reads: one frame per
        camera read and dropped); waits end by ``deadline``."""
        assert self._frames is not None
        self._frames.skip(deadline - time.monotonic())

    def _status(self, text: str) -> None:
        now = time.monotonic()
        if self.config.status and now - self._last_status >= 0.2:  # at most 5 updates per second
            self._last_status = now
            self.status_stream.write("\r" + text.ljust(79))
            self.status_stream.flush()

    def _pace(self, next_t: float) -> float:
        """Sleep until the next period after ``next_t`` (realtime only); returns the new ``next_t``."""
        if not self.config.realtime:
            return next_t
        period = 1.0 / self.config.fps
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif -delay > period:  # fell behind: do not burst
            next_t = time.monotonic()
        return next_t

    def _idle(self, index: int) -> tuple[bool, list[str]]:
        """Idle until the teleop sends ``start`` / ``toggle`` (returns ``True`` and the events that
        followed it in the same batch) or ``quit`` (``False``). Commands the robot every period."""
        self.log(f"episode={index} waiting")
        next_t = time.monotonic()
        while True:
            state = self.robot.read_state()
            self._skip_frames(self._frame_deadline(next_t))
            self.robot.send_command(self.teleop.action(state))
            self._n.iterations += 1
            self._n.idle_iterations += 1
            events = self.teleop.events()
            for i, ev in enumerate(events):
                if ev in ("start", "toggle"):
                    return True, events[i + 1:]
                if ev == "quit":
                    return False, []
                self._n.ignored_events += 1  # no episode in progress: save/discard/verdicts mean nothing
                self.log(f"idle ignored={ev}")
            self._status(f"idle | press s to start episode {index} | q quits")
            next_t = self._pace(next_t)

    def _record_episode(self, index: int, writer: ThreadedEpisodeWriter, carried: list[str],
                        periods: list[float]) -> _EpisodeEnd:
        """Steps 1-6 of the loop (module docstring) until the episode ends: an event, the time limit,
        a lost camera, quit.

        Appends the loop periods to ``periods``; ``carried`` are events that arrived while idle."""
        cfg, n = self.config, self._n
        end = _EpisodeEnd()
        t0_stamp: float | None = None
        last_stamp = -math.inf  # state stamp of the last recorded step
        t_ep = time.monotonic()
        next_t = t_ep
        prev_start = None
        for it in range(cfg.max_episode_steps):
            start = time.monotonic()
            if prev_start is not None:
                periods.append(start - prev_start)
            prev_start = start
            end.steps = it + 1
            state = self.robot.read_state()
            frames, gaps = self._read_frames(state, self._frame_deadline(next_t))
            n.dropped_frames += gaps
            end.lost = sorted(c for c, k in self._missing.items() if k >= cfg.camera_lost_steps)
            if end.lost:
                end.end = "camera_lost"
                break
            action = self.teleop.action(state)
            sent = self.robot.send_command(action)
            n.iterations += 1
            if frames is None or state.timestamp_s <= last_stamp:  # no new frame, or no new state
                end.dropped += 1
                n.dropped_steps += 1
            else:
                if t0_stamp is None:
                    t0_stamp = state.timestamp_s
                last_stamp = state.timestamp_s
                step = {name: f.color for name, f in frames.items()}
                for name, f in frames.items():
                    if name in self._depth_scales:
                        step[name + DEPTH_KEY_SUFFIX] = f.depth
                step["joint_pos"] = np.asarray(state.positions, np.float32)
                step["stamp_s"] = np.array([state.timestamp_s - t0_stamp], np.float32)
                step["action"] = np.asarray(sent, np.float32)
                try:
                    writer.add_step(step)
                except OSError as e:  # disk full, I/O error: keep what was flushed
                    raise self._write_failed(e, writer, index) from None
            events, carried = carried + self.teleop.events(), []
            for ev in events:
                if ev == "success":
                    end.verdict = True
                elif ev == "failure":
                    end.verdict = False
                elif ev in ("save", "toggle", "discard") and end.end is None:
                    end.end = "discard" if ev == "discard" else "save"
                elif ev == "quit":
                    end.quit = True
                elif ev == "start":  # already recording
                    n.ignored_events += 1
                    self.log(f"episode={index} ignored=start")
            if end.end is not None or end.quit:
                break
            elapsed = time.monotonic() - t_ep
            rate = (it + 1) / elapsed if elapsed > 0 else float("inf")
            self._status(
                f"episode {index} | {(it + 1) / cfg.fps:6.1f} s | {writer.length} steps | "
                f"{rate:6.1f} Hz | dropped {end.dropped}"
            )
            next_t = self._pace(next_t)
        return end

    def _finish_episode(self, index: int, writer: ThreadedEpisodeWriter, ep: _EpisodeEnd, notes: str | None,
                        quit_requested: bool) -> tuple[str, str | None]:
        """Commit or discard the episode as it ended; returns ``(outcome, lost_error)`` (the lost
        camera's message, for the session to stop with, else ``None``)."""
        cfg, n = self.config, self._n
        end = ep.end
        if end is None:
            end = "discard" if quit_requested else "save"  # time limit: keep it
        lost_error = None
        if end == "camera_lost":
            why = "; ".join(f"{c}: {self._last_camera_error.get(c, 'no frame')}" for c in ep.lost)
            lost_error = (f"camera {', '.join(ep.lost)} delivered no frame for {cfg.camera_lost_s:g} s "
                          f"(unplugged or crashed?) during episode {index}: {why}")
            end = cfg.on_camera_lost
            notes = f"{notes + '; ' if notes else ''}{lost_error}"
        if end == "save" and writer.length > 0:
            meta = EpisodeMeta(task=cfg.task, notes=notes or "", success=ep.verdict, bad=lost_error is not None)
            length = writer.length
            try:
                writer.commit(meta)
            except OSError as e:
                raise self._write_failed(e, writer, index) from None
            n.saved += 1
            n.steps += length
            n.writer_stalls += writer.stalls
            n.writer_stall_s += writer.stall_s
            self.log(f"episode={index} committed steps={length} success={ep.verdict}")
            return f"saved as episode {index} ({length} steps), marked bad", lost_error
        writer.discard()
        n.discarded += 1
        self.log(f"episode={index} discarded")
        return "discarded", lost_error

    def run(self) -> dict[str, Any]:
        """Record until ``config.episodes`` episodes are saved or the teleop sends ``quit``.

        Connects / starts the robot, cameras and teleop if needed (and stops what it
        started). Returns (and keeps in :attr:`summary`) ``episodes_saved``,
        ``episodes_discarded``, ``steps`` (in saved episodes), ``dropped_steps``,
        ``dropped_frames``, ``missing_depth`` (matched frames dropped for lack of their
        depth), ``camera_matching`` (per camera: frames ``matched`` to a state, ``missing``,
        ``stale_refused``, ``camera_dropped``, ``skew_ms_p50`` / ``_p99`` / ``_max``),
        ``idle_s`` (time spent idle, ``wait_for_start``), ``ignored_events`` (events that meant
        nothing when they came, e.g. ``save`` while idle), ``writer_stalls`` /
        ``writer_stall_s`` (the loop waited for the writer thread), ``loop_period_ms_p50`` /
        ``_p99`` / ``_max`` (loop periods while recording), ``mean_loop_hz`` (all iterations,
        idle ones included), ``duration_s``, ``quit``, ``store``.
        """
        cfg = self.config
        started: list[Callable[[], None]] = []
        if not self.robot.is_connected:
            self.robot.connect()
            started.append(self.robot.disconnect)
        for cam in self.cameras:
            if not cam.is_running:
                cam.start()
                started.append(cam.stop)
        if not self.teleop.is_started:
            self.teleop.start()
            started.append(self.teleop.stop)
        n = self._n = _Counts()
        quit_requested = False
        idle_s = 0.0
        t_start = time.monotonic()
        writer: ThreadedEpisodeWriter | None = None
        periods: list[float] = []  # loop periods while recording (s), for the summary
        self._keep_partial = False
        try:
            self.store = self._open_store(self.build_schema())
            self._frames = MultiCamera(self.cameras, tolerance_s=cfg.max_skew_s, threaded=cfg.camera_threads)
            self._skews = {}
            self._frames.start()  # the cameras run already: only the readers start (camera_threads)
            episode = 0
            while not quit_requested and (cfg.episodes is None or n.saved < cfg.episodes):
                carried: list[str] = []
                if cfg.wait_for_start:
                    t_idle = time.monotonic()
                    go, carried = self._idle(self.store.n_episodes)
                    idle_s += time.monotonic() - t_idle
                    if not go:
                        quit_requested = True
                        break
                notes = self.on_episode_start(episode) if self.on_episode_start else None
                if self.on_episode_start is not None or not cfg.wait_for_start:
                    self.teleop.reset()  # new scene: forget the old targets (see the module docstring)
                self._new_episode = {c.name for c in self.cameras}
                self._missing = {}
                index = self.store.n_episodes
                episode_writer = self.store.begin_episode()
                episode_writer.flush_every = cfg.flush_every
                writer = ThreadedEpisodeWriter(  # flushes happen off this (the control) thread
                    episode_writer, max_queue=cfg.write_queue_steps,
                    on_flush=lambda written, i=index: self.log(f"episode={i} flushed steps={written}"))
                self.log(f"episode={index} started")
                ep = self._record_episode(index, writer, carried, periods)
                quit_requested = quit_requested or ep.quit
                if ep.end is None and not quit_requested and writer.length == 0:
                    # every step of a whole episode dropped: the next one would go the same way
                    writer.discard()
                    writer = None
                    raise RecorderError(
                        f"episode {index}: nothing recorded in {ep.steps} steps, every one dropped "
                        f"({ep.dropped} dropped; per camera: {self._camera_matching()}): no frame came within "
                        f"max_skew_s={cfg.max_skew_s:g} s of a new joint state; check the cameras' fps and "
                        "max_skew_s, frame_timeout_s, the joint state rate (camera_threads picks the frame "
                        "nearest the state where a camera queues frames)")
                outcome, lost_error = self._finish_episode(index, writer, ep, notes, quit_requested)
                writer = None
                episode += 1
                if lost_error is not None:
                    raise CameraError(f"{lost_error}; the episode was {outcome}; the session stops")
        finally:
            if writer is not None:  # exception mid-episode: leave no partial behind (unless a write failed)
                try:
                    writer.close() if self._keep_partial else writer.discard()
                except Exception as cleanup_error:  # noqa: BLE001 - the original error is what matters
                    print(f"recorder: could not discard the unfinished episode: {cleanup_error}", file=sys.stderr)
            if self._frames is not None:
                self._frames.stop()  # the readers; the cameras are stopped below if this run started them
            if self.store is not None:
                self.store.close()  # the writer lock goes with the session
            for stop in reversed(started):
                stop()
            if cfg.status:
                self.status_stream.write("\n")
                self.status_stream.flush()
        duration = time.monotonic() - t_start
        self.summary = {
            "store": str(cfg.store_path),
            "episodes_saved": n.saved,
            "episodes_discarded": n.discarded,
            "steps": n.steps,
            "dropped_steps": n.dropped_steps,
            "dropped_frames": n.dropped_frames,
            "missing_depth": n.missing_depth,
            "camera_matching": self._camera_matching(),
            "idle_s": idle_s,
            "ignored_events": n.ignored_events,
            "writer_stalls": n.writer_stalls,
            "writer_stall_s": n.writer_stall_s,
            **{f"loop_period_ms_{name}": (float(np.percentile(periods, q)) * 1e3 if periods else None)
               for name, q in (("p50", 50), ("p99", 99), ("max", 100))},
            "mean_loop_hz": n.iterations / duration if duration > 0 else 0.0,
            "duration_s": duration,
            "quit": quit_requested,
        }
        return self.summary


if __name__ == "__main__":  # python -m data_collection.recorder: the command line, data_collection.record_cli
    from data_collection.record_cli import main

    sys.exit(main())
