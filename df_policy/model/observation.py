"""Observation encoder: one feature vector per observation time step.

Batch keys follow the data-pipeline contract: ``obs.<image_key>`` uint8 ``(B, To, C, H, W)``
and ``obs.<lowdim_key>`` float32 ``(B, To, D)`` (already normalised). Each camera has its own
:class:`~df_policy.model.vision.ImageEncoder`; all low-dim keys are concatenated (in config
order) and embedded by a small MLP. The per-step output is the concatenation
``[camera_1, ..., camera_n, lowdim]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from df_policy.model.vision import ImageEncoder, VisionEncoderConfig

OBS_PREFIX = "obs."


@dataclass
class EncodedObs:
    """Encoded observation window.

    Attributes:
        features: ``(B, To, F)`` float, one vector per observation step.
        missing: ``(B, To)`` bool, True = step missing (padding, dropped history).
    """

    features: Tensor
    missing: Tensor

    def __post_init__(self) -> None:
        if self.features.ndim != 3 or self.missing.shape != self.features.shape[:2]:
            raise ValueError(
                f"EncodedObs: features (B, To, F) and missing (B, To) disagree: "
                f"{tuple(self.features.shape)} vs {tuple(self.missing.shape)}"
            )
        if self.missing.dtype != torch.bool:
            raise ValueError(f"EncodedObs.missing must be bool, got {self.missing.dtype}")

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def repeat_interleave(self, n: int) -> "EncodedObs":
        """Each sample repeated ``n`` times along the batch (sample ``b`` -> rows ``b*n .. b*n+n-1``)."""
        return EncodedObs(self.features.repeat_interleave(n, dim=0), self.missing.repeat_interleave(n, dim=0))


class ObservationEncoder(nn.Module):
    """``{obs.<key>: (B, To, ...)}`` -> ``(B, To, out_dim)`` features.

    Args:
        image_shapes: camera key -> ``(C, H, W)``; inputs must have exactly this shape.
        lowdim_shapes: low-dim key -> feature size ``D``.
        vision: image-encoder settings shared by all cameras (``in_channels`` follows ``C``).
        lowdim_embed_dim: output size of the low-dim MLP.
    """

    def __init__(
        self,
        image_shapes: Mapping[str, tuple[int, int, int]],
        lowdim_shapes: Mapping[str, int],
        vision: VisionEncoderConfig,
        lowdim_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if not image_shapes and not lowdim_shapes:
            raise ValueError("ObservationEncoder needs at least one image or low-dim key")
        self.image_shapes = {k: tuple(v) for k, v in image_shapes.items()}
        self.lowdim_shapes = dict(lowdim_shapes)
        self.cameras = nn.ModuleDict(
            {
                key: ImageEncoder(dataclasses.replace(vision, in_channels=shape[0]))
                for key, shape in self.image_shapes.items()
            }
        )
        self.lowdim_dim = sum(self.lowdim_shapes.values())
        self.lowdim_mlp: nn.Module | None = None
        if self.lowdim_dim:
            self.lowdim_mlp = nn.Sequential(
                nn.Linear(self.lowdim_dim, lowdim_embed_dim), nn.SiLU(), nn.Linear(lowdim_embed_dim, lowdim_embed_dim)
            )
        self.out_dim = vision.out_dim * len(self.cameras) + (lowdim_embed_dim if self.lowdim_dim else 0)

    def set_channels_last(self, enabled: bool) -> None:
        """Hold the image encoders' weights in NHWC (``channels_last``, their inputs follow) or in
        the default NCHW layout. The same function either way (up to floating-point summation
        order); NHWC is the faster layout for oneDNN on CPUs and for bf16 on GPUs."""
        memory_format = torch.channels_last if enabled else torch.contiguous_format
        for encoder in self.cameras.values():
            encoder.to(memory_format=memory_format)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        parts: list[Tensor] = []
        batch_shape: tuple[int, int] | None = None
        for key, encoder in self.cameras.items():
            images = _get(obs, key)
            expected = self.image_shapes[key]
            if images.ndim != 5 or tuple(images.shape[2:]) != expected:
                raise ValueError(
                    f"{OBS_PREFIX}{key}: expected (B, To, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
                )
            batch_shape = _same_batch(batch_shape, images.shape[:2], key)
            B, To = images.shape[:2]
            parts.append(encoder(images.reshape(B * To, *expected)).reshape(B, To, -1))
        if self.lowdim_mlp is not None:
            lowdims = []
            for key, dim in self.lowdim_shapes.items():
                value = _get(obs, key)
                if value.ndim != 3 or value.shape[-1] != dim:
                    raise ValueError(f"{OBS_PREFIX}{key}: expected (B, To, {dim}), got {tuple(value.shape)}")
                batch_shape = _same_batch(batch_shape, value.shape[:2], key)
                lowdims.append(value)
            weight = self.lowdim_mlp[0].weight
            parts.append(self.lowdim_mlp(torch.cat(lowdims, dim=-1).to(weight.device, weight.dtype)))
        return torch.cat(parts, dim=-1)


def _get(obs: Mapping[str, Tensor], key: str) -> Tensor:
    name = OBS_PREFIX + key
    if name not in obs:
        raise KeyError(f"observation key {name!r} missing (have {sorted(obs)})")
    return obs[name]


def _same_batch(seen: tuple[int, int] | None, shape: torch.Size, key: str) -> tuple[int, int]:
    current = (int(shape[0]), int(shape[1]))
    if seen is not None and seen != current:
        raise ValueError(f"{OBS_PREFIX}{key}: (B, To) = {current} differs from other keys' {seen}")
    return current
