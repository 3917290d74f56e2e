"""Per-key normalisation of low-dim observations and actions; saved with every checkpoint.

Modes:
* ``"minmax"``: ``x -> 2 (x - min) / (max - min) - 1`` maps the data range to [-1, 1]. A
  dimension whose range is below ``eps`` (default ``1e-4`` in data units, Diffusion Policy's
  ``range_eps``) is treated as constant (centred, scale 1), so a nearly constant dimension is
  never scaled by more than ``2 / eps``.
* ``"meanstd"``: ``x -> (x - mean) / std`` (``std`` floored at ``eps``).
Checkpoints store ``eps`` with the stats, so one fitted with another floor loads unchanged.
Images are not normalised here (they stay ``uint8``; the model scales them to [0, 1]).
Stats are per flattened dimension, computed once from the data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODES = ("minmax", "meanstd")
RANGE_EPS = 1e-4
"""Smallest range (minmax) / std (meanstd) that is scaled, in data units."""


@dataclass
class KeyStats:
    """Statistics of one key, per flattened dimension (``(D,)`` float64)."""

    mode: str
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    eps: float = RANGE_EPS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"normaliser mode must be one of {MODES}, got {self.mode!r}")
        for f in ("min", "max", "mean", "std"):
            setattr(self, f, np.asarray(getattr(self, f), dtype=np.float64).reshape(-1))
        if not all(np.all(np.isfinite(getattr(self, f))) for f in ("min", "max", "mean", "std")):
            raise ValueError("normaliser stats contain NaN or Inf")

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)`` such that ``normalized = x * scale + offset``."""
        if self.mode == "minmax":
            rng = self.max - self.min
            const = rng < self.eps
            scale = np.where(const, 1.0, 2.0 / np.where(const, 1.0, rng))
            offset = np.where(const, -self.min, -1.0 - self.min * scale)
            # constant dims: x - min (== 0 on the data)
            return scale, offset
        scale = 1.0 / np.maximum(self.std, self.eps)
        return scale, -self.mean * scale

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "eps": self.eps, **{f: getattr(self, f).tolist() for f in ("min", "max", "mean", "std")}}


class Normalizer:
    """Normalise / unnormalise arrays or tensors of shape ``(..., *key_shape)`` per key."""

    def __init__(self, stats: dict[str, KeyStats]) -> None:
        self.stats = stats
        self._so = {k: s.scale_offset() for k, s in stats.items()}

    @classmethod
    def fit(cls, arrays: dict[str, np.ndarray], modes: dict[str, str] | str = "minmax") -> "Normalizer":
        """Compute stats from ``key -> (N, *shape)`` arrays."""
        stats = {}
        for k, a in arrays.items():
            flat = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
            if len(flat) == 0:
                raise ValueError(f"cannot fit normaliser for {k!r}: no data")
            if not np.all(np.isfinite(flat)):
                raise ValueError(f"cannot fit normaliser for {k!r}: data contains NaN or Inf")
            mode = modes if isinstance(modes, str) else modes.get(k, "minmax")
            stats[k] = KeyStats(mode, flat.min(0), flat.max(0), flat.mean(0), flat.std(0))
        return cls(stats)

    def _apply(self, key: str, x: Any, inverse: bool) -> Any:
        if key not in self._so:
            raise KeyError(f"normaliser has no stats for {key!r}; it knows {sorted(self._so)}")
        scale, offset = self._so[key]
        is_torch = isinstance(x, torch.Tensor)
        shape = x.shape
        d = scale.shape[0]
        flat = x.reshape(*shape[: len(shape) - self._ndim(key, shape, d)], d)
        if is_torch:
            sc = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
            of = torch.as_tensor(offset, dtype=x.dtype, device=x.device)
        else:
            sc, of = scale.astype(np.float32), offset.astype(np.float32)
        out = (flat - of) / sc if inverse else flat * sc + of
        return out.reshape(shape)

    @staticmethod
    def _ndim(key: str, shape: tuple, d: int) -> int:
        """How many trailing axes of ``shape`` make up one step of ``key`` (product == d)."""
        prod, n = 1, 0
        while prod < d and n < len(shape):
            n += 1
            prod *= shape[-n]
        if prod != d:
            raise ValueError(f"array of shape {tuple(shape)} does not end in the {d} dimensions of {key!r}")
        return max(n, 1)

    def normalize(self, key: str, x: Any) -> Any:
        return self._apply(key, x, inverse=False)

    def unnormalize(self, key: str, x: Any) -> Any:
        return self._apply(key, x, inverse=True)

    def to_dict(self) -> dict[str, Any]:
        return {k: s.to_dict() for k, s in self.stats.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        return cls({k: KeyStats(**v) for k, v in d.items()})

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Normalizer":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"cannot read normaliser stats from {path}: {e}") from e
