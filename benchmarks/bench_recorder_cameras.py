"""How the recorder reads its cameras: one read per step on the loop's thread vs a reader thread per camera.

    python benchmarks/bench_recorder_cameras.py [--fps 10] [--camera-fps 30] [--seconds 10]
        [--size 640x480] [--cameras 2] [--queues 1 4] [--out runs/bench/recorder_cameras.json]

A paced recording (``realtime``) of a simulated 6-joint robot (100 Hz state) at ``--fps`` and
``--cameras`` simulated cameras at ``--camera-fps`` and ``--size`` (a moving test pattern), with
``max_skew_s`` one camera period plus the state's period, into a fresh episode store; the
keyboard teleop on a pipe nobody writes to (the arm holds; the time limit ends the episode).
For each camera queue depth in ``--queues`` (1 = the camera keeps only its newest frame, like
the OpenCV camera's grab thread; more = frames queue as in a driver buffer), the same run with
``camera_threads`` off (the default) and on. Reported per run: recorded and dropped steps, the
loop period p50 / p99 (ms) and the matched frames' distance from their joint state
(``camera_matching`` ``skew_ms_p50`` / ``_p99``, first camera). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from bench_io import write_results  # same folder (on sys.path when run as a script)

from data_collection.cameras.base import CameraConfig
from data_collection.cameras.simulated import SimulatedCamera
from data_collection.recorder import Recorder, RecorderConfig
from data_collection.robots.base import RobotLimits
from data_collection.robots.simulated import SimulatedRobot, SimulatedRobotConfig
from data_collection.teleop.keyboard import KeyboardTeleop

STATE_HZ = 100.0


def record(out: Path, fps: float, camera_fps: float, seconds: float, size: tuple[int, int], cameras: int,
           queue: int, threads: bool) -> dict:
    limits = RobotLimits.uniform(tuple(f"j{i}" for i in range(6)), -1.0, 1.0, velocity_max=1.0)
    robot = SimulatedRobot(SimulatedRobotConfig(limits, rate_hz=STATE_HZ, realtime=True))
    cams = [SimulatedCamera(CameraConfig(name=f"cam{i}", width=size[0], height=size[1], fps=camera_fps),
                            realtime=True, max_queue=queue) for i in range(cameras)]
    r, w = os.pipe()
    try:
        config = RecorderConfig(store_path=out, fps=fps, max_episode_s=seconds, episodes=1, realtime=True,
                                frame_timeout_s=0.5 / fps, max_skew_s=1.0 / camera_fps + 1.0 / STATE_HZ,
                                status=False, camera_threads=threads)
        summary = Recorder(config, robot, cams, KeyboardTeleop(fd=r)).run()
    finally:
        os.close(r)
        os.close(w)
    matching = summary["camera_matching"]["cam0"]
    return {"steps": summary["steps"], "dropped_steps": summary["dropped_steps"],
            "loop_period_ms_p50": round(summary["loop_period_ms_p50"], 2),
            "loop_period_ms_p99": round(summary["loop_period_ms_p99"], 2),
            "skew_ms_p50": matching["skew_ms_p50"], "skew_ms_p99": matching["skew_ms_p99"],
            "matched": matching["matched"], "missing": matching["missing"], "stale_refused": matching["stale_refused"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--camera-fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of each camera")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--queues", type=int, nargs="+", default=[1, 4])
    p.add_argument("--out", default="runs/bench/recorder_cameras.json")
    a = p.parse_args()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for queue in a.queues:
            for threads in (False, True):
                name = f"queue {queue}, {'camera_threads' if threads else 'one read per step'}"
                results[name] = record(Path(tmp) / f"q{queue}{threads}", a.fps, a.camera_fps, a.seconds, size,
                                       a.cameras, queue, threads)
    meta = {"fps": a.fps, "camera_fps": a.camera_fps, "seconds": a.seconds, "size": list(size),
            "cameras": a.cameras, "max_skew_s": 1.0 / a.camera_fps + 1.0 / STATE_HZ, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(f"{'run':<36} {'steps':>6} {'dropped':>8} {'skew p50':>9} {'skew p99':>9} {'loop p50':>9} {'loop p99':>9}")
    for name, r in results.items():
        skew50 = "-" if r["skew_ms_p50"] is None else f"{r['skew_ms_p50']:.1f}"
        skew99 = "-" if r["skew_ms_p99"] is None else f"{r['skew_ms_p99']:.1f}"
        print(f"{name:<36} {r['steps']:>6} {r['dropped_steps']:>8} {skew50:>9} {skew99:>9} "
              f"{r['loop_period_ms_p50']:>9.2f} {r['loop_period_ms_p99']:>9.2f}")
    write_results(a.out, meta, results)


if __name__ == "__main__":
    main()
