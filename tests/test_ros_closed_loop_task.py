"""The closed loop through ROS 2 moves the arm **toward the task**: a small demo policy (20
scripted demonstrations, 800 training steps, about a minute here) runs as the production policy
node against the simulated-arm node, separate processes over loopback DDS, with the example
SO-101 safety settings (``node_so101.yaml``: tracking bound, ``tracking_mode: fault``).

Asserted on the same seeds: task progress through ROS 2 clearly above holding the start pose,
no safety fault and every episode enabled (the node's velocity limit keeps a period of lag spare
below the tracking bound: ``velocity_within_tracking``; each episode's closest approach to the
bound is printed; a command pushed past the bound for a tick by a late message on a loaded CI
machine is clipped, ``tracking_fault_after_s``, as a fresh-clone CI run once needed). Task
success is not asserted (600 steps solved 2 of 4 episodes in-process, 1 of 4 through ROS 2 with
the CPU busy); the full figure is ``dfp eval arm --ros`` in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from fixtures.skips import skip_module_without

skip_module_without("rclpy", "trajectory_msgs.msg", "std_srvs.srv", gl=True)

pytestmark = [pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

EPISODES = 6
SEED = 10_000


@pytest.fixture(scope="module")
def demo_policy(tmp_path_factory, one_torch_thread):
    from data_collection.sim.record import record_sim
    from df_policy.sim.tasks import demo_task_config
    from df_policy.training.config import load_run_config
    from df_policy.training.trainer import train

    root = tmp_path_factory.mktemp("demo_policy")
    record_sim(root / "demos.zarr", 20, 0, env_config=demo_task_config())
    config = load_run_config("arm_demo", ["train.steps=800", "train.val_every=800", "train.ckpt_every=800",
                                          "train.max_minutes=5"])
    train(str(root / "demos.zarr"), root / "run", config, resume=False, progress=False)
    return root / "run"


def test_the_policy_node_moves_the_simulated_arm_toward_the_task(demo_policy, tmp_path):
    from df_policy.evaluation.sim_arm import evaluate_arm
    from df_policy.evaluation.sim_arm_ros import TRACKING_LAG_SHARE, evaluate_arm_ros
    from df_policy.sim.tasks import demo_task_config

    inproc = evaluate_arm(demo_policy, demo_task_config(), episodes=EPISODES, seed=SEED, baselines=("hold",),
                          progress=False)
    ros = evaluate_arm_ros(demo_policy, episodes=EPISODES, seed=SEED, log_dir=tmp_path / "logs", progress=False)
    hold = inproc["hold"]["mean_progress"]
    print(f"progress: hold {hold:.2f}, in-process {inproc['policy']['mean_progress']:.2f} "
          f"(success {inproc['policy']['success_rate']:.2f}), through ROS 2 {ros['mean_progress']:.2f} "
          f"(success {ros['success_rate']:.2f}); simulated-arm overruns {ros['sim_overruns']}")
    assert [e["seed"] for e in ros["per_episode"]] == list(range(SEED, SEED + EPISODES))
    print("tracking ratio per episode:", [e["tracking_ratio_max"] for e in ros["per_episode"]],
          "commands clipped into the tracking bound:", ros["node"].get("clipped.tracking"))
    assert ros["episodes_not_enabled"] == 0, [(e["seed"], e["enable_message"]) for e in ros["per_episode"]]
    assert ros["episodes_with_fault"] == 0, [(e["seed"], e["faults"]) for e in ros["per_episode"] if e["faults"]]
    # the node reports how close each episode came to the tracking bound (1 = the bound): a
    # typical episode stays inside it; a late message can push one command past it for a tick,
    # which is clipped (tracking_fault_after_s), not a fault
    ratios = [e["tracking_ratio_max"] for e in ros["per_episode"] if e["tracking_ratio_max"] is not None]
    assert ratios and all(r > 0.0 for r in ratios) and float(np.median(ratios)) < 1.0, ratios
    # the node's velocity limit leaves the tracking bound room for the measured arm's lag
    settings = yaml.safe_load((tmp_path / "logs" / "policy_node.yaml").read_text())
    step = np.asarray(settings["max_velocity"]) * 0.1
    assert (step <= (1 - TRACKING_LAG_SHARE) * np.asarray(settings["max_tracking_error"]) + 1e-9).all(), settings
    # the arm reaches, lifts or carries the cube: holding the start pose scores ~0.18; 600 steps
    # scored 0.56 in-process and 0.41 through ROS 2 on a loaded CPU
    assert ros["mean_progress"] >= hold + 0.12, (ros["mean_progress"], hold, inproc["policy"]["mean_progress"])
    assert inproc["policy"]["mean_progress"] >= hold + 0.12, (inproc["policy"]["mean_progress"], hold)
    assert int(ros["node"]["commands_published"]) > 0 and int(ros["node"]["refused_unsafe"]) == 0
    assert np.isfinite(float(ros["node"]["obs_to_command_ms_p50"]))
    assert ros["exit_codes"] == {"policy_node": 0, "sim_arm_node": 0}, ros["exit_codes"]
