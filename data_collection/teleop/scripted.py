"""``ScriptedTeleop``: the simulated arm's :class:`~df_policy.sim.expert.ScriptedExpert`
as a teleoperator stand-in.

Events: once the expert is done and ``hold_steps`` further steps were commanded, it emits
``"success"`` or ``"failure"`` (from :meth:`SimArmEnv.success`) followed by ``"save"``. If
the episode reaches ``max_steps`` actions first (default: the env's ``max_steps``, i.e.
``episode_time_s * control_hz``), it emits the verdict and ``"save"`` as well, so every
episode ends. Optional ``discard_at_step`` / ``quit_at_step`` inject those events after that
many actions (used by tests). The expert reads the privileged sim state; ``state`` passed
to :meth:`action` is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_collection.robots.base import RobotState

from .base import TeleopDevice, TeleopError

__all__ = ["ScriptedTeleop", "ScriptedTeleopConfig"]


@dataclass(frozen=True)
class ScriptedTeleopConfig:
    """Attributes:
    hold_steps: actions commanded after the expert reports done, before ``save``.
    max_steps: actions per episode before a forced ``save`` (``None`` = the env's limit).
    discard_at_step / quit_at_step: emit ``discard`` / ``quit`` after that many actions
        in every episode (``None`` = never).
    """

    hold_steps: int = 3
    max_steps: int | None = None
    discard_at_step: int | None = None
    quit_at_step: int | None = None

    def __post_init__(self) -> None:
        if self.hold_steps < 0:
            raise TeleopError(f"hold_steps must be >= 0, got {self.hold_steps}")
        for name in ("max_steps", "discard_at_step", "quit_at_step"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TeleopError(f"{name} must be >= 1 or None, got {v}")


class ScriptedTeleop(TeleopDevice):
    """Teleop device driven by the scripted expert of ``env`` (a :class:`SimArmEnv`)."""

    name = "scripted"

    def __init__(self, env, config: ScriptedTeleopConfig | None = None) -> None:  # env: SimArmEnv
        super().__init__()
        from df_policy.sim import ScriptedExpert  # lazy: imports mujoco

        self.env = env
        self.config = config or ScriptedTeleopConfig()
        self.expert = ScriptedExpert(env)
        self._steps = 0
        self._after_done = 0
        self._ended = False
        self._verdict_due = False

    def _reset(self) -> None:
        self.expert.reset()
        self._steps = 0
        self._after_done = 0
        self._ended = False
        self._verdict_due = False

    def _action(self, state: RobotState) -> np.ndarray:
        action = self.expert.act()
        self._steps += 1
        cfg = self.config
        if self.expert.done:
            self._after_done += 1
        if cfg.discard_at_step is not None and self._steps == cfg.discard_at_step:
            self.emit("discard")
        if cfg.quit_at_step is not None and self._steps == cfg.quit_at_step:
            self.emit("quit")
        limit = cfg.max_steps if cfg.max_steps is not None else self.env.config.max_steps
        if not self._ended and (self._after_done > cfg.hold_steps or self._steps >= limit):
            # The verdict is decided after this action is executed: see _poll.
            self._ended = True
            self._verdict_due = True
        return action

    def _poll(self) -> None:
        if self._verdict_due:
            self._verdict_due = False
            self.emit("success" if self.env.success() else "failure")
            self.emit("save")
