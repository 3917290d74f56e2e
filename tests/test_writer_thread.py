"""The recorder's episode writer thread over a real episode store."""

from __future__ import annotations

import numpy as np
import pytest

from data_collection.writer_thread import ThreadedEpisodeWriter
from df_policy.data.schema import EpisodeMeta, KeySpec, StoreSchema
from df_policy.data.store import EpisodeStore

SCHEMA = StoreSchema(keys={"cam": KeySpec("image", (16, 16, 3), "uint8", camera="cam"),
                           "joint_pos": KeySpec("lowdim", (2,), "float32"),
                           "action": KeySpec("action", (2,), "float32")}, fps=10)


def step(t: int) -> dict[str, np.ndarray]:
    return {"cam": np.full((16, 16, 3), t % 256, np.uint8), "joint_pos": np.array([t, -t], np.float32),
            "action": np.array([t, 2 * t], np.float32)}


def test_steps_are_written_in_order_off_the_calling_thread_and_a_full_queue_waits(tmp_path):
    flushes: list[int] = []
    with EpisodeStore.create(tmp_path / "s.zarr", SCHEMA) as store:
        inner = store.begin_episode()
        inner.flush_every = 1
        writer = ThreadedEpisodeWriter(inner, max_queue=1, on_flush=flushes.append)
        for t in range(100):
            writer.add_step(step(t))
        assert writer.length == 100
        assert writer.commit(EpisodeMeta(task="t")) == 0
    assert writer.stalls > 0 and writer.stall_s > 0  # a queue of one step cannot keep up with 100 writes
    assert flushes == list(range(1, 101))
    store = EpisodeStore.open(tmp_path / "s.zarr")
    ep = store.episode(0)
    np.testing.assert_array_equal(ep["joint_pos"][:, 0], np.arange(100))
    np.testing.assert_array_equal(ep["cam"][:, 0, 0, 0], np.arange(100) % 256)


def test_a_write_error_is_raised_in_the_caller_and_the_flushed_steps_stay(tmp_path, disk_full):
    with EpisodeStore.create(tmp_path / "s.zarr", SCHEMA) as store:
        inner = store.begin_episode()
        inner.flush_every = 4
        writer = ThreadedEpisodeWriter(inner, on_flush=lambda written: disk_full.update(on=written >= 8))
        with pytest.raises(OSError, match="No space left"):
            for t in range(40):
                writer.add_step(step(t))
            writer.wait()
        assert writer.written == 8
        with pytest.raises(OSError):  # it stays raised: nothing more is written
            writer.add_step(step(99))
        writer.close()
        disk_full["on"] = False
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 0 and store.partial.steps == 8


def test_discard_drops_queued_and_written_steps(tmp_path):
    with EpisodeStore.create(tmp_path / "s.zarr", SCHEMA) as store:
        writer = ThreadedEpisodeWriter(store.begin_episode())
        for t in range(70):
            writer.add_step(step(t))
        writer.discard()
        writer.close()  # idempotent
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 0 and store.partial is None


def test_max_queue_zero_writes_in_the_calling_thread(tmp_path):
    import threading

    threads: list[str] = []
    with EpisodeStore.create(tmp_path / "s.zarr", SCHEMA) as store:
        inner = store.begin_episode()
        inner.flush_every = 5
        writer = ThreadedEpisodeWriter(inner, max_queue=0, on_flush=lambda _: threads.append(threading.current_thread().name))
        for t in range(12):
            writer.add_step(step(t))
        assert writer.written == 10 and writer.length == 12  # flushed inline, two steps still buffered
        writer.commit()
    assert threads == [threading.current_thread().name] * 2
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_meta[0].length == 12
