"""Several cameras read concurrently, frames matched to requested times.

Each camera gets a reader thread that keeps its newest ``buffer_size`` frames. A request for
time ``t`` (host monotonic seconds, the clock of ``Frame.timestamp_s``) returns, per camera,
the frame nearest to ``t`` within ``tolerance_s`` — or ``None`` with the reason counted, by the
rule the recorder uses too (:mod:`data_collection.cameras.matching`):

* ``missing``: no frame within tolerance (the camera dropped it, or it did not arrive before
  the request's timeout);
* ``stale_refused``: the nearest frame was already returned for an earlier request; a frame
  is never handed out twice (a recorder would otherwise silently store a duplicate image).

Frames the cameras themselves dropped are in ``MatchStats.camera_dropped`` (from
``Camera.stats``). Matching waits until every camera has a frame at or after ``t`` (then no
later frame can be nearer), the camera ended, or ``timeout_s`` passed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Camera, CameraConfigError, CameraError, CameraTimeoutError, EndOfStream, Frame
from .matching import FrameMatcher, MatchStats, match_nearest

__all__ = ["MatchResult", "MatchStats", "MultiCamera", "match_nearest"]


@dataclass(frozen=True)
class MatchResult:
    """Frames for one requested time ``t_request_s``; ``frames[name]`` is ``None`` when unmatched."""

    t_request_s: float
    frames: dict[str, Frame | None]
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(f is not None for f in self.frames.values())

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.frames.items() if f is None)

    def skew_s(self) -> dict[str, float]:
        """``frame.timestamp_s - t_request_s`` for each matched camera, seconds."""
        return {n: f.timestamp_s - self.t_request_s for n, f in self.frames.items() if f is not None}


class _Reader:
    def __init__(self, cam: Camera, buffer_size: int, cond: threading.Condition) -> None:
        self.cam = cam
        self.buf: deque[Frame] = deque(maxlen=buffer_size)
        self.cond = cond
        self.ended = False
        self.error: BaseException | None = None
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"multicam-{cam.name}", daemon=True)

    def run(self) -> None:
        while not self.stop_evt.is_set():
            try:
                f = self.cam.read(timeout_s=0.2)
            except CameraTimeoutError:
                continue
            except EndOfStream:
                with self.cond:
                    self.ended = True
                    self.cond.notify_all()
                return
            except BaseException as e:  # surfaced to the caller of match()
                with self.cond:
                    self.error, self.ended = e, True
                    self.cond.notify_all()
                return
            with self.cond:
                self.buf.append(f)
                self.cond.notify_all()

    def newest_ts(self) -> float:
        return self.buf[-1].timestamp_s if self.buf else -math.inf


class MultiCamera:
    """Runs several :class:`Camera` objects and matches their frames by time.

    Args:
        cameras: cameras with distinct names (started/stopped by this object).
        tolerance_s: max ``|frame.timestamp_s - t|`` for a match; default half the shortest
            frame period (so at most one frame per camera can match a time).
        buffer_size: frames kept per camera (covers ``buffer_size / fps`` seconds of history).
    """

    def __init__(self, cameras: Sequence[Camera], *, tolerance_s: float | None = None, buffer_size: int = 16) -> None:
        names = [c.name for c in cameras]
        if not cameras:
            raise CameraConfigError("MultiCamera needs at least one camera")
        if len(set(names)) != len(names):
            raise CameraConfigError(f"camera names must be distinct, got {names}")
        if tolerance_s is None:
            tolerance_s = 0.5 / max(c.config.fps for c in cameras)
        if not tolerance_s > 0:
            raise CameraConfigError(f"tolerance_s must be > 0, got {tolerance_s}")
        if buffer_size < 1:
            raise CameraConfigError(f"buffer_size must be >= 1, got {buffer_size}")
        self.cameras = list(cameras)
        self.tolerance_s = float(tolerance_s)
        self.buffer_size = int(buffer_size)
        self._cond = threading.Condition()
        self._readers: dict[str, _Reader] = {}
        self._matcher = FrameMatcher(names, self.tolerance_s)

    def start(self) -> None:
        """Start every camera (stopping those already started if one fails) and the readers."""
        started: list[Camera] = []
        try:
            for cam in self.cameras:
                cam.start()
                started.append(cam)
        except BaseException:
            for cam in started:
                cam.stop()
            raise
        self._matcher = FrameMatcher([c.name for c in self.cameras], self.tolerance_s)
        self._readers = {c.name: _Reader(c, self.buffer_size, self._cond) for c in self.cameras}
        for r in self._readers.values():
            r.thread.start()

    def stop(self) -> None:
        for r in self._readers.values():
            r.stop_evt.set()
        for r in self._readers.values():
            r.thread.join(timeout=2.0)
        for cam in self.cameras:
            cam.stop()

    @property
    def stats(self) -> dict[str, MatchStats]:
        """Per-camera matching counters since :meth:`start`."""
        return self._matcher.stats

    def __enter__(self) -> MultiCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def match(self, t_s: float, timeout_s: float = 1.0) -> MatchResult:
        """Frames nearest to ``t_s`` (host monotonic s). Waits at most ``timeout_s`` for frames
        at/after ``t_s``; raises the error of a camera that failed (not for one that ended)."""
        if not self._readers:
            raise CameraError("MultiCamera.match() before start()")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for r in self._readers.values():
                    if r.error is not None:
                        raise CameraError(f"camera {r.cam.name!r} failed: {r.error}") from r.error
                if all(r.ended or r.newest_ts() >= t_s for r in self._readers.values()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            frames: dict[str, Frame | None] = {}
            reasons: dict[str, str] = {}
            for name, r in self._readers.items():
                frames[name], reasons[name] = self._matcher.match(name, list(r.buf), t_s)
                self._matcher.stats[name].camera_dropped = r.cam.stats.frames_dropped
        return MatchResult(t_request_s=t_s, frames=frames, reasons=reasons)
