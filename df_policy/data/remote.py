"""Episode stores on object storage (``s3://``, ``gs://``, ...), read-only, through fsspec.

Training on a cluster reads the store where the lab keeps it: ``EpisodeStore.open("s3://bucket/
demos.zarr")`` (and everything built on it: ``dfp data info``, ``dfp train --data s3://...``)
returns a :class:`RemoteEpisodeStore` with the same reading API and the same consistency checks
as a local store (schema, episode log, ``episode_ends``, array shapes); only the committed
episodes are read. Recording writes a local store (crash safety rests on atomic renames and
fsync, which object stores do not have); upload a finished store with any sync tool
(``aws s3 sync demos.zarr s3://bucket/demos.zarr``).

Credentials and endpoint come from the usual places (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws``), plus ``DFP_STORAGE_OPTIONS``: a JSON object of fsspec
options for the protocol, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}`` for MinIO or a
local S3 server. Needs the protocol's fsspec backend (``pip install s3fs`` for ``s3://``;
the ``s3`` extra).
"""

from __future__ import annotations

import json
import os
from typing import Any

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


class RemoteEpisodeStore(EpisodeStore):
    """A committed episode store on object storage, read-only (module docstring)."""

    def __init__(self, url: str, group: Any, fs: Any, root: str) -> None:
        self._fs, self._root = fs, root.rstrip("/")
        super().__init__(url, group, read_only=True)  # type: ignore[arg-type]

    @classmethod
    def open_url(cls, url: str, mode: str = "r", options: dict[str, Any] | None = None) -> "RemoteEpisodeStore":
        if mode != "r":
            raise StoreError(f"{url}: stores on object storage open read-only; record to a local store and "
                             "upload it when it is finished (e.g. `aws s3 sync`)")
        try:
            import fsspec
            import zarr
        except ImportError as e:  # pragma: no cover - zarr is a core dependency on Python >= 3.11
            raise StoreError(f"{url}: reading object storage needs fsspec and zarr: {e}") from e
        opts = storage_options(options)
        try:
            fs, root = fsspec.core.url_to_fs(url, **opts)
        except (ImportError, ValueError) as e:
            raise StoreError(f"{url}: no fsspec backend for this URL ({e}); for s3:// install s3fs "
                             "(pip install 'df-policy[s3]')") from e
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

