"""One writer per episode store: an advisory lock file held while a store is open for writing.

Contract: ``<store>/writer.lock`` is locked with ``flock(LOCK_EX | LOCK_NB)`` by whichever
process opens the store with ``mode="r+"`` (recorder, bag import, mark, recover, drop, merge).
A second writer gets a :class:`LockHeldError` naming the holder (pid, host, command, since
when) instead of a silent lost update. The kernel releases the lock when the holder dies, even
by ``kill -9``, so a lock file left by a dead process is never "stale": the next writer takes it
and :attr:`WriterLock.previous_holder` says who held it last (useful in messages about a partial
episode). Readers never take the lock.

POSIX only (Linux, macOS, Jetson); on NFS ``flock`` is emulated with ``fcntl`` locks by Linux.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_FILE = "writer.lock"


class LockHeldError(RuntimeError):
    """Another live process holds the store's writer lock."""


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or sys.executable,
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
            f"(command: {holder.get('command')})")


def read_holder(store_path: str | os.PathLike) -> dict[str, Any] | None:
    """The last holder recorded in the lock file, or ``None`` (no file, or unreadable)."""
    try:
        return json.loads((Path(store_path) / LOCK_FILE).read_text() or "null")
    except (OSError, ValueError):
        return None


def is_write_locked(store_path: str | os.PathLike) -> bool:
    """Whether a live process holds the writer lock now (probes without keeping it)."""
    path = Path(store_path) / LOCK_FILE
    if not path.exists():
        return False
    try:
        f = open(path)  # read-only: flock needs no write access, so readers of read-only copies work
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


class WriterLock:
    """The writer lock of one store, acquired on construction; :meth:`release` (idempotent) frees it."""

    def __init__(self, store_path: str | os.PathLike) -> None:
        self.path = Path(store_path) / LOCK_FILE
        self._file = open(self.path, "a+")  # never truncates what another holder wrote
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise LockHeldError(
                f"{store_path} is open for writing by {describe_holder(read_holder(store_path))}; "
                "one writer at a time (stop that process first, or open the store read-only)"
            ) from None
        self._file.seek(0)
        text = self._file.read()
        try:
            self.previous_holder: dict[str, Any] | None = json.loads(text) if text.strip() else None
        except ValueError:
            self.previous_holder = None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(_holder_record()))
        self._file.flush()

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()  # an empty file = released cleanly
            self._file.flush()
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # a store dropped without close() must not keep the lock
        try:
            self.release()
        except Exception:
            pass
