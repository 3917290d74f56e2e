"""Training noise levels: which level every action token gets in a training sample.

Diffusion Forcing trains with an independent uniform level per token ("noise as masking"), so
that any scheduling matrix is in-distribution *in principle*. In practice the patterns the
runtime uses are rare under independent levels: a clean, executed context followed by a short
noise ramp (the ``stream`` pyramid) has a probability of about 1e-4 per window, and "all future
tokens at one level" (``chunk``, full-sequence DDIM) almost never occurs. This module draws each
sample's levels from a configurable **mixture** of patterns (one pattern per sample):

``uniform``
    independent uniform levels in ``0..K`` for every token (the paper's ``random_all``).
``stream``
    the runtime's pyramid as the network sees it before a call: ``D`` frozen clean tokens
    (``D`` uniform in ``0..max_frozen``), then levels rising linearly over ``R`` tokens
    (``R`` uniform in ``1..F - D``) with a random sub-token phase ``u`` in ``(0, 1]``::

        level[j] = 0                                      j < D
        level[j] = min(K, round((j - D + u) * K / R))      j >= D

    (``u = 1`` is the steady state of one call per tick, smaller ``u`` the sub-steps of
    several calls per tick and priming).
``shared``
    ``D`` frozen clean tokens (``D = 0`` half of the time), then one level shared by every
    remaining future token (the rows of a full-sequence chunk, Diffusion Policy style).

Token roles follow the window layout of :mod:`df_policy.runtime.planning`: the first ``C =
(To - 1) // A`` tokens lie entirely in the past (*context*: the executed actions at run time),
the rest are the *future* (``F = N - C``). In the ``stream`` and ``shared`` patterns context
tokens get a small level uniform in ``context_levels`` (the runtime shows executed actions at
``stabilization_level``). With probability ``context_dropout`` a sample's context tokens are all
set to ``K`` (masked, as unknown past actions are at run time), whatever the pattern, so the
policy cannot lean on copying the last executed action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

LEVEL_PATTERNS = ("uniform", "stream", "shared")


@dataclass
class LevelSamplingConfig:
    """Mixture of training level patterns (see the module docstring).

    Attributes:
        mixture: pattern name -> weight (>= 0, normalised; at least one > 0). Default: the
            paper's independent uniform levels only.
        max_frozen: largest number of frozen clean future tokens in ``stream`` / ``shared``
            (the runtime freezes ``ceil(delay_steps / A)``); capped at ``F - 1``.
        context_levels: ``(lo, hi)`` inclusive range of the level given to context tokens in
            ``stream`` / ``shared`` samples (training levels ``0..K``).
        context_dropout: per-sample probability that every context token is masked (level K).
    """

    mixture: dict[str, float] = field(default_factory=lambda: {"uniform": 1.0})
    max_frozen: int = 2
    context_levels: tuple[int, int] = (0, 20)
    context_dropout: float = 0.0

    def __post_init__(self) -> None:
        self.mixture = {str(k): float(v) for k, v in dict(self.mixture).items()}
        self.context_levels = (int(self.context_levels[0]), int(self.context_levels[1]))

        def fail(msg: str) -> None:
            raise ValueError(f"LevelSamplingConfig: {msg}")

        unknown = sorted(set(self.mixture) - set(LEVEL_PATTERNS))
        if unknown:
            fail(f"unknown pattern(s) {unknown} in mixture; choose from {LEVEL_PATTERNS}")
        if any(w < 0 for w in self.mixture.values()) or sum(self.mixture.values()) <= 0:
            fail(f"mixture weights must be >= 0 with a positive sum, got {self.mixture}")
        if self.max_frozen < 0:
            fail(f"max_frozen must be >= 0, got {self.max_frozen}")
        lo, hi = self.context_levels
        if not 0 <= lo <= hi:
            fail(f"context_levels must be (lo, hi) with 0 <= lo <= hi, got {self.context_levels}")
        if not 0.0 <= self.context_dropout <= 1.0:
            fail(f"context_dropout must be in [0, 1], got {self.context_dropout}")

    @classmethod
    def coerce(cls, value: "LevelSamplingConfig | Mapping | None") -> "LevelSamplingConfig":
        if value is None:
            return cls()
        return value if isinstance(value, cls) else cls(**dict(value))


def _randint(lo: Tensor | int, hi: Tensor | int, shape: tuple[int, ...], generator, device) -> Tensor:
    """Uniform integers in ``[lo, hi]`` (inclusive; tensors broadcast against ``shape``)."""
    u = torch.rand(shape, generator=generator, device=device)
    lo_t = torch.as_tensor(lo, device=device, dtype=torch.float32)
    hi_t = torch.as_tensor(hi, device=device, dtype=torch.float32)
    return torch.minimum(lo_t + torch.floor(u * (hi_t - lo_t + 1)), hi_t).long()


def sample_levels(
    cfg: LevelSamplingConfig,
    batch_size: int,
    n_tokens: int,
    n_context: int,
    K: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Draw ``(levels, pattern)``: int64 levels ``(B, N)`` in ``0..K`` and the pattern index
    ``(B,)`` into :data:`LEVEL_PATTERNS`. Padding is the caller's business (set to ``K``)."""
    B, N, C = batch_size, n_tokens, n_context
    F = N - C
    if F < 1:
        raise ValueError(f"the window has no future token (N={N}, context={C})")
    names = list(LEVEL_PATTERNS)
    weights = torch.tensor([cfg.mixture.get(n, 0.0) for n in names], device=device)
    pattern = torch.multinomial(weights.expand(B, -1), 1, generator=generator).squeeze(1) if B else \
        torch.zeros(0, dtype=torch.long, device=device)

    levels = torch.randint(0, K + 1, (B, N), generator=generator, device=device)  # uniform
    j = torch.arange(F, device=device)[None, :].float()
    max_frozen = min(cfg.max_frozen, F - 1)

    # stream: D frozen, then a ramp over R tokens with a sub-token phase u in (0, 1].
    D = _randint(0, max_frozen, (B,), generator, device)
    R = _randint(1, F - D, (B,), generator, device)
    u = 1.0 - torch.rand(B, generator=generator, device=device)
    ramp = torch.round((j - D[:, None] + u[:, None]) * K / R[:, None].float()).clamp(0, K).long()
    stream = torch.where(j < D[:, None], torch.zeros_like(ramp), ramp)

    # shared: D frozen half of the time, then one level for every other future token.
    D2 = torch.where(torch.rand(B, generator=generator, device=device) < 0.5, torch.zeros_like(D),
                     _randint(0, max_frozen, (B,), generator, device))
    level = torch.randint(0, K + 1, (B, 1), generator=generator, device=device)
    shared = torch.where(j < D2[:, None], torch.zeros_like(ramp), level.expand(B, F))

    structured = torch.where((pattern == names.index("stream"))[:, None], stream, shared)
    is_uniform = (pattern == names.index("uniform"))[:, None]
    levels[:, C:] = torch.where(is_uniform, levels[:, C:], structured)
    if C:
        lo, hi = cfg.context_levels
        ctx = _randint(min(lo, K), min(hi, K), (B, C), generator, device)
        levels[:, :C] = torch.where(is_uniform, levels[:, :C], ctx)
        drop = torch.rand(B, generator=generator, device=device) < cfg.context_dropout
        levels[:, :C] = torch.where(drop[:, None], torch.full_like(ctx, K), levels[:, :C])
    return levels, pattern
