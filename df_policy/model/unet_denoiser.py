"""1-D convolutional U-Net denoiser over the action window, with per-token noise levels.

The alternative to :class:`~df_policy.model.denoiser.CausalDenoiser` behind the same call
contract (``forward(noisy_actions, levels, obs_features, obs_missing)`` -> ``v``), shaped like
Diffusion Policy's conditional 1-D U-Net: residual convolution blocks over the token axis, two
resolutions down and back up with skip connections, FiLM conditioning in every block.

What makes it a Diffusion Forcing denoiser: the FiLM condition is **per token**. Each action
token's own noise level is embedded (sinusoidal -> MLP) and added to one vector summarising the
observation window; the sum modulates (scale, shift) that token's channels. At the coarser
resolutions the per-token conditions are averaged over the tokens each position covers. (As
in any convolutional U-Net, GroupNorm statistics are taken over the whole window.)

Contract differences from the transformer:

* **Non-causal**: convolutions mix neighbouring tokens in both directions (the receptive field
  spans the window), like Diffusion Forcing's non-causal planning configuration. Executed-action
  context tokens therefore see the noisy future tokens; the runtime is unaffected (it always
  passes the whole window).
* **Fixed layout**: the network sees token order, not time. ``obs_times`` / ``action_times``
  must be the training layout (``0..To-1`` and ``n * A``); anything else is refused. With one
  action per token (required by :class:`~df_policy.model.policy.DiffusionForcingConfig` for this
  network) that is what the runtime passes in every mode; with grouped tokens its windows would
  be shifted against the observations. The window length ``N`` must be a multiple of
  ``2 ** (len(channels) - 1)`` and the number of observation steps is fixed at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from df_policy.model.denoiser import check_denoiser_inputs, sinusoidal_embedding


@dataclass
class UNetDenoiserConfig:
    """U-Net sizes (the data-dependent sizes are passed to :class:`UNetDenoiser`).

    Attributes:
        architecture: always ``"unet"`` (selects this class in ``policy.denoiser``).
        channels: channel width per resolution, finest first; each further entry halves the
            token axis once (Diffusion Policy: 256, 512, 1024).
        kernel_size: odd convolution width along the token axis.
        n_groups: GroupNorm groups; every channel width must be a multiple.
        cond_dim: width of the level embedding and of the observation summary.
    """

    architecture: str = "unet"
    channels: tuple[int, ...] = (128, 256, 512)
    kernel_size: int = 5
    n_groups: int = 8
    cond_dim: int = 128

    def __post_init__(self) -> None:
        if self.architecture != "unet":
            raise ValueError(f"UNetDenoiserConfig: architecture must be 'unet', got {self.architecture!r}")
        self.channels = tuple(int(c) for c in self.channels)
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"UNetDenoiserConfig: channels must be a non-empty list of widths >= 1, got {self.channels}")
        if self.n_groups < 1 or any(c % self.n_groups for c in self.channels):
            raise ValueError(f"UNetDenoiserConfig: every channel width must be a multiple of n_groups "
                             f"{self.n_groups}, got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"UNetDenoiserConfig: kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.cond_dim < 2 or self.cond_dim % 2:
            raise ValueError(f"UNetDenoiserConfig: cond_dim must be even and >= 2, got {self.cond_dim}")

    @property
    def token_multiple(self) -> int:
        """The window length ``N`` must be a multiple of this (one halving per extra resolution)."""
        return 2 ** (len(self.channels) - 1)


class ConvNormAct(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length preserved."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.Mish())


class FiLMResBlock(nn.Module):
    """Two conv layers; between them every position is scaled and shifted by its own condition."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(c_in, c_out, kernel_size, n_groups)
        self.conv2 = ConvNormAct(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Conv1d(cond_dim, 2 * c_out, 1))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """``x (B, c_in, L)``, ``cond (B, cond_dim, L)`` -> ``(B, c_out, L)``."""
        scale, shift = self.film(cond).chunk(2, dim=1)
        h = self.conv1(x) * (1 + scale) + shift
        return self.conv2(h) + self.skip(x)


class UNetDenoiser(nn.Module):
    """Predicts ``v`` for every action from noisy actions, per-token levels and observations.

    Args:
        config: U-Net sizes.
        action_dim: ``Da``.
        obs_dim: size of the per-step observation feature vector.
        n_obs_steps: ``To``, observation steps per call (fixed: they are flattened into one vector).
        actions_per_token: ``A``; a token's ``A * Da`` values are its input channels.
        num_levels: ``K``; levels are rescaled to a 0..1000 range before embedding.
    """

    def __init__(
        self,
        config: UNetDenoiserConfig,
        action_dim: int,
        obs_dim: int,
        n_obs_steps: int,
        actions_per_token: int = 1,
        num_levels: int = 1000,
    ) -> None:
        super().__init__()
        if min(action_dim, obs_dim, n_obs_steps, actions_per_token, num_levels) < 1:
            raise ValueError("UNetDenoiser: action_dim, obs_dim, n_obs_steps, actions_per_token, num_levels must be >= 1")
        self.config = config
        self.action_dim = action_dim
        self.n_obs_steps = n_obs_steps
        self.actions_per_token = actions_per_token
        self.num_levels = num_levels
        E, k, g = config.cond_dim, config.kernel_size, config.n_groups
        self.level_mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.Mish(), nn.Linear(4 * E, E))
        self.obs_in = nn.Linear(obs_dim, E)
        self.null_obs = nn.Parameter(torch.randn(E) * 0.02)
        self.obs_summary = nn.Sequential(nn.Linear(n_obs_steps * E, E), nn.Mish(), nn.Linear(E, E))

        widths = config.channels
        c_in = actions_per_token * action_dim
        self.down = nn.ModuleList()
        for i, c in enumerate(widths):
            last = i == len(widths) - 1
            self.down.append(nn.ModuleList([
                FiLMResBlock(c_in, c, E, k, g), FiLMResBlock(c, c, E, k, g),
                nn.Identity() if last else nn.Conv1d(c, c, 3, stride=2, padding=1),
            ]))
            c_in = c
        self.mid = nn.ModuleList([FiLMResBlock(widths[-1], widths[-1], E, k, g) for _ in range(2)])
        self.up = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.up.append(nn.ModuleList([
                FiLMResBlock(2 * widths[i], widths[i - 1], E, k, g), FiLMResBlock(widths[i - 1], widths[i - 1], E, k, g),
                nn.ConvTranspose1d(widths[i - 1], widths[i - 1], 4, stride=2, padding=1),
            ]))
        self.final = ConvNormAct(widths[0], widths[0], k, g)
        self.head = nn.Conv1d(widths[0], actions_per_token * action_dim, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self._level_table: Tensor | None = None

    def level_table(self) -> Tensor:
        """``(K + 1, cond_dim)`` embedding of every level ``0..K``. Differentiable."""
        levels = torch.arange(self.num_levels + 1, device=self.head.weight.device)
        return self.level_mlp(sinusoidal_embedding(levels.float() * (1000.0 / self.num_levels), self.config.cond_dim))

    @torch.no_grad()
    def freeze_level_tables(self) -> None:
        """Inference: look level embeddings up instead of running the level MLP (dropped by
        ``train()``; rebuild after changing the weights in eval mode)."""
        self._level_table = self.level_table()

    def train(self, mode: bool = True) -> "UNetDenoiser":
        if mode:
            self._level_table = None
        return super().train(mode)

    def _check_layout(self, N: int, To: int, obs_times: Tensor | None, action_times: Tensor | None) -> None:
        if N % self.config.token_multiple:
            raise ValueError(f"UNetDenoiser: the window must hold a multiple of {self.config.token_multiple} "
                             f"tokens (channels {self.config.channels}), got {N}")
        if To != self.n_obs_steps:
            raise ValueError(f"UNetDenoiser: built for {self.n_obs_steps} observation steps, got {To}")
        if obs_times is not None and not torch.equal(obs_times.cpu(), torch.arange(To)):
            raise ValueError(f"UNetDenoiser: obs_times must be 0..{To - 1} (the training layout), "
                             f"got {obs_times.tolist()}")
        if action_times is not None and not torch.equal(action_times.cpu(), torch.arange(N) * self.actions_per_token):
            raise ValueError("UNetDenoiser: action_times must be n * actions_per_token (the training layout; "
                             f"the U-Net sees token order, not time), got {action_times.tolist()}")

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
        """Same contract as :meth:`CausalDenoiser.forward`: ``noisy_actions (B, N * A, Da)``,
        ``levels (B, N)`` in ``0..K``, ``obs_features (B, To, obs_dim)``, ``obs_missing (B, To)``
        bool -> ``(B, N * A, Da)`` v-prediction."""
        B, N, To = check_denoiser_inputs(noisy_actions, levels, obs_features, self.action_dim, self.actions_per_token)
        A, Da = self.actions_per_token, self.action_dim
        self._check_layout(N, To, obs_times, action_times)

        table = None if self.training else self._level_table
        if table is None and B * N > self.num_levels + 1:
            table = self.level_table()  # fewer rows than embedding every token (same function)
        if table is not None:
            level_emb = table[levels]
        else:
            level_emb = self.level_mlp(sinusoidal_embedding(levels.float() * (1000.0 / self.num_levels),
                                                            self.config.cond_dim))
        dtype = noisy_actions.dtype
        obs = self.obs_in(obs_features.to(dtype))
        if obs_missing is not None:
            obs = torch.where(obs_missing[..., None], self.null_obs.to(dtype), obs)
        summary = self.obs_summary(obs.reshape(B, -1))  # (B, E)
        cond = (level_emb.to(dtype) + summary[:, None]).transpose(1, 2)  # (B, E, N): one condition per token

        x = noisy_actions.reshape(B, N, A * Da).transpose(1, 2)  # (B, A*Da, N)
        conds, skips = [], []  # per resolution, finest first
        for i, (block1, block2, downsample) in enumerate(self.down):
            if i:
                cond = F.avg_pool1d(cond, 2)  # a coarse position's condition: mean of the tokens it covers
            conds.append(cond)
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, conds[-1])
        for i, (block1, block2, upsample) in zip(range(len(conds) - 1, 0, -1), self.up):
            x = torch.cat([x, skips[i]], dim=1)
            x = upsample(block2(block1(x, conds[i]), conds[i]))
        out = self.head(self.final(x))  # (B, A*Da, N)
        return out.transpose(1, 2).reshape(B, N * A, Da)
