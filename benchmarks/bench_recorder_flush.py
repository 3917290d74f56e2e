"""The recorder's loop period while steps are flushed: writes in the loop vs on the writer thread (issue 12).

    python benchmarks/bench_recorder_flush.py [--fps 30] [--seconds 10] [--size 640x480] [--cameras 2]
        [--flush-every 10] [--out runs/bench/recorder_flush.json]

A paced recording (``realtime``) of a simulated 6-joint robot (100 Hz state) and ``--cameras``
simulated cameras at ``--size`` and ``--fps`` (a moving test pattern, which compresses like a
busy scene) into a fresh episode store, with the keyboard teleop on a pipe nobody writes to (the
arm holds; the time limit ends the episode). The same run twice in this process: the writer
thread (``write_queue_steps`` 256, the default) and writing in the loop (``write_queue_steps``
0, the behaviour before the thread). Reported per variant: the loop period p50 / p99 / max (ms)
over the recorded episode, dropped steps, writer stalls. Prints a table and writes JSON.
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


def record(out: Path, fps: float, seconds: float, size: tuple[int, int], cameras: int, flush_every: int,
           queue_steps: int) -> dict:
    limits = RobotLimits.uniform(tuple(f"j{i}" for i in range(6)), -1.0, 1.0, velocity_max=1.0)
    robot = SimulatedRobot(SimulatedRobotConfig(limits, rate_hz=100.0, realtime=True))
    cams = [SimulatedCamera(CameraConfig(name=f"cam{i}", width=size[0], height=size[1], fps=fps), realtime=True)
            for i in range(cameras)]
    r, w = os.pipe()
    try:
        config = RecorderConfig(store_path=out, fps=fps, max_episode_s=seconds, episodes=1, realtime=True,
                                frame_timeout_s=0.5 / fps, max_skew_s=1.0 / fps, flush_every=flush_every,
                                write_queue_steps=queue_steps, status=False)
        summary = Recorder(config, robot, cams, KeyboardTeleop(fd=r)).run()
    finally:
        os.close(r)
        os.close(w)
    keys = ("loop_period_ms_p50", "loop_period_ms_p99", "loop_period_ms_max", "steps", "dropped_steps",
            "writer_stalls", "writer_stall_s", "mean_loop_hz")
    return {k: (round(summary[k], 2) if isinstance(summary[k], float) else summary[k]) for k in keys}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of each camera")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--flush-every", type=int, default=10)
    p.add_argument("--out", default="runs/bench/recorder_flush.json")
    a = p.parse_args()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, q in (("writer thread (write_queue_steps 256)", 256), ("in the loop (write_queue_steps 0)", 0)):
            results[name] = record(Path(tmp) / f"q{q}", a.fps, a.seconds, size, a.cameras, a.flush_every, q)
    meta = {"fps": a.fps, "seconds": a.seconds, "size": list(size), "cameras": a.cameras,
            "flush_every": a.flush_every, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "load_avg_1min": round(os.getloadavg()[0], 2)}
    period = 1000.0 / a.fps
    print(f"{'variant':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'dropped':>8} {'stalls':>7}  (period {period:.1f} ms)")
    for name, r in results.items():
        print(f"{name:<40} {r['loop_period_ms_p50']:>8.2f} {r['loop_period_ms_p99']:>8.2f} {r['loop_period_ms_max']:>8.2f} "
              f"{r['dropped_steps']:>8} {r['writer_stalls']:>7}")
    write_results(a.out, meta, results)


if __name__ == "__main__":
    main()
