"""Streaming runtime: turns a trained Diffusion Forcing policy into safe, timed robot commands.

ROS-free. Main entry points: :class:`PolicyRuntime` (observations in, commands out),
:class:`ControlLoop` (fixed-rate control thread), :class:`ActionStreamer` and
:class:`ChunkPlanner` (the planners), :class:`SafetyFilter` (limits on every command).
"""

from df_policy.runtime.action_queue import ActionQueue, QueuedAction
from df_policy.runtime.chunking import ChunkPlanner
from df_policy.runtime.clock import Clock, FakeClock, MonotonicClock
from df_policy.runtime.control_loop import ControlLoop
from df_policy.runtime.planning import MODES, ObsWindow, Planner, PlannerConfig, PlanResult, TimedAction, make_planner
from df_policy.runtime.preprocess import InvalidObservation, ObservationError, Preprocessor
from df_policy.runtime.runner import InferenceReport, PolicyRuntime, RuntimeConfig, TickRecord
from df_policy.runtime.safety import HOLD_KINDS, VIOLATION_KINDS, Command, Hold, SafetyConfig, SafetyFilter
from df_policy.runtime.streamer import ActionStreamer, pyramid_pattern

__all__ = [
    "MODES", "HOLD_KINDS", "VIOLATION_KINDS", "ActionQueue", "ActionStreamer", "ChunkPlanner", "Clock", "Command",
    "ControlLoop", "FakeClock", "Hold", "InferenceReport", "InvalidObservation", "MonotonicClock", "ObsWindow",
    "ObservationError", "PlanResult", "Planner", "PlannerConfig", "PolicyRuntime", "Preprocessor", "QueuedAction",
    "RuntimeConfig", "SafetyConfig", "SafetyFilter", "TickRecord", "TimedAction", "make_planner", "pyramid_pattern",
]
