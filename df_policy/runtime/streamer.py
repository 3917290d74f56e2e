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

Block mode (``block_tokens = B``, :func:`block_pattern`): instead of one token per tick, a
block of ``B`` tokens enters from pure noise every ``B`` ticks right after the committed ones,
all its tokens at one shared level lowered by ``K / B`` per call, and is clean and committed
``B`` ticks later, just as the previous block runs out. Each block is decided jointly, as a
``chunk`` plan is (the per-token pyramid decides the near token while the far ones are still
nearly pure noise, and at a fork of the demonstrations it can settle between the branches:
docs/BENCHMARKS.md, "pusht_freeze_restart"), yet the cost stays one call per tick and every
call sees the newest observation. Tokens after the block wait at level K (with the default
causal attention they do not influence it). Measured in closed loop (gym-pusht state task, one
checkpoint, seeds 0-499; docs/BENCHMARKS.md, session 16): blocks of 6 reach 0.933 mean max
coverage and 0.760 success, the pyramid 0.899 / 0.656, ``chunk`` 0.934 / 0.704; on the image
task (session 17) 0.661 / 0.128, the pyramid 0.649 / 0.076, ``chunk`` 0.690 / 0.110.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.runtime.planning import (DEFAULT_COMMIT_STEPS, ObsWindow, Planner, PlannerConfig, PlanResult,
                                        TimedAction)



def block_pattern(n_future: int, delay_tokens: int, block: int, phase: int, K: int) -> np.ndarray:
    """Post-tick levels of the ``n_future`` future tokens in block mode, int64.

    ``phase`` ``p = 0 .. block - 1`` counts the ticks since the current block entered; the
    block starts at future token ``a = delay_tokens + block - 1 - p`` (it moves one token
    towards the head per tick, as the window shifts) and::

        level[j] = 0                                   j <  a          (committed)
        level[j] = round(K * (block - 1 - p) / block)   a <= j < a + block   (the block)
        level[j] = K                                   j >= a + block  (not started)

    so the block is clean at ``p = block - 1``, when it starts at token ``delay_tokens``: its
    first action is the first one the robot needs after the frozen ones. Needs
    ``delay_tokens + 2 * block - 1 <= n_future`` (the block entering at ``p = 0`` fits).
    """
    if block < 1 or not 0 <= phase < block or delay_tokens < 0 or delay_tokens + 2 * block - 1 > n_future:
        raise ValueError(f"block pattern needs block >= 1, 0 <= phase < block and delay_tokens + 2 * block - 1 <= "
                         f"n_future; got block={block}, phase={phase}, delay_tokens={delay_tokens}, "
                         f"n_future={n_future}")
    start = delay_tokens + block - 1 - phase
    level = (K * (block - 1 - phase) + block // 2) // block
    j = np.arange(n_future, dtype=np.int64)
    return np.where(j < start, 0, np.where(j < start + block, level, K)).astype(np.int64)


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
        self.calls_per_tick = int(config.calls_per_tick or (policy.config.num_sampling_steps if auto else 1))
        self.block_tokens = self._block_size(config, policy)
        if self.block_tokens is not None:
            B = self.block_tokens
            self.commit_steps = int(config.delay_steps)
            self.frozen_tokens = math.ceil(self.commit_steps / g.A)
            if B > self._max_block(config):
                raise ValueError(
                    f"block_tokens={B} with delay_steps={config.delay_steps} needs {self.frozen_tokens + 2 * B - 1} "
                    f"future tokens (frozen + 2 * block - 1) but the window has {g.F}: use block_tokens <= "
                    f"{self._max_block(config)}")
            self.ramp_tokens = B  # a block needs B ticks from pure noise to clean (also sets priming calls)
            # the post-tick pattern of every phase, computed once (the tick only picks one)
            self._block_patterns = [block_pattern(g.F, self.frozen_tokens, B, p, g.K) for p in range(B)]
            self.level_pattern = self._block_patterns[B - 1]
        else:
            commit = config.delay_steps if auto else (DEFAULT_COMMIT_STEPS if config.commit_steps is None
                                                     else config.commit_steps)
            self.commit_steps = max(int(commit), config.delay_steps)
            self.frozen_tokens = math.ceil(self.commit_steps / g.A)
            if self.frozen_tokens > g.F - 1:
                raise ValueError(
                    f"delay_steps={config.delay_steps} / commit_steps={self.commit_steps} need {self.frozen_tokens} "
                    f"frozen tokens but the window has only {g.F} future tokens (the first new action must fit in "
                    f"the window)")
            default_ramp = 1 if auto else max(1, g.F - 1 - self.frozen_tokens)
            self.ramp_tokens = int(config.ramp_tokens or default_ramp)
            self.level_pattern = pyramid_pattern(g.F, self.frozen_tokens, self.ramp_tokens, g.K)
        self.reset()

    def _block_size(self, config: PlannerConfig, policy: DiffusionForcingPolicy) -> int | None:
        """Block size in tokens, or ``None`` for the per-token pyramid (see ``PlannerConfig.block_tokens``)."""
        if config.mode != "stream" or config.block_tokens == 0:
            return None
        if config.block_tokens is not None:
            return int(config.block_tokens)
        default = policy.config.stream_block_tokens
        if default is None or config.commit_steps is not None or config.ramp_tokens is not None:
            return None
        return max(1, min(int(default), self._max_block(config)))

    def _max_block(self, config: PlannerConfig) -> int:
        """Largest block the window holds after the ``delay_steps`` frozen tokens (see :func:`block_pattern`)."""
        g = self.geometry
        return (g.F - math.ceil(config.delay_steps / g.A) + 1) // 2

    def _pattern_for(self, head: int, rebuilt: bool) -> np.ndarray:
        """Post-tick pattern of the future tokens for the tick whose head token starts at ``head``."""
        if self.block_tokens is None:
            return self.level_pattern
        B, g = self.block_tokens, self.geometry
        token = (head - self._phase) // g.A
        if rebuilt or self._block_origin is None:
            self._block_origin = token - (B - 1)  # a (re)built buffer completes a block at once (primed)
        self.level_pattern = self._block_patterns[(token - self._block_origin) % B]
        return self.level_pattern

    def describe(self) -> str:
        calls = f"{self.calls_per_tick} call(s) per tick"
        if self.block_tokens is not None:
            return f"{self.config.mode}: blocks of {self.block_tokens} token(s), {calls}"
        return (f"{self.config.mode}: pyramid, {self.commit_steps} committed step(s), "
                f"{self.ramp_tokens}-token ramp, {calls}")

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
        self._block_origin: int | None = None
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
        post[g.C:] = np.minimum(pre[g.C:], self._pattern_for(head, rebuilt))
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
