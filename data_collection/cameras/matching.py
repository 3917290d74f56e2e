"""The one frame-matching rule: which camera frame goes with a requested time.

Used by the recorder (a frame per camera per control step, matched to the robot state's stamp)
and by :class:`~data_collection.cameras.multi.MultiCamera` (frames buffered by reader threads,
matched to any requested time). Only how frames are *read* differs: the recorder reads each
camera synchronously in its control loop, bounded by the period's deadline, which a lock-step
simulated camera needs (it renders the simulation state the loop just stepped, on the loop's
thread); ``MultiCamera`` keeps free-running cameras' newest frames from reader threads. What a
frame is matched to, and why one is refused, is decided here for both.

Rule, for a requested time ``t`` (host monotonic seconds, the clock of ``Frame.timestamp_s``)
and a camera's candidate frames: the frame nearest to ``t`` within ``tolerance_s``, never one
whose ``frame_number`` is not above the last frame matched for that camera (a frame is never
used twice, so no image is stored twice). Otherwise no frame, with the reason:

* ``missing``: no candidate within ``tolerance_s`` (the camera dropped the frame, delivered it
  late or not at all, or its clock is skewed from the requester's);
* ``stale_refused``: the only candidates within tolerance were already used.

Both are counted per camera in :class:`MatchStats`, with the frames the camera itself reported
dropped (``Camera.stats.frames_dropped``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from .base import CameraConfigError, Frame

__all__ = ["MATCH_REASONS", "FrameMatcher", "MatchStats", "match_nearest"]

MATCH_REASONS = ("matched", "missing", "stale_refused")


@dataclass
class MatchStats:
    """Per-camera matching counters: requests answered with a frame (``matched``), with none
    (``missing``, ``stale_refused``: see the module docstring), and the frames the camera itself
    reported dropped (``camera_dropped``, refreshed by the owner from ``Camera.stats``)."""

    matched: int = 0
    missing: int = 0
    stale_refused: int = 0
    camera_dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def match_nearest(
    frames: Iterable[Frame], t_s: float, tolerance_s: float, after_frame_number: int | None
) -> tuple[Frame | None, str]:
    """Nearest frame to ``t_s`` within ``tolerance_s`` among ``frames`` (pure; no state).

    Returns ``(frame, "matched")``, ``(None, "stale_refused")`` when the nearest in-tolerance
    frame has ``frame_number <= after_frame_number`` (already used) and no unused one is in
    tolerance, or ``(None, "missing")``.
    """
    best: Frame | None = None
    best_used: Frame | None = None
    for f in frames:
        dt = abs(f.timestamp_s - t_s)
        if dt > tolerance_s:
            continue
        if after_frame_number is not None and f.frame_number <= after_frame_number:
            if best_used is None or dt < abs(best_used.timestamp_s - t_s):
                best_used = f
            continue
        if best is None or dt < abs(best.timestamp_s - t_s):
            best = f
    if best is not None:
        return best, "matched"
    return None, ("stale_refused" if best_used is not None else "missing")


class FrameMatcher:
    """:func:`match_nearest` with each camera's memory (the last frame matched) and counters.

    Args:
        names: the cameras' names (distinct).
        tolerance_s: largest ``|frame.timestamp_s - t|`` of a match, seconds (> 0; the
            recorder's ``max_skew_s`` may be 0 for frames stamped with the state's own time).
    """

    def __init__(self, names: Sequence[str], tolerance_s: float) -> None:
        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            raise CameraConfigError(f"camera names must be distinct, got {names}")
        if not tolerance_s >= 0:
            raise CameraConfigError(f"tolerance_s must be >= 0, got {tolerance_s}")
        self.tolerance_s = float(tolerance_s)
        self.stats: dict[str, MatchStats] = {n: MatchStats() for n in names}
        self._last_used: dict[str, int | None] = dict.fromkeys(names)

    def match(self, name: str, candidates: Iterable[Frame], t_s: float) -> tuple[Frame | None, str]:
        """The frame of camera ``name`` for time ``t_s`` among ``candidates`` and the reason
        (``MATCH_REASONS``); a matched frame is remembered as used and every answer is counted."""
        if name not in self.stats:
            raise KeyError(f"unknown camera {name!r}; the matcher has {sorted(self.stats)}")
        frame, why = match_nearest(candidates, t_s, self.tolerance_s, self._last_used[name])
        self.count(name, why)
        if frame is not None:
            self._last_used[name] = frame.frame_number
        return frame, why

    def count(self, name: str, why: str) -> None:
        """Count an answer for camera ``name`` decided without candidates (e.g. ``"missing"``
        when its read timed out)."""
        if why not in MATCH_REASONS:
            raise ValueError(f"unknown match reason {why!r}; expected one of {MATCH_REASONS}")
        st = self.stats[name]
        setattr(st, why, getattr(st, why) + 1)

    def last_used(self, name: str) -> int | None:
        """Frame number of the last frame matched for camera ``name`` (``None``: none yet)."""
        return self._last_used[name]
