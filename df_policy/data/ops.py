"""Whole-store operations: info, deep validation, convert, merge, drop."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from df_policy.data.legacy import open_episodes
from df_policy.data.schema import EpisodeMeta, StoreSchema
from df_policy.data.store import EpisodeStore, StoreError


def store_info(reader: Any) -> dict[str, Any]:
    """Summary of a store as a JSON-serialisable dict."""
    schema = reader.schema
    lengths = np.diff(reader.episode_ends, prepend=0) if reader.n_episodes else np.zeros(0)
    metas = reader.episode_meta
    return {
        "path": str(reader.path),
        "format": "df_policy-v3" if isinstance(reader, EpisodeStore) else "diffusion_policy-v2",
        "episodes": reader.n_episodes,
        "steps": reader.n_steps,
        "fps": schema.fps,
        "episode_length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "bad_episodes": [i for i, m in enumerate(metas) if m.bad],
        "successful_episodes": sum(1 for m in metas if m.success),
        "keys": {
            k: {"kind": s.kind, "shape": list(s.shape), "dtype": s.dtype, "unit": s.unit,
                **({"scale": s.scale, "camera": s.camera} if s.kind == "depth" else {})}
            for k, s in schema.keys.items()
        },
        "depth_keys": schema.depth_keys,
        "cameras": sorted(schema.cameras),
        "size_on_disk_bytes": reader.size_on_disk(),
        "files": reader.file_count() if isinstance(reader, EpisodeStore) else (
            sum(1 for f in Path(reader.path).rglob("*") if f.is_file()) if Path(reader.path).is_dir() else 1),
        "layout": ("sharded" if reader.is_sharded() else "chunk files (dfp data compact shards them)")
        if isinstance(reader, EpisodeStore) else "diffusion_policy",
        "partial_episode": None if reader.partial is None else reader.partial.describe(),
    }


def validate_store(path: str | os.PathLike, deep: bool = True, progress: bool = False) -> list[str]:
    """Problems found in the store at ``path`` (empty list = valid).

    Structure (keys, dtypes, shapes, lengths, ``episode_ends``) is checked on open; ``deep``
    also decodes every chunk (finds truncated/corrupt chunks) and scans low-dim data for NaN/Inf.
    """
    try:
        reader = open_episodes(path)
    except StoreError as e:
        return [str(e)]
    problems = []
    if reader.partial is not None:
        problems.append(reader.partial.describe())
    if not deep:
        return problems
    for key, spec in tqdm(list(reader.schema.keys.items()), desc="validate", disable=not progress):
        chunk = int(reader.array(key).chunks[0])
        if isinstance(reader, EpisodeStore):  # Zarr reads a missing chunk file as zeros: find them first
            problems += _missing_chunk_files(reader, key)
            chunk = reader.steps_per_file(key)  # a corrupt file is reported once, not per inner chunk
        for s, e in _block_ranges(reader.n_steps, chunk * max(1, 2048 // chunk)):
            try:
                block = reader.read(key, s, e)
            except Exception:  # codec errors come in many types: find the chunk(s) at fault
                for cs, ce in _block_ranges(e - s, chunk):
                    try:
                        reader.read(key, s + cs, s + ce)
                    except Exception as exc:
                        problems.append(
                            f"data/{key}: chunk for steps [{s + cs}, {s + ce}) is corrupt or truncated: {exc}"
                        )
                continue
            if spec.kind not in ("image", "depth") and not np.all(np.isfinite(block)):  # integers are finite
                bad = s + int(np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))[0])
                problems.append(f"data/{key}: NaN or Inf at step {bad}")
    return problems


def _missing_chunk_files(store: EpisodeStore, key: str) -> list[str]:
    """Committed steps of ``data/<key>`` whose file (chunk or shard) is absent (partial copy,
    disk error).

    Stores written by df_policy write every file, zeros included; a store from an older version
    may lack chunks whose values were all zero (then the frames there are black: re-check them).
    """
    out = []
    for i, (s, e) in enumerate(_block_ranges(store.n_steps, store.steps_per_file(key))):
        name = store.storage_key(key, i)
        if not store.has_file(name):
            out.append(f"data/{key}: chunk file {name} for steps [{s}, {e}) is missing (it would read as zeros)")
    return out


def _block_ranges(n: int, step: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, step):
        yield s, min(s + step, n)


def iter_episode_blocks(reader: Any, episodes: Sequence[int], max_steps: int = 4096) -> Iterator[tuple[int, dict]]:
    """Yield ``(episode_index, arrays)`` reading each key once per block of consecutive episodes."""
    episodes = list(episodes)
    i = 0
    while i < len(episodes):
        j = i + 1
        s0, e0 = reader.episode_bounds(episodes[i])
        while (
            j < len(episodes)
            and episodes[j] == episodes[j - 1] + 1
            and reader.episode_bounds(episodes[j])[1] - s0 <= max_steps
        ):
            j += 1
        e_block = reader.episode_bounds(episodes[j - 1])[1]
        block = {k: reader.read(k, s0, e_block) for k in reader.schema.keys}
        for ep in episodes[i:j]:
            s, e = reader.episode_bounds(ep)
            yield ep, {k: v[s - s0 : e - s0] for k, v in block.items()}
        i = j


def copy_episodes(
    reader: Any, dst: EpisodeStore, episodes: Sequence[int] | None = None, progress: bool = True, desc: str = "copy"
) -> int:
    """Append ``episodes`` (default: all) of ``reader`` to ``dst``, metadata included. Returns the count."""
    episodes = range(reader.n_episodes) if episodes is None else episodes
    metas = reader.episode_meta
    n = 0
    for ep, arrays in tqdm(iter_episode_blocks(reader, episodes), total=len(episodes), desc=desc, disable=not progress):
        src_meta = metas[ep]
        dst.append_episode(arrays, EpisodeMeta.from_dict({**src_meta.__dict__, "length": 0}))
        n += 1
    return n


def convert(src: str | os.PathLike, dst: str | os.PathLike, fps: float | None = None, progress: bool = True,
            overwrite: bool = False) -> EpisodeStore:
    """Convert any readable store (e.g. Diffusion Policy ``.zarr.zip``) into a df_policy v3 store."""
    reader = open_episodes(src, fps=fps)
    schema = reader.schema
    if fps is not None:
        schema = StoreSchema.from_dict({**schema.to_dict(), "fps": fps})
    with EpisodeStore.create(dst, schema, overwrite=overwrite) as out:
        copy_episodes(reader, out, progress=progress, desc="convert")
    return EpisodeStore.open(dst)


def merge(sources: Sequence[str | os.PathLike], dst: str | os.PathLike, progress: bool = True) -> EpisodeStore:
    """Concatenate the episodes of several stores with the same schema into a new store."""
    if not sources:
        raise StoreError("merge needs at least one source store")
    readers = [open_episodes(s) for s in sources]
    first = readers[0].schema
    for r in readers[1:]:
        errors = first.compatibility_errors(r.schema) + [
            f"extra key {k!r}" for k in r.schema.keys if k not in first.keys
        ]
        if errors:
            raise StoreError(f"cannot merge {r.path} into {readers[0].path}: " + "; ".join(errors))
    with EpisodeStore.create(dst, first) as out:
        for r in readers:
            copy_episodes(r, out, progress=progress, desc=f"merge {Path(r.path).name}")
    return EpisodeStore.open(dst)


def drop_episodes(path: str | os.PathLike, drop: Sequence[int], progress: bool = True) -> EpisodeStore:
    """Remove episodes physically: rewrite the store without them, then swap directories.

    The new store is written next to the old one and swapped in with two renames, so an
    interruption leaves either the old store or the new one (plus a ``.old``/``.tmp`` sibling).
    """
    return _rewrite(path, drop, progress, "drop")


def compact(path: str | os.PathLike, progress: bool = True) -> EpisodeStore:
    """Rewrite a store in the current layout (sharded image arrays: a few files per episode
    instead of one per 4 frames), every episode, its metadata and the camera records kept;
    swapped in like :func:`drop_episodes`. Frames and values are copied bit for bit."""
    return _rewrite(path, [], progress, "compact")


def _rewrite(path: str | os.PathLike, drop: Sequence[int], progress: bool, desc: str) -> EpisodeStore:
    path = Path(path)
    with EpisodeStore.open(path, mode="r+") as store:  # the writer lock: nobody records meanwhile
        if store.partial is not None:
            raise StoreError(f"{path}: {store.partial.describe()}")
        bad = [i for i in drop if not 0 <= i < store.n_episodes]
        if bad:
            raise StoreError(f"episodes {bad} out of range ({store.n_episodes} episodes)")
        keep = [i for i in range(store.n_episodes) if i not in set(drop)]
        tmp = path.with_name(path.name + ".tmp")
        with EpisodeStore.create(tmp, store.schema, overwrite=True) as out:
            out.update_schema(**{k: v for k, v in store._schema_doc.items() if k in ("cameras", "joint_names")})
            copy_episodes(store, out, keep, progress=progress, desc=desc)
        old = path.with_name(path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
        tmp.rename(path)
    shutil.rmtree(old)
    return EpisodeStore.open(path)
