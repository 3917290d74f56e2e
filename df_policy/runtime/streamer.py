"""Semi-autoregressive action streaming: a persistent pyramid of future action tokens.

The buffer holds the model window (``N`` tokens, see :mod:`df_policy.runtime.planning`): ``C``
context tokens (executed actions, fed back at ``context_level``), the head token (the current
step) and ``F - 1`` further future tokens whose noise level rises along the horizon. Each tick
(one new observation):

1. shift the buffer so the head token is the one containing the newest step (normally by one
   token), appending pure-noise tokens (level K) at the tail;
2. write the executed actions into the context tokens (unknown past actions: level K, i.e.
   masked, as padding is in training);
3. run ``calls_per_tick`` denoiser calls over the whole buffer that move every future token to
   the level pattern below (every token moves from its own level to its own target in each
   call; tokens already at their target come back bit-identical);
4. emit the future tokens that became clean (level 0) and were not emitted before, stamped
   ``obs_time + (step - t) * period_s``.

Level pattern kept after every tick (future token ``j = 0 .. F - 1``, ``j = 0`` the head;
``D`` = frozen tokens = ``ceil(max(delay_steps, commit_steps) / A)``, ``R`` = ``ramp_tokens``)::

    level[j] = 0                                   for j <= D
    level[j] = min(K, round((j - D) * K / R))      for j >  D

so in steady state (one token shift per tick) each call lowers every token by about ``K / R``
levels, tokens ``j < D`` are already clean and frozen (the robot executes them while the call
runs), token ``D`` becomes clean and is emitted, and a token needs ``R`` ticks from pure noise
to clean; tokens beyond ``D + R`` wait at level K. ``stream`` defaults to
``R = F - 1 - D`` (the noise rises over the whole rest of the window, the Diffusion Forcing
pyramid), ``D`` from ``commit_steps`` (default 4) and one call per tick; ``autoregressive`` to
``R = 1`` (only token ``D`` is denoised, from K to 0, in ``num_sampling_steps`` calls). Both
defaults were chosen in closed loop (gym-pusht state task, 50 seeded episodes, the same
checkpoint; docs/BENCHMARKS.md): committing 4 actions raised mean max coverage from 0.77 to
0.85 and from 0.67 to 0.88 on two checkpoints and lowered it from 0.80 to 0.67 on a third (a
policy that re-decides every action can dither between modes of the demonstrations), and
the long ramp raised success (0.34 -> 0.42 at ``D = 4``) over the 4-token ramp that offline
replay error had favoured (replay rewards copying the last action). After a skipped tick the shift is larger and the same calls
jump further to the same pattern. With ``prime`` the first tick builds the pyramid with
``R * calls_per_tick`` calls (each lowering levels by at most ``K / (R * calls_per_tick)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.runtime.planning import (DEFAULT_COMMIT_STEPS, ObsWindow, Planner, PlannerConfig, PlanResult,
                                        TimedAction)



def pyramid_pattern(n_future: int, frozen: int, ramp: int, K: int) -> np.ndarray:
    """Post-tick levels of the ``n_future`` future tokens (see the module docstring), int64."""
    if n_future < 1 or ramp < 1 or not 0 <= frozen < n_future:
        raise ValueError(f"need n_future >= 1, ramp >= 1, 0 <= frozen < n_future; got {n_future}, {ramp}, {frozen}")
    j = np.arange(n_future, dtype=np.int64)
    ramp_levels = np.floor((j - frozen) * K / ramp + 0.5).astype(np.int64)
    return np.where(j <= frozen, 0, np.minimum(K, ramp_levels)).astype(np.int64)


class ActionStreamer(Planner):
    """The ``stream`` / ``autoregressive`` planner (normalised units; see the module docstring).

    Inspection (for tests and logging): :attr:`level_pattern` ``(F,)``, :attr:`levels` ``(N,)``
    (current levels of the whole window, context first), :attr:`head_step`, and
    :attr:`last_tick` (``pre_levels``, ``post_levels``, ``calls``, ``shift``, ``primed``).
    """

    def __init__(self, policy: DiffusionForcingPolicy, config: PlannerConfig, period_s: float) -> None:
        super().__init__(policy, config, period_s)
        g = self.geometry
        auto = config.mode == "autoregressive"
        commit = config.delay_steps if auto else (DEFAULT_COMMIT_STEPS if config.commit_steps is None
                                                 else config.commit_steps)
        self.commit_steps = max(int(commit), config.delay_steps)
        self.frozen_tokens = math.ceil(self.commit_steps / g.A)
        if self.frozen_tokens > g.F - 1:
            raise ValueError(
                f"delay_steps={config.delay_steps} / commit_steps={self.commit_steps} need {self.frozen_tokens} frozen "
                f"tokens but the window has only {g.F} future tokens (the first new action must fit in the window)")
        default_ramp = 1 if auto else max(1, g.F - 1 - self.frozen_tokens)
        self.ramp_tokens = int(config.ramp_tokens or default_ramp)
        self.calls_per_tick = int(config.calls_per_tick or (policy.config.num_sampling_steps if auto else 1))
        self.level_pattern = pyramid_pattern(g.F, self.frozen_tokens, self.ramp_tokens, g.K)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self._phase: int | None = None
        self._head: int | None = None
        self._x: torch.Tensor | None = None          # (1, N*A, Da) values shown to the network
        self._clean: torch.Tensor | None = None      # (1, N*A, Da) known clean values
        self._known = np.zeros(self.geometry.N * self.geometry.A, dtype=bool)
        self._levels = np.full(self.geometry.N, self.geometry.K, dtype=np.int64)
        self._emitted_until: int | None = None
        self.last_tick: dict = {}

    @property
    def levels(self) -> np.ndarray:
        """Current levels of the ``N`` window tokens (context first), a copy."""
        return self._levels.copy()

    @property
    def head_step(self) -> int | None:
        """First step of the head token (``None`` before the first tick)."""
        return self._head

    def buffer(self) -> torch.Tensor | None:
        """The values shown to the network ``(1, N*A, Da)`` (a copy), normalised units."""
        return None if self._x is None else self._x.clone()

    # ------------------------------------------------------------------ tick
    def _shift(self, head: int) -> bool:
        """Align the buffer so token ``C`` starts at ``head``; returns True if it was rebuilt."""
        g = self.geometry
        n_act = g.N * g.A
        if self._x is None or head < self._head or (head - self._head) // g.A >= g.N:
            self._x = self._noise(n_act)
            self._clean = torch.zeros_like(self._x)
            self._known[:] = False
            self._levels[:] = g.K
            self._head = head
            return True
        shift = (head - self._head) // g.A
        if shift:
            s = shift * g.A
            self._x = torch.cat([self._x[:, s:], self._noise(s)], dim=1)
            self._clean = torch.cat([self._clean[:, s:], torch.zeros_like(self._clean[:, :s])], dim=1)
            self._known = np.concatenate([self._known[s:], np.zeros(s, dtype=bool)])
            self._levels = np.concatenate([self._levels[shift:], np.full(shift, g.K, dtype=np.int64)])
            self._head = head
        return False

    def _write_context(self, window: ObsWindow) -> None:
        g = self.geometry
        steps = g.token_steps(self._head)
        for n in range(g.C):
            for a in range(g.A):
                i, u = n * g.A + a, int(steps[n]) + a
                if u in window.executed:
                    self._clean[0, i] = torch.as_tensor(np.asarray(window.executed[u], dtype=np.float32))
                    self._known[i] = True
            sl = slice(n * g.A, (n + 1) * g.A)
            if self._known[sl].all():
                self._levels[n] = self.context_level
                self._x[:, sl] = self._show_context(self._clean[:, sl])
            else:
                self._levels[n] = g.K
                self._x[:, sl] = self._noise(g.A)

    def update(self, window: ObsWindow) -> PlanResult:
        g = self.geometry
        t = int(window.step)
        if self._phase is None:
            self._phase = t % g.A
        head = t - ((t - self._phase) % g.A)
        old_head = self._head
        rebuilt = self._shift(head)
        if self._emitted_until is None or head < (old_head if old_head is not None else head):
            self._emitted_until = head
        self._write_context(window)

        pre = self._levels.copy()
        post = pre.copy()
        post[g.C:] = np.minimum(pre[g.C:], self.level_pattern)
        primed = rebuilt and self.config.prime
        n_sub = self.ramp_tokens * self.calls_per_tick if primed else self.calls_per_tick
        times = g.times(head, t, self.policy.device)
        calls_before, encoded = self.network_calls, None
        cur = pre
        for s in range(1, n_sub + 1):
            target = post + ((pre - post) * (n_sub - s)) // n_sub
            if np.array_equal(target, cur):
                continue
            if encoded is None:
                encoded = self._encode(window)
            dev = self.policy.device
            self._x = self._denoise(self._x, torch.as_tensor(cur, device=dev), torch.as_tensor(target, device=dev),
                                    encoded, times)
            cur = target
        self._levels = cur.copy()

        plan_id = self._next_plan_id()
        actions: list[TimedAction] = []
        for j in range(g.F):
            n = g.C + j
            if self._levels[n] != 0:
                break
            sl = slice(n * g.A, (n + 1) * g.A)
            if not self._known[sl].all():
                self._clean[:, sl] = self._x[:, sl]
                self._known[sl] = True
            for a in range(g.A):
                u = head + j * g.A + a
                if u >= self._emitted_until:
                    value = self._clean[0, n * g.A + a].detach().cpu().numpy().astype(np.float32)
                    actions.append(TimedAction(u, window.time + (u - t) * self.period_s, value, plan_id, window.time))
        if actions:
            self._emitted_until = actions[-1].step + 1
        calls = self.network_calls - calls_before
        self.last_tick = {"pre_levels": pre, "post_levels": self._levels.copy(), "calls": calls,
                          "shift": 0 if old_head is None or rebuilt else (head - old_head) // g.A,
                          "primed": primed, "head_step": head}
        return PlanResult(actions, calls, int(encoded is not None), plan_id)
