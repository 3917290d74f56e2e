"""Discrete cosine noise schedule with per-token levels and v-prediction.

Levels are integers ``k`` in ``0..K``:

* ``k = 0``: clean, ``alpha_bar = 1`` exactly.
* ``k = K``: pure noise, ``alpha_bar = 0`` exactly. A padded or "masked" token is put at level
  ``K``, where ``x_K == noise`` carries no information about the underlying value.

With ``a_k = sqrt(alpha_bar_k)`` and ``s_k = sqrt(1 - alpha_bar_k)``::

    x_k = a_k * x0 + s_k * eps          (forward process)
    v   = a_k * eps - s_k * x0           (network target)
    x0  = a_k * x_k - s_k * v            (recovered estimates, exact because a^2 + s^2 = 1)
    eps = s_k * x_k + a_k * v

Why v-prediction: Diffusion Forcing puts tokens at *every* level at once, including both ends.
eps-prediction recovers ``x0 = (x_k - s_k eps) / a_k``, which is undefined at ``alpha_bar = 0``
(level K, padded tokens, the first sampling step) and amplifies errors near it;
x0-prediction has the mirror problem for ``eps`` near ``alpha_bar = 1``. With ``v`` both
``x0`` and ``eps`` are bounded linear combinations of ``(x_k, v)`` at every level, and the
target has unit variance everywhere, so the regression is well conditioned at both ends.

All coefficient tables are float64 buffers; results are computed in the dtype of ``x``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _expand_like(coef: Tensor, x: Tensor) -> Tensor:
    """Append trailing singleton dims so a per-token ``coef`` broadcasts against ``x``."""
    while coef.ndim < x.ndim:
        coef = coef.unsqueeze(-1)
    return coef


class NoiseSchedule(nn.Module):
    """Cosine schedule over ``K + 1`` discrete levels (``0`` clean … ``K`` pure noise).

    ``alpha_bar(k) = cos^2(((k/K + s) / (1 + s)) * pi/2) / cos^2((s / (1 + s)) * pi/2)``,
    with ``alpha_bar(0) = 1`` and ``alpha_bar(K) = 0`` set exactly. No beta clipping is applied:
    DDIM only needs ``alpha_bar``.

    Level arguments (``levels``, ``from_levels``, ``to_levels``) are integer tensors (or Python
    ints) whose shape is a *prefix* of the data shape: e.g. ``(B, T)`` per-token levels for
    ``x`` of shape ``(B, T, D)``; trailing singleton dims are appended before broadcasting.
    Values must lie in ``0..K`` (not checked in the hot path; indexing fails on CPU if not).

    Args:
        num_levels: ``K``, the number of noising steps (levels are ``0..K``).
        offset: the cosine-schedule offset ``s`` (Nichol & Dhariwal use 0.008).
    """

    def __init__(self, num_levels: int = 1000, offset: float = 0.008) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"offset must be in [0, 1), got {offset}")
        self.num_levels = int(num_levels)
        self.offset = float(offset)
        k = torch.arange(num_levels + 1, dtype=torch.float64)
        angle = (k / num_levels + offset) / (1.0 + offset) * (math.pi / 2.0)
        alpha_bar = torch.cos(angle) ** 2 / math.cos(offset / (1.0 + offset) * math.pi / 2.0) ** 2
        alpha_bar = alpha_bar.clamp(0.0, 1.0)
        alpha_bar[0] = 1.0
        alpha_bar[-1] = 0.0
        self.register_buffer("alpha_bar", alpha_bar, persistent=False)
        self.register_buffer("signal_scale", alpha_bar.sqrt(), persistent=False)
        self.register_buffer("noise_scale", (1.0 - alpha_bar).sqrt(), persistent=False)

    @property
    def K(self) -> int:  # noqa: N802 - the paper's symbol
        """Highest (pure-noise) level."""
        return self.num_levels

    def _coefs(self, levels: Tensor | int, x: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(levels, device=self.signal_scale.device).long()
        a = _expand_like(self.signal_scale[idx].to(x.dtype), x)
        s = _expand_like(self.noise_scale[idx].to(x.dtype), x)
        return a, s

    def snr(self, levels: Tensor | int) -> Tensor:
        """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` (inf at 0, 0 at K), float64."""
        ab = self.alpha_bar[torch.as_tensor(levels, device=self.alpha_bar.device).long()]
        return ab / (1.0 - ab)

    def add_noise(self, x0: Tensor, noise: Tensor, levels: Tensor | int) -> Tensor:
        """``x_k = a_k x0 + s_k noise``; level 0 returns ``x0``, level K returns ``noise``."""
        a, s = self._coefs(levels, x0)
        return a * x0 + s * noise

    def v_target(self, x0: Tensor, noise: Tensor, levels: Tensor | int) -> Tensor:
        """Training target ``v = a_k noise - s_k x0`` (same shape as ``x0``)."""
        a, s = self._coefs(levels, x0)
        return a * noise - s * x0

    def predict_x0_eps(self, x_t: Tensor, v: Tensor, levels: Tensor | int) -> tuple[Tensor, Tensor]:
        """Estimates ``(x0, eps)`` from the noisy input ``x_t`` and predicted ``v``."""
        a, s = self._coefs(levels, x_t)
        return a * x_t - s * v, s * x_t + a * v

    def step_from_estimates(
        self, x_t: Tensor, x0: Tensor, eps: Tensor, from_levels: Tensor, to_levels: Tensor,
        eta: float = 0.0, noise: Tensor | None = None,
    ) -> Tensor:
        """DDIM move given ``(x0, eps)`` estimates; deterministic when ``eta = 0``.

        Every token goes to ``a_to x0 + sqrt(s_to^2 - sigma^2) eps + sigma z`` with
        ``sigma = eta * sqrt((1 - ab_to) / (1 - ab_from)) * sqrt(1 - ab_from / ab_to)`` (Song et
        al. 2021, eq. 16) for tokens moving down (``to < from``), 0 otherwise: ``eta = 1`` is the
        DDPM posterior (fresh noise ``z`` = ``noise``, required when ``eta > 0``, shape of
        ``x_t``); tokens sent to level 0 get none. Tokens with ``from == to`` are returned
        bit-identical (``torch.where``), so guidance edits to ``x0`` never leak into them.
        """
        from_levels = torch.as_tensor(from_levels, device=x_t.device)
        to_levels = torch.as_tensor(to_levels, device=x_t.device)
        a, s = self._coefs(to_levels, x_t)
        if eta == 0.0:
            moved = a * x0 + s * eps
        else:
            if not 0.0 < eta <= 1.0:
                raise ValueError(f"eta must be in [0, 1], got {eta}")
            if noise is None or noise.shape != x_t.shape:
                raise ValueError(f"eta > 0 needs noise of shape {tuple(x_t.shape)}")
            ab_to = self.alpha_bar[to_levels.long()]
            ab_from = self.alpha_bar[from_levels.long()]
            down = to_levels < from_levels
            ratio = torch.where(down & (ab_to > 0), ab_from / ab_to.clamp(min=1e-12), torch.ones_like(ab_to))
            var = (1.0 - ab_to) / (1.0 - ab_from).clamp(min=1e-12) * (1.0 - ratio).clamp(min=0.0)
            sigma = _expand_like((eta * var.sqrt()).to(x_t.dtype), x_t)
            sigma = torch.minimum(sigma, s)  # rounding: never more noise than the target level holds
            moved = a * x0 + (s * s - sigma * sigma).clamp(min=0.0).sqrt() * eps + sigma * noise
        return torch.where(_expand_like(from_levels != to_levels, x_t), moved, x_t)

    def ddim_step(self, x_t: Tensor, v_pred: Tensor, from_levels: Tensor, to_levels: Tensor) -> Tensor:
        """Move each token from its own ``from`` level to its own ``to`` level in one call.

        Args:
            x_t: noisy values, e.g. ``(B, T, D)``.
            v_pred: network v-prediction, same shape as ``x_t``.
            from_levels, to_levels: integer levels, e.g. ``(B, T)``; ``to > from`` re-noises
                deterministically with the predicted ``eps`` (allowed, rarely useful).
        Returns:
            ``x_to`` with the shape of ``x_t``; unchanged tokens are bit-identical, tokens sent
            to level 0 equal the x0 estimate exactly.
        """
        x0, eps = self.predict_x0_eps(x_t, v_pred, from_levels)
        return self.step_from_estimates(x_t, x0, eps, from_levels, to_levels)

    def min_snr_weight(self, levels: Tensor | int, gamma: float = 5.0, floor: float = 1.0) -> Tensor:
        """Per-token loss weight for a **v-space** MSE, float32, shape of ``levels``.

        The v-loss equals ``(1 + SNR) * ||x0_hat - x0||^2``. Min-SNR-gamma (Hang et al. 2023)
        weights the x0-space error by ``min(SNR, gamma)``; converted to v-space that is
        ``min(SNR, gamma) / (SNR + 1)``. Because ``alpha_bar(K) = 0`` exactly, that formula
        gives weight 0 to pure-noise tokens, i.e. the first sampling step would never be
        trained. ``floor`` keeps the x0-space weight at least ``floor`` (Salimans & Ho's
        "truncated SNR" uses 1), so the returned weight is::

            clamp(SNR, floor, gamma) / (SNR + 1)

        which is ``floor`` at level K and 0 at level 0 (where the v target equals ``eps``,
        pure irreducible noise). ``floor = 0`` recovers the classic min-SNR weight.
        """
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if not 0.0 <= floor <= gamma:
            raise ValueError(f"floor must be in [0, gamma], got {floor}")
        idx = torch.as_tensor(levels, device=self.alpha_bar.device).long()
        alpha_bar = self.alpha_bar[idx]
        snr = alpha_bar / (1.0 - alpha_bar)
        # 1 / (SNR + 1) == 1 - alpha_bar; clamping first turns SNR = inf (level 0) into 0 weight.
        return (snr.clamp(min=floor, max=gamma) * (1.0 - alpha_bar)).float()
