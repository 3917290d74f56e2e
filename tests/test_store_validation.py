"""Every malformed store is reported with a message that names the problem."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import zarr

from df_policy.cli import main as dfp
from df_policy.data.legacy import ReplayBufferReader, open_episodes
from df_policy.data.ops import validate_store
from df_policy.data.store import EpisodeStore, StoreError


def _group(path):
    return zarr.open_group(zarr.storage.LocalStore(path), mode="r+", zarr_format=3)


def _assert_invalid(path, pattern):
    problems = validate_store(path)
    assert problems, "store should be invalid"
    assert any(re.search(pattern, p) for p in problems), problems
    assert dfp(["data", "validate", str(path)]) == 1


def test_valid_store_passes(synth_store):
    assert validate_store(synth_store) == []
    assert dfp(["data", "validate", str(synth_store)]) == 0


def test_path_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="does not exist"):
        open_episodes(tmp_path / "missing.zarr")
    with pytest.raises(StoreError, match="not an episode store"):
        open_episodes(tmp_path / "notes.txt")
    with pytest.raises(StoreError, match="not a Zarr v3 store"):
        EpisodeStore.open(tmp_path)
    assert dfp(["data", "info", str(tmp_path / "notes.txt")]) == 2


def test_missing_key(synth_store):
    del _group(synth_store)["data"]["agent_pos"]
    _assert_invalid(synth_store, r"schema key 'agent_pos' has no array data/agent_pos")


def test_length_mismatch(synth_store):
    arr = _group(synth_store)["data/action"]
    arr.resize((arr.shape[0] - 3, 2))
    _assert_invalid(synth_store, r"length mismatch: data/action has 117 steps but episode_ends says 120")


def test_non_monotonic_episode_ends(synth_store):
    _group(synth_store)["meta/episode_ends"][2] = 10
    _assert_invalid(synth_store, r"episode_ends is not strictly increasing \(episode 2\)")


def test_wrong_dtype(synth_store):
    g = _group(synth_store)
    data = g["data/agent_pos"][:]
    del g["data"]["agent_pos"]
    g["data"].create_array("agent_pos", data=data.astype(np.float64))
    _assert_invalid(synth_store, r"data/agent_pos dtype float64 != schema float32")


def test_wrong_shape(synth_store):
    g = _group(synth_store)
    del g["data"]["agent_pos"]
    g["data"].create_array("agent_pos", data=np.zeros((120, 3), np.float32))
    _assert_invalid(synth_store, r"data/agent_pos per-step shape \(3,\) != schema \(2,\)")


def test_nan_in_lowdim(synth_store):
    _group(synth_store)["data/action"][37, 1] = np.inf
    _assert_invalid(synth_store, r"data/action: NaN or Inf at step 37")


def test_truncated_chunk(synth_store):
    shard = synth_store / "data" / "image" / "c" / "1" / "0" / "0" / "0"  # steps 64..119 (64 frames per file)
    shard.write_bytes(shard.read_bytes()[:20])
    _assert_invalid(synth_store, r"data/image: chunk for steps \[64, 120\) is corrupt or truncated")


def test_corrupt_schema(synth_store):
    g = _group(synth_store)
    doc = dict(g.attrs["df_policy"])
    doc["keys"]["image"]["dtype"] = "float32"
    g.attrs["df_policy"] = doc
    _assert_invalid(synth_store, r"invalid schema: image keys must be uint8")


def test_episode_metadata_disagrees_with_ends(synth_store):
    log = synth_store / "meta" / "episodes.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["meta"]["length"] = 19
    lines[1] = json.dumps(record) + "\n"
    log.write_text("".join(lines))
    _assert_invalid(synth_store, r"episode 1 metadata says 19 steps, episode_ends says 20")


def test_corrupt_episode_log_line_names_file_and_line(synth_store):
    log = synth_store / "meta" / "episodes.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = "{not json\n"
    log.write_text("".join(lines))
    _assert_invalid(synth_store, r"episodes.jsonl line 2 is not a valid episode record")


def test_replay_buffer_length_mismatch(tmp_path):
    root = zarr.open_group(zarr.storage.LocalStore(tmp_path / "dp.zarr"), mode="w", zarr_format=2)
    root.create_group("data").create_array("action", data=np.zeros((10, 2), np.float32))
    root["data"].create_array("state", data=np.zeros((9, 2), np.float32))
    root.create_group("meta").create_array("episode_ends", data=np.array([4, 10]))
    with pytest.raises(StoreError, match=r"length mismatch: data/state has 9 steps but episode_ends says 10"):
        ReplayBufferReader(tmp_path / "dp.zarr")


@pytest.mark.parametrize("doc", ["data/action/zarr.json", "zarr.json"])
def test_corrupt_array_or_group_metadata_names_the_file(synth_store, doc):
    (synth_store / doc).write_text("{not json")
    with pytest.raises(StoreError, match=re.escape(str(synth_store / doc))):
        EpisodeStore.open(synth_store)
    (problem,) = validate_store(synth_store)
    assert str(synth_store / doc) in problem and "JSONDecodeError" not in problem.split(":")[0]
    assert dfp(["data", "validate", str(synth_store)]) == 1


@pytest.mark.parametrize("shard, steps", [(None, "[4, 8)"), (8, "[8, 16)")], ids=["chunk_files", "sharded"])
def test_missing_chunk_file_is_reported_not_read_as_zeros(tmp_path, shard, steps):
    from df_policy.data.synthetic import make_synthetic_store

    path = tmp_path / "s.zarr"
    store = make_synthetic_store(path, n_episodes=2, length=10, image_size=16, image_chunk_frames=4,
                                 image_shard_frames=shard)
    with EpisodeStore.open(path, mode="r+") as writer:  # black frames are data: they are written
        black = {k: np.concatenate([v, v]) for k, v in store.episode(0).items()}
        black["image"][:] = 0
        writer.append_episode(black)  # steps 20..39, a whole black shard (16..23) included
    assert validate_store(path) == []
    assert (path / "data" / "image" / "c" / "2" / "0" / "0" / "0").is_file()
    (path / "data" / "image" / "c" / "1" / "0" / "0" / "0").unlink()  # a partial rsync
    problems = validate_store(path)
    assert problems == [f"data/image: chunk file data/image/c/1/0/0/0 for steps {steps} is missing "
                        "(it would read as zeros)"]
    assert dfp(["data", "validate", str(path)]) == 1
