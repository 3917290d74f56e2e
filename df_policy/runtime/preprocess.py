"""Raw robot observations -> model inputs, and model actions -> robot commands.

Raw observations are what a robot (or a recorded episode step) provides, in robot units: a dict
of numpy arrays, images ``uint8 (H, W, C)`` (RGB, store layout), low-dim vectors ``float``.
The model needs, per step, ``obs.<image>`` ``uint8 (C, h, w)`` centre-cropped to the trained
size and ``obs.<lowdim>`` ``float32 (D,)`` normalised with the checkpoint's normaliser. Derived
low-dim keys (``agent_pos = state[0:2]``) are taken from the raw dict when present, else sliced
from their source key; angle dimensions (``(cos, sin)``) and planar poses (keypoints) are encoded
as in training (:mod:`df_policy.data.features`). Everything is read from the checkpoint (dataset config + normaliser).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from df_policy.data.augment import center_crop, resize
from df_policy.data.dataset import parse_slice
from df_policy.data.features import LowdimFeatures
from df_policy.data.normalizer import Normalizer
from df_policy.model.observation import OBS_PREFIX
from df_policy.model.policy import DiffusionForcingConfig


class ObservationError(ValueError):
    """A raw observation cannot be used: a key is missing or has the wrong shape."""


class InvalidObservation(ObservationError):
    """A raw observation holds NaN or Inf (a sensor fault); it must never reach the model."""


@dataclass
class Preprocessor:
    """Converts between robot units and model units for one checkpoint.

    Attributes:
        policy_config: the model's config (image shapes ``(C, h, w)``, low-dim sizes).
        normalizer: the checkpoint's normaliser (low-dim keys and the action key).
        action_key: name of the action in the normaliser / store.
        crop_shape: ``(h, w)`` centre crop of raw images, ``None`` = images already at size.
        resize_shape: ``(h, w)`` raw images are resized to first, as in training (``None`` = no resize).
        derived_keys: derived low-dim key -> ``"source[a:b]"``.
        angle_dims: low-dim key -> dimensions (of the raw value) encoded as ``(cos, sin)``.
        pose_keypoints: low-dim key -> planar pose encoded as keypoints (``DatasetConfig.pose_keypoints``).
    """

    policy_config: DiffusionForcingConfig
    normalizer: Normalizer
    action_key: str
    crop_shape: tuple[int, int] | None = None
    derived_keys: dict[str, str] | None = None
    angle_dims: dict[str, list[int]] | None = None
    resize_shape: tuple[int, int] | None = None
    pose_keypoints: dict[str, dict] | None = None

    def __post_init__(self) -> None:
        self.derived_keys = dict(self.derived_keys or {})
        self.features = LowdimFeatures(self.angle_dims, self.pose_keypoints)
        self.angle_dims, self.pose_keypoints = self.features.angle_dims, self.features.pose_keypoints
        for key in self.features.keys:
            if key not in self.policy_config.lowdim_shapes:
                option = "angle_dims" if key in self.angle_dims else "pose_keypoints"
                raise ValueError(f"{option} names {key!r}, which is not one of the model's low-dim inputs "
                                 f"{list(self.policy_config.lowdim_shapes)}")
        self._derived = {k: parse_slice(v) for k, v in self.derived_keys.items()}
        if self.crop_shape is not None:
            self.crop_shape = (int(self.crop_shape[0]), int(self.crop_shape[1]))
        if self.resize_shape is not None:
            self.resize_shape = (int(self.resize_shape[0]), int(self.resize_shape[1]))
        for key in [*self.policy_config.lowdim_shapes, self.action_key]:
            if key not in self.normalizer.stats:
                raise ValueError(f"the checkpoint's normaliser has no stats for {key!r}")

    @classmethod
    def from_loaded(cls, loaded: Any) -> "Preprocessor":
        """From a :class:`~df_policy.training.checkpoint.LoadedPolicy`."""
        ds = dict(loaded.run_config.get("dataset") or {})
        return cls(loaded.policy.config, loaded.normalizer, loaded.schema.action_key,
                   ds.get("crop_shape"), ds.get("derived_keys") or {}, ds.get("angle_dims") or {},
                   ds.get("resize_shape"), ds.get("pose_keypoints") or {})

    @property
    def raw_keys(self) -> list[str]:
        """Keys a raw observation must provide (derived keys may come via their source)."""
        return [*self.policy_config.image_shapes, *self.policy_config.lowdim_shapes]

    def source_keys(self) -> list[str]:
        """Raw keys to read from a store to build every model input (sources of derived keys)."""
        keys = list(self.policy_config.image_shapes)
        for k in self.policy_config.lowdim_shapes:
            keys.append(self._derived[k][0] if k in self._derived else k)
        return list(dict.fromkeys(keys))

    def _lowdim(self, raw: Mapping[str, Any], key: str) -> np.ndarray:
        if key in raw:
            value = np.asarray(raw[key], dtype=np.float64)
        elif key in self._derived and self._derived[key][0] in raw:
            src, a, b = self._derived[key]
            value = np.asarray(raw[src], dtype=np.float64).reshape(-1)[a:b]
        else:
            hint = f" (or its source {self._derived[key][0]!r})" if key in self._derived else ""
            raise ObservationError(f"observation lacks low-dim key {key!r}{hint}; got {sorted(raw)}")
        value = value.reshape(-1)
        dim = self.features.raw_dim(key, self.policy_config.lowdim_shapes[key])
        if value.shape != (dim,):
            raise ObservationError(f"observation {key!r} must have {dim} values, got shape {np.shape(raw.get(key))}")
        if not np.isfinite(value).all():
            raise InvalidObservation(f"observation {key!r} contains NaN/Inf: {value.tolist()}")
        return self.features.encode(key, value)

    def _image(self, raw: Mapping[str, Any], key: str) -> np.ndarray:
        if key not in raw:
            raise ObservationError(f"observation lacks image {key!r}; got {sorted(raw)}")
        img = np.asarray(raw[key])
        C, h, w = self.policy_config.image_shapes[key]
        if img.dtype != np.uint8:
            if not np.isfinite(img).all():
                raise InvalidObservation(f"image {key!r} contains NaN/Inf")
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if img.ndim != 3 or img.shape[-1] != C:
            raise ObservationError(f"image {key!r} must be (H, W, {C}) uint8, got {img.shape}")
        if self.resize_shape is not None:
            img = resize(img, self.resize_shape)
        if img.shape[:2] != (h, w):
            if self.crop_shape is None or tuple(self.crop_shape) != (h, w):
                raise ObservationError(f"image {key!r} is {img.shape[:2]}, the model needs {(h, w)} and no crop is configured")
            img = center_crop(img, (h, w))
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def observation(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One raw step -> ``{"obs.<key>": array}`` (images ``(C, h, w)`` uint8, low-dim
        normalised float32). Raises :class:`InvalidObservation` on NaN/Inf and
        :class:`ObservationError` on missing keys or wrong shapes."""
        out: dict[str, np.ndarray] = {}
        for key in self.policy_config.image_shapes:
            out[OBS_PREFIX + key] = self._image(raw, key)
        for key in self.policy_config.lowdim_shapes:
            out[OBS_PREFIX + key] = np.asarray(self.normalizer.normalize(key, self._lowdim(raw, key)), dtype=np.float32)
        return out

    def window(self, steps: list[dict[str, np.ndarray] | None]) -> dict[str, torch.Tensor]:
        """``To`` processed steps (``None`` = missing) -> model window with batch 1 and
        ``obs_is_pad`` (missing steps are zero-filled and flagged, never repeated)."""
        present = next((s for s in steps if s is not None), None)
        if present is None:
            raise ObservationError("an observation window needs at least one present step")
        window: dict[str, torch.Tensor] = {}
        for key, ref in present.items():
            stacked = np.stack([s[key] if s is not None else np.zeros_like(ref) for s in steps])
            window[key] = torch.from_numpy(stacked)[None]
        window["obs_is_pad"] = torch.tensor([[s is None for s in steps]], dtype=torch.bool)
        return window

    def normalize_action(self, action: np.ndarray) -> np.ndarray:
        """Robot units -> normalised, ``(..., Da)`` float32."""
        return np.asarray(self.normalizer.normalize(self.action_key, np.asarray(action, dtype=np.float32)), dtype=np.float32)

    def unnormalize_action(self, action: np.ndarray) -> np.ndarray:
        """Normalised -> robot units, ``(..., Da)`` float64."""
        return np.asarray(self.normalizer.unnormalize(self.action_key, np.asarray(action, dtype=np.float32)), dtype=np.float64)
