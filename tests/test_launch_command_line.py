"""The processes ``ros2 launch df_policy run.launch.py ... use_sim:=true namespace:=NS`` starts,
run for real with the command lines ``launch_ros`` gives them.

``launch`` / ``launch_ros`` are not installable from the package index, so here the test builds
the command line the way ``launch_ros.actions.Node`` does (Jazzy / Kilted) from the launch
description's own settings (:func:`df_policy.ros.launch_description.node_settings` /
``sim_node_settings``): ``<executable> *arguments [--ros-args *ros_arguments] --ros-args
-r __ns:=/NS [--params-file F ...]``. Run once against the real ``ros2 launch`` (launch,
launch_ros and ros2cli from their Jazzy sources), that command line found two faults this test
now guards: the simulated arm refused ``--ros-args``, and a Ctrl-C (which reaches each node
twice: from the terminal, then from launch) interrupted the nodes' shutdown with a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from fixtures.skips import skip_module_without

skip_module_without("rclpy", "std_srvs.srv", "rcl_interfaces.srv", gl=True)

from fixtures.policy_node_harness import Monitor, checkpoint, ros_env, set_bool  # noqa: F401, E402 - fixtures

from df_policy.ros.node_thread import wait_until  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

NAMESPACE = "launched"


def launch_ros_command(module: str, settings: dict, params_files: list[Path]) -> list[str]:
    """What ``launch_ros.actions.Node(executable=..., **settings)`` runs (the executable replaced
    by ``python -m module``): arguments, then the ``ros_arguments`` behind their own
    ``--ros-args``, then launch_ros's ``--ros-args -r __ns:=/<namespace>`` and one
    ``--params-file`` per parameters entry (a dict entry becomes a file launch_ros writes)."""
    argv = [sys.executable, "-m", module, *settings["arguments"]]
    if settings.get("ros_arguments"):
        argv += ["--ros-args", *settings["ros_arguments"]]
    argv += ["--ros-args"]
    if settings.get("namespace"):
        argv += ["-r", f"__ns:=/{settings['namespace']}"]
    for path in params_files:
        argv += ["--params-file", str(path)]
    return argv


def _interrupt_until_exit(process, timeout_s: float = 20.0) -> int | None:
    """SIGINT every 20 ms until the process exits: signals keep arriving during its shutdown,
    as they do under ``ros2 launch`` (terminal, then launch) or a Ctrl-C pressed repeatedly."""
    deadline = time.monotonic() + timeout_s
    while process.proc.poll() is None and time.monotonic() < deadline:
        process.proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    return process.stop()


def test_launch_command_lines_start_namespaced_nodes_that_shut_down_cleanly(checkpoint, tmp_path):  # noqa: F811
    from rcl_interfaces.srv import GetParameters
    from sensor_msgs.msg import JointState

    from df_policy.evaluation.sim_arm_ros import NodeProcess
    from df_policy.ros.launch_description import node_settings, sim_node_settings

    # a user's parameters file (params_file:=...), ROS 2 wildcard syntax; it wins over the schema's limits
    params = tmp_path / "policy_params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_velocity: 0.5\n    tracking_grace_s: 1.0\n")
    policy = node_settings(checkpoint=str(checkpoint), namespace=NAMESPACE, params_file=str(params),
                           log_level="debug")
    sim = sim_node_settings("true", NAMESPACE)
    assert policy["parameters"] == [str(params)] and policy["ros_arguments"] == ["--log-level", "debug"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sim_process = NodeProcess("sim_arm_node", launch_ros_command("df_policy.ros.sim_arm_node", sim, []), env,
                              tmp_path / "sim_arm_node.log")
    policy_process = NodeProcess("policy_node", launch_ros_command("df_policy.ros.policy_node", policy, [params]),
                                 env, tmp_path / "policy_node.log")
    monitor = None
    try:
        sim_process.wait_ready(120.0)
        policy_process.wait_ready(180.0)
        monitor = Monitor(f"/{NAMESPACE}/policy_node/command_sent", command_msg=JointState)
        # both nodes live in the namespace: their services are /<ns>/<node>/...
        services = lambda: {name for name, _ in monitor.node.get_service_names_and_types()}  # noqa: E731
        wanted = {f"/{NAMESPACE}/policy_node/enable", f"/{NAMESPACE}/sim_arm/reset"}
        assert wait_until(lambda: wanted <= services(), 20.0), sorted(services())
        # the parameters file reached the policy node
        request = GetParameters.Request(names=["max_velocity"])
        reply = monitor.call(GetParameters, f"/{NAMESPACE}/policy_node/get_parameters", request)
        assert list(reply.values[0].double_array_value) == [0.5] * 6 or reply.values[0].double_value == 0.5
        # the loop closes: enabled through the namespaced service, commands flow to the simulated arm
        deadline = time.monotonic() + 30.0
        while not (response := set_bool(monitor, True, service=f"/{NAMESPACE}/policy_node/enable")).success:
            assert time.monotonic() < deadline, response.message
            time.sleep(0.5)
        assert wait_until(lambda: len(monitor.commands) >= 10, 15.0), f"{len(monitor.commands)} commands"
    finally:
        if monitor is not None:
            monitor.stop()
        codes = {"policy_node": _interrupt_until_exit(policy_process),
                 "sim_arm_node": _interrupt_until_exit(sim_process)}
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in codes}
    assert codes == {"policy_node": 0, "sim_arm_node": 0}, (codes, {k: v[-2000:] for k, v in logs.items()})
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name} did not shut down cleanly:\n{text[-3000:]}"
    assert "node shutting down" in logs["policy_node"]  # it stopped commanding and said so
