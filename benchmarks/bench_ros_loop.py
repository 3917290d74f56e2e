"""The policy node's control loop through ROS 2 at several rates, on the simulated arm.

    python benchmarks/bench_ros_loop.py --checkpoint outputs/demo/run [--rates 10 30 100] [--seconds 20]

For each rate: the simulated SO-101 arm (``python -m df_policy.ros.sim_arm_node``, physics 50 Hz,
camera at the rate or at most 50 Hz, JTC-like controller) and the policy node (``python -m
df_policy.ros.policy_node``, the checkpoint, ``rate_hz`` set, ``tracking_mode: clip`` so a policy
run off its training rate keeps commanding) run as separate processes over loopback DDS; this
process enables the node and, for ``--seconds``, records the receipt time of every command on the
command topic. Reported per rate: the command period's jitter at this subscriber (p50/p99/max of
|inter-arrival - 1/rate|, ms), the node's own tick jitter p99 and missed ticks, its
observation-to-command latency p50/p99 and inference p50/p99 (ms), holds by kind, and the command
rate. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def run_rate(checkpoint: str, rate: float, seconds: float, logs: Path) -> dict:
    from df_policy.evaluation.sim_arm_ros import closed_loop_nodes, enable_until
    from df_policy.ros.node_thread import NodeThread, NodeThreadConfig, wait_until
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    camera_hz = min(float(rate), 50.0) if 50.0 % min(float(rate), 50.0) == 0 else 25.0
    probe = NodeThread(NodeThreadConfig("bench_ros_loop"))
    arrivals: list[float] = []
    status: dict[str, str] = {}
    with closed_loop_nodes(checkpoint, logs, ("--physics-hz", "50", "--camera-hz", str(camera_hz)),
                           rate_hz=float(rate), tracking_mode="clip") as loop:
        try:
            n = probe.start()
            n.create_subscription(JointTrajectory, loop.settings["command_topic"],
                                  lambda m: arrivals.append(time.monotonic()), 100)

            def on_diag(msg):
                for s in msg.status:
                    if s.name.startswith("policy_node:"):
                        status.clear()
                        status.update({kv.key: kv.value for kv in s.values})
            n.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
            client = n.create_client(SetBool, "/policy_node/enable")
            assert client.wait_for_service(timeout_sec=20.0), "no /policy_node/enable"

            def enable() -> tuple[bool, str]:
                future = client.call_async(SetBool.Request(data=True))
                assert wait_until(future.done, 10.0)
                return future.result().success, future.result().message
            enabled, message = enable_until(enable, 20.0)
            assert enabled, message
            time.sleep(1.0)  # first plan, first second of commands
            arrivals.clear()
            time.sleep(seconds)
            window = list(arrivals)
            time.sleep(1.2)  # one more /diagnostics status
            final = dict(status)
        finally:
            probe.stop()
    gaps = np.diff(window)
    dev = np.abs(gaps - 1.0 / rate) * 1e3

    def num(key: str) -> float | None:
        try:
            return round(float(final[key]), 2)
        except (KeyError, ValueError):
            return None

    return {
        "rate_hz": rate, "camera_hz": camera_hz, "seconds": seconds, "commands": len(window),
        "command_rate_hz": round(len(window) / seconds, 2),
        "jitter_ms_p50": round(float(np.percentile(dev, 50)), 3), "jitter_ms_p99": round(float(np.percentile(dev, 99)), 3),
        "jitter_ms_max": round(float(dev.max()), 3),
        **{k: num(k) for k in ("tick_jitter_ms_p99", "missed_ticks", "obs_to_command_ms_p50", "obs_to_command_ms_p99",
                               "inference_ms_p50", "inference_ms_p99", "holds.overrun", "holds.stale_observation",
                               "holds.no_action", "clipped.velocity", "clipped.tracking")},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--rates", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", default="runs/bench_ros_loop.json")
    a = p.parse_args()
    from df_policy.ros.loopback import loopback_ros_environment

    rows = []
    with loopback_ros_environment():
        for rate in a.rates:
            rows.append(run_rate(a.checkpoint, rate, a.seconds, Path(a.out).with_suffix("") / f"{rate:g}hz"))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| rate | commands/s | jitter at subscriber p50/p99/max (ms) | node tick jitter p99 (ms) | missed ticks | "
          "obs->command p50/p99 (ms) | inference p50/p99 (ms) | overrun holds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rate_hz']:g} Hz (camera {r['camera_hz']:g} Hz) | {r['command_rate_hz']} | {r['jitter_ms_p50']}/"
              f"{r['jitter_ms_p99']}/{r['jitter_ms_max']} | {r['tick_jitter_ms_p99']} | {r['missed_ticks']} | "
              f"{r['obs_to_command_ms_p50']}/{r['obs_to_command_ms_p99']} | {r['inference_ms_p50']}/"
              f"{r['inference_ms_p99']} | {r['holds.overrun']} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"host": platform.node(), "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
