"""Causal transformer denoiser over time-indexed action tokens with per-token noise levels.

Sequence layout: ``[obs_0 .. obs_{To-1}, act_0 .. act_{N-1}]``. Observation step ``j`` sits at
time ``j``; action token ``n`` covers actions ``n*A .. n*A + A - 1`` (``A`` =
``actions_per_token``) and sits at the time of its first action, ``n*A``. Action ``i`` and
observation ``i`` are the same instant (the action window starts at the first observation).

Attention (True = may attend), all decided by time, never by sequence position:

* action token at time ``tau``: observation steps with time ``<= tau`` and action tokens with
  time ``<= tau`` (itself and earlier tokens);
* observation step at time ``j``: observation steps with time ``<= j`` (never actions).

Positions enter only through rotary embeddings (RoPE) on the time index, so attention depends
on time differences and the horizon is not fixed by the architecture: sequences longer than
those seen in training, or shifted time indices, are accepted.

Noise levels are strictly per token: each action token's level is embedded (sinusoidal -> MLP),
added to that token's input, and also drives that token's adaptive LayerNorm (shift / scale /
gate, adaLN-Zero) in every block. No level information is pooled across tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


FUTURE_ATTENTION = ("causal", "full")


@dataclass
class DenoiserConfig:
    """Transformer size (the data-dependent sizes are passed to :class:`CausalDenoiser`).

    Attributes:
        d_model: token width.
        n_layers: transformer blocks.
        n_heads: attention heads; ``d_model / n_heads`` must be even (RoPE rotates pairs).
        mlp_ratio: hidden width of each block's MLP relative to ``d_model``.
        dropout: dropout on attention weights and MLP/residual outputs (training only).
        rope_base: RoPE wavelength base; time indices are in control steps.
        future_attention: ``"causal"`` (an action token sees only action tokens up to its own
            time) or ``"full"`` (action tokens at or after the newest observation see each other
            in both directions, as Diffusion Forcing's non-causal planning configuration; past
            tokens stay causal). Costs nothing per call: only the mask changes.
        architecture: always ``"transformer"`` (``"unet"`` selects
            :class:`~df_policy.model.unet_denoiser.UNetDenoiserConfig` in ``policy.denoiser``).
    """

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    rope_base: float = 10000.0
    future_attention: str = "causal"
    architecture: str = "transformer"

    def __post_init__(self) -> None:
        if self.architecture != "transformer":
            raise ValueError(f"DenoiserConfig: architecture must be 'transformer', got {self.architecture!r}")
        if self.future_attention not in FUTURE_ATTENTION:
            raise ValueError(f"DenoiserConfig: future_attention must be one of {FUTURE_ATTENTION}, "
                             f"got {self.future_attention!r}")
        if self.d_model < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError("DenoiserConfig: d_model, n_layers and n_heads must be >= 1")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"DenoiserConfig: d_model / n_heads must be an even integer, got {self.d_model} / {self.n_heads}"
            )
        if self.mlp_ratio <= 0 or not 0.0 <= self.dropout < 1.0 or self.rope_base <= 1.0:
            raise ValueError("DenoiserConfig: need mlp_ratio > 0, 0 <= dropout < 1, rope_base > 1")


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``(...,)`` float values -> ``(..., dim)`` [cos | sin] features (``dim`` even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def rope_tables(times: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """Rotary tables for float ``times (L,)``: ``cos, sin`` of shape ``(L, head_dim // 2)``."""
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, device=times.device, dtype=torch.float32) / half)
    angles = times.float()[:, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x (B, H, L, Dh)`` pairwise (first half with second half) by the tables."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE and an explicit boolean mask."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, allowed: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    """Pre-norm transformer block with per-token adaptive LayerNorm (adaLN-Zero).

    ``cond (B, L, d)`` holds one conditioning vector per token (its noise-level embedding for
    action tokens); it yields a per-token shift / scale / gate for both sub-layers, zero-initialised
    so every block starts as the identity.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = SelfAttention(d, config.n_heads, config.dropout)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        hidden = int(round(d * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.drop = nn.Dropout(config.dropout)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, cond: Tensor, allowed: Tensor, cos: Tensor, sin: Tensor,
                modulation: Tensor | None = None) -> Tensor:
        """``modulation``: ``self.modulation(cond)`` when already known (level lookup tables)."""
        mod = self.modulation(cond) if modulation is None else modulation
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.drop(self.attn(h, allowed, cos, sin))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.drop(self.mlp(h))


def causal_time_mask(obs_times: Tensor, action_times: Tensor, future_attention: str = "causal") -> Tensor:
    """Boolean ``(To + N, To + N)`` attention mask (True = may attend) for the layout above.

    With ``future_attention="full"`` action tokens whose time is at or after the newest
    observation time also attend to each other regardless of order."""
    obs_times = obs_times.float()
    action_times = action_times.float()
    obs_to_obs = obs_times[None, :] <= obs_times[:, None]
    obs_to_act = torch.zeros(len(obs_times), len(action_times), dtype=torch.bool, device=obs_times.device)
    act_to_obs = obs_times[None, :] <= action_times[:, None]
    act_to_act = action_times[None, :] <= action_times[:, None]
    if future_attention == "full":
        future = action_times >= obs_times.max()
        act_to_act = act_to_act | (future[None, :] & future[:, None])
    top = torch.cat([obs_to_obs, obs_to_act], dim=1)
    bottom = torch.cat([act_to_obs, act_to_act], dim=1)
    return torch.cat([top, bottom], dim=0)


def check_denoiser_inputs(noisy_actions: Tensor, levels: Tensor, obs_features: Tensor, action_dim: int,
                          actions_per_token: int) -> tuple[int, int, int]:
    """Shapes of a denoiser call (the contract of :meth:`CausalDenoiser.forward`) -> ``(B, N, To)``;
    a ValueError names the argument that does not fit."""
    B, T, Da = noisy_actions.shape
    A = actions_per_token
    if Da != action_dim or T % A:
        raise ValueError(f"noisy_actions must be (B, N*{A}, {action_dim}), got {tuple(noisy_actions.shape)}")
    N = T // A
    if levels.shape != (B, N):
        raise ValueError(f"levels must be (B, N) = ({B}, {N}), got {tuple(levels.shape)}")
    if obs_features.ndim != 3 or obs_features.shape[0] != B:
        raise ValueError(f"obs_features must be (B, To, obs_dim), got {tuple(obs_features.shape)}")
    return B, N, obs_features.shape[1]


class CausalDenoiser(nn.Module):
    """Predicts ``v`` for every action from noisy actions, per-token levels and observations.

    Args:
        config: transformer sizes.
        action_dim: ``Da``.
        obs_dim: size of the per-step observation feature vector.
        actions_per_token: ``A``, consecutive actions grouped into one token.
        num_levels: ``K``; levels are rescaled to a 0..1000 range before embedding.
    """

    def __init__(
        self,
        config: DenoiserConfig,
        action_dim: int,
        obs_dim: int,
        actions_per_token: int = 1,
        num_levels: int = 1000,
    ) -> None:
        super().__init__()
        if action_dim < 1 or obs_dim < 1 or actions_per_token < 1 or num_levels < 1:
            raise ValueError("CausalDenoiser: action_dim, obs_dim, actions_per_token, num_levels must be >= 1")
        self.config = config
        self.action_dim = action_dim
        self.actions_per_token = actions_per_token
        self.num_levels = num_levels
        d = config.d_model
        self.action_in = nn.Linear(actions_per_token * action_dim, d)
        self.obs_in = nn.Linear(obs_dim, d)
        self.null_obs = nn.Parameter(torch.randn(d) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: observation, 1: action
        self.level_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.obs_cond = nn.Parameter(torch.zeros(d))  # adaLN condition of observation tokens
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, actions_per_token * action_dim)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self._level_tables: tuple[Tensor, list[Tensor], list[Tensor]] | None = None

    def level_tables(self) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """What depends only on the integer level, for every level ``0..K``: its embedding
        ``(K + 1, d)``, each block's adaLN modulation ``(K + 1, 6d)``, and each block's constant
        modulation of the observation tokens ``(6d,)``. Differentiable."""
        levels = torch.arange(self.num_levels + 1, device=self.head.weight.device)
        emb = self.level_mlp(sinusoidal_embedding(levels.float() * (1000.0 / self.num_levels), self.config.d_model))
        return emb, [b.modulation(emb) for b in self.blocks], [b.modulation(self.obs_cond) for b in self.blocks]

    @torch.no_grad()
    def freeze_level_tables(self) -> None:
        """Inference: keep :meth:`level_tables` so a forward pass looks the level embedding and
        modulations up instead of running the level MLP and the modulation layers. Dropped by
        ``train()``; rebuild after changing the weights in eval mode."""
        self._level_tables = self.level_tables()

    def train(self, mode: bool = True) -> "CausalDenoiser":
        if mode:
            self._level_tables = None
        return super().train(mode)

    def forward(
        self,
        noisy_actions: Tensor,
        levels: Tensor,
        obs_features: Tensor,
        obs_missing: Tensor | None = None,
        *,
        obs_times: Tensor | None = None,
        action_times: Tensor | None = None,
    ) -> Tensor:
        """
        Args:
            noisy_actions: ``(B, N * A, Da)`` float, each token at its own level.
            levels: ``(B, N)`` integer training levels in ``0..K``, one per token.
            obs_features: ``(B, To, obs_dim)`` float, one vector per observation step.
            obs_missing: ``(B, To)`` bool, True = missing step (replaced by a learned null
                embedding); None = nothing missing.
            obs_times: ``(To,)`` time index of each observation step; default ``0..To-1``.
            action_times: ``(N,)`` time index of each token; default ``n * A``.
        Returns:
            ``(B, N * A, Da)`` v-prediction, dtype of ``noisy_actions``.
        """
        B, N, To = check_denoiser_inputs(noisy_actions, levels, obs_features, self.action_dim, self.actions_per_token)
        A, Da = self.actions_per_token, self.action_dim
        device = noisy_actions.device
        obs_times = torch.arange(To, device=device) if obs_times is None else obs_times.to(device)
        action_times = torch.arange(N, device=device) * A if action_times is None else action_times.to(device)
        if obs_times.shape != (To,) or action_times.shape != (N,):
            raise ValueError(f"obs_times must be ({To},) and action_times ({N},)")

        tables = None if self.training else self._level_tables
        if tables is None and B * N > self.num_levels + 1:
            # a large batch has more action tokens than there are levels: running the level MLP
            # and the modulation layers once per level and gathering is the same function
            # (gradients included) at a fraction of the cost (training at batch 256: ~4x fewer rows)
            tables = self.level_tables()
        if tables is not None:
            level_emb = tables[0][levels].to(noisy_actions.dtype)
        else:
            scaled_levels = levels.float() * (1000.0 / self.num_levels)
            level_emb = self.level_mlp(sinusoidal_embedding(scaled_levels, self.config.d_model))
            level_emb = level_emb.to(noisy_actions.dtype)  # (B, N, d), one vector per token
        act = self.action_in(noisy_actions.reshape(B, N, A * Da)) + level_emb + self.type_embedding[1]
        obs = self.obs_in(obs_features.to(act.dtype))
        if obs_missing is not None:
            obs = torch.where(obs_missing[..., None], self.null_obs.to(obs.dtype), obs)
        obs = obs + self.type_embedding[0]

        x = torch.cat([obs, act], dim=1)
        cond = torch.cat([self.obs_cond.to(act.dtype).expand(B, To, -1), level_emb], dim=1)
        allowed = causal_time_mask(obs_times, action_times, self.config.future_attention)
        head_dim = self.config.d_model // self.config.n_heads
        cos, sin = rope_tables(torch.cat([obs_times, action_times]), head_dim, self.config.rope_base)
        for i, block in enumerate(self.blocks):
            modulation = None
            if tables is not None:  # the same values as block.modulation(cond), looked up
                obs_mod = tables[2][i].to(x.dtype).expand(B, To, -1)
                modulation = torch.cat([obs_mod, tables[1][i][levels].to(x.dtype)], dim=1)
            x = block(x, cond, allowed, cos, sin, modulation)
        out = self.head(self.norm_out(x[:, To:]))
        return out.reshape(B, N * A, Da)
