"""The real ``ros2 launch df_policy run.launch.py checkpoint:=RUN use_sim:=true namespace:=NS``:
the ROS package built with colcon into a temporary workspace, launched with a checkpoint alone,
enabled through its service, stopped with a Ctrl-C to the whole process group.

Needs the ``ros2`` command with ``ros2launch`` / ``launch_ros`` and ``colcon`` (a ROS 2 install,
e.g. Humble or Jazzy with this library in a venv beside it; ``ros_ws/README.md``). They are not
installable from the package index, so CI skips this test; ``tests/test_launch_command_line.py``
runs the same command lines without ``launch``. Run here with launch, launch_ros and ros2cli
from their Jazzy sources (ros_ws/README.md, "`ros2 launch` itself, run").
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from df_policy.ros.node_thread import wait_until

REPO = Path(__file__).resolve().parents[1]
ROS2 = shutil.which("ros2")
COLCON = os.environ.get("DFP_COLCON") or shutil.which("colcon")

pytestmark = [
    pytest.mark.skipif(ROS2 is None or importlib.util.find_spec("launch_ros") is None
                       or importlib.util.find_spec("ros2launch") is None,
                       reason="the ros2 command with ros2launch / launch_ros is not installed (a ROS 2 install; "
                       "ros2launch is not on the package index)"),
    pytest.mark.skipif(COLCON is None, reason="colcon not installed"),
    pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

if ROS2 is not None and importlib.util.find_spec("launch_ros") is not None:
    from fixtures.policy_node_harness import Monitor, checkpoint, ros_env, set_bool  # noqa: F401 - fixtures


def test_ros2_launch_with_a_checkpoint_alone_and_the_simulated_arm(checkpoint, tmp_path):  # noqa: F811
    from sensor_msgs.msg import JointState

    src = tmp_path / "ws" / "src"
    shutil.copytree(REPO / "ros_ws" / "src" / "df_policy", src / "df_policy")
    subprocess.run([COLCON, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(src),
                    "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
                   check=True, capture_output=True, cwd=tmp_path, timeout=300)
    command = (f"source {tmp_path / 'install' / 'setup.bash'} && exec ros2 launch df_policy run.launch.py "
               f"checkpoint:={checkpoint} use_sim:=true namespace:=launched")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "ROS_HOME": str(tmp_path / "ros_home")}
    launch = subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(launch.stdout), daemon=True)
    reader.start()
    output = lambda: "".join(lines)  # noqa: E731
    monitor = None
    try:
        assert wait_until(lambda: output().count("READY") >= 2 or launch.poll() is not None, 240.0), output()
        assert launch.poll() is None, output()
        assert "max_velocity from the checkpoint's schema" in output()  # no config: limits from the checkpoint
        monitor = Monitor("/launched/policy_node/command_sent", command_msg=JointState)
        deadline = time.monotonic() + 30.0
        while not (response := set_bool(monitor, True, service="/launched/policy_node/enable")).success:
            assert time.monotonic() < deadline, response.message
            time.sleep(0.5)
        assert wait_until(lambda: len(monitor.commands) >= 20, 20.0), f"{len(monitor.commands)} commands"
        assert "NOT published" not in output() and "(tracking_error)" not in output(), output()  # no fault
    finally:
        if monitor is not None:
            monitor.stop()
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
            try:
                launch.wait(30.0)
            except subprocess.TimeoutExpired:
                os.killpg(launch.pid, signal.SIGKILL)
                launch.wait(5.0)
        reader.join(5.0)
    text = output()
    assert launch.returncode == 0, text[-3000:]
    assert text.count("has finished cleanly") == 2 and "Traceback" not in text, text[-3000:]
