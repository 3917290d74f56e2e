"""Chunked planning (Diffusion Policy style) with any scheduling matrix, latency-aware.

Every ``replan_every`` steps (``Ta``; or earlier if the planned actions would run out) the whole
window is denoised from pure noise with a scheduling matrix (default ``full_sequence``: all
tokens share one level, ``S`` calls). Tokens that are known are held fixed:

* context tokens (entirely before the current step ``t``): the executed actions (or, where a
  step was not executed, the action planned for it), shown at ``context_level``; a context
  token with an unknown action stays at level K (masked, like training padding);
* frozen tokens: future tokens starting before ``t + delay_steps`` whose actions were already
  planned: they will be executed while this call runs, so they are fed back exactly (level 0)
  and the new chunk continues from them without a jump.

The plan emits the actions after the frozen ones up to step ``t + D' + Ta - 1`` (``D'`` =
``delay_steps`` rounded up to whole tokens), so consecutive plans tile the time axis. Network
calls per plan = number of distinct rows of the matrix (``S`` for ``full_sequence``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.model.schedules import to_training_levels, validate_schedule
from df_policy.runtime.planning import ObsWindow, Planner, PlannerConfig, PlanResult, TimedAction


class ChunkPlanner(Planner):
    """The ``chunk`` planner (normalised units; see the module docstring)."""

    def __init__(self, policy: DiffusionForcingPolicy, config: PlannerConfig, period_s: float) -> None:
        super().__init__(policy, config, period_s)
        g = self.geometry
        S = policy.config.num_sampling_steps
        schedule = "full_sequence" if config.schedule is None else config.schedule
        if isinstance(schedule, str):
            matrix = policy.make_schedule(schedule, g.N)
        else:
            matrix = np.asarray(schedule)
            if matrix.ndim != 2 or matrix.shape[1] != g.N:
                raise ValueError(f"schedule matrix must have N={g.N} columns (one per token), got shape {matrix.shape}")
        validate_schedule(matrix, S)
        self.schedule = matrix
        self.rows = to_training_levels(matrix, S, g.K)
        self.replan_every = int(config.replan_every or policy.config.n_action_steps)
        self.delay_actions = math.ceil(config.delay_steps / g.A) * g.A
        if self.delay_actions + self.replan_every > g.F * g.A:
            raise ValueError(
                f"delay_steps ({config.delay_steps}, {self.delay_actions} rounded to tokens) + replan_every "
                f"({self.replan_every}) must fit in the {g.F * g.A} future actions of the window")
        self.reset()

    def describe(self) -> str:
        name = self.config.schedule if isinstance(self.config.schedule, str) else (
            "full_sequence" if self.config.schedule is None else "custom matrix")
        return (f"chunk: {name} schedule, {len(self.rows) - 1} denoising step(s), "
                f"re-planned every {self.replan_every} step(s)")

    def reset(self) -> None:
        super().reset()
        self._planned: dict[int, np.ndarray] = {}  # step -> emitted (committed) action, normalised
        self._next_plan: int | None = None
        self._planned_until: int | None = None
        self.last_plan: dict = {}

    def update(self, window: ObsWindow) -> PlanResult:
        g = self.geometry
        t = int(window.step)
        if not (self._next_plan is None or t >= self._next_plan or t < self._next_plan - self.replan_every
                or self._planned_until < t + self.delay_actions):
            return PlanResult([], 0, 0, -1)
        steps = g.token_steps(t)
        dev = self.policy.device
        x = self._noise(g.N * g.A)
        levels = np.full(g.N, g.K, dtype=np.int64)
        fixed = np.zeros(g.N, dtype=bool)
        n_frozen = 0
        for n in range(g.N):
            token = [int(steps[n]) + a for a in range(g.A)]
            if n < g.C:
                values = [window.executed.get(u, self._planned.get(u)) for u in token]
                fixed[n] = True  # known context, or masked at level K
                if all(v is not None for v in values):
                    levels[n] = self.context_level
                    clean = torch.as_tensor(np.stack(values).astype(np.float32), device=dev)[None]
                    x[:, n * g.A:(n + 1) * g.A] = self._show_context(clean)
            elif token[0] < t + self.delay_actions and n - g.C == n_frozen and all(u in self._planned for u in token):
                fixed[n] = True
                levels[n] = 0
                n_frozen += 1
                x[0, n * g.A:(n + 1) * g.A] = torch.as_tensor(np.stack([self._planned[u] for u in token]), device=dev)

        times = g.times(t, t, dev)
        encoded = self._encode(window)
        calls_before = self.network_calls
        cur = levels.copy()
        for row in self.rows:
            target = np.where(fixed, cur, row)
            if np.array_equal(target, cur):
                continue
            x = self._denoise(x, torch.as_tensor(cur, device=dev), torch.as_tensor(target, device=dev), encoded, times)
            cur = target

        plan_id = self._next_plan_id()
        first = t + n_frozen * g.A
        last = t + self.delay_actions + self.replan_every - 1
        values = x[0].detach().cpu().numpy().astype(np.float32)
        actions = []
        for u in range(first, last + 1):
            i = (u - int(steps[0]))
            value = values[i]
            self._planned[u] = value
            actions.append(TimedAction(u, window.time + (u - t) * self.period_s, value, plan_id, window.time))
        for u in [u for u in self._planned if u < t - g.N * g.A]:
            del self._planned[u]
        self._next_plan = t + self.replan_every
        self._planned_until = last
        calls = self.network_calls - calls_before
        self.last_plan = {"step": t, "levels_in": levels, "fixed": fixed, "frozen_tokens": n_frozen, "calls": calls}
        return PlanResult(actions, calls, 1, plan_id)
