"""Episode stores on object storage (``s3://``, ``gs://``, ...) through fsspec: read, and pushed.

Training on a cluster reads the store where the lab keeps it: ``EpisodeStore.open("s3://bucket/
demos.zarr")`` (and everything built on it: ``dfp data info``, ``dfp train --data s3://...``)
returns a :class:`RemoteEpisodeStore` with the same reading API and the same consistency checks
as a local store (schema, episode log, ``episode_ends``, array shapes); only the committed
episodes are read. Recording writes a local store (crash safety rests on atomic renames and
fsync, which object stores do not have); :func:`push_store` (``dfp data push STORE URL``) then
uploads its committed episodes **in commit order**: chunks first, then the array metadata,
``episode_ends`` and the group documents, the episode log last. An object store replaces each
object atomically, so a trainer reading the URL during a push sees the previous commit until the
log lands (new chunks beyond it are a partial episode to it, ignored), never a half-uploaded
episode; a generic sync tool (``aws s3 sync``) uploads in no particular order. A push to a store
that holds an earlier state of the same local store uploads only what changed: chunk files that
lie wholly before the remote's committed steps are unchanged by appends (the store's contract)
and are skipped when their size matches.

Credentials and endpoint come from the usual places (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws``), plus ``DFP_STORAGE_OPTIONS``: a JSON object of fsspec
options for the protocol, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}`` for MinIO or a
local S3 server. Needs the protocol's fsspec backend (``pip install s3fs`` for ``s3://``;
the ``s3`` extra).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from df_policy.data.schema import EpisodeMeta
from df_policy.data.store import EPISODE_LOG, EpisodeStore, StoreError, parse_episode_log

STORAGE_OPTIONS_ENV = "DFP_STORAGE_OPTIONS"


def is_remote(path: Any) -> bool:
    """``True`` for a URL with a protocol other than ``file`` (``s3://bucket/store.zarr``)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def storage_options(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsspec options: ``DFP_STORAGE_OPTIONS`` (JSON) updated with ``extra``."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    try:
        options = json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise StoreError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of fsspec options: {e}") from None
    if not isinstance(options, dict):
        raise StoreError(f"{STORAGE_OPTIONS_ENV} must be a JSON object, got {raw!r}")
    return {**options, **(extra or {})}


def _filesystem(url: str, opts: dict[str, Any]) -> tuple[Any, str]:
    """``(fsspec filesystem, path in it)`` for ``url``; a missing backend named with its remedy."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **opts)
    except (ImportError, ValueError) as e:
        raise StoreError(f"{url}: no fsspec backend for this URL ({e}); for s3:// install s3fs "
                         "(pip install 'df-policy[s3]')") from e


class RemoteEpisodeStore(EpisodeStore):
    """A committed episode store on object storage, read-only (module docstring)."""

    def __init__(self, url: str, group: Any, fs: Any, root: str) -> None:
        self._fs, self._root = fs, root.rstrip("/")
        super().__init__(url, group, read_only=True)  # type: ignore[arg-type]

    @classmethod
    def open_url(cls, url: str, mode: str = "r", options: dict[str, Any] | None = None) -> "RemoteEpisodeStore":
        if mode != "r":
            raise StoreError(f"{url}: stores on object storage open read-only; record to a local store and "
                             "push its committed episodes there: `dfp data push STORE URL`")
        try:
            import fsspec  # noqa: F401 - checked here for the message; _filesystem uses it
            import zarr
        except ImportError as e:  # pragma: no cover - zarr is a core dependency on Python >= 3.11
            raise StoreError(f"{url}: reading object storage needs fsspec and zarr: {e}") from e
        opts = storage_options(options)
        fs, root = _filesystem(url, opts)
        try:
            exists = fs.exists(f"{root.rstrip('/')}/zarr.json")
        except Exception as e:  # noqa: BLE001 - network and credential errors come in many types
            raise StoreError(f"{url}: cannot reach the store: {type(e).__name__}: {e}") from e
        if not exists:
            raise StoreError(f"{url} is not a Zarr v3 store (no zarr.json there)")
        try:
            store = zarr.storage.FsspecStore.from_url(url, storage_options=opts or None, read_only=True)
            group = zarr.open_group(store, mode="r", zarr_format=3)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"{url}: cannot open the Zarr group: {type(e).__name__}: {e}") from e
        return cls(url, group, fs, root)

    # reading hooks of EpisodeStore, on the object store
    def _read_small_file(self, name: str) -> str:
        return self._fs.cat_file(f"{self._root}/{name}").decode()

    def _read_episode_log(self) -> tuple[list[EpisodeMeta], int]:
        try:
            data = self._fs.cat_file(f"{self._root}/{EPISODE_LOG}")
        except FileNotFoundError:
            return [], 0
        return parse_episode_log(data, f"{self.path}/{EPISODE_LOG}")

    def _live_writer(self) -> dict[str, Any] | None:
        return None  # nobody records into object storage

    def size_on_disk(self) -> int:
        return int(self._fs.du(self._root))

    def has_file(self, name: str) -> bool:
        return bool(self._fs.exists(f"{self._root}/{name}"))

    def file_count(self) -> int:
        return len(self._fs.find(self._root))



# --------------------------------------------------------------------------- push


@dataclass
class PushReport:
    """What :func:`push_store` did: files uploaded / skipped (unchanged) / deleted (stale), bytes sent."""

    url: str
    episodes: int
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    incremental: bool = False


_NOT_PUSHED = ("writer.lock",)  # the local writer's lock file; temporary files end in .partial


def _local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name not in _NOT_PUSHED and not p.name.endswith(".partial"))


def _commit_rank(name: str) -> int:
    """Upload order: chunks (0), array metadata (1), episode_ends (2), group documents and the
    flush record (3), the episode log last (4): the log is the commit point."""
    if name == EPISODE_LOG:
        return 4
    if name.startswith("meta/episode_ends/"):
        return 2
    if name.endswith("zarr.json"):
        return 1 if name.count("/") >= 2 else 3
    return 3 if name.startswith("meta/") else 0


def push_store(local: str | os.PathLike, url: str, replace: bool = False,
               options: dict[str, Any] | None = None,
               progress: Callable[[int, int], None] | None = None) -> PushReport:
    """Upload the committed episodes of the local store ``local`` to ``url`` in commit order.

    Holds ``local``'s writer lock meanwhile: while a recording or an edit holds it this raises
    :class:`~df_policy.data.store.StoreLockedError` naming the holder, and none can start during
    the push. A local partial episode (a crash) is refused: recover or discard it first. If
    ``url`` already holds a store, it must be an earlier state of this one (its ``episode_ends``
    a prefix of ours, the same array layouts) and only what changed is sent; otherwise
    ``replace`` is needed: the old store's episode log is deleted first (readers then see no
    episodes rather than old episodes over new chunks) and its files not in ours after the
    commit. ``progress(done, total)`` is called per file.
    """
    local = Path(local)
    if is_remote(local):
        raise StoreError(f"{local}: push uploads a local store; the source is a URL")
    if not is_remote(url):
        raise StoreError(f"{url}: push needs an object-storage URL (s3://bucket/store.zarr); for a local "
                         "copy use `dfp data merge` or cp -r")
    opts = storage_options(options)
    with EpisodeStore.open(local, mode="r+") as src:  # the writer lock: nobody appends meanwhile
        if src.partial is not None:
            raise StoreError(f"{local} has a partial episode ({src.partial.steps} steps after the last commit): "
                             "`dfp data recover` it (or --discard) before pushing")
        fs, root = _filesystem(url, opts)
        root = root.rstrip("/")
        remote_files: dict[str, int] = {}
        committed_steps = 0
        if fs.exists(f"{root}/zarr.json"):
            remote = RemoteEpisodeStore.open_url(url, options=options)
            ends, here = np.asarray(remote.episode_ends), np.asarray(src.episode_ends[: remote.n_episodes])
            errors = src.schema.compatibility_errors(remote.schema)
            same_layout = all(_array_layout(remote, k) == _array_layout(src, k) for k in src.schema.keys)
            if errors or len(ends) > src.n_episodes or not np.array_equal(ends, here) or not same_layout:
                if not replace:
                    why = ("; ".join(errors) if errors else "other array layouts (compacted?)" if not same_layout
                           else f"its {len(ends)} episodes are not the first ones of {local}")
                    raise StoreError(f"{url} holds another store ({why}): pass --replace to overwrite it")
                if fs.exists(f"{root}/{EPISODE_LOG}"):
                    fs.rm(f"{root}/{EPISODE_LOG}")  # no commit left to read over the chunks about to change
            else:
                committed_steps = int(ends[-1]) if len(ends) else 0
            remote_files = {info["name"][len(root) + 1:]: int(info.get("size") or 0)
                            for info in fs.find(root, detail=True).values()}
        names = sorted(_local_files(local), key=lambda n: (_commit_rank(n), n))
        report = PushReport(url, src.n_episodes, incremental=committed_steps > 0)
        # files holding only steps before the remote's commit: appends never rewrite them
        settled = {src.storage_key(k, i) for k in src.schema.keys
                   for i in range(committed_steps // src.steps_per_file(k))}
        for done, name in enumerate(names, 1):
            path = local / name
            size = path.stat().st_size
            if name in settled and remote_files.get(name) == size:
                report.skipped.append(name)
            else:
                fs.pipe_file(f"{root}/{name}", path.read_bytes())
                report.uploaded.append(name)
                report.bytes_sent += size
            if progress is not None:
                progress(done, len(names))
        stale = sorted(set(remote_files) - set(names))
        if stale:
            fs.rm([f"{root}/{name}" for name in stale])
            report.deleted = stale
    return report


def _array_layout(store: EpisodeStore, key: str) -> tuple[Any, ...]:
    """An array's chunking and codecs (what decides which file holds which step)."""
    arr = store._group["data"][key]
    meta = arr.metadata.to_dict()
    return (json.dumps(meta.get("chunk_grid"), sort_keys=True), json.dumps(meta.get("codecs"), sort_keys=True))
