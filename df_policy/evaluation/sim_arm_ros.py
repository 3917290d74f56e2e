"""Closed loop on the simulated SO-101 arm **through ROS 2**: the policy node and the
simulated-arm node run as separate processes and talk over real DDS (loopback only).

What runs (:func:`evaluate_arm_ros`):

* ``python -m df_policy.ros.sim_arm_node`` (:mod:`df_policy.ros.sim_arm_node`): the MuJoCo arm
  behind a JTC-like controller, publishing JointState at 50 Hz and the camera at 10 Hz, in
  real time;
* ``python -m df_policy.ros.policy_node`` with the checkpoint: the production node, with the
  example SO-101 safety settings (``node_so101.yaml``: tracking bound 0.35 rad arm / 1.0 rad
  gripper), the simulator's joint limits, and its speed limit lowered per joint to what the
  tracking bound allows (:func:`velocity_within_tracking`);
* in this process, an evaluator node that for each episode disables the policy, calls the
  simulator's ``~/reset`` (seeds ``seed, seed + 1, ...``: the in-process evaluation's seeds),
  waits ``settle_s`` for fresh images, calls ``~/enable`` and watches the simulator's ``~/task``
  until the task has stayed solved for ``solved_hold_s`` (success) or ``episode_time_s`` of
  simulated time have passed since enabling (failure).

Unlike :func:`~df_policy.evaluation.sim_arm.evaluate_arm` (inference on a simulated clock, no
transport), everything here runs in real time on this machine: inference latency, DDS, the
controller's interpolation from the measured state and the safety checks all act on the arm.
The summary adds the node's own figures (observation-to-command latency, tick jitter, holds,
refused commands, faults) from its last ``/diagnostics`` status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from df_policy.ros.node_setup import STEP_SHARE_OF_TRACKING
from df_policy.ros.node_setup import velocity_within_tracking as within_tracking

__all__ = ["ClosedLoopNodes", "NodeProcess", "RosArmEpisode", "add_eval_arm_command", "closed_loop_nodes",
           "enable_until", "evaluate_arm_ros", "parse_node_overrides", "policy_node_settings",
           "velocity_within_tracking"]

SIM_NODE = "sim_arm"
POLICY_NODE = "policy_node"


@dataclass
class RosArmEpisode:
    """One episode through ROS: success, final task progress, solve time (simulated seconds after
    enabling, ``None`` if unsolved), the policy node's faults during it, and the physics periods
    the simulated arm could not keep in real time (``sim_overruns``: on a loaded CPU the arm
    falls behind its commands, which a tracking fault then reports) and the last
    ``tracking_ratio_max`` (a running maximum since ``~/enable``) the node reported on
    ``/diagnostics`` while enabled, with its joint (how close the episode came to the tracking
    fault; ``None`` if no report arrived)."""

    seed: int
    success: bool
    progress: float
    solve_s: float | None
    enabled: bool
    enable_message: str
    faults: list[str] = field(default_factory=list)
    sim_overruns: int = 0
    tracking_ratio_max: float | None = None
    tracking_ratio_max_dim: str = ""


class NodeProcess:
    """A child process that prints ``READY`` when up; stopped with SIGINT, then killed."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            if line.strip() == "READY":
                self._ready.set()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                why = f"exited with {self.proc.returncode}" if self.proc.poll() is not None else "did not start in time"
                raise RuntimeError(f"{self.name} {why}; its log ({self.log_path}) ends with:\n{tail}")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5.0)
        self._reader.join(2.0)
        self._log.close()
        return self.proc.returncode


def policy_node_settings(checkpoint: str | Path, lower: np.ndarray, upper: np.ndarray, vmax: float, period_s: float,
                         command_type: str = "trajectory", **overrides: Any) -> dict[str, Any]:
    """The policy node's settings for the simulated arm: ``node_so101.yaml`` with the checkpoint,
    the simulator's joint limits, the simulator node's default topics, and ``overrides``; unless
    overridden, ``max_velocity`` is the arm's speed limit ``vmax`` lowered per joint to what the
    tracking bound allows at control period ``period_s`` (:func:`velocity_within_tracking`)."""
    import yaml

    from df_policy.training.config import resolve_config_path

    settings = yaml.safe_load(resolve_config_path("node_so101").read_text())
    settings.update({
        "checkpoint": str(checkpoint), "device": "cpu", "position_lower": [float(v) for v in lower],
        "position_upper": [float(v) for v in upper], "command_type": command_type, "start_enabled": False,
        "node_name": POLICY_NODE,
    })
    settings.update(overrides)
    if "max_velocity" not in overrides:
        settings["max_velocity"] = velocity_within_tracking(vmax, settings.get("max_tracking_error"), period_s)
    return settings


TRACKING_LAG_SHARE = 1.0 - STEP_SHARE_OF_TRACKING  # 0.6


def velocity_within_tracking(vmax: float, max_tracking_error: float | list[float] | None,
                             period_s: float) -> list[float]:
    """Per-joint velocity limit (rad/s) for the policy node on the simulated arm: the arm's own
    speed limit ``vmax``, lowered where one period's step would use more than
    ``1 - TRACKING_LAG_SHARE`` of ``max_tracking_error``. The measured arm lags a command by the
    step just sent plus the arm's own following error and the observation latency (and, on a
    loaded CPU, late messages and the simulator's skipped periods); the share left is that lag's
    margin, so a legal motion never trips the fault. Measured (the node's ``tracking_ratio_max``,
    30 episodes beside a busy loop): the steady lag of a full-speed motion is 1.5 steps, so at
    share 0.6 a command reaches 0.60 of the bound and a further full step of lag (a period, 100 ms
    at 10 Hz) is spare. With ``node_so101.yaml`` at 10 Hz: 1.4 rad/s on the arm joints (the
    scripted demonstrations peak at 2.0), 4.0 on the gripper. History: share 0.3 (2.45 rad/s) and
    0.5 (1.75 rad/s, commands at 0.74-0.79 of the bound) each tripped the fault on a loaded CI
    machine during legal motions."""
    return within_tracking(vmax, max_tracking_error, period_s)  # share STEP_SHARE_OF_TRACKING = 1 - TRACKING_LAG_SHARE


@dataclass
class ClosedLoopNodes:
    """What :func:`closed_loop_nodes` started: the policy node's settings (also in
    ``logs/policy_node.yaml``), the log folder, and both exit codes once stopped."""

    settings: dict[str, Any]
    logs: Path
    exit_codes: dict[str, int | None] = field(default_factory=dict)


@contextlib.contextmanager
def closed_loop_nodes(checkpoint: str | Path, logs: Path, sim_args: tuple[str, ...] = (),
                      **node_overrides: Any) -> Iterator[ClosedLoopNodes]:
    """Start the simulated-arm node (``sim_args`` added to its command line) and the policy node
    (:func:`policy_node_settings` with the simulator's limits, ``node_overrides`` winning) as child
    processes, wait until both are up, stop both (SIGINT) on exit. DDS settings come from this
    process's environment: apply :mod:`df_policy.ros.loopback` first."""
    import yaml

    from df_policy.sim.arm_env import SimArmEnv
    from df_policy.sim.gl import select_gl_backend
    from df_policy.sim.tasks import demo_task_config

    select_gl_backend()
    with SimArmEnv(demo_task_config()) as env:
        lower, upper = env.lower.copy(), env.upper.copy()
        vmax, period_s = env.config.velocity_max_rad_s, 1.0 / env.config.control_hz
    logs.mkdir(parents=True, exist_ok=True)
    settings = policy_node_settings(checkpoint, lower, upper, vmax, period_s, **node_overrides)
    loop = ClosedLoopNodes(settings, logs)
    (logs / "policy_node.yaml").write_text(yaml.safe_dump(loop.settings, sort_keys=False))
    env_vars = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    sim = NodeProcess("simulated arm node", [sys.executable, "-m", "df_policy.ros.sim_arm_node",
                                             "--node-name", SIM_NODE, *sim_args], env_vars, logs / "sim_arm_node.log")
    policy = NodeProcess("policy node", [sys.executable, "-m", "df_policy.ros.policy_node", "--config",
                                         str(logs / "policy_node.yaml")], env_vars, logs / "policy_node.log")
    try:
        sim.wait_ready(120.0)
        policy.wait_ready(180.0)
        yield loop
    finally:
        loop.exit_codes = {"policy_node": policy.stop(), "sim_arm_node": sim.stop()}


NODE_OPTION_FIELDS = ("checkpoint", "command_type", "node_name", "start_enabled")
"""Policy-node settings that :func:`evaluate_arm_ros` sets itself (not ``--node`` overrides)."""


def parse_node_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["max_velocity=2.45", "planner_block_tokens=6"]`` -> policy-node settings (values parsed as
    YAML) for :func:`evaluate_arm_ros`; keys must be :class:`~df_policy.ros.node_config.PolicyNodeConfig`
    fields other than :data:`NODE_OPTION_FIELDS`. Raises ValueError naming the bad item."""
    from df_policy.evaluation.common import parse_key_values
    from df_policy.ros.node_config import PolicyNodeConfig

    fields = PolicyNodeConfig.field_names()
    out: dict[str, Any] = {}
    for key, value in parse_key_values(items, "--node"):
        if key not in fields:
            raise ValueError(f"--node {key}=...: not a policy node setting (see `dfp serve --print-config`)")
        if key in NODE_OPTION_FIELDS:
            raise ValueError(f"--node {key}=...: set by dfp eval arm itself"
                             + (" (use --command-type)" if key == "command_type" else ""))
        out[key] = value
    return out


def enable_until(enable: Callable[[], tuple[bool, str]], timeout_s: float = 15.0) -> tuple[bool, str]:
    """Call ``enable`` (``(success, message)``) until it succeeds or ``timeout_s`` pass: right after
    start-up DDS discovery may not yet have matched the controller's subscription."""
    enabled, message = enable()
    deadline = time.monotonic() + timeout_s
    while not enabled and time.monotonic() < deadline:
        time.sleep(0.3)
        enabled, message = enable()
    return enabled, message


class _Evaluator:
    """This process's ROS node: services of both nodes, the task topic and diagnostics."""

    def __init__(self) -> None:
        from df_policy.ros._imports import import_ros, ros_message_class
        from df_policy.ros.node_thread import NodeThread, NodeThreadConfig

        self._thread = NodeThread(NodeThreadConfig("arm_ros_evaluator"))
        node = self._thread.start()
        qos = import_ros("rclpy.qos")
        self._srv = import_ros("std_srvs.srv")
        self._lock = threading.Lock()
        self.task: dict[str, Any] | None = None
        self.task_seq = 0
        self.policy_state: dict[str, Any] | None = None
        self.policy_status: dict[str, str] = {}
        string = ros_message_class("std_msgs", "String")
        node.create_subscription(string, f"/{SIM_NODE}/task", self._on_task, 10)
        latched = qos.QoSProfile(depth=1, durability=qos.DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=qos.ReliabilityPolicy.RELIABLE)
        node.create_subscription(string, f"/{POLICY_NODE}/state", self._on_state, latched)
        node.create_subscription(ros_message_class("diagnostic_msgs", "DiagnosticArray"), "/diagnostics",
                                 self._on_diagnostics, 10)
        self._reset = node.create_client(self._srv.Trigger, f"/{SIM_NODE}/reset")
        self._enable = node.create_client(self._srv.SetBool, f"/{POLICY_NODE}/enable")

    def _on_task(self, msg: Any) -> None:
        with self._lock:
            self.task = json.loads(msg.data)
            self.task_seq += 1

    def _on_state(self, msg: Any) -> None:
        with self._lock:
            self.policy_state = json.loads(msg.data)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{POLICY_NODE}:"):
                with self._lock:
                    self.policy_status = {kv.key: kv.value for kv in status.values}
                    self.policy_status["_message"] = status.message

    def forget_status(self) -> None:
        """Drop the last ``/diagnostics`` status (before an ``~/enable``: the previous episode's
        counters must not be read as this one's)."""
        with self._lock:
            self.policy_status = {}

    def _call(self, client: Any, request: Any, timeout_s: float = 10.0) -> Any:
        from df_policy.ros.node_thread import wait_until

        if not client.wait_for_service(timeout_sec=timeout_s):
            raise RuntimeError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        if not wait_until(future.done, timeout_s):
            raise RuntimeError(f"service {client.srv_name} did not answer in {timeout_s} s")
        return future.result()

    def reset(self) -> int:
        response = self._call(self._reset, self._srv.Trigger.Request())
        return int(response.message.split()[-1])

    def enable(self, on: bool) -> tuple[bool, str]:
        response = self._call(self._enable, self._srv.SetBool.Request(data=on))
        return bool(response.success), str(response.message)

    def wait_task(self, after_seq: int, timeout_s: float = 5.0) -> tuple[dict[str, Any], int]:
        from df_policy.ros.node_thread import wait_until

        if not wait_until(lambda: self.task_seq > after_seq, timeout_s):
            raise RuntimeError(f"no ~/task message from the simulated arm for {timeout_s} s")
        with self._lock:
            return dict(self.task), self.task_seq

    def stop(self) -> None:
        self._thread.stop()


def evaluate_arm_ros(checkpoint: str | Path, episodes: int = 20, seed: int = 10_000, episode_time_s: float = 10.0,
                     solved_hold_s: float = 1.0, settle_s: float = 0.5, command_type: str = "trajectory",
                     node_overrides: dict[str, Any] | None = None, log_dir: str | Path | None = None,
                     progress: bool = True, sim_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``episodes`` closed-loop episodes through ROS 2 (see the module docstring); returns a
    summary with ``success_rate``, ``mean_progress``, per-episode results and the node's figures.

    DDS stays on 127.0.0.1 (:mod:`df_policy.ros.loopback`) with a domain id of this process.
    ``log_dir`` keeps both nodes' logs (default: a temporary folder, kept on failure);
    ``sim_args`` are added to the simulated-arm node's command line (e.g. ``("--controller",
    "forward")`` with ``command_type="multiarray"``)."""
    from tqdm import tqdm

    from df_policy.ros.loopback import loopback_ros_environment

    if episodes < 1 or episode_time_s <= 0 or solved_hold_s <= 0 or settle_s < 0:
        raise ValueError("need episodes >= 1, episode_time_s > 0, solved_hold_s > 0, settle_s >= 0")
    logs = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="dfp_arm_ros_"))
    results: list[RosArmEpisode] = []
    t_start = time.monotonic()
    with loopback_ros_environment(), closed_loop_nodes(
            checkpoint, logs, ("--task", "demo", "--seed", str(seed), *sim_args), command_type=command_type,
            **(node_overrides or {})) as loop:
        evaluator = _Evaluator()
        try:
            _, seq = evaluator.wait_task(0, 30.0)
            for _ in tqdm(range(episodes), desc="closed loop through ROS 2", disable=not progress):
                results.append(_episode(evaluator, seq, episode_time_s, solved_hold_s, settle_s))
                seq = evaluator.task_seq
            evaluator.enable(False)
            time.sleep(1.2)  # one more /diagnostics period with the final counters
            status = dict(evaluator.policy_status)
        finally:
            evaluator.stop()
    wall_s = time.monotonic() - t_start
    solved = [r for r in results if r.success]
    summary: dict[str, Any] = {
        "episodes": episodes, "seed": seed, "episode_time_s": episode_time_s, "solved_hold_s": solved_hold_s,
        "command_type": command_type, "node_overrides": dict(node_overrides or {}), "sim_args": list(sim_args),
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_progress": float(np.mean([r.progress for r in results])),
        "mean_solve_s": float(np.mean([r.solve_s for r in solved])) if solved else None,
        "episodes_not_enabled": sum(not r.enabled for r in results),
        "episodes_with_fault": sum(bool(r.faults) for r in results),
        "sim_overruns": sum(r.sim_overruns for r in results),
        "wall_s": round(wall_s, 1), "exit_codes": loop.exit_codes, "logs": str(logs),
        "node": {k: status.get(k) for k in (
            "obs_to_command_ms_p50", "obs_to_command_ms_p99", "inference_ms_p50", "inference_ms_p99",
            "tick_jitter_ms_p99", "missed_ticks", "commands_published", "refused_unsafe", "refused_stale",
            "holds.overrun", "holds.stale_observation", "holds.no_action", "holds.tracking_error",
            "clipped.position", "clipped.velocity", "clipped.tracking", "tracking_ratio_max", "recommended_delay_steps",
            "delay_steps")},
        "per_episode": [r.__dict__ for r in results],
    }
    return summary


def _episode(ev: _Evaluator, seq: int, episode_time_s: float, solved_hold_s: float, settle_s: float,
             enable_timeout_s: float = 15.0) -> RosArmEpisode:
    ev.enable(False)
    seed = ev.reset()
    task, seq = ev.wait_task(seq)
    while task["seed"] != seed or task["time_s"] < settle_s:  # images of the new episode fill the history
        task, seq = ev.wait_task(seq)
    ev.forget_status()  # a status published before the enable is disabled, or the previous episode's
    enabled, message = enable_until(lambda: ev.enable(True), enable_timeout_s)
    task, seq = ev.wait_task(seq)
    t0, overruns0 = task["time_s"], int(task["overruns"])
    faults: list[str] = []
    solve_s = None
    ratio: float | None = None
    ratio_dim = ""
    while enabled:
        state = ev.policy_state or {}
        if state.get("fault") and state["fault"] not in faults:
            faults.append(state["fault"])
        status = ev.policy_status  # tracking_ratio_max is the node's running maximum since this ~/enable
        if status.get("enabled") == "True" and status.get("tracking_ratio_max"):
            ratio, ratio_dim = float(status["tracking_ratio_max"]), status.get("tracking_ratio_max_dim", "")
        if task["solved_for_s"] > 0 and solve_s is None:
            solve_s = task["time_s"] - t0 - task["solved_for_s"]
        elif task["solved_for_s"] == 0:
            solve_s = None
        if task["solved_for_s"] >= solved_hold_s or task["time_s"] - t0 >= episode_time_s:
            break
        task, seq = ev.wait_task(seq)
    success = enabled and task["solved_for_s"] >= solved_hold_s
    ev.enable(False)
    return RosArmEpisode(seed, bool(success), float(task["progress"]), solve_s if success else None, enabled,
                         message, faults, int(task["overruns"]) - overruns0, ratio, ratio_dim)


# --------------------------------------------------------------------------- CLI
def _number(value: Any) -> str:
    """A /diagnostics value for a report: numbers to 2 decimals, empty as ``-``."""
    try:
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    except (TypeError, ValueError):
        return "-" if value in (None, "") else str(value)


def _report(out: Path, inproc: dict[str, Any] | None, ros: dict[str, Any] | None, args: argparse.Namespace) -> str:
    def solve(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} s"

    lines = [f"# Simulated arm, closed loop: {args.checkpoint}", "",
             f"{args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1} (demo task), success = "
             "cube released on the target for 1 s within 10 s.", "",
             "| run | success rate | mean task progress | mean time to solve |", "|---|---|---|---|"]
    if inproc is not None:
        for who, label in (("policy", "policy, in-process (simulated clock, inference takes no time)"),
                           ("hold", "baseline: hold the start pose")):
            r = inproc[who]
            lines.append(f"| {label} | {r['success_rate']:.2f} | {r['mean_progress']:.2f} | {solve(r['mean_solve_s'])} |")
    if ros is not None:
        lines.append(f"| policy **through ROS 2** (separate processes, real time, `{ros['command_type']}`) | "
                     f"{ros['success_rate']:.2f} | {ros['mean_progress']:.2f} | {solve(ros['mean_solve_s'])} |")
        n = {k: _number(v) for k, v in ros["node"].items()}
        if ros.get("node_overrides"):
            lines += ["", f"Policy node settings changed for this run (`--node`): `{ros['node_overrides']}`."]
        if ros.get("sim_args"):
            lines += ["", f"Simulated-arm node arguments for this run (`--sim-arg`): `{' '.join(ros['sim_args'])}`."]
        lines += ["", "Through ROS 2, the policy node's own figures (its /diagnostics after the last episode): "
                  f"observation-to-command latency p50/p99 {n['obs_to_command_ms_p50']}/{n['obs_to_command_ms_p99']} ms "
                  f"(all episodes), inference p50/p99 {n['inference_ms_p50']}/{n['inference_ms_p99']} ms and tick "
                  f"jitter p99 {n['tick_jitter_ms_p99']} ms (last episode), missed ticks {n['missed_ticks']}; episodes "
                  f"with a fault: {ros['episodes_with_fault']}, not enabled: {ros['episodes_not_enabled']}; "
                  f"physics periods the simulated arm could not keep in real time: {ros['sim_overruns']}; logs in "
                  f"`{ros['logs']}`."]
        ratios = [(e["tracking_ratio_max"], e["seed"], e["tracking_ratio_max_dim"]) for e in ros["per_episode"]
                  if e["tracking_ratio_max"] is not None]
        if ratios:
            worst, seed, joint = max(ratios)
            lines += ["", f"Closest approach to the tracking fault (largest |command - measured| / max_tracking_error "
                      f"on /diagnostics, 1 = the bound): {worst:.2f} ({joint}, seed {seed}); median over episodes "
                      f"{float(np.median([r[0] for r in ratios])):.2f}."]
        lines += [f"- fault in seed {e['seed']}: {f}" for e in ros["per_episode"] for f in e["faults"]]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def add_eval_arm_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arm", help="closed loop on the simulated SO-101 arm (demo task): in-process and/or through ROS 2")
    p.add_argument("--checkpoint", required=True, help="checkpoint or run directory (e.g. outputs/demo/run)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000, help="first seed (dfp demo evaluates 10000..10019)")
    p.add_argument("--ros", action="store_true", help="also run the episodes through ROS 2: the policy node and "
                   "the simulated-arm node as separate processes over loopback DDS, in real time")
    p.add_argument("--ros-only", action="store_true", help="only the ROS 2 run")
    p.add_argument("--command-type", default="trajectory", choices=["trajectory", "trajectory_chunk", "multiarray"],
                   help="the policy node's command type (the simulated arm runs a JTC-like controller; "
                   "multiarray needs --sim-arg=--controller --sim-arg=forward)")
    p.add_argument("--node", action="append", default=[], metavar="KEY=VALUE",
                   help="a policy node setting for the --ros run (YAML value), over node_so101.yaml and the "
                   "simulator's limits, e.g. --node max_velocity=2.45 --node planner_block_tokens=6")
    p.add_argument("--sim-arg", action="append", default=[], metavar="ARG",
                   help="an argument for the simulated-arm node of the --ros run, e.g. "
                   "--sim-arg=--interpolate-from-desired-state (python -m df_policy.ros.sim_arm_node --help)")
    p.add_argument("--out", required=True)

    def run(a: argparse.Namespace) -> int:
        node_overrides = parse_node_overrides(a.node)
        if (node_overrides or a.sim_arg) and not (a.ros or a.ros_only):
            raise ValueError("--node and --sim-arg set up the --ros run: add --ros or --ros-only")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        inproc = ros = None
        if not a.ros_only:
            from df_policy.evaluation.sim_arm import evaluate_arm
            from df_policy.sim.tasks import demo_task_config

            inproc = evaluate_arm(a.checkpoint, demo_task_config(), episodes=a.episodes, seed=a.seed,
                                  baselines=("hold",))
            (out / "closed_loop.json").write_text(json.dumps(inproc, indent=2))
        if a.ros or a.ros_only:
            ros = evaluate_arm_ros(a.checkpoint, episodes=a.episodes, seed=a.seed, command_type=a.command_type,
                                   node_overrides=node_overrides, log_dir=out / "ros_logs", sim_args=tuple(a.sim_arg))
            (out / "closed_loop_ros.json").write_text(json.dumps(ros, indent=2))
        print(_report(out, inproc, ros, a))
        return 0

    p.set_defaults(func=run)
