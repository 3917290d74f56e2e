"""Several cameras, frames matched to requested times: the recorder's frame source.

A request for time ``t`` (host monotonic seconds, the clock of ``Frame.timestamp_s``) returns,
per camera, the frame nearest to ``t`` within ``tolerance_s``, or ``None`` with the reason
counted, by the rule of :mod:`data_collection.cameras.matching`:

* ``missing``: no frame within tolerance (the camera dropped it, it did not arrive before the
  request's timeout, or the read failed);
* ``stale_refused``: the nearest frame was already returned for an earlier request; a frame
  is never handed out twice (a recorder would otherwise silently store a duplicate image).

Two ways to read the cameras, one matching:

* ``threaded=True``: a reader thread per camera keeps its newest ``buffer_size`` frames; a
  request waits until every camera has a frame at or after ``t`` (then no later frame can be
  nearer), the camera ended, or ``timeout_s`` passed. Reading (and decoding) happens off the
  caller's thread, and the frame nearest to ``t`` is chosen among those buffered.
* ``threaded=False``: each request reads one new frame per camera on the caller's thread, all
  cameras together within ``timeout_s``, and matches it: no extra threads, the same reads as a
  plain loop (a lock-step simulated camera renders on the caller's thread); the recorder's
  default.

Read errors never raise from :meth:`MultiCamera.match`: they are reported per camera
(``MatchResult.errors``), with whether the camera delivered anything since the previous
request (``MatchResult.fresh``), so a caller decides when a silent camera is lost. Gaps in a
camera's frame numbers between the frames read (frames it dropped) are reported per request
(``MatchResult.gaps``) and in ``MatchStats.camera_dropped`` (from ``Camera.stats``).
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

MIN_WAIT_S = 0.001
"""Shortest wait of a request (and of each unthreaded read): a frame already queued is still
taken, so a caller out of time may pass a deadline that has passed."""
ERROR_RETRY_S = 0.01
"""A reader thread whose camera read failed waits this long before reading again."""


@dataclass(frozen=True)
class MatchResult:
    """Frames for one requested time ``t_request_s``; ``frames[name]`` is ``None`` when unmatched.

    ``reasons[name]``: ``matched``, ``missing`` or ``stale_refused``. ``fresh[name]``: the camera
    delivered a new frame since the previous request. ``errors[name]``: the last read error since
    then (only for a camera that delivered nothing). ``gaps[name]``: frames the camera skipped
    (frame-number gaps) among the frames read since the previous request."""

    t_request_s: float
    frames: dict[str, Frame | None]
    reasons: dict[str, str] = field(default_factory=dict)
    fresh: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(f is not None for f in self.frames.values())

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.frames.items() if f is None)

    def skew_s(self) -> dict[str, float]:
        """``frame.timestamp_s - t_request_s`` for each matched camera, seconds."""
        return {n: f.timestamp_s - self.t_request_s for n, f in self.frames.items() if f is not None}


class _Source:
    """One camera's frames as read so far: a buffer of the newest, what arrived since the last
    request (count, frame-number gaps, the last error), and, threaded, the reader thread."""

    def __init__(self, cam: Camera, buffer_size: int, cond: threading.Condition) -> None:
        self.cam = cam
        self.buf: deque[Frame] = deque(maxlen=buffer_size)
        self.cond = cond
        self.ended = False
        self.last_number: int | None = None
        self.new_frames = 0
        self.gaps = 0
        self.error: str | None = None
        self.stop_evt = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, frame: Frame) -> None:
        """Record a frame read (caller holds ``cond``)."""
        if self.last_number is not None and frame.frame_number > self.last_number + 1:
            self.gaps += frame.frame_number - self.last_number - 1
        self.last_number = frame.frame_number
        self.buf.append(frame)
        self.new_frames += 1
        self.error = None

    def read_once(self, timeout_s: float) -> None:
        """Read one frame on this thread (unthreaded mode); failures are recorded, not raised."""
        try:
            frame = self.cam.read(max(timeout_s, MIN_WAIT_S))
        except EndOfStream as e:
            self.ended, self.error = True, str(e) or "end of stream"
            return
        except (CameraError, TimeoutError) as e:
            self.error = str(e) or type(e).__name__
            return
        self.add(frame)

    def run(self) -> None:
        """Reader thread: read until stopped or the stream ends."""
        while not self.stop_evt.is_set():
            try:
                frame = self.cam.read(timeout_s=0.2)
            except CameraTimeoutError as e:
                with self.cond:
                    self.error = str(e) or "timeout"
                continue
            except EndOfStream as e:
                with self.cond:
                    self.ended, self.error = True, str(e) or "end of stream"
                    self.cond.notify_all()
                return
            except Exception as e:  # noqa: BLE001 - reported per request; a camera may recover
                with self.cond:
                    self.error = str(e) or type(e).__name__
                    self.cond.notify_all()
                self.stop_evt.wait(ERROR_RETRY_S)
                continue
            with self.cond:
                self.add(frame)
                self.cond.notify_all()

    def newest_ts(self) -> float:
        return self.buf[-1].timestamp_s if self.buf else -math.inf

    def take_news(self) -> tuple[bool, str | None, int]:
        """``(fresh, error, gaps)`` since the last call, and reset them (caller holds ``cond``)."""
        out = (self.new_frames > 0, None if self.new_frames else self.error, self.gaps)
        self.new_frames, self.gaps = 0, 0
        return out


class MultiCamera:
    """Several :class:`Camera` objects, their frames matched by time (see the module docstring).

    Args:
        cameras: cameras with distinct names; :meth:`start` starts those not running yet and
            :meth:`stop` stops only those it started.
        tolerance_s: max ``|frame.timestamp_s - t|`` for a match (>= 0); default half the
            shortest frame period (so at most one frame per camera can match a time).
        buffer_size: frames kept per camera (covers ``buffer_size / fps`` seconds of history).
        threaded: read on a thread per camera (``True``) or on the caller's thread, one frame
            per camera per request (``False``).
    """

    def __init__(self, cameras: Sequence[Camera], *, tolerance_s: float | None = None, buffer_size: int = 16,
                 threaded: bool = True) -> None:
        names = [c.name for c in cameras]
        if not cameras:
            raise CameraConfigError("MultiCamera needs at least one camera")
        if len(set(names)) != len(names):
            raise CameraConfigError(f"camera names must be distinct, got {names}")
        if tolerance_s is None:
            tolerance_s = 0.5 / max(c.config.fps for c in cameras)
        if not (tolerance_s >= 0 and math.isfinite(tolerance_s)):
            raise CameraConfigError(f"tolerance_s must be a number >= 0, got {tolerance_s}")
        if buffer_size < 1:
            raise CameraConfigError(f"buffer_size must be >= 1, got {buffer_size}")
        self.cameras = list(cameras)
        self.tolerance_s = float(tolerance_s)
        self.buffer_size = int(buffer_size)
        self.threaded = bool(threaded)
        self._cond = threading.Condition()
        self._sources: dict[str, _Source] = {}
        self._started: list[Camera] = []
        self._matcher = FrameMatcher(names, self.tolerance_s)

    def start(self) -> None:
        """Start the cameras not running yet (stopping those it started if one fails) and, when
        threaded, the readers."""
        started: list[Camera] = []
        try:
            for cam in self.cameras:
                if not cam.is_running:
                    cam.start()
                    started.append(cam)
        except BaseException:
            for cam in started:
                cam.stop()
            raise
        self._started = started
        self._matcher = FrameMatcher([c.name for c in self.cameras], self.tolerance_s)
        self._sources = {c.name: _Source(c, self.buffer_size, self._cond) for c in self.cameras}
        if self.threaded:
            for s in self._sources.values():
                s.thread = threading.Thread(target=s.run, name=f"multicam-{s.cam.name}", daemon=True)
                s.thread.start()

    def stop(self) -> None:
        """Stop the readers, then the cameras :meth:`start` started."""
        for s in self._sources.values():
            s.stop_evt.set()
        for s in self._sources.values():
            if s.thread is not None:
                s.thread.join(timeout=2.0)
        for cam in self._started:
            cam.stop()
        self._started = []

    @property
    def stats(self) -> dict[str, MatchStats]:
        """Per-camera matching counters since :meth:`start`."""
        return self._matcher.stats

    def __enter__(self) -> MultiCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_inline(self, deadline: float) -> None:
        for s in self._sources.values():
            if not s.ended:
                s.read_once(deadline - time.monotonic())

    def match(self, t_s: float, timeout_s: float = 1.0) -> MatchResult:
        """Frames nearest to ``t_s`` (host monotonic s), waiting at most ``timeout_s`` (at least
        :data:`MIN_WAIT_S`; see the module docstring for the two ways of reading)."""
        if not self._sources:
            raise CameraError("MultiCamera.match() before start()")
        deadline = time.monotonic() + max(timeout_s, MIN_WAIT_S)
        if not self.threaded:
            self._read_inline(deadline)
        with self._cond:
            while self.threaded:
                if all(s.ended or s.newest_ts() >= t_s for s in self._sources.values()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            frames: dict[str, Frame | None] = {}
            reasons: dict[str, str] = {}
            fresh: dict[str, bool] = {}
            errors: dict[str, str] = {}
            gaps: dict[str, int] = {}
            for name, s in self._sources.items():
                fresh[name], error, gaps[name] = s.take_news()
                if error is not None:
                    errors[name] = error
                candidates = list(s.buf) if self.threaded else list(s.buf)[-1:] if fresh[name] else []
                frames[name], reasons[name] = self._matcher.match(name, candidates, t_s)
                self._matcher.stats[name].camera_dropped = s.cam.stats.frames_dropped
        return MatchResult(t_request_s=t_s, frames=frames, reasons=reasons, fresh=fresh, errors=errors, gaps=gaps)

    def skip(self, timeout_s: float) -> None:
        """Nothing is wanted now (a recorder between episodes): unthreaded, read and drop one
        frame per camera (so no frame of this time is matched later); threaded, the buffers
        roll on by themselves. Either way the news since the last request are dropped."""
        if not self._sources:
            raise CameraError("MultiCamera.skip() before start()")
        if not self.threaded:
            self._read_inline(time.monotonic() + max(timeout_s, MIN_WAIT_S))
        with self._cond:
            for s in self._sources.values():
                s.take_news()
