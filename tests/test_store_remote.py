"""Episode stores on object storage, read-only: a real S3 protocol server (moto, on 127.0.0.1,
started by the test) holding a store uploaded with s3fs, read through EpisodeStore.open,
make_datasets and the CLI exactly as from a local directory."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest
import torch

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from df_policy.cli import main as dfp  # noqa: E402
from df_policy.data.dataset import DatasetConfig, identity_collate, make_datasets  # noqa: E402
from df_policy.data.store import EpisodeStore, StoreError  # noqa: E402


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory):
    """(url, local path, endpoint) of a 6-episode synthetic store uploaded to a local S3 server."""
    import s3fs
    from moto.server import ThreadedMotoServer

    from df_policy.data.synthetic import make_synthetic_store

    local = tmp_path_factory.mktemp("s3src") / "synth.zarr"
    store = make_synthetic_store(local, n_episodes=6, length=20, image_size=32, seed=1)
    with EpisodeStore.open(local, mode="r+") as w:
        w.set_episode_meta(2, bad=True, notes="dropped the cube")
    del store
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "eu-west-1"}}
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, **creds)
    fs.mkdir("demos")
    fs.put(str(local), "demos/synth.zarr", recursive=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("DFP_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint, **creds}))
    try:
        yield "s3://demos/synth.zarr", local, endpoint
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
