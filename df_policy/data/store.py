"""Episode store: a Zarr v3 directory of demonstrations that survives crashes.

Layout (Diffusion Policy's ReplayBuffer contract, so their tools read it too)::

    STORE/zarr.json               root group; attributes["df_policy"] = the schema
    STORE/data/<key>              arrays concatenated over time, shape (n_steps, *shape)
    STORE/meta/episode_ends       int64 (n_episodes,), exclusive cumulative end of each episode
    STORE/meta/episodes.jsonl     the episode log: one JSON record per line, append-only
    STORE/meta/flush.json         how many steps of the episode being recorded are complete

The episode log holds ``{"op": "commit", "i": n, "meta": {...}}`` (episode ``n`` is committed,
with its metadata) and ``{"op": "meta", "i": n, "fields": {...}}`` (a later metadata edit:
``dfp data mark``); replaying it gives the episode list. A commit or an edit appends one line,
so its cost does not grow with the number of episodes (schema version 2; a version-1 store,
whose episode list lives in the root attributes, is read as is and migrated on the first
open for writing).

Atomicity
---------
Zarr's local store replaces every file atomically (write to a temporary file, then rename),
so each chunk and each metadata document is always either the old or the new version.
An episode is written in this order:

1. data arrays grow and the new steps are written (in blocks, while recording); after each
   block the count of completely written steps is recorded in ``meta/flush.json``;
2. ``meta/episode_ends`` grows by one entry;
3. one commit line is appended to the episode log — **the commit point**. A line is committed
   once it ends with its newline: a torn last line (a crash mid-append) is not a commit and is
   cut off by the next writer.

The committed episodes are those with a commit line. Anything beyond them (longer arrays, an
extra ``episode_ends`` entry) is a *partial episode* left by a crash or ``kill -9``: it is
reported on open and can be discarded or recovered (:meth:`EpisodeStore.discard_partial`,
:meth:`EpisodeStore.recover_partial`, ``dfp data recover``). Earlier episodes are never
rewritten by an append, except that the chunk (or shard) they share with the new episode is
rewritten whole (atomically) with their bytes unchanged.

Image layout: image and depth arrays are Zarr v3 *sharded* (``IMAGE_SHARD_FRAMES`` frames per
file, read in inner chunks of ``IMAGE_CHUNK_FRAMES``), so a 5-minute two-camera episode at 30 Hz
is about 290 image files instead of 4,500; a flush rewrites the shard it ends in (atomically,
earlier inner chunks' bytes unchanged). Low-dim arrays are plain chunks. Every chunk is
written, all-zero ones included, so a missing file is a loss (:meth:`EpisodeStore.storage_file`,
``dfp data validate``). Stores written before sharding read unchanged;
``dfp data compact`` rewrites them (:func:`df_policy.data.ops.compact`).

Durability: committing an episode fsyncs its chunk files, the arrays' metadata and their
directories, then ``meta/episode_ends``, then appends the commit line and fsyncs the log, so
after a power loss the committed episodes are those whose commit line reached the disk, with
their data (``kill -9`` needs none of this: renames are atomic).

One writer per store at a time, enforced: opening for writing (``create``, ``open(mode="r+")``)
takes the store's writer lock (:mod:`df_policy.data.writer_lock`) until :meth:`EpisodeStore.close`;
a second writer gets a :class:`StoreLockedError` naming the holder. A writer that takes the
lock also deletes temporary files (``*.partial``) a killed writer left behind: no live process
can own them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from df_policy.data.schema import SCHEMA_ATTR, EpisodeMeta, SchemaError, StoreSchema
from df_policy.data.writer_lock import LockHeldError, WriterLock, describe_holder, is_write_locked, read_holder

try:  # zarr v3 needs Python >= 3.11; the runtime side of df_policy does not need it.
    import zarr
    from zarr.codecs import BloscCodec
except ImportError:  # pragma: no cover - exercised on Python 3.10 only
    zarr = None

LOWDIM_CHUNK_STEPS = 1024
IMAGE_CHUNK_FRAMES = 4
IMAGE_SHARD_FRAMES = 64
EPISODE_LOG = "meta/episodes.jsonl"
FLUSH_RECORD = "meta/flush.json"


class StoreError(ValueError):
    """The store is missing, malformed or inconsistent. The message names the problem."""


class StoreLockedError(StoreError):
    """Another live process has the store open for writing (the message names it)."""


def _take_writer_lock(path: Path) -> WriterLock:
    try:
        return WriterLock(path)
    except LockHeldError as e:
        raise StoreLockedError(str(e)) from None


def _require_zarr() -> None:
    if zarr is None:
        raise StoreError("episode stores need zarr>=3, which needs Python >= 3.11")


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush ``path`` to the disk: a file's data, or a directory's entries (the renames into it).

    A missing file is skipped (nothing to make durable); a directory fsync the filesystem does
    not support is ignored; any other error (EIO, ENOSPC) propagates."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _remove_temp_files(path: Path) -> None:
    """Delete Zarr's write-then-rename temporaries (``*.partial``); call only holding the writer lock."""
    for f in path.rglob("*.partial"):
        f.unlink(missing_ok=True)


def _unreadable_metadata(path: Path) -> str | None:
    """The first ``zarr.json`` under ``path`` that is not valid JSON, or ``None``."""
    import json

    for f in sorted(path.rglob("zarr.json")):
        try:
            json.loads(f.read_text())
        except (OSError, ValueError):
            return str(f)
    return None


def read_episode_log(path: Path) -> tuple[list[EpisodeMeta], int]:
    """Replay the episode log at ``path``: ``(episodes, committed_bytes)``. A last line without its
    newline is a torn append (not committed) and is ignored; ``committed_bytes`` is where it starts."""
    if not path.is_file():
        return [], 0
    return parse_episode_log(path.read_bytes(), str(path))


def parse_episode_log(data: bytes, path: str) -> tuple[list[EpisodeMeta], int]:
    """:func:`read_episode_log` on the log's bytes (``path`` names it in errors)."""
    end = data.rfind(b"\n") + 1
    episodes: list[EpisodeMeta] = []
    for n, raw in enumerate(data[:end].splitlines(), start=1):
        try:
            rec = json.loads(raw)
            if rec["op"] == "commit":
                if rec["i"] != len(episodes):
                    raise StoreError(f"{path} line {n}: commit of episode {rec['i']} after {len(episodes)} episodes")
                episodes.append(EpisodeMeta.from_dict(rec["meta"]))
            elif rec["op"] == "meta":
                meta = episodes[rec["i"]]
                for k, v in rec["fields"].items():
                    setattr(meta, k, v)
            else:
                raise StoreError(f"{path} line {n}: unknown record {rec['op']!r}")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"{path} line {n} is not a valid episode record: {e}") from e
    return episodes, end


def is_zarr_dir(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


@dataclass
class PartialEpisode:
    """Steps written after the last committed episode (a recording interrupted by a crash).

    Attributes:
        start: global index of the first uncommitted step.
        steps: steps completely written to every array (what :meth:`EpisodeStore.recover_partial`
            keeps): the writer records this count after each flush.
        per_key: steps present per array.
        recording: the live writer holding the store's lock (pid, host, command, since) when
            the episode is being recorded right now, ``None`` when its writer is gone (a crash).
    """

    start: int
    steps: int
    per_key: dict[str, int]
    recording: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.recording is not None:
            return (
                f"recording in progress by {describe_holder(self.recording)}: {self.steps} steps of the "
                f"episode being recorded are flushed from step {self.start}; readers and training use "
                "only the committed episodes"
            )
        return (
            f"partial episode after the last committed one: {self.steps} complete steps from step "
            f"{self.start} (per array: {self.per_key}); run `dfp data recover STORE` to keep it "
            f"or `dfp data recover --discard STORE` to drop it"
        )


class EpisodeStore:
    """Read/write access to a df_policy episode store (see module docstring).

    Open with :meth:`create` or :meth:`open`. Reading API shared with
    :class:`df_policy.data.legacy.ReplayBufferReader`: ``schema``, ``episode_ends``,
    ``n_episodes``, ``n_steps``, ``episode_meta``, ``read(key, start, stop)``, ``array(key)``,
    ``episode(i)``, ``size_on_disk()``.
    """

    def __init__(self, path: Path, group: Any, read_only: bool, lock: WriterLock | None = None) -> None:
        self.path = path
        self._group = group
        self.read_only = read_only
        self._lock = lock
        try:
            self._load_attrs()
            self._check_structure()
            self.partial = self._find_partial()
        except StoreError:
            self.close()
            raise
        except Exception as e:  # e.g. a corrupt array zarr.json: name the file, not a raw JSONDecodeError
            self.close()
            bad = _unreadable_metadata(path)
            raise StoreError(f"{path}: cannot read the store's metadata"
                             f"{f' ({bad})' if bad else ''}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        """Release the writer lock (a no-op for read-only stores); the object is read-only after."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.read_only = True

    def __enter__(self) -> "EpisodeStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ open / create
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        schema: StoreSchema,
        *,
        image_chunk_frames: int = IMAGE_CHUNK_FRAMES,
        lowdim_chunk_steps: int = LOWDIM_CHUNK_STEPS,
        image_shard_frames: int | None = IMAGE_SHARD_FRAMES,
        overwrite: bool = False,
    ) -> "EpisodeStore":
        """Create an empty store at ``path`` (a directory). Refuses to overwrite unless asked.

        ``image_shard_frames``: frames per image file (a multiple of ``image_chunk_frames``);
        ``None`` writes one file per chunk (the layout before sharding)."""
        _require_zarr()
        if image_shard_frames is not None and (image_shard_frames < image_chunk_frames
                                               or image_shard_frames % image_chunk_frames):
            raise StoreError(f"image_shard_frames ({image_shard_frames}) must be a multiple of "
                             f"image_chunk_frames ({image_chunk_frames})")
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise StoreError(f"{path} already exists (pass overwrite=True to replace it)")
            shutil.rmtree(path)
        root = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=3)
        lock = _take_writer_lock(path)  # after mode="w", which would clear the directory
        data = root.create_group("data")
        for key, spec in schema.keys.items():
            shards = None
            if spec.kind in ("image", "depth"):  # a few frames per chunk, many chunks per file
                chunks = (image_chunk_frames, *spec.shape)
                shards = (image_shard_frames, *spec.shape) if image_shard_frames else None
                codec = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
            else:
                chunks = (lowdim_chunk_steps, *spec.shape)
                codec = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
            data.create_array(key, shape=(0, *spec.shape), dtype=spec.dtype, chunks=chunks, shards=shards,
                              compressors=codec)
        meta = root.create_group("meta")
        meta.create_array("episode_ends", shape=(0,), dtype="int64", chunks=(4096,), fill_value=-1)
        root.attrs[SCHEMA_ATTR] = schema.to_dict()  # the episode log is created by the writer's open
        return cls(path, root, read_only=False, lock=lock)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> "EpisodeStore":
        """Open an existing store; ``mode`` is ``"r"`` (read-only) or ``"r+"``. A URL
        (``s3://bucket/store.zarr``) opens a read-only :class:`~df_policy.data.remote.RemoteEpisodeStore`."""
        _require_zarr()
        if mode not in ("r", "r+"):
            raise StoreError(f"mode must be 'r' or 'r+', got {mode!r}")
        from df_policy.data.remote import RemoteEpisodeStore, is_remote

        if is_remote(path):
            return RemoteEpisodeStore.open_url(str(path), mode)
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path} does not exist")
        if not path.is_dir() or not (path / "zarr.json").is_file():
            raise StoreError(f"{path} is not a Zarr v3 store (no zarr.json); is it a Diffusion Policy store? "
                             f"then use `dfp data convert`")
        read_only = mode == "r"
        lock = None
        if not read_only:
            lock = _take_writer_lock(path)
            _remove_temp_files(path)  # left by a killed writer: we hold the lock, nobody owns them
        try:
            root = zarr.open_group(zarr.storage.LocalStore(path, read_only=read_only), mode=mode, zarr_format=3)
        except Exception as e:  # corrupt metadata document
            if lock is not None:
                lock.release()
            bad = _unreadable_metadata(path)
            raise StoreError(f"{path}: cannot open the Zarr group{f' ({bad})' if bad else ''}: {e}") from e
        return cls(path, root, read_only, lock)

    # ------------------------------------------------------------------ consistency
    def _load_attrs(self) -> None:
        attrs = self._group.attrs.asdict()
        if SCHEMA_ATTR not in attrs:
            raise StoreError(f"{self.path}: Zarr store without a df_policy schema (attribute {SCHEMA_ATTR!r})")
        doc = dict(attrs[SCHEMA_ATTR])
        try:
            self.schema = StoreSchema.from_dict(doc)
        except SchemaError as e:
            raise StoreError(f"{self.path}: invalid schema: {e}") from e
        if "episodes" in doc:  # schema version 1: the episode list in the root attributes
            self._episodes = [EpisodeMeta.from_dict(m) for m in doc.pop("episodes")]
            self._flushed = int(doc.pop("uncommitted_steps", 0))
            self._log_bytes = None
        else:
            self._episodes, self._log_bytes = self._read_episode_log()
            self._flushed = self._read_flush_record()
        self._schema_doc = doc
        if not self.read_only:
            self._prepare_log()

    def _read_episode_log(self) -> tuple[list[EpisodeMeta], int]:
        return read_episode_log(self.path / EPISODE_LOG)

    def _read_small_file(self, name: str) -> str:
        """Text of a small file of the store (``FileNotFoundError`` when absent)."""
        return (self.path / name).read_text()

    def _live_writer(self) -> dict[str, Any] | None:
        """The other process holding the writer lock now (pid, host, command, since), or ``None``."""
        if self._lock is None and is_write_locked(self.path):
            holder = read_holder(self.path) or {}
            return None if holder.get("pid") == os.getpid() else holder  # ourselves: not a recording
        return None

    def _read_flush_record(self) -> int:
        try:
            record = json.loads(self._read_small_file(FLUSH_RECORD))
            return int(record["steps"]) if int(record["episodes"]) == len(self._episodes) else 0
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 0

    def _prepare_log(self) -> None:
        """Writer only: migrate a version-1 store to the episode log, or cut a torn last line."""
        log = self.path / EPISODE_LOG
        if self._log_bytes is None:  # version 1: write the log, then drop the list from the attributes
            tmp = log.with_name(log.name + ".partial")
            lines = [json.dumps({"op": "commit", "i": i, "meta": asdict(m)}) + "\n" for i, m in enumerate(self._episodes)]
            tmp.write_text("".join(lines))
            _fsync(tmp)
            os.replace(tmp, log)
            _fsync(log.parent, directory=True)
            self._write_flush_record(self._flushed)
            self._schema_doc = {**self._schema_doc, "version": 2}
            self._group.attrs[SCHEMA_ATTR] = self._schema_doc  # after this the log is the truth
            self._log_bytes = log.stat().st_size
        elif log.is_file() and log.stat().st_size != self._log_bytes:
            with open(log, "r+b") as f:  # a torn append of a killed writer: never committed
                f.truncate(self._log_bytes)
        elif not log.is_file():
            log.touch()

    def _check_structure(self) -> None:
        for sub in ("data", "meta"):
            if sub not in self._group:
                raise StoreError(f"{self.path}: missing group {sub!r}")
        if "episode_ends" not in self._group["meta"]:
            raise StoreError(f"{self.path}: missing array meta/episode_ends")
        ends_arr = self._group["meta/episode_ends"]
        n = len(self._episodes)
        if ends_arr.shape[0] < n:
            raise StoreError(
                f"{self.path}: meta/episode_ends has {ends_arr.shape[0]} entries but {n} episodes are committed"
            )
        ends = np.asarray(ends_arr[:n], dtype=np.int64)
        if n and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            bad = 0 if ends[0] <= 0 else int(np.flatnonzero(np.diff(ends) <= 0)[0]) + 1
            raise StoreError(f"{self.path}: meta/episode_ends is not strictly increasing (episode {bad})")
        for i, (m, length) in enumerate(zip(self._episodes, np.diff(ends, prepend=0))):
            if m.length != length:
                raise StoreError(
                    f"{self.path}: episode {i} metadata says {m.length} steps, episode_ends says {length}"
                )
        self.episode_ends = ends
        n_steps = int(ends[-1]) if n else 0
        data = self._group["data"]
        for key, spec in self.schema.keys.items():
            if key not in data:
                raise StoreError(f"{self.path}: schema key {key!r} has no array data/{key}")
            arr = data[key]
            if arr.shape[1:] != spec.shape:
                raise StoreError(f"{self.path}: data/{key} per-step shape {arr.shape[1:]} != schema {spec.shape}")
            if np.dtype(arr.dtype) != np.dtype(spec.dtype):
                raise StoreError(f"{self.path}: data/{key} dtype {arr.dtype} != schema {spec.dtype}")
            if arr.shape[0] < n_steps:
                raise StoreError(
                    f"{self.path}: length mismatch: data/{key} has {arr.shape[0]} steps but episode_ends "
                    f"says {n_steps}"
                )

    def _find_partial(self) -> PartialEpisode | None:
        n_steps = self.n_steps
        per_key = {k: int(self._group["data"][k].shape[0]) - n_steps for k in self.schema.keys}
        extra_ends = self._group["meta/episode_ends"].shape[0] - self.n_episodes
        if not any(per_key.values()) and not extra_ends:
            return None
        # Only steps whose flush completed (recorded after the data writes) are trusted:
        # an array may have been resized just before the kill, with its new chunks unwritten.
        flushed = self._flushed
        recording = self._live_writer()  # another process holds the writer lock: it is recording now
        return PartialEpisode(start=n_steps, steps=max(0, min(flushed, *per_key.values())), per_key=per_key,
                              recording=recording)

    # ------------------------------------------------------------------ reading
    @property
    def n_episodes(self) -> int:
        return len(self._episodes)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def episode_meta(self) -> list[EpisodeMeta]:
        return list(self._episodes)

    def episode_bounds(self, i: int) -> tuple[int, int]:
        """``(start, stop)`` global step indices of episode ``i``."""
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range ({self.n_episodes} episodes)")
        i %= self.n_episodes
        return (int(self.episode_ends[i - 1]) if i else 0), int(self.episode_ends[i])

    def array(self, key: str) -> Any:
        """The Zarr array ``data/<key>`` (may be longer than ``n_steps`` if a partial episode exists)."""
        if key not in self.schema.keys:
            raise KeyError(f"no key {key!r}; keys: {sorted(self.schema.keys)}")
        return self._group["data"][key]

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed steps ``[start, stop)`` of ``key`` as a numpy array in the schema dtype."""
        stop = self.n_steps if stop is None else min(stop, self.n_steps)
        return np.asarray(self.array(key)[start:stop])

    def episode(self, i: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        s, e = self.episode_bounds(i)
        return {k: self.read(k, s, e) for k in (keys or self.schema.keys)}

    def steps_per_file(self, key: str) -> int:
        """Steps of ``data/<key>`` per file on disk: the shard length of a sharded array, else
        the chunk length."""
        arr = self.array(key)
        return int((arr.shards or arr.chunks)[0])

    def storage_key(self, key: str, i: int) -> str:
        """Store-relative name of file ``i`` along time of ``data/<key>`` (steps ``[i*n, (i+1)*n)``
        for ``n = steps_per_file(key)``): Zarr v3's default chunk keys, the shard's key for a
        sharded array; every other dimension is one chunk."""
        return "/".join(["data", key, "c", str(i), *(["0"] * len(self.schema.keys[key].shape))])

    def storage_file(self, key: str, i: int) -> Path:
        """Path of file ``i`` along time of ``data/<key>`` (:meth:`storage_key`)."""
        return self.path / self.storage_key(key, i)

    def has_file(self, name: str) -> bool:
        """Whether the store-relative file ``name`` exists."""
        return (self.path / name).is_file()

    def file_count(self) -> int:
        return sum(1 for f in self.path.rglob("*") if f.is_file())

    def is_sharded(self) -> bool:
        """Whether every image/depth array is sharded (False for stores written before sharding)."""
        return all(self.array(k).shards is not None for k, spec in self.schema.keys.items()
                   if spec.kind in ("image", "depth"))

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")

    def _write_flush_record(self, steps: int) -> None:
        """``meta/flush.json``: ``steps`` of the episode after the committed ones are complete
        (one small atomic file replace; not fsynced: it is a hint for recovery after a kill)."""
        path = self.path / FLUSH_RECORD
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps({"episodes": len(self._episodes), "steps": int(steps)}))
        os.replace(tmp, path)
        self._flushed = int(steps)

    def _append_log(self, record: dict[str, Any]) -> None:
        """One line on the episode log (the commit point of a commit record); fsynced."""
        line = (json.dumps(record) + "\n").encode()
        log = self.path / EPISODE_LOG
        with open(log, "ab") as f:
            f.write(line)
        _fsync(log)
        self._log_bytes = (self._log_bytes or 0) + len(line)

    def begin_episode(self) -> "EpisodeWriter":
        """Start writing an episode incrementally (what the recorder uses)."""
        self._require_writable()
        if self.partial is not None:
            raise StoreError(f"{self.path}: {self.partial.describe()}")
        return EpisodeWriter(self)

    def append_episode(self, arrays: dict[str, np.ndarray], meta: EpisodeMeta | None = None) -> int:
        """Append one complete episode atomically; returns its index.

        ``arrays`` maps every schema key to ``(T, *shape)``. Validated before anything is written.
        """
        writer = self.begin_episode()
        writer.add_steps(arrays)
        return writer.commit(meta)

    def _commit_episode(self, length: int, meta: EpisodeMeta) -> int:
        ends = self._group["meta/episode_ends"]
        n = self.n_episodes
        new_end = self.n_steps + length
        ends.resize((n + 1,))
        ends[n] = new_end
        meta.length = length
        _fsync(self.path / "meta" / "episode_ends" / "zarr.json")
        for f in sorted((self.path / "meta" / "episode_ends" / "c").glob("*")):
            _fsync(f)
        _fsync(self.path / "meta" / "episode_ends", directory=True)
        self._append_log({"op": "commit", "i": n, "meta": asdict(meta)})  # commit point (fsynced)
        self._episodes.append(meta)
        self._write_flush_record(0)
        self.episode_ends = np.append(self.episode_ends, np.int64(new_end))
        self.partial = None
        return n

    def _sync_steps(self, start: int, stop: int) -> None:
        """fsync every chunk file holding steps ``[start, stop)`` and each array's metadata, and
        their directories (Zarr writes through rename; the rename is durable once the directory is)."""
        for key in self.schema.keys:
            arr_dir = self.path / "data" / key
            chunk = self.steps_per_file(key)
            dirs = {arr_dir}
            for i in range(start // chunk, (stop - 1) // chunk + 1):
                f = self.storage_file(key, i)
                _fsync(f)
                dirs.add(f.parent)
            _fsync(arr_dir / "zarr.json")
            for d in sorted(dirs):
                _fsync(d, directory=True)

    def _truncate_to(self, n_steps: int, n_episodes: int) -> None:
        for key in self.schema.keys:
            arr = self.array(key)
            if arr.shape[0] != n_steps:
                arr.resize((n_steps, *arr.shape[1:]))
        ends = self._group["meta/episode_ends"]
        if ends.shape[0] != n_episodes:
            ends.resize((n_episodes,))
        self._write_flush_record(0)

    def discard_partial(self) -> int:
        """Drop the steps of an interrupted episode; returns how many steps were dropped."""
        self._require_writable()
        if self.partial is None:
            return 0
        dropped = self.partial.steps
        self._truncate_to(self.n_steps, self.n_episodes)
        _remove_temp_files(self.path)
        self.partial = None
        return dropped

    def recover_partial(self, notes: str = "recovered after an interrupted recording") -> int | None:
        """Commit the complete steps of an interrupted episode; returns its index (None if empty)."""
        self._require_writable()
        if self.partial is None:
            return None
        steps = self.partial.steps
        self._truncate_to(self.n_steps + steps, self.n_episodes)
        _remove_temp_files(self.path)
        if steps == 0:
            self.partial = None
            return None
        self._sync_steps(self.n_steps, self.n_steps + steps)
        return self._commit_episode(steps, EpisodeMeta(notes=notes))

    def set_episode_meta(self, i: int, **fields: Any) -> None:
        """Update metadata of episode ``i`` (e.g. ``bad=True``, ``success=False``, ``notes=...``)."""
        self._require_writable()
        self.episode_bounds(i)
        i %= self.n_episodes
        meta = self._episodes[i]
        for k in fields:
            if k == "length" or not hasattr(meta, k):
                raise StoreError(f"cannot set episode field {k!r}")
        self._append_log({"op": "meta", "i": i, "fields": dict(fields)})
        for k, v in fields.items():
            setattr(meta, k, v)

    def update_schema(self, **fields: Any) -> None:
        """Update schema-level fields such as ``cameras``, ``action_space`` or ``fps``."""
        self._require_writable()
        doc = dict(self._schema_doc)
        doc.update(fields)
        StoreSchema.from_dict(doc)  # validate before writing
        self._group.attrs[SCHEMA_ATTR] = doc  # one atomic rewrite of the root zarr.json (no episode list)
        self._schema_doc = doc
        self.schema = StoreSchema.from_dict(doc)


class EpisodeWriter:
    """Incremental writer for one episode; nothing is visible until :meth:`commit`.

    Steps are buffered and flushed to the arrays every ``flush_every`` steps, so a crash
    loses at most the unflushed steps of the current episode and never earlier episodes.
    """

    def __init__(self, store: EpisodeStore, flush_every: int = 64) -> None:
        self.store = store
        self.flush_every = flush_every
        self.start = store.n_steps
        self.written = 0
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._closed = False

    @property
    def length(self) -> int:
        return self.written + self._buffered

    def add_step(self, step: dict[str, np.ndarray]) -> None:
        """Add one time step: key -> per-step array (no time axis)."""
        self.add_steps({k: np.asarray(v)[None] for k, v in step.items()})

    def add_steps(self, arrays: dict[str, np.ndarray]) -> None:
        """Add a block of steps: key -> ``(T, *shape)``; validated against the schema."""
        if self._closed:
            raise StoreError("episode writer is already closed")
        n = self.store.schema.check_step_arrays(arrays)
        self._buffer.append({k: np.asarray(v) for k, v in arrays.items()})
        self._buffered += n
        if self._buffered >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        block = {k: np.concatenate([b[k] for b in self._buffer]) for k in self.store.schema.keys}
        s = self.start + self.written
        e = s + self._buffered
        with zarr.config.set({"array.write_empty_chunks": True}):  # a missing chunk file is then an error,
            for key, spec in self.store.schema.keys.items():            # never "all zeros" (validation)
                arr = self.store.array(key)
                arr.resize((e, *spec.shape))
                arr[s:e] = block[key].astype(spec.dtype, copy=False)
        self.written += self._buffered
        self._buffer, self._buffered = [], 0
        self.store._write_flush_record(self.written)  # marker: these steps are complete

    def commit(self, meta: EpisodeMeta | None = None) -> int:
        """Flush and make the episode visible; returns its index."""
        if self._closed:
            raise StoreError("episode writer is already closed")
        if self.length == 0:
            raise StoreError("cannot commit an empty episode")
        self.flush()
        meta = meta or EpisodeMeta()
        if not meta.start_time:
            meta.start_time = _dt.datetime.now(_dt.timezone.utc).isoformat()
        self._closed = True
        self.store._sync_steps(self.start, self.start + self.written)  # the data is on disk first ...
        return self.store._commit_episode(self.written, meta)

    def discard(self) -> None:
        """Abandon the episode and remove whatever of it was flushed."""
        if self._closed:
            return
        self._closed = True
        self._buffer, self._buffered = [], 0
        self.store._truncate_to(self.store.n_steps, self.store.n_episodes)

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.discard()

