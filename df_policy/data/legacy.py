"""Read-only access to Diffusion Policy ReplayBuffer stores (Zarr v2, directory or ``.zarr.zip``).

Layout: ``data/<key>`` concatenated over time and ``meta/episode_ends`` (exclusive ends).
No schema is stored, so one is inferred: 4-D arrays ``(N, H, W, C)`` with ``C`` in (1, 3) are
images (float 0–255 in the PushT demos, converted to ``uint8``), the key named ``action`` is
the action, everything else is a float32 low-dim observation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from df_policy.data.schema import EpisodeMeta, KeySpec, StoreSchema
from df_policy.data.store import StoreError, _require_zarr, is_zarr_dir

try:
    import zarr
except ImportError:  # pragma: no cover
    zarr = None


def is_replay_buffer(path: Path) -> bool:
    """True for a ``.zip`` file or a Zarr v2 directory (``.zgroup``)."""
    return (path.is_file() and path.suffix == ".zip") or (path.is_dir() and (path / ".zgroup").is_file())


class ReplayBufferReader:
    """Diffusion Policy store, read through the same API as :class:`EpisodeStore`."""

    read_only = True
    partial = None

    def __init__(self, path: str | os.PathLike, fps: float | None = None, action_key: str = "action") -> None:
        _require_zarr()
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path} does not exist")
        try:
            if self.path.is_file():
                self._zip = zarr.storage.ZipStore(self.path, mode="r")
                store: Any = self._zip
            else:
                store = zarr.storage.LocalStore(self.path, read_only=True)
            self._group = zarr.open_group(store, mode="r", zarr_format=2)
        except Exception as e:
            raise StoreError(f"{self.path} is not a Diffusion Policy Zarr store: {e}") from e
        if "data" not in self._group or "meta" not in self._group or "episode_ends" not in self._group["meta"]:
            raise StoreError(f"{self.path}: not a ReplayBuffer layout (needs data/ and meta/episode_ends)")
        ends = np.asarray(self._group["meta/episode_ends"][:], dtype=np.int64)
        if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            raise StoreError(f"{self.path}: meta/episode_ends is not strictly increasing")
        self.episode_ends = ends
        keys: dict[str, KeySpec] = {}
        self._convert: dict[str, bool] = {}
        for key, arr in self._group["data"].arrays():
            if arr.shape[0] != self.n_steps:
                raise StoreError(
                    f"{self.path}: length mismatch: data/{key} has {arr.shape[0]} steps but episode_ends "
                    f"says {self.n_steps}"
                )
            if arr.ndim == 4 and arr.shape[-1] in (1, 3):
                keys[key] = KeySpec("image", arr.shape[1:], "uint8", unit="rgb", camera=key)
                self._convert[key] = np.dtype(arr.dtype) != np.uint8
            else:
                kind = "action" if key == action_key else "lowdim"
                keys[key] = KeySpec(kind, arr.shape[1:], "float32")
                self._convert[key] = np.dtype(arr.dtype) != np.float32
        if action_key not in keys:
            raise StoreError(f"{self.path}: no action array data/{action_key}; arrays: {sorted(keys)}")
        self.schema = StoreSchema(keys=keys, fps=fps, cameras={k: {} for k in keys if keys[k].kind == "image"})

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def episode_meta(self) -> list[EpisodeMeta]:
        return [EpisodeMeta(length=int(n)) for n in np.diff(self.episode_ends, prepend=0)]

    def episode_bounds(self, i: int) -> tuple[int, int]:
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range ({self.n_episodes} episodes)")
        i %= self.n_episodes
        return (int(self.episode_ends[i - 1]) if i else 0), int(self.episode_ends[i])

    def array(self, key: str) -> Any:
        if key not in self.schema.keys:
            raise KeyError(f"no key {key!r}; keys: {sorted(self.schema.keys)}")
        return self._group["data"][key]

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        raw = np.asarray(self.array(key)[start:stop])
        spec = self.schema.keys[key]
        if spec.kind == "image" and self._convert[key]:
            return np.clip(np.rint(raw), 0, 255).astype(np.uint8)
        return raw.astype(spec.dtype, copy=False)

    def episode(self, i: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        s, e = self.episode_bounds(i)
        return {k: self.read(k, s, e) for k in (keys or self.schema.keys)}

    def size_on_disk(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def open_episodes(path: str | os.PathLike, mode: str = "r", fps: float | None = None):
    """Open any supported store: our Zarr v3 store, or a Diffusion Policy one (read-only)."""
    from df_policy.data.remote import is_remote
    from df_policy.data.store import EpisodeStore

    if is_remote(path):  # object storage: a df_policy store, read-only
        return EpisodeStore.open(str(path), mode=mode)
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p} does not exist")
    if is_replay_buffer(p):
        if mode != "r":
            raise StoreError(f"{p} is a Diffusion Policy store and opens read-only; convert it first")
        return ReplayBufferReader(p, fps=fps)
    if p.is_dir() and is_zarr_dir(p):
        return EpisodeStore.open(p, mode=mode)
    raise StoreError(f"{p} is not an episode store (expected a Zarr directory or a .zarr.zip file)")
