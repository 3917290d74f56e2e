"""Model core of df_policy: noise schedule, scheduling matrices, vision encoder, denoisers
(causal transformer, 1-D U-Net) and the Diffusion Forcing policy."""

from df_policy.model.denoiser import CausalDenoiser, DenoiserConfig
from df_policy.model.noise import NoiseSchedule
from df_policy.model.observation import EncodedObs, ObservationEncoder
from df_policy.model.policy import DiffusionForcingConfig, DiffusionForcingPolicy
from df_policy.model.schedules import (
    SCHEDULE_NAMES,
    autoregressive,
    full_sequence,
    make_schedule,
    pyramid,
    stabilize,
    to_training_levels,
    trapezoid,
    validate_schedule,
)
from df_policy.model.unet_denoiser import UNetDenoiser, UNetDenoiserConfig
from df_policy.model.vision import ImageEncoder, VisionEncoderConfig, load_torchvision_resnet18

__all__ = [
    "SCHEDULE_NAMES",
    "CausalDenoiser",
    "DenoiserConfig",
    "DiffusionForcingConfig",
    "DiffusionForcingPolicy",
    "EncodedObs",
    "ImageEncoder",
    "NoiseSchedule",
    "ObservationEncoder",
    "UNetDenoiser",
    "UNetDenoiserConfig",
    "VisionEncoderConfig",
    "autoregressive",
    "full_sequence",
    "load_torchvision_resnet18",
    "make_schedule",
    "pyramid",
    "stabilize",
    "to_training_levels",
    "trapezoid",
    "validate_schedule",
]
