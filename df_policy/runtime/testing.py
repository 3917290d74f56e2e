"""Small building blocks for tests and benchmarks of the runtime (random weights, no data).

Nothing here is meant for a robot: the policies are untrained and the normaliser stats are
made up (``minmax`` over a given range per key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import yaml

from df_policy.data.normalizer import KeyStats, Normalizer
from df_policy.model.policy import DiffusionForcingConfig, DiffusionForcingPolicy
from df_policy.runtime.clock import Clock
from df_policy.runtime.preprocess import Preprocessor
from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig


def tiny_policy_config(image_size: int = 32, lowdim: int = 2, action_dim: int = 2, **overrides: Any) -> DiffusionForcingConfig:
    """A model that runs in a few ms per call: image ``image`` (3, s, s), low-dim ``agent_pos``,
    ``To = 2``, ``horizon = 8``, ``S = 4``, ``K = 100``; ``overrides`` replace any field."""
    fields: dict[str, Any] = dict(
        image_shapes={"image": (3, image_size, image_size)}, lowdim_shapes={"agent_pos": lowdim},
        action_dim=action_dim, n_obs_steps=2, horizon=8, n_action_steps=4, num_sampling_steps=4,
        num_train_levels=100, stabilization_level=0,
        vision={"out_dim": 16, "num_keypoints": 4, "width": 8, "stem": "small"},
        denoiser={"d_model": 32, "n_layers": 1, "n_heads": 2},
    )
    fields.update(overrides)
    return DiffusionForcingConfig(**fields)


def pusht_cpu_policy_config(n_obs_steps: int | None = None) -> DiffusionForcingConfig:
    """The policy of ``df_policy/configs/pusht_cpu.yaml`` with PushT shapes (img 3x84x84 after
    the crop, agent_pos 2, action 2); ``n_obs_steps`` replaces the config's (e.g. 2, as LeRobot's
    PushT policy, for side-by-side comparisons)."""
    from df_policy.training.config import resolve_config_path

    run = yaml.safe_load(resolve_config_path("pusht_cpu").read_text())
    ds = run["dataset"]
    return DiffusionForcingConfig(
        image_shapes={"img": (3, *ds["crop_shape"])}, lowdim_shapes={"agent_pos": 2}, action_dim=2,
        n_obs_steps=n_obs_steps or ds["n_obs_steps"], horizon=ds["horizon"], **run["policy"])


def make_policy(config: DiffusionForcingConfig, seed: int = 0) -> DiffusionForcingPolicy:
    """Untrained policy in eval mode (deterministic weights for ``seed``)."""
    torch.manual_seed(seed)
    return DiffusionForcingPolicy(config).eval()


def range_normalizer(ranges: Mapping[str, tuple[Any, Any]]) -> Normalizer:
    """``minmax`` normaliser mapping ``[low, high]`` (per key, scalars or per-dim) to [-1, 1]."""
    stats = {}
    for key, (low, high) in ranges.items():
        low, high = np.atleast_1d(np.asarray(low, dtype=np.float64)), np.atleast_1d(np.asarray(high, dtype=np.float64))
        low, high = np.broadcast_arrays(low, high)
        mid = (low + high) / 2
        stats[key] = KeyStats("minmax", low, high, mid, (high - low) / 4)
    return Normalizer(stats)


def make_runtime(policy: DiffusionForcingPolicy, config: RuntimeConfig | None = None, clock: Clock | None = None,
                 value_range: tuple[float, float] = (0.0, 100.0), crop_shape: tuple[int, int] | None = None,
                 derived_keys: dict[str, str] | None = None) -> PolicyRuntime:
    """A runtime around ``policy`` whose low-dim keys and action (``"action"``) are normalised
    from ``value_range`` (robot units). ``config.period_s`` defaults to 0.1 s."""
    cfg = policy.config
    config = config or RuntimeConfig()
    if config.period_s is None:
        config = dataclasses.replace(config, period_s=0.1)  # every other setting (accelerate too) kept
    dims = {**cfg.lowdim_shapes, "action": cfg.action_dim}
    normalizer = range_normalizer({k: (np.full(d, value_range[0]), np.full(d, value_range[1])) for k, d in dims.items()})
    pre = Preprocessor(cfg, normalizer, "action", crop_shape, derived_keys)
    return PolicyRuntime(policy, pre, config, clock)


def random_observation(config: DiffusionForcingConfig, rng: np.random.Generator, image_hw: tuple[int, int] | None = None,
                       value_range: tuple[float, float] = (0.0, 100.0)) -> dict[str, np.ndarray]:
    """A raw observation (robot units, images HWC uint8) for ``config``'s keys."""
    obs: dict[str, np.ndarray] = {}
    for key, (c, h, w) in config.image_shapes.items():
        hh, ww = image_hw or (h, w)
        obs[key] = rng.integers(0, 256, size=(hh, ww, c), dtype=np.uint8)
    for key, d in config.lowdim_shapes.items():
        obs[key] = rng.uniform(*value_range, size=d).astype(np.float32)
    return obs
