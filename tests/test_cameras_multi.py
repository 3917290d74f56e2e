"""MultiCamera and the frame-matching rule it shares with the recorder (``cameras.matching``)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from data_collection.cameras import CameraConfig, CameraConfigError, Frame, MultiCamera, SimulatedCamera
from data_collection.cameras.matching import FrameMatcher
from data_collection.cameras.multi import match_nearest


def frame(n: int, t: float) -> Frame:
    return Frame(color=np.zeros((2, 2, 3), np.uint8), timestamp_s=t, frame_number=n)


def test_match_nearest_rules():
    fs = [frame(0, 0.00), frame(1, 0.10), frame(2, 0.20)]
    assert match_nearest(fs, 0.11, 0.05, None) == (fs[1], "matched")
    assert match_nearest(fs, 0.15 + 1e-9, 0.06, None)[0] is fs[2]
    assert match_nearest(fs, 0.35, 0.05, None) == (None, "missing")
    # frame 1 already used: never handed out again
    assert match_nearest(fs, 0.10, 0.05, 1) == (None, "stale_refused")
    # ...but a newer frame within tolerance is fine
    assert match_nearest(fs, 0.14, 0.07, 1) == (fs[2], "matched")


def test_frame_matcher_remembers_each_cameras_last_frame_and_counts_every_answer():
    m = FrameMatcher(["a", "b"], tolerance_s=0.02)
    f3 = frame(3, 1.00)
    assert m.match("a", [f3], 1.01) == (f3, "matched") and m.last_used("a") == 3
    assert m.match("a", [frame(3, 1.00)], 1.00) == (None, "stale_refused")  # the same frame again: refused
    assert m.match("a", [frame(4, 1.10)], 1.05) == (None, "missing")  # too far from the request
    assert m.match("b", [frame(3, 1.00)], 1.00)[1] == "matched"  # cameras are remembered separately
    m.count("b", "missing")  # e.g. a read that timed out
    assert m.stats["a"].to_dict() == {"matched": 1, "missing": 1, "stale_refused": 1, "camera_dropped": 0}
    assert (m.stats["b"].matched, m.stats["b"].missing) == (1, 1)
    with pytest.raises(KeyError, match="unknown camera 'c'"):
        m.match("c", [], 0.0)
    with pytest.raises(ValueError, match="unknown match reason"):
        m.count("a", "late")
    with pytest.raises(CameraConfigError, match="distinct"):
        FrameMatcher(["a", "a"], 0.1)


def sim(name: str, fps: float, **kw) -> SimulatedCamera:
    cfg = CameraConfig(name=name, width=16, height=12, fps=fps)
    return SimulatedCamera(cfg, realtime=True, max_queue=1000, **kw)


def test_multicamera_matches_drops_and_never_duplicates():
    a = sim("front", 100.0)
    b = sim("wrist", 50.0, drop_frames={6})
    with MultiCamera([a, b], tolerance_s=0.004, buffer_size=64) as mc:
        # requests go forward in time; each camera is checked against its own schedule
        r = mc.match(b.frame_time(4), timeout_s=2.0)
        assert r.frames["wrist"].frame_number == 4
        assert r.frames["wrist"].timestamp_s == b.frame_time(4)

        r = mc.match(a.frame_time(10), timeout_s=2.0)
        assert r.frames["front"].frame_number == 10
        assert abs(r.skew_s()["front"]) < 1e-12

        # wrist frame 6 was dropped by the camera: missing, not replaced by 5 or 7
        r = mc.match(b.frame_time(6), timeout_s=2.0)
        assert r.frames["wrist"] is None and r.reasons["wrist"] == "missing"
        assert "wrist" in r.missing

        # asking again for an already matched time: refused, not duplicated
        r1 = mc.match(b.frame_time(8), timeout_s=2.0)
        r2 = mc.match(b.frame_time(8), timeout_s=2.0)
        assert r1.frames["wrist"].frame_number == 8
        assert r2.frames["wrist"] is None and r2.reasons["wrist"] == "stale_refused"
        st = mc.stats["wrist"]
        assert (st.missing, st.stale_refused) == (1, 1) and st.matched >= 2
        assert st.camera_dropped == 1
    assert not a.is_running and not b.is_running


def test_multicamera_late_camera_times_out_as_missing():
    slow = sim("slow", 2.0)  # next frame only after 0.5 s
    fast = sim("fast", 100.0)
    with MultiCamera([fast, slow], tolerance_s=0.004) as mc:
        t = fast.frame_time(5)
        r = mc.match(t, timeout_s=0.1)
    assert r.frames["fast"] is not None and r.frames["slow"] is None
    assert r.reasons["slow"] == "missing"


def test_multicamera_config_errors():
    with pytest.raises(CameraConfigError, match="distinct"):
        MultiCamera([sim("x", 10.0), sim("x", 10.0)])
    with pytest.raises(CameraConfigError, match="at least one"):
        MultiCamera([])
    assert MultiCamera([sim("x", 10.0), sim("y", 40.0)]).tolerance_s == pytest.approx(0.5 / 40)


def test_unthreaded_reads_one_frame_per_request_and_reports_what_happened():
    """threaded=False: one read per camera per request on the caller's thread (the recorder's
    default); the frame is matched by the same rule, and a failed read is reported, not raised."""
    cam = SimulatedCamera(CameraConfig(name="c", width=16, height=12, fps=50.0), realtime=False,
                          drop_frames={2})
    with MultiCamera([cam], tolerance_s=0.001, threaded=False) as mc:
        r = mc.match(cam.frame_time(0), timeout_s=1.0)
        assert r.frames["c"].frame_number == 0 and r.fresh["c"] and r.gaps["c"] == 0
        r = mc.match(cam.frame_time(2), timeout_s=1.0)  # reads frame 1: too early for the request
        assert r.frames["c"] is None and r.reasons["c"] == "missing" and r.fresh["c"]
        r = mc.match(cam.frame_time(3), timeout_s=1.0)  # frame 2 was dropped by the camera
        assert r.frames["c"].frame_number == 3 and r.gaps["c"] == 1
        mc.skip(1.0)  # frame 4 read and thrown away
        r = mc.match(cam.frame_time(4), timeout_s=1.0)  # reads 5: 4 is never handed out
        assert r.frames["c"] is None and r.reasons["c"] == "missing"
        cam.stop()  # unplugged: the read fails, reported per camera
        r = mc.match(cam.frame_time(6), timeout_s=0.01)
        assert not r.fresh["c"] and "before start" in r.errors["c"] and r.frames["c"] is None
    assert mc.stats["c"].matched == 2 and mc.stats["c"].missing == 3


@pytest.mark.parametrize("threaded", [False, True])
def test_a_queueing_camera_is_matched_to_the_request_only_when_threaded(threaded):
    """A 40 fps camera that queues 4 frames, asked every 100 ms for the frame of 50 ms ago within
    15 ms: read in turn, the next frame is the oldest queued (75-100 ms old at the read) and
    never matches; threaded, the frame nearest the request among those buffered does (a late
    reader still gets the queued frames with their capture times)."""
    cam = SimulatedCamera(CameraConfig(name="q", width=16, height=12, fps=40.0), realtime=True, max_queue=4)
    with MultiCamera([cam], tolerance_s=0.015, threaded=threaded) as mc:
        time.sleep(0.3)
        results = []
        for _ in range(5):
            time.sleep(0.1)
            results.append(mc.match(time.monotonic() - 0.05, timeout_s=0.5))
    matched = [r.frames["q"] is not None for r in results]
    assert all(matched) if threaded else not any(matched), [(r.reasons, r.skew_s()) for r in results]
