"""The launch description of the df_policy policy node (``ros2 launch df_policy run.launch.py``).

``launch/run.launch.py`` (the repository's) and ``ros_ws/src/df_policy/launch/run.launch.py``
(installed by the ROS package, which stays copyable into any workspace) both import
:func:`generate_launch_description` from here, so the launch logic lives in the pip-installed
``df_policy`` package next to the node it starts.

    ros2 launch df_policy run.launch.py checkpoint:=/path/to/run config:=/path/to/node.yaml \\
        [enable:=true] [device:=cuda] [namespace:=arm]

Launch arguments (all strings, as ``ros2 launch`` passes them):

* ``checkpoint``: checkpoint or training run directory (overrides the config's ``checkpoint``).
* ``config``: node config YAML (``PolicyNodeConfig`` fields, e.g. ``df_policy/configs/node_so101.yaml``).
* ``enable``: ``true`` = command as soon as every input is fresh (``--enable``); default
  ``false``: the node waits for ``ros2 service call /<ns>/policy_node/enable std_srvs/srv/SetBool "{data: true}"``.
* ``device``: torch device (overrides the config's ``device``).
* ``namespace``: ROS namespace of the node (its services and relative topic names).
* ``params_file``: a ROS 2 parameters YAML (``--params-file``; node settings as flat names,
  winning over ``config``; unknown names stop the node with a message).
* ``log_level``: ``debug``, ``info``, ``warn``, ``error`` or ``fatal`` (``--log-level``).
* ``use_sim``: ``true`` = also start the simulated SO-101 arm (``sim_arm_node``, the demo task:
  JointState on ``/joint_states``, camera on ``/camera/color/image_raw``, a JTC-like controller
  on ``/joint_trajectory_controller/joint_trajectory``), the topics ``node_so101.yaml`` uses;
  with ``use_sim_time`` it also publishes ``/clock``, the simulation's time.

The mapping from launch arguments to the node's namespace and command line is the pure function
:func:`node_settings`, which the tests call; ``launch`` / ``launch_ros`` are imported only in
:func:`generate_launch_description`, so this module imports (and is tested) without them.
"""

from __future__ import annotations

PACKAGE = "df_policy"
EXECUTABLE = "policy_node"
SIM_EXECUTABLE = "sim_arm_node"

LAUNCH_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("checkpoint", "", "checkpoint or training run directory (overrides the config)"),
    ("config", "", "node config YAML (PolicyNodeConfig fields)"),
    ("enable", "false", "true: start commanding once every input is fresh, without ~/enable"),
    ("device", "", "torch device, e.g. cpu or cuda (overrides the config)"),
    ("namespace", "", "ROS namespace of the node"),
    ("params_file", "", "ROS 2 parameters YAML for the node (wins over config)"),
    ("log_level", "", "debug | info | warn | error | fatal"),
    ("use_sim", "false", "true: also start the simulated SO-101 arm (sim_arm_node, demo task)"),
    ("use_sim_time", "false", "true: the policy node's timing follows /clock (simulation time)"),
)
"""``(name, default, description)`` of every launch argument."""

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def parse_bool(text: str, name: str = "enable") -> bool:
    """A launch argument string as a bool; anything but true/false/1/0/yes/no/on/off is refused."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def node_arguments(checkpoint: str = "", config: str = "", enable: str = "false", device: str = "") -> list[str]:
    """The policy node's command-line arguments for these launch argument values.

    Empty values are left out (the config, or the node's defaults, apply). At least one of
    ``checkpoint`` and ``config`` is required (the node cannot start without a checkpoint; with
    a checkpoint alone, joint names and limits come from its store schema).
    """
    checkpoint, config, device = str(checkpoint).strip(), str(config).strip(), str(device).strip()
    if not checkpoint and not config:
        raise ValueError("give checkpoint:=<run or checkpoint dir> and config:=<node config yaml>")
    args: list[str] = []
    if checkpoint:
        args += ["--checkpoint", checkpoint]
    if config:
        args += ["--config", config]
    if device:
        args += ["--device", device]
    if parse_bool(enable):
        args.append("--enable")
    return args


LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def node_settings(checkpoint: str = "", config: str = "", enable: str = "false", device: str = "",
                  namespace: str = "", params_file: str = "", log_level: str = "",
                  use_sim_time: str = "false") -> dict:
    """Every launch argument -> the ``launch_ros`` ``Node`` settings: ``namespace``,
    ``arguments``, ``parameters`` (the params file, if any, then ``use_sim_time`` when true)
    and ``ros_arguments``."""
    ns = str(namespace).strip().strip("/")
    if ns and not all(part and (part[0].isalpha() or part[0] == "_") and all(c.isalnum() or c == "_" for c in part)
                      for part in ns.split("/")):
        raise ValueError(f"launch argument namespace:={namespace!r} is not a valid ROS namespace")
    params_file, level = str(params_file).strip(), str(log_level).strip().lower()
    if level and level not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={log_level!r} must be one of {LOG_LEVELS}")
    return {"namespace": ns, "arguments": node_arguments(checkpoint, config, enable, device),
            "parameters": ([params_file] if params_file else [])
            + ([{"use_sim_time": True}] if parse_bool(use_sim_time, "use_sim_time") else []),
            "ros_arguments": ["--log-level", level] if level else []}


def sim_node_settings(use_sim: str = "false", namespace: str = "", use_sim_time: str = "false") -> dict | None:
    """The simulated arm's ``launch_ros`` ``Node`` settings, or ``None`` when ``use_sim`` is false.
    With ``use_sim_time`` the simulated arm publishes ``/clock`` (it is the time source)."""
    if not parse_bool(use_sim, "use_sim"):
        return None
    clock = ["--publish-clock"] if parse_bool(use_sim_time, "use_sim_time") else []
    return {"namespace": str(namespace).strip().strip("/"), "arguments": ["--task", "demo", *clock]}


def generate_launch_description():
    """The launch description: declared arguments + the node, resolved when launched."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    # isort keeps this one apart: it takes the repository's launch/ folder for first-party code
    from launch import LaunchDescription

    def start_node(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
        use_sim = values.pop("use_sim")
        nodes = [Node(package=PACKAGE, executable=EXECUTABLE, output="screen", emulate_tty=True,
                      **node_settings(**values))]
        sim = sim_node_settings(use_sim, values["namespace"], values["use_sim_time"])
        if sim is not None:
            nodes.append(Node(package=PACKAGE, executable=SIM_EXECUTABLE, output="screen", emulate_tty=True, **sim))
        return nodes

    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in LAUNCH_ARGUMENTS]
    return LaunchDescription([*declared, OpaqueFunction(function=start_node)])
