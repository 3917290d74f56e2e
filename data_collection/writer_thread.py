"""An episode writer on its own thread, so that flushing to disk never runs in the control loop.

:class:`ThreadedEpisodeWriter` wraps a :class:`~df_policy.data.store.EpisodeWriter`: ``add_step``
only puts the step on a bounded queue; a writer thread adds the steps to the episode in order
(flushing every ``flush_every`` steps, as before). When the queue is full (the disk is slower
than the recording for longer than the queue covers) ``add_step`` waits: counted in ``stalls``
and ``stall_s``, never a lost step. An exception raised while writing (``OSError``: disk full)
is re-raised, unchanged, by the next ``add_step`` / ``wait`` / ``commit``; after it nothing
more is written, and the steps flushed before it stay in the store (``dfp data recover``).
``commit`` and ``discard`` wait for the queue first. One producer thread (the recorder loop).
``max_queue=0`` writes in the calling thread instead (no thread; the behaviour before it, kept to
measure the difference: ``benchmarks/bench_recorder_flush.py``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from df_policy.data.schema import EpisodeMeta
from df_policy.data.store import EpisodeWriter

_STOP = object()


class ThreadedEpisodeWriter:
    """``EpisodeWriter`` API (``add_step``, ``commit``, ``discard``, ``length``, ``written``),
    written on a background thread. ``on_flush(written)`` runs on that thread after each flush."""

    def __init__(self, writer: EpisodeWriter, max_queue: int = 256,
                 on_flush: Callable[[int], None] | None = None) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self._writer = writer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._on_flush = on_flush
        self._error: BaseException | None = None
        self.accepted = 0
        self.stalls = 0
        self.stall_s = 0.0
        self._inline = max_queue == 0
        self._closed = False
        self._thread: threading.Thread | None = None
        if not self._inline:
            self._thread = threading.Thread(target=self._run, name="dfp-episode-writer", daemon=True)
            self._thread.start()

    @property
    def length(self) -> int:
        """Steps accepted so far (queued or written)."""
        return self.accepted

    @property
    def written(self) -> int:
        """Steps flushed to the store's arrays."""
        return self._writer.written

    def add_step(self, step: dict[str, np.ndarray]) -> None:
        """Queue one step (key -> per-step array); waits only while the queue is full."""
        self._raise()
        if self._closed:
            raise RuntimeError("episode writer is closed")
        if self._inline:
            self._write(step)
            self.accepted += 1
            return
        try:
            self._queue.put_nowait(step)
        except queue.Full:
            t0 = time.monotonic()
            self._queue.put(step)
            self.stalls += 1
            self.stall_s += time.monotonic() - t0
        self.accepted += 1

    def wait(self) -> None:
        """Block until every queued step is written; re-raise a write error."""
        self._queue.join()
        self._raise()

    def commit(self, meta: EpisodeMeta | None = None) -> int:
        """Write what is queued, then commit the episode (in the calling thread); its index."""
        self.wait()
        self.close()
        return self._writer.commit(meta)

    def discard(self) -> None:
        """Drop the episode, queued steps included."""
        self._queue.join()
        self.close()
        self._writer.discard()

    def close(self) -> None:
        """Stop the thread after the queue, leaving the episode as it is on disk (after a write
        error: the flushed steps, for recovery). Idempotent."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    self._write(item)
            except BaseException as e:  # noqa: BLE001 - handed to the producer thread
                self._error = e
            finally:
                self._queue.task_done()

    def _write(self, step: dict[str, np.ndarray]) -> None:
        before = self._writer.written
        self._writer.add_step(step)
        if self._writer.written != before and self._on_flush is not None:
            self._on_flush(self._writer.written)
