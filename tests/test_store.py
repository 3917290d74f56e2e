"""Episode store: round trips, atomic appends, crash recovery, editing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from df_policy.data.ops import drop_episodes, merge, validate_store
from df_policy.data.schema import EpisodeMeta, SchemaError
from df_policy.data.store import EpisodeStore, StoreError, StoreLockedError
from df_policy.data.synthetic import make_synthetic_store, synthetic_episode, synthetic_schema


def test_append_and_read_round_trip(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", synthetic_schema(16))
    rng = np.random.default_rng(0)
    eps = [synthetic_episode(rng, n, 16) for n in (5, 9, 3)]
    for i, ep in enumerate(eps):
        assert store.append_episode(ep, EpisodeMeta(task="t", success=i % 2 == 0)) == i
    reopened = EpisodeStore.open(tmp_path / "s.zarr")
    assert reopened.n_episodes == 3 and reopened.n_steps == 17
    assert reopened.episode_ends.tolist() == [5, 14, 17]
    for i, ep in enumerate(eps):
        got = reopened.episode(i)
        for k in ep:
            assert got[k].dtype == reopened.schema.keys[k].dtype
            np.testing.assert_array_equal(got[k], ep[k].astype(got[k].dtype))
    assert [m.success for m in reopened.episode_meta] == [True, False, True]
    assert reopened.episode_meta[1].start_time  # filled in on commit
    assert validate_store(tmp_path / "s.zarr") == []


def test_bad_episode_is_rejected_before_anything_is_written(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", synthetic_schema(16))
    ep = synthetic_episode(np.random.default_rng(0), 4, 16)
    store.append_episode(ep)
    bad = dict(ep, agent_pos=ep["agent_pos"].copy())
    bad["agent_pos"][2, 1] = np.nan
    with pytest.raises(SchemaError, match=r"'agent_pos'.*NaN or Inf at step 2"):
        store.append_episode(bad)
    with pytest.raises(SchemaError, match="missing \\['image'\\]"):
        store.append_episode({k: v for k, v in ep.items() if k != "image"})
    with pytest.raises(SchemaError, match="'action' has 3 steps"):
        store.append_episode(dict(ep, action=ep["action"][:3]))
    with pytest.raises(SchemaError, match="images must be uint8"):
        store.append_episode(dict(ep, image=ep["image"].astype(np.float32)))
    reopened = EpisodeStore.open(tmp_path / "s.zarr")
    assert reopened.n_episodes == 1 and reopened.partial is None


def test_incremental_writer_is_invisible_until_commit_and_discard_cleans_up(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", synthetic_schema(16))
    ep = synthetic_episode(np.random.default_rng(0), 10, 16)
    w = store.begin_episode()
    w.flush_every = 4
    for t in range(10):
        w.add_step({k: v[t] for k, v in ep.items()})
    # 8 steps flushed to disk, nothing committed: another reader sees a partial episode only.
    other = EpisodeStore.open(tmp_path / "s.zarr")
    assert other.n_episodes == 0 and other.partial is not None and other.partial.steps == 8
    w.discard()
    assert EpisodeStore.open(tmp_path / "s.zarr").partial is None
    with store.begin_episode() as w2:
        w2.add_steps(ep)
        w2.commit(EpisodeMeta(task="again"))
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 1


def test_read_only_store_refuses_writes(synth_store):
    store = EpisodeStore.open(synth_store, mode="r")
    with pytest.raises(StoreError, match="read-only"):
        store.append_episode(store.episode(0))
    with pytest.raises(StoreError, match="read-only"):
        store.set_episode_meta(0, bad=True)


def test_create_refuses_to_overwrite(synth_store):
    with pytest.raises(StoreError, match="already exists"):
        EpisodeStore.create(synth_store, synthetic_schema(16))


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from df_policy.data.store import EpisodeStore
    from df_policy.data.synthetic import synthetic_episode
    store = EpisodeStore.open(sys.argv[1], mode="r+")
    i = store.n_episodes
    while True:  # append episodes forever, step by step, flushing often
        ep = synthetic_episode(np.random.default_rng(i), 30, 16)
        w = store.begin_episode()
        w.flush_every = 3
        for t in range(30):
            w.add_step({k: v[t] for k, v in ep.items()})
            if i >= 2 and t == 10:
                print("WRITING", i, flush=True)
        w.commit()
        i += 1
    """
)


def _expected_episode(i):
    return synthetic_episode(np.random.default_rng(i), 30, 16)


@pytest.mark.parametrize("delay", [0.0, 0.07, 0.23, 0.41])
def test_kill_9_mid_recording_keeps_earlier_episodes(tmp_path, delay):
    path = tmp_path / "s.zarr"
    EpisodeStore.create(path, synthetic_schema(16))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the writer is inside episode >= 2
        assert line.startswith("WRITING"), line
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = EpisodeStore.open(path, mode="r+")  # openable after the kill
    assert store.n_episodes >= 2
    for i in range(store.n_episodes):  # every committed episode is intact, bit for bit
        got, want = store.episode(i), _expected_episode(i)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    problems = validate_store(path)
    if store.partial is not None:
        assert problems and "partial episode" in problems[0]
        n_before = store.n_episodes
        steps = store.partial.steps
        idx = store.recover_partial()
        if steps:
            assert idx == n_before
            want = _expected_episode(idx)
            got = store.episode(idx)
            for k in want:  # recovered steps are the ones that were written
                np.testing.assert_array_equal(got[k], want[k][:steps])
    assert validate_store(path) == []
    assert not list(path.rglob("*.partial"))


def test_discard_partial(tmp_path):
    path = tmp_path / "s.zarr"
    make_synthetic_store(path, n_episodes=2, length=10, image_size=16)
    store = EpisodeStore.open(path, mode="r+")
    w = store.begin_episode()
    w.flush_every = 1
    w.add_steps(synthetic_episode(np.random.default_rng(5), 7, 16))
    del w  # simulated crash: never committed (the dead process's writer lock goes with it)
    store.close()
    store = EpisodeStore.open(path, mode="r+")
    assert store.partial.steps == 7
    with pytest.raises(StoreError, match="partial episode"):
        store.begin_episode()
    assert store.discard_partial() == 7
    store = EpisodeStore.open(path)
    assert store.partial is None and store.n_episodes == 2 and store.array("image").shape[0] == 20


def test_mark_bad_drop_and_merge(tmp_path, synth_store):
    store = EpisodeStore.open(synth_store, mode="r+")
    ep3 = store.episode(3)
    store.set_episode_meta(1, bad=True, notes="gripper slipped")
    assert EpisodeStore.open(synth_store).episode_meta[1].bad
    with pytest.raises(StoreError, match="cannot set episode field 'length'"):
        store.set_episode_meta(0, length=3)
    with pytest.raises(StoreLockedError, match=f"open for writing by pid {os.getpid()}"):
        drop_episodes(synth_store, [0, 2], progress=False)  # a second writer while we hold it
    store.close()

    dropped = drop_episodes(synth_store, [0, 2], progress=False)
    assert dropped.n_episodes == 4
    assert dropped.episode_meta[0].notes == "gripper slipped"  # old episode 1 is now 0
    np.testing.assert_array_equal(dropped.episode(1)["image"], ep3["image"])
    assert not synth_store.with_name(synth_store.name + ".old").exists()

    other = make_synthetic_store(tmp_path / "o.zarr", n_episodes=3, length=12, image_size=32, seed=9)
    merged = merge([synth_store, other.path], tmp_path / "m.zarr", progress=False)
    assert merged.n_episodes == 7 and merged.n_steps == 4 * 20 + 3 * 12
    np.testing.assert_array_equal(merged.episode(6)["action"], other.episode(2)["action"])
    wrong = make_synthetic_store(tmp_path / "w.zarr", n_episodes=1, length=5, image_size=8)
    with pytest.raises(StoreError, match=r"'image': shape \(8, 8, 3\) != expected \(32, 32, 3\)"):
        merge([synth_store, wrong.path], tmp_path / "m2.zarr", progress=False)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from df_policy.data.store import EpisodeStore
    store = EpisodeStore.open(sys.argv[1], mode="r+")
    print("HOLDING", flush=True)
    time.sleep(60)
    """
)


@contextlib.contextmanager
def writer_process(script: str, path, ready: str):
    """Run ``script`` on ``path`` in another process until it prints ``ready``; kill it after."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == ready
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


def test_one_writer_at_a_time_across_processes(tmp_path):
    path = tmp_path / "s.zarr"
    make_synthetic_store(path, n_episodes=2, length=6, image_size=8)
    with writer_process(HOLDER, path, "HOLDING") as proc:
        # a second writer is refused with the holder named; readers are not affected
        with pytest.raises(StoreLockedError, match=rf"open for writing by pid {proc.pid} .*command: -c"):
            EpisodeStore.open(path, mode="r+")
        with pytest.raises(StoreLockedError):
            drop_episodes(path, [0], progress=False)
        assert EpisodeStore.open(path).n_episodes == 2
        # a temporary file of the live writer is not touched by the refused open
        tmp = path / "data" / "image" / "zarr.json.0123.partial"
        tmp.write_text("in flight")
        with pytest.raises(StoreLockedError):
            EpisodeStore.open(path, mode="r+")
        assert tmp.exists()
        os.kill(proc.pid, signal.SIGKILL)  # the kernel frees the lock with the process
        proc.wait(30)
    with EpisodeStore.open(path, mode="r+") as store:
        assert store._lock.previous_holder["pid"] == proc.pid  # who last held it, without releasing
        assert not tmp.exists()  # the dead writer's temporaries are gone
        store.set_episode_meta(0, notes="after the holder died")
    with EpisodeStore.open(path, mode="r+") as store:  # released by close(): nobody to report
        assert store._lock.previous_holder is None
        assert store.episode_meta[0].notes == "after the holder died"
    with pytest.raises(StoreError, match="read-only"):
        store.set_episode_meta(0, bad=True)  # a closed store keeps reading but writes nothing


RECORDING = textwrap.dedent(
    """
    import sys, time, numpy as np
    from df_policy.data.store import EpisodeStore
    from df_policy.data.synthetic import synthetic_episode
    store = EpisodeStore.open(sys.argv[1], mode="r+")
    w = store.begin_episode()
    w.flush_every = 3
    ep = synthetic_episode(np.random.default_rng(0), 7, 8)
    for t in range(7):  # 6 steps flushed, 1 buffered
        w.add_step({k: v[t] for k, v in ep.items()})
    print("RECORDING", flush=True)
    time.sleep(60)
    """
)


def test_a_reader_sees_a_recording_in_progress_not_a_crash(tmp_path):
    path = tmp_path / "s.zarr"
    make_synthetic_store(path, n_episodes=1, length=5, image_size=8)
    with writer_process(RECORDING, path, "RECORDING") as proc:
        reader = EpisodeStore.open(path)
        assert reader.n_episodes == 1 and reader.partial.steps == 6  # the committed snapshot
        assert reader.partial.recording["pid"] == proc.pid
        (problem,) = validate_store(path)
        assert problem.startswith(f"recording in progress by pid {proc.pid} on ") and "6 steps" in problem
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    (problem,) = validate_store(path)  # the writer died: now it is an interrupted episode
    assert problem.startswith("partial episode after the last committed one: 6 complete steps")


@pytest.mark.parametrize("shard, first_files, second_files", [
    (None, [0, 1, 2], [2, 3]),  # one file per 4-frame chunk: steps 0..9, then 10..12
    (8, [0, 1], [1]),           # sharded, 8 frames per file: the second episode rewrites shard 1
], ids=["chunk_files", "sharded"])
def test_commit_makes_the_episode_durable_before_the_commit_record(tmp_path, monkeypatch, shard, first_files,
                                                                   second_files):
    import df_policy.data.store as store_module

    path = tmp_path / "s.zarr"
    synced = []
    real = store_module._fsync

    def record(p, directory=False):  # files only: the commit order of the data and the record
        if not directory:
            synced.append(Path(p))
        real(p, directory)

    monkeypatch.setattr(store_module, "_fsync", record)
    with EpisodeStore.create(path, synthetic_schema(8), image_chunk_frames=4, image_shard_frames=shard) as store:
        store.append_episode(synthetic_episode(np.random.default_rng(0), 10, 8))
        first = len(synced)
        store.append_episode(synthetic_episode(np.random.default_rng(1), 3, 8))  # steps 10..12
    rel = [p.relative_to(path).as_posix() for p in synced]
    files = {f"data/image/c/{i}/0/0/0" for i in first_files}
    assert files <= set(rel[:first])
    assert set(r for r in rel[first:] if r.startswith("data/image/c/")) == {f"data/image/c/{i}/0/0/0"
                                                                           for i in second_files}
    for part in (rel[:first], rel[first:]):  # data and episode_ends before the commit record, which is last
        assert part[-1] == "meta/episodes.jsonl" and "meta/episode_ends/zarr.json" in part[:-1]
        assert all((path / r).is_file() for r in part)


def _v1_store(path: Path, episodes: int) -> None:
    """A store in schema version 1 (episode list in the root attributes), as df_policy wrote it before."""
    import json

    import zarr

    with EpisodeStore.create(path, synthetic_schema(8)) as store:
        for i in range(episodes):
            store.append_episode(synthetic_episode(np.random.default_rng(i), 5 + i, 8), EpisodeMeta(task=f"t{i}"))
    log = [json.loads(line) for line in (path / "meta" / "episodes.jsonl").read_text().splitlines()]
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="r+", zarr_format=3)
    doc = dict(group.attrs["df_policy"])
    group.attrs["df_policy"] = {**doc, "version": 1, "episodes": [r["meta"] for r in log], "uncommitted_steps": 0}
    (path / "meta" / "episodes.jsonl").unlink()
    (path / "meta" / "flush.json").unlink()


def test_version_1_store_reads_as_is_and_migrates_to_the_episode_log_on_first_write(tmp_path):
    path = tmp_path / "v1.zarr"
    _v1_store(path, 3)
    reader = EpisodeStore.open(path)
    assert reader.n_episodes == 3 and [m.task for m in reader.episode_meta] == ["t0", "t1", "t2"]
    assert not (path / "meta" / "episodes.jsonl").exists()  # a reader changes nothing
    with EpisodeStore.open(path, "r+") as store:
        store.set_episode_meta(1, bad=True)
        store.append_episode(synthetic_episode(np.random.default_rng(9), 4, 8), EpisodeMeta(task="t3"))
    import zarr

    doc = zarr.open_group(zarr.storage.LocalStore(path), mode="r", zarr_format=3).attrs["df_policy"]
    assert "episodes" not in doc and doc["version"] == 2
    again = EpisodeStore.open(path)
    assert [m.task for m in again.episode_meta] == ["t0", "t1", "t2", "t3"]
    assert [m.bad for m in again.episode_meta] == [False, True, False, False]
    assert [m.length for m in again.episode_meta] == [5, 6, 7, 4] and validate_store(path) == []


def test_torn_log_line_is_not_a_commit_and_the_next_writer_cuts_it(tmp_path):
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path, synthetic_schema(8)) as store:
        for i in range(2):
            store.append_episode(synthetic_episode(np.random.default_rng(i), 6, 8))
    log = path / "meta" / "episodes.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"op": "commit", "i": 2, "me')  # a kill in the middle of an append
    assert EpisodeStore.open(path).n_episodes == 2
    with EpisodeStore.open(path, "r+") as store:
        assert log.read_bytes() == good
        store.append_episode(synthetic_episode(np.random.default_rng(5), 3, 8))
    assert EpisodeStore.open(path).n_episodes == 3 and validate_store(path) == []


def test_commit_and_mark_write_the_same_bytes_whatever_the_number_of_episodes(tmp_path, monkeypatch):
    """O(1) commit: what a commit or a mark writes does not grow with the store (it was the whole
    episode list, rewritten in the root zarr.json, every flush, commit and mark)."""
    import df_policy.data.store as store_module

    path = tmp_path / "s.zarr"
    written: list[int] = []
    real_append = store_module.EpisodeStore._append_log

    def spy(self, record):
        before = (self.path / "meta" / "episodes.jsonl").stat().st_size
        real_append(self, record)
        written.append((self.path / "meta" / "episodes.jsonl").stat().st_size - before)

    monkeypatch.setattr(store_module.EpisodeStore, "_append_log", spy)
    root_sizes = []
    with EpisodeStore.create(path, synthetic_schema(4)) as store:
        for i in range(300):
            store.append_episode(synthetic_episode(np.random.default_rng(i), 3, 4), EpisodeMeta(task="same"))
            root_sizes.append((path / "zarr.json").stat().st_size)
        store.set_episode_meta(0, notes="x")
        store.set_episode_meta(299, notes="x")
    commits = written[:300]
    assert max(commits) - min(commits) <= 6  # only the digits of the index and the timestamp vary
    assert written[300] <= written[301] <= written[300] + 2
    assert len(set(root_sizes)) == 1, "the root zarr.json must not grow with the episodes"


def test_action_alignment_round_trips_and_is_validated():
    from df_policy.data.schema import KeySpec, SchemaError, StoreSchema

    keys = {"action": KeySpec("action", (2,), "float32")}
    schema = StoreSchema(keys=keys, fps=10, action_alignment="in_effect")
    assert StoreSchema.from_dict(schema.to_dict()).action_alignment == "in_effect"
    assert "action_alignment" not in StoreSchema(keys=keys).to_dict()  # unknown: nothing written
    assert StoreSchema(keys=keys, action_alignment="next").compatibility_errors(schema) == [
        "action alignment 'in_effect' != expected 'next' (the command after the observation vs the one in effect at it)"]
    assert StoreSchema(keys=keys).compatibility_errors(schema) == []  # unknown mixes with anything
    with pytest.raises(SchemaError, match="action_alignment must be one of"):
        StoreSchema(keys=keys, action_alignment="later")


def test_image_arrays_are_sharded_and_compact_rewrites_an_old_store(tmp_path, capsys):
    from df_policy.cli import main as dfp
    from df_policy.data.ops import compact, validate_store

    def image_files(p):
        return sorted(f for f in (p / "data" / "image").rglob("*") if f.is_file() and f.name != "zarr.json")

    new = make_synthetic_store(tmp_path / "new.zarr", n_episodes=3, length=50, image_size=16)  # 150 frames
    assert new.is_sharded() and new.steps_per_file("image") == 64 and len(image_files(new.path)) == 3
    old = make_synthetic_store(tmp_path / "old.zarr", n_episodes=3, length=50, image_size=16, image_shard_frames=None)
    assert not old.is_sharded() and len(image_files(old.path)) == 38  # one file per 4 frames
    with EpisodeStore.open(old.path, mode="r+") as w:
        w.set_episode_meta(1, bad=True, notes="slipped")
    before = {i: old.episode(i) for i in range(3)}

    assert dfp(["data", "compact", str(old.path)]) == 0
    assert "layout sharded" in capsys.readouterr().out
    done = EpisodeStore.open(old.path)
    assert done.is_sharded() and len(image_files(done.path)) == 3 and validate_store(done.path) == []
    assert done.episode_meta[1].bad and done.episode_meta[1].notes == "slipped"
    for i in range(3):
        for k, v in before[i].items():
            np.testing.assert_array_equal(done.episode(i)[k], v)
    with EpisodeStore.open(old.path, mode="r+"):  # a recording holds the lock: compact is refused
        with pytest.raises(StoreLockedError):
            compact(old.path, progress=False)
    with pytest.raises(StoreError, match="must be a multiple of image_chunk_frames"):
        EpisodeStore.create(tmp_path / "bad.zarr", synthetic_schema(8), image_chunk_frames=4, image_shard_frames=6)
