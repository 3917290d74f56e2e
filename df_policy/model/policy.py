"""Diffusion Forcing visuomotor policy: training loss, schedule-driven sampler, LeRobot-style API.

Units: every action and low-dim tensor here is in the data pipeline's *normalised* units
(~[-1, 1]); this module never normalises or unnormalises. Noise levels passed to the network
and to :meth:`DiffusionForcingPolicy.denoise_step` are *training levels* ``0..K``; scheduling
matrices are in *sampling-step units* ``0..S`` (see :mod:`df_policy.model.schedules`).

Time convention (shared with :mod:`df_policy.model.denoiser`): observation step ``j`` and action
``i`` are on one time axis, action ``i`` at the instant of observation ``i``; the current
(latest) observation is step ``To - 1``, so the actions to execute start at index ``To - 1``.

Batch contract (produced by the data pipeline, already normalised)::

    obs.<image_key>   uint8    (B, To, C, H, W)
    obs.<lowdim_key>  float32  (B, To, D)      ~[-1, 1]
    obs_is_pad        bool     (B, To)         True = before the episode start (treated as missing)
    action            float32  (B, Tp, Da)     ~[-1, 1]
    action_is_pad     bool     (B, Tp)         True = past the episode end (excluded from the loss)

``obs_is_pad`` and ``action_is_pad`` are optional (default: nothing padded).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from df_policy.model.denoiser import CausalDenoiser, DenoiserConfig
from df_policy.model.unet_denoiser import UNetDenoiser, UNetDenoiserConfig
from df_policy.model.level_sampling import LevelSamplingConfig, sample_levels
from df_policy.model.noise import NoiseSchedule
from df_policy.model.observation import OBS_PREFIX, EncodedObs, ObservationEncoder
from df_policy.model.schedules import SCHEDULE_NAMES, make_schedule, to_training_levels, validate_schedule
from df_policy.model.vision import MIN_IMAGE_SIZE, VisionEncoderConfig

CostFn = Callable[[Tensor], Tensor]
GUIDANCE_REFERENCES = ("current_only", "unconditional")


@dataclass
class DiffusionForcingConfig:
    """Everything needed to build a :class:`DiffusionForcingPolicy`.

    Attributes:
        image_shapes: camera key -> ``(C, H, W)`` (C in {1, 3}, H, W >= 32); batch key
            ``obs.<key>``.
        lowdim_shapes: low-dim observation key -> size ``D``; batch key ``obs.<key>``.
        action_dim: ``Da``.
        n_obs_steps: ``To``, observation steps per window.
        horizon: ``Tp``, actions per window; a multiple of ``actions_per_token``.
        actions_per_token: ``A``, consecutive actions grouped into one token (one noise level).
        n_action_steps: actions queued by :meth:`DiffusionForcingPolicy.select_action` per
            chunk, taken from index ``To - 1``; needs ``To - 1 + n_action_steps <= horizon``.
        num_train_levels: ``K`` training noise levels (level K = pure noise).
        num_sampling_steps: ``S`` denoising steps of the default scheduling matrix.
        schedule: default scheduling matrix, one of ``full_sequence``, ``autoregressive``,
            ``pyramid``, ``trapezoid``.
        uncertainty_scale: ``u`` for pyramid / trapezoid, in ``[0, S]``.
        stabilization_level: training level (``0..K``) at which context tokens are shown to
            the network during sampling (0 = exactly clean; DF uses 10 of 1000).
        clip_x0: if set, x0 estimates are clamped to ``[-clip_x0, clip_x0]`` during sampling.
        min_snr_gamma: min-SNR-gamma loss weighting (v-space), None = unweighted MSE.
        min_snr_floor: lower clamp of the x0-space SNR weight (1 keeps pure-noise tokens
            trained; 0 is the classic min-SNR). See ``NoiseSchedule.min_snr_weight``.
        history_dropout_prob: per-sample probability, in training, of dropping every
            observation step except the latest (what history guidance contrasts against).
        unconditional_prob: per-sample probability, in training, of dropping *all*
            observation steps (enables unconditional / classifier-free guidance).
        loss_bins: number of equal-width level bins for the per-level loss in ``info``.
        level_sampling: how training levels are drawn (mixture of ``uniform`` / ``stream`` /
            ``shared`` patterns, context level range and dropout), see
            :mod:`df_policy.model.level_sampling`. Default: independent uniform (the paper's).
        stream_block_tokens: the ``stream`` planner's default for this policy: ``None`` = the
            per-token pyramid, ``B >= 1`` = blocks of ``B`` tokens (``PlannerConfig.block_tokens``;
            capped at run time to what the window and ``delay_steps`` allow). Used only at
            inference; a run-time ``block_tokens`` overrides it.
        lowdim_embed_dim: width of the low-dim observation MLP.
        vision: image-encoder settings (one encoder per camera).
        denoiser: the denoising network: transformer sizes (default), or `{architecture: unet, ...}`
            for the 1-D U-Net (:mod:`df_policy.model.unet_denoiser`).
    """

    image_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    lowdim_shapes: dict[str, int] = field(default_factory=dict)
    action_dim: int = 2
    n_obs_steps: int = 2
    horizon: int = 16
    actions_per_token: int = 1
    n_action_steps: int = 8
    num_train_levels: int = 1000
    num_sampling_steps: int = 10
    schedule: str = "pyramid"
    uncertainty_scale: float = 1.0
    stabilization_level: int = 10
    clip_x0: float | None = None
    min_snr_gamma: float | None = 5.0
    min_snr_floor: float = 1.0
    history_dropout_prob: float = 0.1
    unconditional_prob: float = 0.05
    loss_bins: int = 10
    level_sampling: LevelSamplingConfig = field(default_factory=LevelSamplingConfig)
    stream_block_tokens: int | None = None
    lowdim_embed_dim: int = 64
    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    denoiser: DenoiserConfig | UNetDenoiserConfig = field(default_factory=DenoiserConfig)

    def __post_init__(self) -> None:
        if isinstance(self.vision, Mapping):
            self.vision = VisionEncoderConfig(**self.vision)
        if isinstance(self.denoiser, Mapping):
            self.denoiser = denoiser_config(self.denoiser)
        self.level_sampling = LevelSamplingConfig.coerce(self.level_sampling)
        self.image_shapes = {str(k): tuple(int(s) for s in v) for k, v in dict(self.image_shapes).items()}
        self.lowdim_shapes = {str(k): int(v) for k, v in dict(self.lowdim_shapes).items()}

        def fail(msg: str) -> None:
            raise ValueError(f"DiffusionForcingConfig: {msg}")

        if not self.image_shapes and not self.lowdim_shapes:
            fail("needs at least one image or low-dim observation key")
        if set(self.image_shapes) & set(self.lowdim_shapes):
            fail(f"keys used as both image and low-dim: {sorted(set(self.image_shapes) & set(self.lowdim_shapes))}")
        for key, shape in self.image_shapes.items():
            if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < MIN_IMAGE_SIZE:
                fail(f"image {key!r} shape must be (C, H, W) with C in (1, 3), H, W >= {MIN_IMAGE_SIZE}; got {shape}")
        for key, dim in self.lowdim_shapes.items():
            if dim < 1:
                fail(f"low-dim {key!r} size must be >= 1, got {dim}")
        for name in ("action_dim", "n_obs_steps", "horizon", "actions_per_token", "n_action_steps",
                     "num_train_levels", "num_sampling_steps", "loss_bins", "lowdim_embed_dim"):
            if int(getattr(self, name)) < 1:
                fail(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon % self.actions_per_token:
            fail(f"horizon {self.horizon} must be a multiple of actions_per_token {self.actions_per_token}")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            needed = self.n_obs_steps - 1 + self.n_action_steps
            fail(f"n_obs_steps - 1 + n_action_steps = {needed} exceeds horizon {self.horizon}")
        if self.num_sampling_steps > self.num_train_levels:
            fail("num_sampling_steps must be <= num_train_levels")
        if self.schedule not in SCHEDULE_NAMES:
            fail(f"schedule must be one of {SCHEDULE_NAMES}, got {self.schedule!r}")
        if not 0.0 <= self.uncertainty_scale <= self.num_sampling_steps:
            fail(f"uncertainty_scale must be in [0, num_sampling_steps], got {self.uncertainty_scale}")
        if not 0 <= self.stabilization_level <= self.num_train_levels:
            fail(f"stabilization_level must be in [0, K], got {self.stabilization_level}")
        if self.stream_block_tokens is not None and (isinstance(self.stream_block_tokens, bool)
                                                     or int(self.stream_block_tokens) < 1):
            fail(f"stream_block_tokens must be >= 1 or None (the per-token pyramid), got {self.stream_block_tokens!r}")
        if self.clip_x0 is not None and self.clip_x0 <= 0:
            fail("clip_x0 must be > 0 or None")
        if self.min_snr_gamma is not None and not 0.0 <= self.min_snr_floor <= self.min_snr_gamma:
            fail("need min_snr_gamma > 0 and 0 <= min_snr_floor <= min_snr_gamma")
        for name in ("history_dropout_prob", "unconditional_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(f"{name} must be in [0, 1]")
        if self.history_dropout_prob + self.unconditional_prob > 1.0:
            fail("history_dropout_prob + unconditional_prob must be <= 1")
        if isinstance(self.denoiser, UNetDenoiserConfig) and self.actions_per_token != 1:
            fail("the U-Net denoiser needs actions_per_token 1 (it sees token order, not time: with grouped "
                 "tokens the runtime's windows are not aligned with the training layout)")
        if isinstance(self.denoiser, UNetDenoiserConfig) and self.n_tokens % self.denoiser.token_multiple:
            fail(f"the U-Net denoiser with channels {self.denoiser.channels} needs horizon / actions_per_token "
                 f"= {self.n_tokens} to be a multiple of {self.denoiser.token_multiple}")

    @property
    def n_tokens(self) -> int:
        """Tokens per training window, ``horizon / actions_per_token``."""
        return self.horizon // self.actions_per_token

    @property
    def n_context_tokens(self) -> int:
        """Tokens entirely before the current step (executed actions at run time), ``(To - 1) // A``."""
        return (self.n_obs_steps - 1) // self.actions_per_token

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML / checkpoints); inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DiffusionForcingConfig":
        return cls(**dict(data))


def denoiser_config(data: Mapping[str, Any]) -> DenoiserConfig | UNetDenoiserConfig:
    """``policy.denoiser`` mapping -> its config; ``architecture`` picks the network
    (``transformer``, the default, or ``unet``)."""
    architectures = {"transformer": DenoiserConfig, "unet": UNetDenoiserConfig}
    name = data.get("architecture", "transformer")
    if name not in architectures:
        raise ValueError(f"policy.denoiser.architecture must be one of {sorted(architectures)}, got {name!r}")
    try:
        return architectures[name](**data)
    except TypeError as e:  # a field of the other architecture
        raise ValueError(f"policy.denoiser ({name}): {e}") from e


class DiffusionForcingPolicy(nn.Module):
    """Diffusion Forcing policy over action tokens with independent per-token noise levels.

    Observation inputs (``obs``) are mappings with ``obs.<key>`` tensors of shape ``(B, To, ...)``
    and optional ``obs_is_pad`` ``(B, To)`` bool (True = missing), or an :class:`EncodedObs` from
    :meth:`encode_observations` (to reuse features across calls).
    """

    def __init__(self, config: DiffusionForcingConfig) -> None:
        super().__init__()
        self.config = config
        self.noise = NoiseSchedule(config.num_train_levels)
        self.obs_encoder = ObservationEncoder(
            config.image_shapes, config.lowdim_shapes, config.vision, config.lowdim_embed_dim
        )
        sizes = {"action_dim": config.action_dim, "obs_dim": self.obs_encoder.out_dim,
                 "actions_per_token": config.actions_per_token, "num_levels": config.num_train_levels}
        if isinstance(config.denoiser, UNetDenoiserConfig):
            self.denoiser = UNetDenoiser(config.denoiser, n_obs_steps=config.n_obs_steps, **sizes)
        else:
            self.denoiser = CausalDenoiser(config.denoiser, **sizes)
        self._action_queue: deque[Tensor] = deque()
        self._obs_history: deque[dict[str, Tensor]] = deque(maxlen=config.n_obs_steps)
        self.set_inference_modules(None, None)

    # ------------------------------------------------------------------ helpers
    def set_inference_modules(self, obs_encoder: Any | None, denoiser: Any | None) -> None:
        """Callables that replace ``obs_encoder`` / ``denoiser`` in eval mode (e.g. compiled
        copies sharing these weights, see :mod:`df_policy.runtime.acceleration`); ``None`` =
        eager. Kept outside the module tree: no state-dict keys, ``train()`` always runs eager."""
        object.__setattr__(self, "_inference_encoder", obs_encoder)
        object.__setattr__(self, "_inference_denoiser", denoiser)

    def run_obs_encoder(self, obs: Mapping[str, Tensor]) -> Tensor:
        """``obs_encoder(obs)``, through the inference module when one is set and not training."""
        if self._inference_encoder is not None and not self.training:
            return self._inference_encoder(obs)
        return self.obs_encoder(obs)

    def _run_denoiser(self, *args: Any, **kwargs: Any) -> Tensor:
        if self._inference_denoiser is not None and not self.training:
            return self._inference_denoiser(*args, **kwargs)
        return self.denoiser(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.denoiser.head.weight.device

    def _per_action(self, token_values: Tensor) -> Tensor:
        """``(B, N)`` per-token values -> ``(B, N * A)`` per-action values."""
        return token_values.repeat_interleave(self.config.actions_per_token, dim=1)

    def _token_mask(self, action_mask: Tensor, name: str, require_uniform: bool) -> Tensor:
        """``(B, N * A)`` bool -> ``(B, N)``: a token is marked if any of its actions is."""
        B, T = action_mask.shape
        grouped = action_mask.reshape(B, T // self.config.actions_per_token, self.config.actions_per_token)
        if require_uniform and bool((grouped.any(-1) != grouped.all(-1)).any()):
            raise ValueError(f"{name} must mark whole tokens ({self.config.actions_per_token} actions each)")
        return grouped.any(-1)

    def make_schedule(self, name: str | None = None, n_tokens: int | None = None) -> np.ndarray:
        """Scheduling matrix in step units ``0..S``; defaults from the config."""
        cfg = self.config
        name, n_tokens = name or cfg.schedule, n_tokens or cfg.n_tokens
        return make_schedule(name, n_tokens, cfg.num_sampling_steps, cfg.uncertainty_scale)

    def encode_observations(self, obs: Mapping[str, Tensor] | EncodedObs) -> EncodedObs:
        """``obs.<key>`` window -> :class:`EncodedObs` (features ``(B, To, F)``, missing ``(B, To)``).

        Steps flagged in ``obs_is_pad`` are zeroed before encoding (so NaN or garbage padding
        cannot reach the weights' gradients) and replaced by the null embedding downstream.
        """
        if isinstance(obs, EncodedObs):
            return obs
        pad = obs.get("obs_is_pad")
        if pad is not None:
            pad = pad.to(self.device, torch.bool)
            obs = {key: _zero_steps(value, pad) if key.startswith(OBS_PREFIX) else value for key, value in obs.items()}
        features = self.run_obs_encoder(obs)
        if pad is None:
            pad = torch.zeros(features.shape[:2], dtype=torch.bool, device=features.device)
        elif tuple(pad.shape) != tuple(features.shape[:2]):
            raise ValueError(f"obs_is_pad must be (B, To) = {tuple(features.shape[:2])}, got {tuple(pad.shape)}")
        return EncodedObs(features, pad)

    # ------------------------------------------------------------------ training
    def sample_training_levels(self, token_pad: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training levels in ``0..K`` for every token (int64, ``token_pad``'s shape ``(B, N)``),
        drawn from ``config.level_sampling`` (default: independent uniform per token); padded
        tokens (``token_pad`` True) are set to ``K``."""
        cfg = self.config
        K = cfg.num_train_levels
        B, N = token_pad.shape
        levels, _ = sample_levels(cfg.level_sampling, B, N, min(cfg.n_context_tokens, N - 1), K, generator,
                                  token_pad.device)
        return torch.where(token_pad, torch.full_like(levels, K), levels)

    def apply_history_dropout(self, missing: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training-time observation dropout on a ``(B, To)`` missing mask (returns a new mask).

        Per sample, one uniform draw ``r``: ``r < unconditional_prob`` drops every step;
        otherwise ``r < unconditional_prob + history_dropout_prob`` drops every step except the
        latest (``To - 1``). These are exactly the two reference conditions that history /
        unconditional guidance query at sampling time.
        """
        cfg = self.config
        if cfg.history_dropout_prob + cfg.unconditional_prob <= 0.0:
            return missing
        r = torch.rand(missing.shape[0], generator=generator, device=missing.device)
        drop_all = r < cfg.unconditional_prob
        drop_history = ~drop_all & (r < cfg.unconditional_prob + cfg.history_dropout_prob)
        past = torch.ones_like(missing)
        past[:, -1] = False
        return missing | drop_all[:, None] | (drop_history[:, None] & past)

    def compute_loss(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Diffusion Forcing loss on one batch (see the module docstring for the batch contract).

        Every action token gets its own level (``config.level_sampling``); tokens containing any
        padded action (``action_is_pad``) are put at level K, see pure noise as input, and are
        excluded from the loss. The loss is the (optionally min-SNR-weighted) v-space MSE
        averaged over valid tokens. History dropout is applied only in training mode.
        ``generator`` (on the policy's device) makes levels, noise and dropout reproducible.

        Returns:
            ``(loss, info)``: scalar loss tensor; ``info`` of floats: ``loss``, ``v_mse``
            (unweighted), ``valid_token_frac``, ``obs_dropped_frac`` and
            ``v_mse/levels_<lo>-<hi>`` for each non-empty level bin.
        """
        cfg = self.config
        actions = batch["action"].to(self.device)
        B, T, Da = actions.shape
        if Da != cfg.action_dim or T % cfg.actions_per_token:
            raise ValueError(
                f"action must be (B, k*{cfg.actions_per_token}, {cfg.action_dim}), got {tuple(actions.shape)}"
            )
        action_pad = batch.get("action_is_pad")
        if action_pad is None:
            action_pad = torch.zeros(B, T, dtype=torch.bool)
        action_pad = action_pad.to(self.device, torch.bool)
        token_pad = self._token_mask(action_pad, "action_is_pad", require_uniform=False)
        levels = self.sample_training_levels(token_pad, generator)
        action_levels = self._per_action(levels)
        pad_actions = self._per_action(token_pad)[..., None]

        # Padded targets may hold anything (even NaN): zero them so nothing leaks anywhere.
        x0 = torch.where(pad_actions, torch.zeros_like(actions), actions)
        noise = torch.randn(actions.shape, generator=generator, device=self.device, dtype=actions.dtype)
        x_t = self.noise.add_noise(x0, noise, action_levels)

        encoded = self.encode_observations(batch)
        missing = self.apply_history_dropout(encoded.missing, generator) if self.training else encoded.missing
        v_pred = self.denoiser(x_t, levels, encoded.features, missing)
        target = self.noise.v_target(x0, noise, action_levels)

        per_token = (v_pred - target).pow(2).reshape(B, -1, cfg.actions_per_token * Da).mean(-1)  # (B, N)
        valid = ~token_pad
        per_token = torch.where(valid, per_token, torch.zeros_like(per_token))
        weights = torch.ones_like(per_token)
        if cfg.min_snr_gamma is not None:
            weights = self.noise.min_snr_weight(levels, cfg.min_snr_gamma, cfg.min_snr_floor).to(per_token.dtype)
        n_valid = valid.sum().clamp(min=1)
        loss = (weights * per_token).sum() / n_valid

        info = self._loss_info(loss, per_token.detach(), levels, valid, missing)
        return loss, info

    def _loss_info(
        self, loss: Tensor, per_token: Tensor, levels: Tensor, valid: Tensor, missing: Tensor
    ) -> dict[str, float]:
        """Logging values; ``per_token`` is the unweighted v-MSE per token ``(B, N)``."""
        K, n_bins = self.config.num_train_levels, self.config.loss_bins
        bins = (levels[valid] * n_bins) // (K + 1)
        errors = per_token[valid].float()
        sums = torch.zeros(n_bins, device=errors.device).index_add_(0, bins, errors)
        counts = torch.zeros(n_bins, device=errors.device).index_add_(0, bins, torch.ones_like(errors))
        summary = torch.stack([loss.detach().float(), errors.sum() / counts.sum().clamp(min=1),
                               valid.float().mean(), missing.float().mean()])
        values = torch.cat([summary, sums, counts]).tolist()  # a single device sync
        info = {"loss": values[0], "v_mse": values[1], "valid_token_frac": values[2], "obs_dropped_frac": values[3]}
        for i in range(n_bins):
            total, count = values[4 + i], values[4 + n_bins + i]
            if count > 0:
                lo = -(-i * (K + 1) // n_bins)  # smallest level with (level * n_bins) // (K + 1) == i
                hi = -(-(i + 1) * (K + 1) // n_bins) - 1
                info[f"v_mse/levels_{lo}-{hi}"] = total / count
        return info

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """LeRobot-style ``forward`` = :meth:`compute_loss`."""
        return self.compute_loss(batch)

    # ------------------------------------------------------------------ sampling
    def _reference_missing(self, missing: Tensor, reference: str) -> Tensor:
        if reference == "unconditional":
            return torch.ones_like(missing)
        if reference == "current_only":
            past = torch.ones_like(missing)
            past[:, -1] = False
            return missing | past
        raise ValueError(f"guidance_reference must be one of {GUIDANCE_REFERENCES}, got {reference!r}")

    def predict_v(
        self,
        x: Tensor,
        levels: Tensor,
        obs: EncodedObs,
        *,
        history_guidance: float = 0.0,
        guidance_reference: str = "current_only",
        obs_times: Tensor | None = None,
        action_times: Tensor | None = None,
    ) -> Tensor:
        """Network v-prediction ``(B, N*A, Da)``, with history guidance when ``w != 0``:
        ``v = v_full + w * (v_full - v_ref)``, ``v_ref`` from the reference history (latest
        observation only, or nothing). Both branches run as one batched call."""
        if history_guidance == 0.0:
            return self._run_denoiser(x, levels, obs.features, obs.missing, obs_times=obs_times,
                                      action_times=action_times)
        ref_missing = self._reference_missing(obs.missing, guidance_reference)
        v = self._run_denoiser(
            torch.cat([x, x]), torch.cat([levels, levels]), torch.cat([obs.features, obs.features]),
            torch.cat([obs.missing, ref_missing]), obs_times=obs_times, action_times=action_times,
        )
        v_full, v_ref = v.chunk(2)
        return v_full + history_guidance * (v_full - v_ref)

    @torch.no_grad()
    def denoise_step(
        self,
        x: Tensor,
        from_levels: Tensor,
        to_levels: Tensor,
        obs: Mapping[str, Tensor] | EncodedObs,
        *,
        history_guidance: float = 0.0,
        guidance_reference: str = "current_only",
        cost_fn: CostFn | None = None,
        cost_scale: float = 1.0,
        obs_times: Tensor | None = None,
        action_times: Tensor | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One network call: every token moves from its own level to its own target level.

        Args:
            x: ``(B, N*A, Da)`` current buffer, token ``n`` at level ``from_levels[:, n]``.
            from_levels, to_levels: ``(B, N)`` int training levels ``0..K``. Tokens with
                ``from == to`` (context, finished, or waiting tokens) come back bit-identical.
            obs: observation window or its :class:`EncodedObs`.
            history_guidance: guidance weight ``w`` (0 = off), see :meth:`predict_v`.
            cost_fn: differentiable ``(B, N*A, Da) -> (B,)`` cost; the x0 estimate of moving
                tokens is nudged to ``x0 - cost_scale * grad(cost)(x0)`` before the DDIM move.
            obs_times, action_times: optional time indices (see ``CausalDenoiser``).
            eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM posterior), see
                :meth:`NoiseSchedule.step_from_estimates`; fresh noise from ``generator``.
        Returns:
            The new buffer ``(B, N*A, Da)``.
        """
        encoded = self.encode_observations(obs)
        v = self.predict_v(
            x, from_levels, encoded, history_guidance=history_guidance, guidance_reference=guidance_reference,
            obs_times=obs_times, action_times=action_times,
        )
        from_a, to_a = self._per_action(from_levels), self._per_action(to_levels)
        x0, eps = self.noise.predict_x0_eps(x, v, from_a)
        if self.config.clip_x0 is not None:
            x0 = x0.clamp(-self.config.clip_x0, self.config.clip_x0)
        if cost_fn is not None:
            x0 = x0 - cost_scale * cost_gradient(cost_fn, x0)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta else None
        return self.noise.step_from_estimates(x, x0, eps, from_a, to_a, eta=eta, noise=noise)

    @torch.no_grad()
    def sample(
        self,
        obs: Mapping[str, Tensor] | EncodedObs,
        schedule: np.ndarray | None = None,
        *,
        context_actions: Tensor | None = None,
        context_mask: Tensor | None = None,
        stabilization_level: int | None = None,
        history_guidance: float = 0.0,
        guidance_reference: str = "current_only",
        cost_fn: CostFn | None = None,
        cost_scale: float = 1.0,
        generator: torch.Generator | None = None,
        schedule_steps: int | None = None,
    ) -> Tensor:
        """Generate actions by running a scheduling matrix row by row.

        Args:
            obs: observation window (``obs.<key>`` ``(B, To, ...)``, optional ``obs_is_pad``)
                or its :class:`EncodedObs`.
            schedule: ``(R, N)`` int matrix in step units ``0..schedule_steps``; default the
                config's schedule over ``horizon / A`` tokens. ``N`` may exceed the training
                horizon. All tokens start as pure noise (level K); row ``m`` is the target of
                the ``m``-th move (rows equal to the current state are skipped).
            context_actions: ``(B, N*A, Da)`` known actions (values outside the mask unused).
            context_mask: ``(B, N*A)`` bool, True = context; must cover whole tokens. Context
                tokens are shown at ``stabilization_level`` (fresh noise drawn once), never
                updated, and returned exactly as given.
            stabilization_level: training level for context tokens (default from the config).
            history_guidance: weight ``w`` of history guidance (0 = off).
            guidance_reference: ``"current_only"`` or ``"unconditional"``.
            cost_fn, cost_scale: cost guidance, see :meth:`denoise_step`.
            generator: torch.Generator on the policy's device, for reproducible noise.
            schedule_steps: ``S`` of ``schedule`` (default ``num_sampling_steps``).
        Returns:
            ``(B, N*A, Da)`` actions in normalised units.
        """
        cfg, K = self.config, self.config.num_train_levels
        encoded = self.encode_observations(obs)
        B, device = encoded.batch_size, self.device
        S = schedule_steps or cfg.num_sampling_steps
        M = self.make_schedule() if schedule is None else np.asarray(schedule)
        validate_schedule(M, S, start_from_noise=False)
        rows = to_training_levels(M, S, K)
        N = M.shape[1]
        A = cfg.actions_per_token
        x = torch.randn(B, N * A, cfg.action_dim, generator=generator, device=device)
        current = torch.full((B, N), K, dtype=torch.long, device=device)

        ctx_tokens = ctx_actions = None
        if context_mask is not None or context_actions is not None:
            shapes_ok = context_actions is not None and tuple(context_actions.shape) == tuple(x.shape)
            if not shapes_ok or context_mask is None or tuple(context_mask.shape) != (B, N * A):
                raise ValueError(
                    f"context_actions {tuple(x.shape)} and context_mask {(B, N * A)} must both be given with these shapes"
                )
            context_mask = context_mask.to(device, torch.bool)
            context_actions = context_actions.to(device, x.dtype)
            level = cfg.stabilization_level if stabilization_level is None else int(stabilization_level)
            if not 0 <= level <= K:
                raise ValueError(f"stabilization_level must be in [0, {K}], got {level}")
            ctx_tokens = self._token_mask(context_mask, "context_mask", require_uniform=True)
            ctx_actions = context_mask[..., None]
            context_noise = torch.randn(x.shape, generator=generator, device=device)
            shown = self.noise.add_noise(context_actions, context_noise, level)
            x = torch.where(ctx_actions, shown, x)
            current = torch.where(ctx_tokens, torch.full_like(current, level), current)

        previous = np.full(N, K, dtype=np.int64)
        for row in rows:
            if np.array_equal(row, previous):
                continue
            target = torch.as_tensor(row, device=device).expand(B, N)
            if ctx_tokens is not None:
                target = torch.where(ctx_tokens, current, target)
            x = self.denoise_step(
                x, current, target, encoded, history_guidance=history_guidance,
                guidance_reference=guidance_reference, cost_fn=cost_fn, cost_scale=cost_scale,
            )
            current, previous = target, row
        if ctx_actions is not None:
            x = torch.where(ctx_actions, context_actions, x)
        return x

    @torch.no_grad()
    def monte_carlo_guidance(
        self,
        obs: Mapping[str, Tensor] | EncodedObs,
        n_samples: int,
        cost_fn: CostFn,
        *,
        schedule: np.ndarray | None = None,
        context_actions: Tensor | None = None,
        context_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_all: bool = False,
        **sample_kwargs: Any,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Gradient-free guidance: sample ``n_samples`` futures per observation, keep the cheapest.

        ``cost_fn`` maps ``(B*n, N*A, Da) -> (B*n,)`` (need not be differentiable). Returns the
        lowest-cost sample per batch element ``(B, N*A, Da)``; with ``return_all`` also all
        samples ``(B, n, N*A, Da)`` and their costs ``(B, n)``. Extra keyword arguments go to
        :meth:`sample`.
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        encoded = self.encode_observations(obs)
        B = encoded.batch_size
        if context_actions is not None:
            context_actions = context_actions.repeat_interleave(n_samples, dim=0)
        if context_mask is not None or context_actions is not None:
            context_mask = context_mask.repeat_interleave(n_samples, dim=0)
        samples = self.sample(
            encoded.repeat_interleave(n_samples), schedule, context_actions=context_actions,
            context_mask=context_mask, generator=generator, **sample_kwargs,
        )
        costs = cost_fn(samples).reshape(B, n_samples)
        samples = samples.reshape(B, n_samples, *samples.shape[1:])
        best = samples[torch.arange(B, device=samples.device), costs.argmin(dim=1)]
        return (best, samples, costs) if return_all else best

    # ------------------------------------------------------------------ LeRobot-style API
    def reset(self) -> None:
        """Clear the action queue and the single-frame observation history (call per episode)."""
        self._action_queue.clear()
        self._obs_history.clear()

    def _is_single_frame(self, obs: Mapping[str, Tensor]) -> bool:
        """True for ``(B, C, H, W)`` images / ``(B, D)`` low-dim (no time dim)."""
        if self.config.image_shapes:
            return obs[OBS_PREFIX + next(iter(self.config.image_shapes))].ndim == 4
        return obs[OBS_PREFIX + next(iter(self.config.lowdim_shapes))].ndim == 2

    def _window_from_history(self, frame: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Append one frame (``obs.<key>`` without the time dim) and return a ``To`` window;
        steps before the first frame are zero-filled and flagged in ``obs_is_pad``."""
        keys = [OBS_PREFIX + k for k in (*self.config.image_shapes, *self.config.lowdim_shapes)]
        self._obs_history.append({k: frame[k] for k in keys})
        To, have = self.config.n_obs_steps, len(self._obs_history)
        window = {}
        for k in keys:
            frames = [f[k] for f in self._obs_history]
            pad = [torch.zeros_like(frames[0])] * (To - have)
            window[k] = torch.stack(pad + frames, dim=1)
        B = window[keys[0]].shape[0]
        is_pad = torch.zeros(B, To, dtype=torch.bool)
        is_pad[:, : To - have] = True
        window["obs_is_pad"] = is_pad
        return window

    @torch.no_grad()
    def predict_action_chunk(self, obs: Mapping[str, Tensor], **sample_kwargs: Any) -> Tensor:
        """Actions ``(B, horizon, Da)`` (normalised) from a window ``(B, To, ...)`` or, for a
        single frame ``(B, ...)``, from the internal observation history (frame appended)."""
        if self._is_single_frame(obs):
            obs = self._window_from_history(obs)
        return self.sample(obs, **sample_kwargs)

    @torch.no_grad()
    def select_action(self, obs: Mapping[str, Tensor], **sample_kwargs: Any) -> Tensor:
        """Next action ``(B, Da)``. When the queue is empty a chunk is sampled and actions
        ``To-1 .. To-1+n_action_steps-1`` are queued. Single frames are appended to the
        observation history on every call; windows ``(B, To, ...)`` are used as given."""
        if self._is_single_frame(obs):
            obs = self._window_from_history(obs)
        if not self._action_queue:
            chunk = self.sample(obs, **sample_kwargs)
            start = _n_obs_steps(obs) - 1
            self._action_queue.extend(chunk[:, start : start + self.config.n_action_steps].unbind(dim=1))
        return self._action_queue.popleft()


def _zero_steps(value: Tensor, steps: Tensor) -> Tensor:
    """Zero ``value (B, To, ...)`` where ``steps (B, To)`` is True (shapes checked by the encoder)."""
    if value.shape[:2] != steps.shape:
        return value  # let the observation encoder report the shape error
    value = value.to(steps.device)
    mask = steps.reshape(*steps.shape, *([1] * (value.ndim - 2)))
    return torch.where(mask, torch.zeros((), dtype=value.dtype, device=value.device), value)


def _n_obs_steps(obs: Mapping[str, Tensor]) -> int:
    """``To`` of an observation window (time dim of the first ``obs.<key>`` tensor)."""
    return next(v.shape[1] for k, v in obs.items() if k.startswith(OBS_PREFIX))


def cost_gradient(cost_fn: CostFn, x0: Tensor) -> Tensor:
    """``d sum(cost_fn(x0)) / d x0`` with autograd enabled locally; ``cost_fn`` returns ``(B,)``."""
    with torch.enable_grad():
        x = x0.detach().requires_grad_(True)
        cost = cost_fn(x)
        if cost.ndim != 1 or cost.shape[0] != x0.shape[0]:
            raise ValueError(f"cost_fn must return (B,) = ({x0.shape[0]},), got {tuple(cost.shape)}")
        (grad,) = torch.autograd.grad(cost.sum(), x)
    return grad
