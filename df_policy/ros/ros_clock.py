"""The runtime's :class:`~df_policy.runtime.clock.Clock` on a ROS node's clock: simulation time.

With the node parameter ``use_sim_time`` true, rclpy's node clock follows ``/clock`` (Gazebo,
MuJoCo or a bag played with ``--clock``): a simulator slower or faster than real time, or paused,
moves the node's control period, observation ages and command times with it.

* ``now()``: the node clock in seconds, never decreasing: if ``/clock`` jumps backwards (a
  simulation reset) the time stands at the latest value until the simulation passes it again,
  so the control loop publishes nothing meanwhile (restart the node or ``~/enable`` again after
  a reset that rewinds time).
* ``sleep_until(t)`` polls every ``poll_s`` of wall time and returns after at most ``max_wait_s``
  even if ``t`` has not come (a paused simulation): the control loop then checks whether it was
  stopped and waits again. Before the first ``/clock`` message the time is 0.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class RosNodeClock:
    """``Clock`` over an rclpy clock (``node.get_clock()``); seconds."""

    def __init__(self, ros_clock: Any, poll_s: float = 0.001, max_wait_s: float = 0.05) -> None:
        self._clock = ros_clock
        self.poll_s = float(poll_s)
        self.max_wait_s = float(max_wait_s)
        self._latest = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        t = self._clock.now().nanoseconds * 1e-9
        with self._lock:
            self._latest = max(self._latest, t)
            return self._latest

    def sleep_until(self, t: float) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while self.now() < t and time.monotonic() < deadline:
            time.sleep(self.poll_s)
