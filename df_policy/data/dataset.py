"""Windowed training dataset over an episode store.

Batch contract (what :meth:`WindowDataset.__getitems__` returns; the model's input)::

    "obs.<image_key>"   uint8   (B, To, C, h, w)  cropped (random in training, centre otherwise)
    "obs.<lowdim_key>"  float32 (B, To, D)        normalised
    "obs_is_pad"        bool    (B, To)           True = before the episode start (edge-repeated)
    "action"            float32 (B, Tp, Da)       normalised
    "action_is_pad"     bool    (B, Tp)           True = outside the episode (edge-repeated)
    "index"             int64   (B,)              sample (anchor) index

Batches are gathered with vectorised numpy indexing (``__getitems__``), so use
``torch.utils.data.DataLoader(ds, batch_size=B, collate_fn=identity_collate)``.

Data residency: ``cache="ram"`` loads the used keys into numpy arrays once; forked DataLoader
workers share those pages copy-on-write (nothing writes to them), so workers do not each copy
the store. ``cache="stream"`` reads the Zarr chunks a batch needs (each worker opens the store
itself after the fork). ``"auto"`` picks RAM when the data fits in half the available memory
(:func:`available_memory`: free memory capped by the process's cgroup limit).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from df_policy.data.augment import center_crop, random_crop, resize
from df_policy.data.features import LowdimFeatures
from df_policy.data.legacy import open_episodes
from df_policy.data.normalizer import Normalizer
from df_policy.data.sampler import WindowIndex, WindowSpec, find_gaps, split_episodes
from df_policy.data.schema import STAMP_KEY, KeySpec, StoreSchema
from df_policy.data.symmetry import MirrorConfig, PlanarMirror, mirror_images_hwc

CACHE_MODES = ("auto", "ram", "stream")


@dataclass
class DatasetConfig:
    """What to read from a store and how to cut it into training samples.

    Attributes:
        image_keys: camera keys to use (``None`` = every ``image`` key of the store).
        lowdim_keys: low-dim observation keys (``None`` = every ``lowdim`` key of the store but
            the time stamps, ``stamp_s``: :attr:`StoreSchema.observation_keys`).
            Depth keys (``kind == "depth"``) are never picked by default, and naming one here
            is an error: the dataset does not read depth.
        n_obs_steps: ``To``.
        horizon: ``Tp`` (action steps per sample, starting at the first observation step).
        max_action_pad: see :class:`WindowSpec`.
        crop_shape: ``(h, w)`` crop of every image (after ``resize_shape``), or ``None`` for no crop.
        resize_shape: ``(h, w)`` every image is resized to on load (OpenCV area filter), before
            it is held in RAM and cropped: a 480x640 camera trains at e.g. 96x128 without holding
            or decoding full frames per sample. The runtime resizes raw frames the same way.
        val_ratio: fraction of episodes held out for validation (by episode).
        split_seed: seed of the episode split.
        normalizer_mode: ``"minmax"`` or ``"meanstd"`` for low-dim keys and the action.
        cache: ``"auto"``, ``"ram"`` or ``"stream"``.
        fps: recording rate for stores that do not carry one (Diffusion Policy stores).
        split_at_gaps: windows never span a gap in the recording (consecutive ``stamp_s`` more
            than 1.5 periods apart, a dropped step): the steps across it are padding, masked
            (:mod:`df_policy.data.sampler`). Stores without ``stamp_s`` have no gaps to find.
        derived_keys: new low-dim keys defined as a slice of a stored key's last axis,
            ``{"agent_pos": "state[0:2]"}`` (PushT's state also holds the block pose, which an
            image policy must not see). Usable in ``lowdim_keys``; saved in the schema.
        angle_dims: low-dim key -> dimensions that hold an angle in radians, fed to the model
            as ``(cos, sin)`` (:mod:`df_policy.data.features`): ``{"state": [4]}`` for PushT's
            block angle, which wraps at 2π. The key's model input grows by one per angle; the
            store keeps the raw values.
        pose_keypoints: low-dim key -> ``{"pose_dims": [x, y, angle], "points": [[px, py], ...]}``:
            the planar pose at those dimensions is fed as the world coordinates of the listed
            body-frame points (:mod:`df_policy.data.features`), as Diffusion Policy feeds PushT's
            block as 9 keypoints. The key's model input becomes ``D - 3 + 2 * len(points)``;
            the store keeps the raw values. A key takes either this or ``angle_dims``.
        lowdim_noise_std: training only: Gaussian noise (std in normalised units, where the
            data spans [-1, 1]) added to every low-dim observation of a sample, each step and
            dimension independently, so the policy also sees states a little off the
            demonstrations (closed-loop drift); 0 = off. Actions are never noised.
        mirror: training only: a reflection the task is invariant under
            (:class:`~df_policy.data.symmetry.MirrorConfig`): each training window is mirrored
            whole (observations and actions, raw values; images by their declared pixel
            operation, after the crop) with probability ``mirror.prob``, and the normaliser is
            fitted on the episodes and their mirror images. ``None`` = off.
        shard_by_rank: under DDP, each rank trains on its own share of the training episodes
            and holds only those in RAM (stores larger than a node's memory); off, every rank
            samples windows of every episode (``DistributedSampler``).
    """

    image_keys: list[str] | None = None
    lowdim_keys: list[str] | None = None
    n_obs_steps: int = 2
    horizon: int = 16
    max_action_pad: int | None = None
    crop_shape: tuple[int, int] | None = (84, 84)
    resize_shape: tuple[int, int] | None = None
    val_ratio: float = 0.1
    split_seed: int = 0
    normalizer_mode: str = "minmax"
    cache: str = "auto"
    fps: float | None = None
    split_at_gaps: bool = True
    derived_keys: dict[str, str] = field(default_factory=dict)
    angle_dims: dict[str, list[int]] = field(default_factory=dict)
    pose_keypoints: dict[str, dict] = field(default_factory=dict)
    lowdim_noise_std: float = 0.0
    mirror: MirrorConfig | None = None
    shard_by_rank: bool = False

    def __post_init__(self) -> None:
        self.derived_keys = dict(self.derived_keys or {})
        self.mirror = MirrorConfig.coerce(self.mirror)
        features = LowdimFeatures(self.angle_dims, self.pose_keypoints)  # validates, one encoding per key
        self.angle_dims, self.pose_keypoints = features.angle_dims, features.pose_keypoints
        for name, expr in self.derived_keys.items():
            parse_slice(expr)  # validates
        WindowSpec(self.n_obs_steps, self.horizon, self.max_action_pad)  # validates geometry
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.crop_shape is not None:
            self.crop_shape = (int(self.crop_shape[0]), int(self.crop_shape[1]))
        if self.resize_shape is not None:
            self.resize_shape = (int(self.resize_shape[0]), int(self.resize_shape[1]))
            if min(self.resize_shape) < 8:
                raise ValueError(f"resize_shape must be at least 8x8, got {self.resize_shape}")
            if self.crop_shape is not None and (self.crop_shape[0] > self.resize_shape[0]
                                                or self.crop_shape[1] > self.resize_shape[1]):
                raise ValueError(f"crop_shape {self.crop_shape} does not fit resize_shape {self.resize_shape}")
        if not 0.0 <= float(self.lowdim_noise_std) < 1.0:
            raise ValueError(f"lowdim_noise_std must be in [0, 1) (normalised units), got {self.lowdim_noise_std}")
        if not 0.0 <= self.val_ratio < 1.0:
            raise ValueError(f"val_ratio must be in [0, 1), got {self.val_ratio}")

    @property
    def window(self) -> WindowSpec:
        return WindowSpec(self.n_obs_steps, self.horizon, self.max_action_pad)

    @property
    def features(self) -> LowdimFeatures:
        """The low-dim encodings (angles, pose keypoints) this config asks for."""
        return LowdimFeatures(self.angle_dims, self.pose_keypoints)


_SLICE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


def parse_slice(expr: str) -> tuple[str, int, int]:
    """``"state[0:2]"`` -> ``("state", 0, 2)``; raises ValueError naming the expression."""
    m = _SLICE.match(expr)
    if not m or int(m.group(3)) <= int(m.group(2)):
        raise ValueError(f"derived key {expr!r} must look like 'key[start:stop]' with stop > start")
    return m.group(1), int(m.group(2)), int(m.group(3))


def derive_schema(schema: StoreSchema, derived: dict[str, str]) -> StoreSchema:
    """``schema`` plus the derived low-dim keys (checked against the stored keys)."""
    keys = dict(schema.keys)
    for name, expr in derived.items():
        src, a, b = parse_slice(expr)
        spec = schema.keys.get(src)
        if spec is None or spec.kind == "image" or len(spec.shape) != 1 or b > spec.shape[0]:
            raise ValueError(f"derived key {name!r} = {expr!r} does not fit the store's keys")
        if name in keys:
            raise ValueError(f"derived key {name!r} already exists in the store")
        names = spec.names[a:b] if spec.names else None
        keys[name] = KeySpec("lowdim", (b - a,), "float32", unit=spec.unit, names=names,
                             description=f"{expr} (derived)")
    return dataclasses.replace(schema, keys=keys)


def identity_collate(batch: Any) -> Any:
    """DataLoader collate for datasets whose ``__getitems__`` already returns a batch."""
    return batch


_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a huge page-aligned number


def available_memory(cgroup_root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """Bytes this process can still use: the host's free memory, capped by the memory limit of
    its cgroup (v2 ``memory.max - memory.current``, v1 ``memory.limit_in_bytes -
    memory.usage_in_bytes``), which is what a container or a Slurm job actually grants."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        free = 4 << 30
    root = Path(cgroup_root)
    paths = {"v2": "", "v1": ""}
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                paths["v2"] = path.lstrip("/")
            elif "memory" in controllers.split(","):
                paths["v1"] = path.lstrip("/")
    except (OSError, ValueError):
        pass
    candidates = [(root / paths["v2"], "memory.max", "memory.current"), (root, "memory.max", "memory.current"),
                  (root / "memory" / paths["v1"], "memory.limit_in_bytes", "memory.usage_in_bytes"),
                  (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]
    for directory, limit_name, usage_name in candidates:
        try:
            limit_text = (directory / limit_name).read_text().strip()
            usage = int((directory / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text != "max" and int(limit_text) < _NO_LIMIT:
            return max(0, min(free, int(limit_text) - usage))
        return free
    return free


class EpisodeArrays:
    """The arrays a dataset reads, either resident in RAM or streamed from Zarr chunks.

    ``resident``: the episodes to hold in RAM (``None`` = all). The arrays keep the store's step
    indexing, but only the steps of those episodes are ever written, so the pages of the others
    are never touched and cost no memory (a DDP rank holding its own share of a large store);
    reading a step outside them is an error for :meth:`gather` and goes to the store for
    :meth:`full`."""

    def __init__(self, path: str, keys: Sequence[str], cache: str, fps: float | None, progress: bool,
                 derived: dict[str, str] | None = None, features: LowdimFeatures | None = None,
                 resident: Sequence[int] | None = None, resize_shape: tuple[int, int] | None = None,
                 mirror: MirrorConfig | None = None) -> None:
        self.path, self.fps = path, fps
        self.mirror = None if mirror is None else PlanarMirror(mirror)
        self.resize_shape = None if resize_shape is None else (int(resize_shape[0]), int(resize_shape[1]))
        self.derived = {k: parse_slice(v) for k, v in (derived or {}).items()}
        self.features = features or LowdimFeatures()
        self.keys = sorted({self.derived[k][0] if k in self.derived else k for k in keys})
        reader = open_episodes(path, fps=fps)
        self.reader = reader
        self._pid = os.getpid()
        episodes = range(reader.n_episodes) if resident is None else sorted(set(resident))
        bounds = [reader.episode_bounds(i) for i in episodes]
        self.resident = np.zeros(reader.n_steps, dtype=bool)
        for s, e in bounds:
            self.resident[s:e] = True
        steps = int(self.resident.sum())
        self._all_resident = steps == reader.n_steps  # then gather needs no residency check
        nbytes = sum(steps * int(np.prod(self.step_shape(k))) * np.dtype(reader.schema.keys[k].dtype).itemsize
                     for k in self.keys)
        self.nbytes = nbytes
        self.in_ram = cache == "ram" or (cache == "auto" and nbytes < 0.5 * available_memory())
        self.ram: dict[str, np.ndarray] = {}
        if self.in_ram:
            block = 4096
            ranges = [(a, min(a + block, e)) for s, e in _merge_ranges(bounds) for a in range(s, e, block)]
            for k in self.keys:
                spec = reader.schema.keys[k]
                out = np.empty((reader.n_steps, *self.step_shape(k)), dtype=spec.dtype)  # untouched pages: no memory
                for s, e in tqdm(ranges, desc=f"load {k}", disable=not progress, leave=False):
                    out[s:e] = self._resized(k, reader.read(k, s, e))
                self.ram[k] = out

    def step_shape(self, key: str) -> tuple[int, ...]:
        """Shape of one step of stored ``key`` as this dataset holds it (images after resizing)."""
        spec = self.reader.schema.keys[key]
        if spec.kind == "image" and self.resize_shape is not None:
            return (*self.resize_shape, spec.shape[-1])
        return tuple(spec.shape)

    def _resized(self, key: str, frames: np.ndarray) -> np.ndarray:
        if self.resize_shape is None or self.reader.schema.keys[key].kind != "image":
            return frames
        return resize(frames, self.resize_shape)

    def gather(self, key: str, idx: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        """Steps ``idx`` (any integer shape) of ``key`` -> ``(*idx.shape, *step_shape)``, low-dim
        features encoded (``(*idx.shape, encoded_dim)``, :class:`LowdimFeatures`).
        ``mirrored`` (bool, ``idx.shape[:1]``): those rows are read as their mirror images
        (the ``mirror`` given at construction, applied to the raw stored values)."""
        return self.features.encode(key, self._gather(key, idx, mirrored))

    def _gather(self, key: str, idx: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        if key in self.derived:
            src, a, b = self.derived[key]
            return self._gather(src, idx, mirrored)[..., a:b]
        raw = self._gather_stored(key, idx)
        if mirrored is not None and self.mirror is not None and self.mirror.moves(key) and mirrored.any():
            raw = raw.copy()
            raw[mirrored] = self.mirror.apply(key, raw[mirrored])
        return raw

    def _gather_stored(self, key: str, idx: np.ndarray) -> np.ndarray:
        if self.in_ram:
            if not self._all_resident and not self.resident[idx].all():
                raise IndexError(f"{key}: steps outside the resident episodes were requested")
            return self.ram[key][idx]
        if os.getpid() != self._pid:  # a forked worker must not share the parent's Zarr handles
            self.reader = open_episodes(self.path, fps=self.fps)
            self._pid = os.getpid()
        flat = idx.reshape(-1)
        uniq, inv = np.unique(flat, return_inverse=True)
        raw = read_rows(self.reader.array(key), uniq)
        spec = self.reader.schema.keys[key]
        if spec.kind == "image" and raw.dtype != np.uint8:
            raw = np.clip(np.rint(raw), 0, 255).astype(np.uint8)
        raw = self._resized(key, raw.astype(spec.dtype, copy=False))
        return raw[inv].reshape(*idx.shape, *raw.shape[1:])

    def full(self, key: str, episodes: Sequence[int], mirrored: bool = False) -> np.ndarray:
        """All steps of ``episodes`` for ``key`` (used to fit the normaliser), features encoded;
        ``mirrored``: their mirror images."""
        return self.features.encode(key, self._full(key, episodes, mirrored))

    def _full(self, key: str, episodes: Sequence[int], mirrored: bool = False) -> np.ndarray:
        if key in self.derived:
            src, a, b = self.derived[key]
            return self._full(src, episodes, mirrored)[..., a:b]
        if mirrored and self.mirror is not None:
            return self.mirror.apply(key, self._full(key, episodes))
        parts = []
        for ep in episodes:
            s, e = self.reader.episode_bounds(ep)
            held = self.in_ram and self.resident[s:e].all()
            parts.append(self.ram[key][s:e] if held else self._resized(key, self.reader.read(key, s, e)))
        return np.concatenate(parts)


def read_rows(arr: Any, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted, unique step indices) of the Zarr array ``arr``, as a numpy array.

    A sharded array (the image layout) is read as one slice per run of rows, a run ending where
    the next row is neither adjacent nor in the same inner chunk. Zarr's orthogonal selection
    with an index array turns each shard's part into a coordinate selection over every element
    (int64 index arrays of 8 bytes per selected byte of a uint8 image, zarr-python issue 3164):
    about 8 GB and 20 s to gather 96 480x640 frames, which got DataLoader workers OOM-killed.
    Unsharded arrays keep the single orthogonal read, which has no such cost."""
    if getattr(arr, "shards", None) is None or len(rows) == 0:
        return np.asarray(arr.get_orthogonal_selection((rows,)))
    c = int(arr.chunks[0])
    cuts = np.flatnonzero((np.diff(rows) > 1) & (rows[1:] // c != rows[:-1] // c)) + 1
    edges = [0, *cuts.tolist(), len(rows)]
    out: np.ndarray | None = None
    for s, e in zip(edges[:-1], edges[1:]):
        first = int(rows[s])
        part = np.asarray(arr[first:int(rows[e - 1]) + 1])
        if out is None:
            out = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
        out[s:e] = part[rows[s:e] - first]
    return out


def _merge_ranges(bounds: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(bounds):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s:
            out.append((s, e))
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Samples of ``To`` observations and ``Tp`` actions from the episodes of one split.

    Build the two splits with :func:`make_datasets`; they share one :class:`EpisodeArrays`
    and one :class:`Normalizer` (fitted on the training episodes).
    """

    def __init__(self, arrays: EpisodeArrays, episodes: Sequence[int], cfg: DatasetConfig,
                 normalizer: Normalizer, train: bool, seed: int = 0, breaks: np.ndarray | None = None) -> None:
        self.arrays, self.cfg, self.normalizer, self.train = arrays, cfg, normalizer, train
        self.episodes = list(episodes)
        schema = derive_schema(arrays.reader.schema, cfg.derived_keys)
        self.schema = schema
        self.image_keys = list(cfg.image_keys) if cfg.image_keys is not None else schema.image_keys
        self.lowdim_keys = list(cfg.lowdim_keys) if cfg.lowdim_keys is not None else schema.observation_keys
        self.action_key = schema.action_key
        self.index = WindowIndex(arrays.reader.episode_ends, self.episodes, cfg.window, breaks)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._rng_pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def lowdim_dim(self, key: str) -> int:
        """Model input size of low-dim ``key`` (its stored size, changed by its feature encoding)."""
        return self.cfg.features.encoded_dim(key, self.schema.keys[key].dim)

    def _worker_rng(self) -> np.random.Generator:
        # Re-seed after fork so DataLoader workers do not replay the same crops.
        if os.getpid() != self._rng_pid:
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else os.getpid()
            self._rng = np.random.default_rng([self.seed, wid, torch.initial_seed() % (2**31)])
            self._rng_pid = os.getpid()
        return self._rng

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        obs_idx, obs_pad = self.index.obs_indices(idx)
        act_idx, act_pad = self.index.action_indices(idx)
        mirrored = None
        if self.train and self.cfg.mirror is not None:
            mirrored = self._worker_rng().random(len(idx)) < self.cfg.mirror.prob
        batch: dict[str, torch.Tensor] = {}
        for k in self.image_keys:
            imgs = self.arrays.gather(k, obs_idx)  # (B, To, H, W, C)
            if self.cfg.crop_shape is not None:
                imgs = (random_crop(imgs, self.cfg.crop_shape, self._worker_rng()) if self.train
                        else center_crop(imgs, self.cfg.crop_shape))
            if mirrored is not None and k in self.cfg.mirror.images and mirrored.any():
                imgs = imgs.copy()
                imgs[mirrored] = mirror_images_hwc(imgs[mirrored], self.cfg.mirror.images[k])
            batch[f"obs.{k}"] = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 1, 4, 2, 3)))
        for k in self.lowdim_keys:
            x = self.arrays.gather(k, obs_idx, mirrored).reshape(len(idx), self.cfg.n_obs_steps, -1)
            x = self.normalizer.normalize(k, x).astype(np.float32)
            if self.train and self.cfg.lowdim_noise_std > 0:
                x += self._worker_rng().normal(0.0, self.cfg.lowdim_noise_std, x.shape).astype(np.float32)
            batch[f"obs.{k}"] = torch.from_numpy(x)
        a = self.arrays.gather(self.action_key, act_idx, mirrored).reshape(len(idx), self.cfg.horizon, -1)
        batch["action"] = torch.from_numpy(self.normalizer.normalize(self.action_key, a).astype(np.float32))
        batch["obs_is_pad"] = torch.from_numpy(obs_pad)
        batch["action_is_pad"] = torch.from_numpy(act_pad)
        batch["index"] = torch.from_numpy(idx)
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def recording_gaps(reader: Any, cfg: DatasetConfig) -> np.ndarray | None:
    """Steps that follow a gap (:func:`~df_policy.data.sampler.find_gaps` on ``stamp_s``), or
    ``None`` when the store has no capture stamps or no rate."""
    fps = reader.schema.fps or cfg.fps
    if STAMP_KEY not in reader.schema.keys or not fps:
        return None
    return find_gaps(reader.read(STAMP_KEY), reader.episode_ends, fps)


def make_datasets(path: str, cfg: DatasetConfig, seed: int = 0, progress: bool = True,
                  normalizer: Normalizer | None = None, shard: tuple[int, int] | None = None
                  ) -> tuple[WindowDataset, WindowDataset | None]:
    """Train and validation datasets of the store at ``path`` (validation ``None`` if ``val_ratio == 0``).

    Episodes marked bad are excluded. The normaliser is fitted on the training episodes unless
    given (all of them, also with ``shard``). ``shard = (rank, world_size)``: the training set is
    this rank's share of the training episodes (every ``world_size``-th, from ``rank``), and only
    those (and the validation episodes) are held in RAM.
    """
    reader = open_episodes(path, fps=cfg.fps)
    if reader.partial is not None:
        print(f"warning: {path}: {reader.partial.describe()} (ignored)")
    schema = derive_schema(reader.schema, cfg.derived_keys)
    image_keys = cfg.image_keys if cfg.image_keys is not None else schema.image_keys
    lowdim_keys = cfg.lowdim_keys if cfg.lowdim_keys is not None else schema.observation_keys
    for k in [*image_keys, *lowdim_keys]:
        if k not in schema.keys:
            raise KeyError(f"key {k!r} is not in {path}; keys: {sorted(schema.keys)}")
        if schema.keys[k].kind == "depth":
            raise ValueError(f"key {k!r} of {path} is a depth key: the training dataset does not read depth "
                             f"(image keys: {schema.image_keys}, lowdim keys: {schema.lowdim_keys})")
    features = cfg.features
    for option, keys in (("angle_dims", cfg.angle_dims), ("pose_keypoints", cfg.pose_keypoints)):
        for k in keys:
            if k not in lowdim_keys:
                raise ValueError(f"{option} names {k!r}, which is not a low-dim input (lowdim keys: {lowdim_keys})")
            try:
                features.encoded_dim(k, schema.keys[k].dim)
            except ValueError as e:
                raise ValueError(f"{option}[{k!r}]: {e}") from None
    if cfg.mirror is not None:
        used = sorted({parse_slice(cfg.derived_keys[k])[0] if k in cfg.derived_keys else k
                       for k in [*image_keys, *lowdim_keys, schema.action_key]})
        shapes = {k: cfg.crop_shape or cfg.resize_shape or tuple(schema.keys[k].shape[:2]) for k in image_keys}
        cfg.mirror.check_keys(used, {k: s.dim for k, s in reader.schema.keys.items()
                                     if s.kind not in ("image", "depth") and len(s.shape) == 1}, shapes)
    bad = [i for i, m in enumerate(reader.episode_meta) if m.bad]
    train_eps, val_eps = split_episodes(reader.n_episodes, cfg.val_ratio, cfg.split_seed, exclude=bad)
    mine = train_eps
    if shard is not None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard (rank {rank}, world size {world}) is not a rank of the world")
        mine = train_eps[rank::world]
        if not mine:
            raise ValueError(f"{path}: {len(train_eps)} training episodes cannot give every one of {world} ranks "
                             "its own share (dataset.shard_by_rank)")
    arrays = EpisodeArrays(path, [*image_keys, *lowdim_keys, schema.action_key], cfg.cache, cfg.fps, progress,
                           derived=cfg.derived_keys, features=features,
                           resident=None if shard is None else [*mine, *val_eps], resize_shape=cfg.resize_shape,
                           mirror=cfg.mirror)
    if normalizer is None:
        def fit_data(k: str) -> np.ndarray:  # with a mirror, the ranges of the mirrored windows too
            data = arrays.full(k, train_eps)
            return data if cfg.mirror is None else np.concatenate([data, arrays.full(k, train_eps, mirrored=True)])

        normalizer = Normalizer.fit({k: fit_data(k) for k in [*lowdim_keys, schema.action_key]}, cfg.normalizer_mode)
    breaks = recording_gaps(reader, cfg) if cfg.split_at_gaps else None
    if breaks is not None and len(breaks) and progress:
        print(f"{path}: {len(breaks)} gaps in the recording (dropped steps): no training window spans one")
    train = WindowDataset(arrays, mine, cfg, normalizer, train=True, seed=seed, breaks=breaks)
    val = WindowDataset(arrays, val_eps, cfg, normalizer, train=False, seed=seed, breaks=breaks) if val_eps else None
    return train, val
