"""Episode stores on object storage, read-only: a real S3 protocol server (moto, on 127.0.0.1,
started by the test) holding a store uploaded with s3fs, read through EpisodeStore.open,
make_datasets and the CLI exactly as from a local directory."""

from __future__ import annotations

import json
import os
import tracemalloc
import uuid

import numpy as np
import pytest
import torch

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from df_policy.cli import main as dfp  # noqa: E402
from df_policy.data.dataset import DatasetConfig, identity_collate, make_datasets  # noqa: E402
from df_policy.data.store import EpisodeStore, StoreError  # noqa: E402


def _local_s3(bucket: str):
    """(server, s3fs filesystem, df_policy storage options): a moto S3 server on 127.0.0.1,
    started here, holding an empty ``bucket``."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "eu-west-1"}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(bucket)
    return server, fs, options


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory):
    """(url, local path, endpoint) of a 6-episode synthetic store uploaded to a local S3 server."""
    from df_policy.data.synthetic import make_synthetic_store

    local = tmp_path_factory.mktemp("s3src") / "synth.zarr"
    store = make_synthetic_store(local, n_episodes=6, length=20, image_size=32, seed=1)
    with EpisodeStore.open(local, mode="r+") as w:
        w.set_episode_meta(2, bad=True, notes="dropped the cube")
    del store
    server, fs, options = _local_s3("demos")
    fs.put(str(local), "demos/synth.zarr", recursive=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("DFP_STORAGE_OPTIONS", json.dumps(options))
    try:
        yield "s3://demos/synth.zarr", local, options["endpoint_url"]
    finally:
        mp.undo()
        server.stop()


def test_a_store_on_s3_reads_like_the_local_one(s3_store):
    url, local, _ = s3_store
    remote, here = EpisodeStore.open(url), EpisodeStore.open(local)
    assert type(remote).__name__ == "RemoteEpisodeStore" and remote.path == url
    assert remote.n_episodes == 6 and remote.n_steps == here.n_steps and remote.partial is None
    assert remote.episode_meta[2].bad and remote.episode_meta[2].notes == "dropped the cube"
    assert remote.is_sharded() and remote.size_on_disk() > 0
    for i in (0, 5):
        for k, v in here.episode(i).items():
            np.testing.assert_array_equal(remote.episode(i)[k], v)
    cfg = DatasetConfig(crop_shape=(28, 28), val_ratio=0.2, horizon=8)
    (train_r, _), (train_l, _) = make_datasets(url, cfg, progress=False), make_datasets(str(local), cfg, progress=False)
    assert train_r.episodes == train_l.episodes and 2 not in train_r.episodes  # the bad episode is left out
    br, bl = train_r.__getitems__([0, 7, 30]), train_l.__getitems__([0, 7, 30])
    for k in ("obs.agent_pos", "action", "obs_is_pad", "action_is_pad"):
        np.testing.assert_array_equal(br[k].numpy(), bl[k].numpy())


def test_object_storage_is_read_only_and_errors_name_the_problem(s3_store, capsys):
    url, _, _ = s3_store
    with pytest.raises(StoreError, match="open read-only; record to a local store"):
        EpisodeStore.open(url, mode="r+")
    with pytest.raises(StoreError, match="is not a Zarr v3 store"):
        EpisodeStore.open("s3://demos/nothing.zarr")
    assert dfp(["data", "info", url]) == 0
    out = capsys.readouterr().out
    assert "episodes   6" in out and "layout sharded" in out


def test_validate_reads_every_file_on_s3_and_names_a_missing_one(s3_store):
    import s3fs

    from df_policy.data.ops import validate_store

    url, local, endpoint = s3_store
    assert validate_store(url) == []
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing",
                           client_kwargs={"region_name": "eu-west-1"})
    fs.cp("demos/synth.zarr", "demos/partial.zarr", recursive=True)
    fs.rm("demos/partial.zarr/data/image/c/1/0/0/0")  # an interrupted upload: steps 64..119 lost
    assert EpisodeStore.open("s3://demos/partial.zarr").file_count() == EpisodeStore.open(url).file_count() - 1
    assert validate_store("s3://demos/partial.zarr") == [
        "data/image: chunk file data/image/c/1/0/0/0 for steps [64, 120) is missing (it would read as zeros)"]


class _TracedBatches(torch.utils.data.Dataset):
    """A dataset's batches, each with the pid that read it and the peak memory allocated while
    reading it (tracemalloc: Python objects and numpy arrays, in every thread)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitems__(self, indices):
        self.ds.__getitems__(indices[:1])  # untraced: a worker's first read opens the store (botocore's models)
        tracemalloc.start()
        try:
            batch = self.ds.__getitems__(indices)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return batch, peak, os.getpid()


def test_dataloader_workers_stream_from_s3_like_in_process(s3_store):
    """Forked DataLoader workers reopen the store on S3 and gather the same batches as the main
    process, the frames those of the local store, without the memory blow-up of Zarr's
    index-array selection on sharded images (it got workers OOM-killed at 480x640, ~10 GB a
    batch; here the peak stays a few times the frames' bytes)."""
    url, local, _ = s3_store
    cfg = DatasetConfig(cache="stream", crop_shape=None, val_ratio=0.0, horizon=8)
    train, _ = make_datasets(url, cfg, progress=False)
    order = np.random.default_rng(0).permutation(len(train))
    batches = [sorted(order[i:i + 16].tolist()) for i in range(0, 64, 16)]
    expected = [train.__getitems__(b) for b in batches]  # in-process first: the parent's Zarr loop is running
    frames = EpisodeStore.open(local).read("image")
    loader = torch.utils.data.DataLoader(_TracedBatches(train), batch_sampler=batches, num_workers=2,
                                         collate_fn=identity_collate, timeout=60)
    got = list(loader)
    assert len(got) == len(batches) and all(pid != os.getpid() for _, _, pid in got)
    for (batch, peak, _), want, b in zip(got, expected, batches):
        assert batch.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(batch[k].numpy(), want[k].numpy())
        obs_idx, _ = train.index.obs_indices(np.asarray(b))
        np.testing.assert_array_equal(batch["obs.image"].numpy(), frames[obs_idx].transpose(0, 1, 4, 2, 3))
        nbytes = batch["obs.image"].numel()
        assert peak < 10 * nbytes + (1 << 20), f"gathering {nbytes} bytes of frames peaked at {peak} bytes"


@pytest.fixture
def s3_bucket(monkeypatch):
    """(s3fs filesystem, bucket) on a fresh local S3 server; DFP_STORAGE_OPTIONS points at it."""
    bucket = f"lab-{uuid.uuid4().hex[:8]}"  # moto keeps its buckets process-wide
    server, fs, options = _local_s3(bucket)
    monkeypatch.setenv("DFP_STORAGE_OPTIONS", json.dumps(options))
    try:
        yield fs, bucket
    finally:
        server.stop()


def _assert_same_store(url, local):
    remote, here = EpisodeStore.open(url), EpisodeStore.open(local)
    assert remote.n_episodes == here.n_episodes and remote.partial is None
    assert [m.bad for m in remote.episode_meta] == [m.bad for m in here.episode_meta]
    for i in range(here.n_episodes):
        for k, v in here.episode(i).items():
            np.testing.assert_array_equal(remote.episode(i)[k], v)


def test_push_uploads_in_commit_order_and_then_only_what_changed(s3_bucket, tmp_path, capsys):
    from df_policy.data.remote import push_store
    from df_policy.data.schema import EpisodeMeta
    from df_policy.data.synthetic import make_synthetic_store, synthetic_episode

    fs, bucket = s3_bucket
    local, url = tmp_path / "demos.zarr", f"s3://{bucket}/demos.zarr"
    make_synthetic_store(local, n_episodes=3, length=30, image_size=16, seed=2)  # 90 steps: image shard 0 (0-63) full
    first = push_store(local, url)
    assert not first.incremental and not first.skipped and not first.deleted
    order = first.uploaded
    assert order[-1] == "meta/episodes.jsonl"  # the commit point lands last
    last_chunk = max(i for i, n in enumerate(order) if "/c/" in n and not n.startswith("meta/"))
    assert last_chunk < order.index("data/image/zarr.json") < order.index("meta/episode_ends/zarr.json") < order.index("zarr.json")
    assert "writer.lock" not in order
    _assert_same_store(url, local)

    with EpisodeStore.open(local, mode="r+") as w:  # the lab records two more episodes and marks one
        rng = np.random.default_rng(5)
        for _ in range(2):
            w.append_episode(synthetic_episode(rng, 30, 16), EpisodeMeta(task="reach the green goal"))
        w.set_episode_meta(0, bad=True, notes="wrong cube")
    second = push_store(local, url)
    assert second.incremental and "data/image/c/0/0/0/0" in second.skipped  # shard 0 holds steps 0-63 < 90
    assert "data/image/c/1/0/0/0" in second.uploaded and second.uploaded[-1] == "meta/episodes.jsonl"
    assert second.bytes_sent < sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    _assert_same_store(url, local)

    # a push cut off before its commit point: readers still see the last commit, intact
    with EpisodeStore.open(local, mode="r+") as w:
        w.append_episode(synthetic_episode(np.random.default_rng(6), 30, 16))

    def cut(done, total):
        if done == total - 1:  # everything but the episode log is up
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push_store(local, url, progress=cut)
    seen = EpisodeStore.open(url)
    assert seen.n_episodes == 5 and seen.episode_meta[0].bad
    np.testing.assert_array_equal(seen.episode(4)["image"], EpisodeStore.open(local).episode(4)["image"])
    assert push_store(local, url).incremental
    _assert_same_store(url, local)
    assert dfp(["data", "push", str(local), url]) == 0
    assert "6 episodes committed there" in capsys.readouterr().out


def test_push_refuses_another_store_a_live_writer_and_a_partial_episode(s3_bucket, tmp_path):
    from df_policy.data.remote import push_store
    from df_policy.data.store import StoreLockedError
    from df_policy.data.synthetic import make_synthetic_store, synthetic_episode

    fs, bucket = s3_bucket
    url = f"s3://{bucket}/demos.zarr"
    a = tmp_path / "a.zarr"
    make_synthetic_store(a, n_episodes=2, length=20, image_size=16, seed=1)
    push_store(a, url)
    b = tmp_path / "b.zarr"
    make_synthetic_store(b, n_episodes=3, length=25, image_size=16, seed=3)
    with pytest.raises(StoreError, match="holds another store .*--replace"):
        push_store(b, url)
    fs.pipe_file(f"{bucket}/demos.zarr/data/image/c/9/0/0/0", b"left over")  # a file b does not have

    def cut(done, total):
        if done == total - 1:  # everything but b's episode log is up
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push_store(b, url, replace=True, progress=cut)
    assert EpisodeStore.open(url).n_episodes == 0  # a's episodes are never read over b's chunks
    report = push_store(b, url, replace=True)
    assert "data/image/c/9/0/0/0" in report.deleted
    _assert_same_store(url, b)

    with EpisodeStore.open(b, mode="r+") as w:
        with pytest.raises(StoreLockedError):
            push_store(b, url)  # someone is recording into it
        ep = w.begin_episode()
        ep.add_steps(synthetic_episode(np.random.default_rng(0), 10, 16))
        ep.flush()
        w._lock.release()  # a crash: the flushed steps stay as a partial episode
        with pytest.raises(StoreError, match="partial episode .*dfp data recover"):
            push_store(b, url)
    with pytest.raises(StoreError, match="needs an object-storage URL"):
        push_store(b, tmp_path / "copy.zarr")
