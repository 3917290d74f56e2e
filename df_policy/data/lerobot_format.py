"""LeRobotDataset v3 <-> episode store, through LeRobot's own reader and writer.

Needs the ``lerobot`` extra (``lerobot[dataset]``, Python >= 3.12; ``scripts/install_lerobot.sh``).
Everything is local: the dataset is read from / written to a directory, never the hub
(``HF_HUB_OFFLINE=1`` is set for the duration of each call).

Key mapping (one line per LeRobot feature; the original name is kept in the key's
``description`` as ``lerobot:<name>`` so an export restores it):

==============================  =============================================================
LeRobot feature                 episode store key
==============================  =============================================================
``action``                      ``action`` (kind ``action``, float32, ``names`` kept)
``observation.state``           ``state`` (``lowdim``)
``observation.images.<cam>``    ``<cam>`` (``image``, uint8 HWC, camera ``<cam>``), video
                                frames decoded by LeRobot's decoder
``observation.<name>``          ``<name>`` (``lowdim``); ``<a>.<b>`` becomes ``<a>_<b>``
``timestamp``                   ``stamp_s`` (``lowdim``, seconds from the episode's first frame)
``frame_index``, ``index``,     not stored: they are the step's position (episode boundaries
``episode_index``,              are the store's ``episode_ends``); tasks become the episode's
``task_index``                  ``task`` (several tasks joined with ``"; "``)
==============================  =============================================================

Export maps back: ``lerobot:<name>`` descriptions first; otherwise ``action`` -> ``action``,
image key ``k`` -> ``observation.images.k`` (encoded as video by LeRobot's writer), the state
(a key named ``state`` or ``joint_pos``) -> ``observation.state``, other low-dim keys ``k`` ->
``observation.k``. ``stamp_s`` and depth keys are not exported (LeRobot derives timestamps from
``fps``); episodes marked bad are left out unless asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from df_policy.data.schema import STAMP_KEY, EpisodeMeta, KeySpec, StoreSchema
from df_policy.data.store import EpisodeStore, StoreError

LEROBOT_EXTRA_HINT = (
    "needs the lerobot extra (Python >= 3.12): bash scripts/install_lerobot.sh, then run dfp from "
    ".venv-lerobot (README, 'LeRobot datasets')"
)
INDEX_FEATURES = ("frame_index", "episode_index", "index", "task_index")
STATE_FEATURE = "observation.state"
IMAGE_PREFIX = "observation.images."
STATE_KEYS = ("state", "joint_pos")
DESCRIPTION_PREFIX = "lerobot:"
DECODE_BLOCK = 256
"""Frames decoded per call: bounds memory for long episodes at high resolution."""


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    """True for a directory with LeRobot's ``meta/info.json`` (any codebase version)."""
    info = Path(path) / "meta" / "info.json"
    if not info.is_file():
        return False
    try:
        return "codebase_version" in json.loads(info.read_text())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _lerobot() -> Any:
    """LeRobot's ``lerobot_dataset`` and ``video_utils`` modules, or a :class:`StoreError` naming the remedy."""
    try:
        with _offline():
            from lerobot.datasets import lerobot_dataset, video_utils  # noqa: F401
    except ImportError as e:
        raise StoreError(f"LeRobot datasets {LEROBOT_EXTRA_HINT} ({e})") from None
    return lerobot_dataset, video_utils


def _names(feature: dict[str, Any]) -> tuple[str, ...] | None:
    """Flat dimension labels of a LeRobot feature (``names`` is a list, or a dict of lists in
    datasets from older LeRobot versions), or ``None``."""
    names = feature.get("names")
    if isinstance(names, dict):
        names = next((v for v in names.values() if isinstance(v, list)), None)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names) if len(names) == int(np.prod(feature["shape"])) else None


def _image_hwc(feature: dict[str, Any], name: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in feature["shape"])
    names = feature.get("names") or []
    if len(shape) != 3:
        raise StoreError(f"LeRobot feature {name!r}: image shape {shape} is not 3-D")
    if list(names[:1]) == ["channels"] or (shape[0] in (1, 3) and shape[2] not in (1, 3)):
        return shape[1], shape[2], shape[0]
    return shape  # type: ignore[return-value]


def store_key(feature_name: str) -> str:
    """Episode store key for a LeRobot feature name (table in the module docstring)."""
    if feature_name == "action":
        return "action"
    if feature_name == STATE_FEATURE:
        return "state"
    if feature_name == "timestamp":
        return STAMP_KEY
    if feature_name.startswith(IMAGE_PREFIX):
        return feature_name[len(IMAGE_PREFIX):].replace(".", "_")
    if feature_name.startswith("observation."):
        feature_name = feature_name[len("observation."):]
    return feature_name.replace(".", "_").replace("/", "_")


def lerobot_schema(info: dict[str, Any]) -> tuple[StoreSchema, dict[str, str], list[str]]:
    """Store schema for a LeRobot ``meta/info.json``.

    Returns ``(schema, feature name -> store key, notes)``; notes name the features left out
    (depth maps, strings, index columns) and why.
    """
    features: dict[str, dict[str, Any]] = info.get("features") or {}
    if "action" not in features:
        raise StoreError("LeRobot dataset has no 'action' feature: nothing to train a policy on")
    fps = info.get("fps")
    if not fps or not float(fps) > 0:
        raise StoreError(f"LeRobot dataset has no positive fps in meta/info.json (got {fps!r})")
    keys: dict[str, KeySpec] = {}
    mapping: dict[str, str] = {}
    cameras: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, feat in features.items():
        if name in INDEX_FEATURES:
            continue
        dtype = feat.get("dtype")
        key = store_key(name)
        description = DESCRIPTION_PREFIX + name
        if dtype in ("video", "image"):
            if (feat.get("info") or {}).get("is_depth_map"):
                notes.append(f"{name}: depth map, not imported")
                continue
            h, w, c = _image_hwc(feat, name)
            if c not in (1, 3):
                notes.append(f"{name}: {c} channels, not imported")
                continue
            keys[key] = KeySpec("image", (h, w, c), "uint8", unit="rgb", camera=key, description=description)
            cameras[key] = {"source": "lerobot", "feature": name,
                            **({"codec": feat["info"].get("video.codec")} if feat.get("info") else {})}
        elif dtype in ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "bool", "uint8"):
            shape = tuple(int(s) for s in feat.get("shape") or (1,))
            kind = "action" if name == "action" else "lowdim"
            unit = "s" if name == "timestamp" else ""
            keys[key] = KeySpec(kind, shape, "float32", unit=unit, names=_names(feat), description=description)
        else:
            notes.append(f"{name}: dtype {dtype!r}, not imported")
            continue
        if key in mapping.values():
            raise StoreError(f"LeRobot features {sorted(n for n, k in mapping.items() if k == key) + [name]} "
                             f"map to the same store key {key!r}")
        mapping[name] = key
    joint_names = list(keys["state"].names or ()) if "state" in keys else list(keys["action"].names or ())
    schema = StoreSchema(
        keys=keys, fps=float(fps), cameras=cameras, joint_names=joint_names,
        action_space=f"LeRobot 'action' ({info.get('codebase_version', '?')})",
        robot=str(info.get("robot_type") or ""),
        action_alignment="next",  # LeRobot records the observation, then the action it sends
    )
    return schema, mapping, notes


def import_lerobot(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
                   fps: float | None = None, progress: bool = True,
                   video_backend: str = "pyav") -> tuple[EpisodeStore, list[str]]:
    """Import the LeRobotDataset v3 directory ``src`` into a new episode store at ``dst``.

    Low-dim features are read from LeRobot's Parquet data (cast to float32), video frames
    with LeRobot's own decoder (``video_backend``: ``"pyav"`` or ``"torchcodec"``) at the
    frames' timestamps, episode by episode. Returns the store (opened read-only) and notes on
    features left out. ``fps``, if given, must equal the dataset's (a check, not a resampling).
    """
    src = Path(src)
    if not is_lerobot_dataset(src):
        raise StoreError(f"{src} is not a LeRobot dataset directory (no meta/info.json)")
    declared = json.loads((src / "meta" / "info.json").read_text()).get("fps")
    if fps is not None and declared is not None and abs(float(fps) - float(declared)) > 1e-6:
        raise StoreError(f"--fps {fps} contradicts the LeRobot dataset's fps {declared}; leave --fps out")
    lerobot_dataset, video_utils = _lerobot()
    with _offline():
        ds = lerobot_dataset.LeRobotDataset(repo_id=f"local/{src.name}", root=src, video_backend=video_backend)
        info = ds.meta.info
        info = info if isinstance(info, dict) else info.__dict__
        schema, mapping, notes = lerobot_schema(info)
        lowdim = {n: k for n, k in mapping.items() if schema.keys[k].kind != "image"}
        images = {n: k for n, k in mapping.items() if schema.keys[k].kind == "image"}
        data = ds.hf_dataset.with_format("numpy")
        episodes = ds.meta.episodes
        with EpisodeStore.create(dst, schema, overwrite=overwrite) as out:
            for e in tqdm(range(len(episodes)), desc="import lerobot", disable=not progress):
                ep = episodes[e]
                start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
                rows = data[start:stop]
                arrays = {k: _lowdim(rows[n], schema.keys[k].shape, n) for n, k in lowdim.items()}
                stamps = np.asarray(rows["timestamp"], np.float64).reshape(-1)
                for n, k in images.items():
                    arrays[k] = _episode_frames(ds, video_utils, ep, n, stamps, schema.keys[k].shape, video_backend)
                if STAMP_KEY in arrays:
                    arrays[STAMP_KEY] = (stamps - stamps[0]).astype(np.float32).reshape(-1, 1)
                tasks = ep.get("tasks") or []
                out.append_episode(arrays, EpisodeMeta(
                    task="; ".join(str(t) for t in tasks),
                    notes=f"imported from LeRobot dataset {src.name}, episode {int(ep['episode_index'])}",
                ))
    return EpisodeStore.open(dst), notes


def _lowdim(column: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    values = np.asarray(np.stack(list(column)) if column.dtype == object else column, dtype=np.float64)
    values = values.reshape(len(values), *shape)
    if not np.all(np.isfinite(values)):
        raise StoreError(f"LeRobot feature {name!r} holds NaN or Inf")
    return values.astype(np.float32)


def _episode_frames(ds: Any, video_utils: Any, ep: dict[str, Any], feature: str, stamps: np.ndarray,
                    hwc: tuple[int, int, int], backend: str) -> np.ndarray:
    """All frames of one episode for one camera as ``(T, H, W, C)`` uint8."""
    if feature not in ds.meta.video_keys:  # stored as images in the Parquet data
        start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
        frames = [np.asarray(img) for img in ds.hf_dataset[start:stop][feature]]
        return _to_hwc(np.stack(frames), hwc, feature)
    path = ds.root / ds.meta.get_video_file_path(int(ep["episode_index"]), feature)
    offset = float(ep[f"videos/{feature}/from_timestamp"])
    blocks = []
    for s in range(0, len(stamps), DECODE_BLOCK):
        ts = [offset + float(t) for t in stamps[s:s + DECODE_BLOCK]]
        frames = video_utils.decode_video_frames(path, ts, ds.tolerance_s, backend=backend, return_uint8=True)
        blocks.append(frames.permute(0, 2, 3, 1).numpy())  # (T, C, H, W) -> (T, H, W, C)
    return _to_hwc(np.concatenate(blocks), hwc, feature)


def _to_hwc(frames: np.ndarray, hwc: tuple[int, int, int], feature: str) -> np.ndarray:
    if frames.ndim == 4 and frames.shape[1:] != hwc and frames.shape[1] == hwc[2]:
        frames = frames.transpose(0, 2, 3, 1)
    if frames.ndim == 3 and hwc[2] == 1:
        frames = frames[..., None]
    if frames.shape[1:] != hwc:
        raise StoreError(f"LeRobot feature {feature!r}: decoded frames {frames.shape[1:]} != declared {hwc}")
    if frames.dtype != np.uint8:  # float images in [0, 1]
        frames = np.clip(np.round(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames)


def lerobot_features(schema: StoreSchema) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[str]]:
    """LeRobot ``features`` for a store schema: ``(features, store key -> feature name, notes)``."""
    features: dict[str, dict[str, Any]] = {}
    mapping: dict[str, str] = {}
    notes: list[str] = []
    states = [k for k in STATE_KEYS if k in schema.keys and schema.keys[k].kind == "lowdim"]
    for key, spec in schema.keys.items():
        if spec.description.startswith(DESCRIPTION_PREFIX):
            name = spec.description[len(DESCRIPTION_PREFIX):]
        elif spec.kind == "action":
            name = "action"
        elif spec.kind == "image":
            name = IMAGE_PREFIX + key
        elif key == STAMP_KEY or spec.kind == "depth":
            name = ""
        elif states and key == states[0]:
            name = STATE_FEATURE
        else:
            name = "observation." + key
        if not name or name == "timestamp":
            notes.append(f"{key}: not exported ({'depth' if spec.kind == 'depth' else 'LeRobot derives timestamps from fps'})")
            continue
        if spec.kind == "image":
            features[name] = {"dtype": "video", "shape": spec.shape, "names": ["height", "width", "channels"]}
        else:
            features[name] = {"dtype": "float32", "shape": spec.shape,
                              "names": list(spec.names) if spec.names else None}
        mapping[key] = name
    return features, mapping, notes


def export_lerobot(src: str | os.PathLike, dst: str | os.PathLike, *, repo_id: str | None = None,
                   use_videos: bool = True, include_bad: bool = False, progress: bool = True,
                   video_backend: str = "pyav") -> tuple[Path, list[str]]:
    """Write the episode store ``src`` as a LeRobotDataset v3 at ``dst`` with LeRobot's writer.

    Images are encoded as video by LeRobot (its default codec) unless ``use_videos`` is false
    (then PNG images in the Parquet data). ``dst`` must not exist. Returns ``(dst, notes)``.
    """
    dst = Path(dst)
    if dst.exists():
        raise StoreError(f"{dst} already exists: LeRobot writes a new dataset directory")
    store = EpisodeStore.open(src)
    schema = store.schema
    if schema.fps is None or abs(schema.fps - round(schema.fps)) > 1e-6:
        raise StoreError(f"LeRobot datasets need an integer fps; the store has fps={schema.fps} "
                         "(set it with `dfp data convert --fps N` first)")
    features, mapping, notes = lerobot_features(schema)
    if schema.action_alignment == "in_effect":
        notes.append("the store's actions are the commands in effect at each observation (import-bag's default); "
                     "LeRobot pairs an observation with the action sent after it")
    if not use_videos:
        for feat in features.values():
            if feat["dtype"] == "video":
                feat["dtype"] = "image"
    lerobot_dataset, _ = _lerobot()
    metas = store.episode_meta
    chosen = [i for i in range(store.n_episodes) if include_bad or not metas[i].bad]
    if len(chosen) < store.n_episodes:
        notes.append(f"{store.n_episodes - len(chosen)} episodes marked bad left out (include_bad=True keeps them)")
    if not chosen:
        raise StoreError(f"{src}: no episodes to export")
    with _offline():
        ds = lerobot_dataset.LeRobotDataset.create(
            repo_id=repo_id or f"local/{dst.name}", fps=int(round(schema.fps)), features=features, root=dst,
            robot_type=schema.robot or None, use_videos=use_videos, video_backend=video_backend,
        )
        try:
            for i in tqdm(chosen, desc="export lerobot", disable=not progress):
                episode = store.episode(i, keys=list(mapping))
                task = metas[i].task or "unspecified"
                for t in range(metas[i].length):
                    frame = {mapping[k]: episode[k][t] for k in mapping}
                    frame["task"] = task
                    ds.add_frame(frame)
                ds.save_episode()
        finally:
            ds.finalize()
    return dst, notes
