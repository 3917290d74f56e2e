"""LeRobot's DiffusionPolicy with its PushT recipe, the one builder the issue-13 benchmarks share.

Runs in ``.venv-lerobot`` (``bash scripts/install_lerobot.sh bench``). To 2, horizon 16,
8 actions per chunk, U-Net ``down_dims``; with a camera: ResNet-18 from scratch (nothing is
downloaded) with group norm, 32 spatial-softmax keypoints, random 84x84 crops in training;
normalisation as LeRobot's PushT config (mean/std per image channel, min-max for states and the
action).
"""

from __future__ import annotations

import torch


def lerobot_diffusion_policy(down_dims: tuple[int, ...], scheduler: str = "DDPM", steps: int = 100, *,
                             image_key: str | None = "observation.image", state_dim: int = 2,
                             env_state_dim: int | None = None, seed: int | None = None):
    """A freshly initialised ``DiffusionPolicy``: ``image_key`` a 96x96 RGB camera (``None`` = no
    camera), ``observation.state`` of ``state_dim``, ``observation.environment_state`` of
    ``env_state_dim`` (``None`` = none), a 2-dim action; ``scheduler`` ``DDPM`` / ``DDIM`` with
    ``steps`` inference steps over 100 training steps; ``seed`` seeds torch before the weights
    are made."""
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))}
    if env_state_dim is not None:
        inputs["observation.environment_state"] = PolicyFeature(type=FeatureType.ENV, shape=(env_state_dim,))
    if image_key is not None:
        inputs[image_key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 96))
    cfg = DiffusionConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
        normalization_mapping={"VISUAL": NormalizationMode.MEAN_STD, "STATE": NormalizationMode.MIN_MAX,
                               "ENV": NormalizationMode.MIN_MAX, "ACTION": NormalizationMode.MIN_MAX},
        n_obs_steps=2, horizon=16, n_action_steps=8, drop_n_last_frames=7, down_dims=tuple(down_dims),
        crop_shape=(84, 84), crop_is_random=True, use_group_norm=True, pretrained_backbone_weights=None,
        spatial_softmax_num_keypoints=32,
        noise_scheduler_type=scheduler, num_train_timesteps=100, num_inference_steps=steps, device="cpu",
    )
    if seed is not None:
        torch.manual_seed(seed)
    return DiffusionPolicy(cfg)
