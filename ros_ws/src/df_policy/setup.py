"""ament_python build of the ``df_policy`` ROS 2 package: two executables (the policy node, the simulated
arm), a launch file and the example node config (``share/df_policy/config/node_so101.yaml``), no
Python module.

The node's code is the ``df_policy`` Python package installed with pip (``pip install -e
<repo>[ros]`` or ``pip install <repo>``). This package must not ship a Python module named
``df_policy`` (it would shadow the real one on ``PYTHONPATH`` once the workspace is sourced), so
``packages=[]``; and its distribution is named ``df_policy_ros`` so that its metadata does not
collide with the pip distribution ``df-policy`` (the generated ``policy_node`` script looks its
entry point up by distribution name). The ROS package name, which ``ros2 launch`` / ``ros2 run``
use, is ``df_policy`` (package.xml, ``resource/df_policy``, ``share/df_policy``).
"""

import os
from glob import glob

from setuptools import setup

PACKAGE = "df_policy"
HERE = os.path.dirname(os.path.abspath(__file__))
# ./launch holds thin launch files importing df_policy.ros.launch_description: the package has no
# path out of its own directory, so it can be copied into any workspace.
LAUNCH_FILES = sorted(os.path.relpath(p, HERE) for p in glob(os.path.join(HERE, "launch", "*.launch.py")))
if not LAUNCH_FILES:
    raise SystemExit(f"no launch files in {os.path.join(HERE, 'launch')}")
# ./config holds the example node config (a copy of df_policy/configs/node_so101.yaml, kept equal by a test)
CONFIG_FILES = sorted(os.path.relpath(p, HERE) for p in glob(os.path.join(HERE, "config", "*.yaml")))


setup(
    name="df_policy_ros",
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", LAUNCH_FILES),
        (f"share/{PACKAGE}/config", CONFIG_FILES),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="df_policy maintainers",
    maintainer_email="df-policy-maintainers@example.com",
    description="ROS 2 policy node and launch file for df_policy (the node's code is the pip-installed df_policy)",
    license="Apache-2.0",
    entry_points={"console_scripts": ["policy_node = df_policy.ros.policy_node:main",
                                      "sim_arm_node = df_policy.ros.sim_arm_node:main"]},
)
