"""``ros2 launch df_policy run.launch.py checkpoint:=RUN config:=node.yaml [enable:=true] ...``

The launch logic is :mod:`df_policy.ros.launch_description` in the pip-installed ``df_policy``
package (arguments and their meaning: its docstring, ``launch/README.md``).
"""

from df_policy.ros.launch_description import generate_launch_description  # noqa: F401
