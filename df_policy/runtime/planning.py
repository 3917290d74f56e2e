"""What every action planner (streaming or chunked) consumes and produces, and how to pick one.

Units and time: planners work in *normalised* units (the model's); the runtime converts to and
from robot units. Time is discretised into control steps of ``period_s`` seconds; step ``u`` is
the instant of observation ``u``, and action ``u`` is meant to be executed at that instant
(the training convention: action ``i`` shares the instant of observation ``i``). A planner is
called with the newest observation window (newest observation = step ``t``, at time
``ObsWindow.time`` seconds on the runtime clock) and returns clean actions stamped with their
target time ``ObsWindow.time + (u - t) * period_s``.

Window geometry (shared by all planners, equal to the training layout for ``A = 1``): the
network sees observation steps ``t - To + 1 .. t`` at time indices ``0 .. To - 1`` and ``N =
horizon / A`` action tokens. ``C = (To - 1) // A`` tokens lie entirely in the past (*context*:
executed actions); token ``C`` (the *head*) contains the current step; tokens ``C + 1 ..`` are
the future. Each token's time index is the step of its first action minus ``t - To + 1``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from df_policy.model.observation import OBS_PREFIX, EncodedObs
from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.model.schedules import SCHEDULE_NAMES

MODES = ("stream", "autoregressive", "chunk")
DEFAULT_COMMIT_STEPS = 4
"""Default ``commit_steps`` of the ``stream`` mode (see :class:`PlannerConfig`)."""


@dataclass
class PlannerConfig:
    """How actions are generated from the model at run time.

    Attributes:
        mode: ``"stream"`` (semi-autoregressive pyramid buffer, a fixed small number of network
            calls per tick), ``"autoregressive"`` (stream with a one-token ramp: each tick
            denoises the next token from pure noise to clean in ``calls_per_tick`` calls) or
            ``"chunk"`` (Diffusion Policy style: fully denoise a window with a scheduling
            matrix every ``replan_every`` steps).
        delay_steps: control steps that elapse while one inference runs (latency / period,
            rounded up). That many planned actions after the current step are kept clean and
            frozen (level 0, never changed by a call), so the robot executes them while the
            next call runs; new actions start that far ahead. The default 1 fits an inference
            faster than one period. 0 plans the action of the observation's own step, which a
            real control loop can only execute if inference is instantaneous (otherwise it
            arrives late and is dropped): use 0 only to measure pure prediction in replay.
            ``PolicyRuntime.stats()["recommended_delay_steps"]`` reports what the measured
            latency needs.
        commit_steps: stream modes: planned actions after the current step that are kept clean
            and frozen (committed), at least ``delay_steps``; ``None`` = :data:`DEFAULT_COMMIT_STEPS`
            for ``stream``, ``delay_steps`` for ``autoregressive``. A committed plan is what a
            chunked policy gets from executing ``Ta`` actions open loop: without it a
            multimodal policy that re-decides every tick can dither between modes (PushT:
            mean max coverage 0.77 with none vs 0.85 with 4 on one checkpoint, 0.67 vs 0.88 on
            another, 0.80 vs 0.67 on a third; docs/BENCHMARKS.md). The
            price is reaction time: a new observation first changes the action ``commit_steps``
            steps later (a chunk of ``Ta`` reacts after ``Ta / 2`` steps on average).
        calls_per_tick: stream modes: denoiser calls per tick (``None``: 1 for ``stream``,
            ``num_sampling_steps`` for ``autoregressive``).
        block_tokens: ``stream`` only (other modes ignore it, so one setting can serve a
            comparison of modes): plan in *blocks* of this many tokens instead of the
            per-token pyramid; ``0`` = the pyramid; ``None`` = the policy's
            ``stream_block_tokens`` (the pyramid where that is ``None``, or where
            ``commit_steps`` / ``ramp_tokens`` are given; a default block larger than the
            window allows with ``delay_steps`` is capped to fit). Every ``block_tokens`` ticks a
            new block enters from pure noise right after the committed actions; all its tokens share one
            noise level, lowered by ``K / block_tokens`` per tick, and it becomes clean (and is
            committed) after ``block_tokens`` ticks, as the previous block runs out. This is a
            chunk denoised jointly (as ``chunk`` does) but spread over the ticks, one network
            call each, every call seeing the newest observation. ``commit_steps`` and
            ``ramp_tokens`` do not apply; see :func:`~df_policy.runtime.streamer.block_pattern`.
        ramp_tokens: stream modes: tokens over which the noise level rises from 0 to K
            after the frozen ones (``None``: the rest of the window, ``future tokens - 1 -
            frozen``, for ``stream``; 1 for ``autoregressive``); a token needs ``ramp_tokens``
            ticks from pure noise to clean. :mod:`df_policy.runtime.streamer` says how the
            defaults were chosen.
        context_level: training level (0..K) at which executed past actions are shown to the
            network (``None`` = the policy's ``stabilization_level``; 0 = exactly clean).
        schedule: chunk mode: scheduling matrix name (one of ``full_sequence``,
            ``autoregressive``, ``pyramid``, ``trapezoid``) or an explicit ``(R, N)`` integer
            matrix in sampling-step units; ``None`` = ``full_sequence``.
        replan_every: chunk mode: steps between plans (``Ta``; ``None`` = the policy's
            ``n_action_steps``).
        prime: stream modes: on the first tick (or after a gap longer than the window) build
            the level pyramid with extra calls, so the first actions are as denoised as later
            ones; otherwise the first tick jumps straight to the pattern.
        history_guidance: history-guidance weight passed to every denoiser call (0 = off).
        eta: sampling stochasticity of every denoiser move, in [0, 1]: 0 = deterministic DDIM
            (the noise is drawn once, when a token enters the buffer), 1 = the DDPM posterior
            (fresh noise on every move, as Diffusion Policy samples).
        seed: seed of the planner's noise generator (runs are reproducible).
    """

    mode: str = "stream"
    delay_steps: int = 1
    commit_steps: int | None = None
    block_tokens: int | None = None
    calls_per_tick: int | None = None
    ramp_tokens: int | None = None
    context_level: int | None = None
    schedule: str | np.ndarray | None = None
    replan_every: int | None = None
    prime: bool = True
    history_guidance: float = 0.0
    eta: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"PlannerConfig: {msg}")

        if self.mode not in MODES:
            fail(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.delay_steps < 0:
            fail(f"delay_steps must be >= 0, got {self.delay_steps}")
        if self.commit_steps is not None and self.commit_steps < 0:
            fail(f"commit_steps must be >= 0 or None, got {self.commit_steps}")
        for name in ("calls_per_tick", "ramp_tokens", "replan_every"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                fail(f"{name} must be >= 1 or None, got {value}")
        if self.block_tokens is not None and (isinstance(self.block_tokens, bool) or int(self.block_tokens) < 0):
            fail(f"block_tokens must be >= 0 (0 = the per-token pyramid) or None, got {self.block_tokens!r}")
        if self.block_tokens:  # other modes ignore it, as they ignore the pyramid's settings
            clash = [n for n in ("commit_steps", "ramp_tokens") if getattr(self, n) is not None]
            if clash:
                fail(f"block_tokens replaces {' and '.join(clash)}: set one or the other")
        if self.context_level is not None and self.context_level < 0:
            fail(f"context_level must be >= 0 or None, got {self.context_level}")
        if isinstance(self.schedule, str) and self.schedule not in SCHEDULE_NAMES:
            fail(f"schedule must be one of {SCHEDULE_NAMES} or a matrix, got {self.schedule!r}")
        if not math.isfinite(self.history_guidance):
            fail("history_guidance must be finite")
        if not 0.0 <= self.eta <= 1.0:
            fail(f"eta must be in [0, 1], got {self.eta}")


@dataclass
class ObsWindow:
    """The newest observation window, ready for the model.

    Attributes:
        obs: ``obs.<key>`` tensors ``(1, To, ...)`` (images uint8 cropped CHW, low-dim
            normalised) and ``obs_is_pad`` ``(1, To)`` bool (True = missing step).
        step: control step ``t`` of the newest observation (window index ``To - 1``).
        time: stamp of the newest observation (seconds, runtime clock).
        executed: step -> action actually sent at that step, normalised ``(Da,)``.
        stamps: per window step, the stamp of its observation (``None`` = missing). When given,
            each observation is encoded once and its features reused while it stays in the
            window (keyed by step and stamp); ``None`` = encode the whole window every time.
    """

    obs: dict[str, Tensor]
    step: int
    time: float
    executed: Mapping[int, np.ndarray] = field(default_factory=dict)
    stamps: list[float | None] | None = None


@dataclass(frozen=True)
class TimedAction:
    """One clean planned action.

    Attributes:
        step: control step it belongs to.
        time: target execution time (seconds, runtime clock).
        action: ``(Da,)`` float32, normalised units.
        plan_id: id of the planner call that made it clean (for boundary statistics).
        obs_time: stamp of the observation it was planned from.
    """

    step: int
    time: float
    action: np.ndarray
    plan_id: int
    obs_time: float


@dataclass
class PlanResult:
    """Output of one planner call: newly clean actions (ascending steps) and its cost."""

    actions: list[TimedAction]
    network_calls: int = 0
    encoder_calls: int = 0
    plan_id: int = -1


class WindowGeometry:
    """Token layout of the model window (see the module docstring)."""

    def __init__(self, policy: DiffusionForcingPolicy) -> None:
        cfg = policy.config
        self.To = cfg.n_obs_steps
        self.A = cfg.actions_per_token
        self.N = cfg.n_tokens
        self.C = (self.To - 1) // self.A
        self.F = self.N - self.C
        self.K = cfg.num_train_levels
        self.Da = cfg.action_dim
        if self.F < 1:
            raise ValueError("the window has no future token (horizon too short for n_obs_steps)")

    def token_steps(self, head_step: int) -> np.ndarray:
        """``(N,)`` first step of every token when the head token starts at ``head_step``."""
        return head_step + (np.arange(self.N) - self.C) * self.A

    def times(self, head_step: int, t: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(obs_times (To,), action_times (N,))`` for the newest observation at step ``t``."""
        first_obs = t - self.To + 1
        obs_times = torch.arange(self.To, device=device)
        action_times = torch.as_tensor(self.token_steps(head_step) - first_obs, device=device)
        return obs_times, action_times


class Planner(ABC):
    """Turns observation windows into clean, time-stamped actions (normalised units)."""

    def __init__(self, policy: DiffusionForcingPolicy, config: PlannerConfig, period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.policy = policy
        self.config = config
        self.period_s = float(period_s)
        self.geometry = WindowGeometry(policy)
        K = self.geometry.K
        level = policy.config.stabilization_level if config.context_level is None else int(config.context_level)
        if not 0 <= level <= K:
            raise ValueError(f"context_level must be in [0, K={K}], got {level}")
        self.context_level = level
        self.network_calls = 0
        self.encoder_calls = 0
        self._plan_id = 0
        self._generator = torch.Generator(device=policy.device)
        self._generator.manual_seed(config.seed)

    def reset(self) -> None:
        """Forget the buffer (call per episode); re-seeds the noise generator."""
        self._generator.manual_seed(self.config.seed)
        self._features: dict[tuple[int, float], Tensor] = {}

    @abstractmethod
    def describe(self) -> str:
        """The schedule in effect, one line (for reports and logs)."""

    @abstractmethod
    def update(self, window: ObsWindow) -> PlanResult:
        """Plan from the newest observation window; returns actions that became clean."""

    # ------------------------------------------------------------------ shared helpers
    def _noise(self, n_actions: int) -> Tensor:
        return torch.randn(1, n_actions, self.geometry.Da, generator=self._generator, device=self.policy.device)

    def _denoise(self, x: Tensor, cur: Tensor, target: Tensor, encoded, times: tuple[Tensor, Tensor]) -> Tensor:
        self.network_calls += 1
        return self.policy.denoise_step(
            x, cur[None], target[None], encoded, history_guidance=self.config.history_guidance,
            obs_times=times[0], action_times=times[1], eta=self.config.eta, generator=self._generator,
        )

    @torch.no_grad()
    def _encode(self, window: ObsWindow) -> EncodedObs:
        """Encode the window; with ``window.stamps`` only observations not seen before."""
        self.encoder_calls += 1
        dev = self.policy.device
        obs = {k: v.to(dev) for k, v in window.obs.items()}
        if window.stamps is None:
            return self.policy.encode_observations(obs)
        To = self.geometry.To
        missing = obs["obs_is_pad"].to(torch.bool)
        keys = [(window.step - To + 1 + i, window.stamps[i]) for i in range(To)]
        todo = [i for i in range(To) if not missing[0, i] and keys[i] not in self._features]
        if todo:
            index = torch.as_tensor(todo, device=dev)
            fresh = self.policy.run_obs_encoder({k: v.index_select(1, index) for k, v in obs.items()
                                                 if k.startswith(OBS_PREFIX)})
            for j, i in enumerate(todo):
                self._features[keys[i]] = fresh[:, j]
        zeros = torch.zeros(1, self.policy.obs_encoder.out_dim, device=dev)
        features = torch.stack([zeros if missing[0, i] else self._features[keys[i]] for i in range(To)], dim=1)
        for key in [k for k in self._features if k[0] <= window.step - To]:
            del self._features[key]
        return EncodedObs(features, missing)

    def _show_context(self, values: Tensor) -> Tensor:
        """Context values ``(1, n, Da)`` as shown to the network at ``context_level``."""
        if self.context_level == 0:
            return values
        return self.policy.noise.add_noise(values, self._noise(values.shape[1]), self.context_level)

    def _next_plan_id(self) -> int:
        self._plan_id += 1
        return self._plan_id


def make_planner(policy: DiffusionForcingPolicy, config: PlannerConfig, period_s: float) -> Planner:
    """The planner for ``config.mode``."""
    if config.mode in ("stream", "autoregressive"):
        from df_policy.runtime.streamer import ActionStreamer

        return ActionStreamer(policy, config, period_s)
    from df_policy.runtime.chunking import ChunkPlanner

    return ChunkPlanner(policy, config, period_s)
