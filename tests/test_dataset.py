"""Windowed dataset, pad masks, normaliser, crops and splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from df_policy.data.augment import center_crop, random_crop
from df_policy.data.dataset import DatasetConfig, identity_collate, make_datasets
from df_policy.data.normalizer import Normalizer
from df_policy.data.sampler import WindowIndex, WindowSpec, split_episodes
from df_policy.data.store import EpisodeStore


def test_window_indices_and_pad_masks_are_exact():
    # two episodes: steps [0, 5) and [5, 8)
    idx = WindowIndex(np.array([5, 8]), [0, 1], WindowSpec(n_obs_steps=2, horizon=4))
    assert len(idx) == 8  # every step of both episodes is an anchor
    obs, obs_pad = idx.obs_indices(np.array([0, 1, 5]))
    assert obs.tolist() == [[0, 0], [0, 1], [5, 5]]
    assert obs_pad.tolist() == [[True, False], [False, False], [True, False]]
    act, act_pad = idx.action_indices(np.array([0, 4, 7]))
    # action window = steps t-1 .. t+2
    assert act.tolist() == [[0, 0, 1, 2], [3, 4, 4, 4], [6, 7, 7, 7]]
    assert act_pad.tolist() == [[True, False, False, False], [False, False, True, True],
                                [False, False, True, True]]


def test_max_action_pad_limits_anchors():
    idx = WindowIndex(np.array([10]), [0], WindowSpec(2, 6, max_action_pad=1))
    _, pad = idx.action_indices(np.arange(len(idx)))
    assert len(idx) == 7 and pad[:, 2:].sum(axis=1).max() == 1
    with pytest.raises(ValueError, match="max_action_pad"):
        WindowSpec(2, 6, max_action_pad=5)


def test_split_by_episode_is_disjoint_deterministic_and_skips_bad():
    tr, va = split_episodes(50, 0.2, seed=3, exclude=[4, 7])
    assert not set(tr) & set(va) and len(va) == 10 and 4 not in tr + va and 7 not in tr + va
    assert (tr, va) == split_episodes(50, 0.2, seed=3, exclude=[4, 7])
    assert split_episodes(50, 0.2, seed=4, exclude=[4, 7]) != (tr, va)


def test_normalizer_modes_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(3, 2, (500, 3)).astype(np.float32)
    a[:, 2] = 7.0  # constant dimension
    n = Normalizer.fit({"a": a}, "minmax")
    x = n.normalize("a", a)
    assert np.allclose(x[:, :2].min(0), -1) and np.allclose(x[:, :2].max(0), 1)
    assert np.allclose(x[:, 2], 0)
    assert np.allclose(n.unnormalize("a", x), a, atol=1e-5)
    m = Normalizer.fit({"a": a}, "meanstd")
    z = m.normalize("a", torch.from_numpy(a))
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2), atol=1e-4)
    n.save(tmp_path / "n.json")
    n2 = Normalizer.load(tmp_path / "n.json")
    np.testing.assert_allclose(n2.normalize("a", a), x, atol=1e-6)
    bad = a.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="'a': data contains NaN"):
        Normalizer.fit({"a": bad})
    with pytest.raises(KeyError, match="no stats for 'b'"):
        n.normalize("b", a)


def test_crops():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (8, 2, 10, 12, 3), dtype=np.uint8)
    c = center_crop(imgs, (6, 8))
    np.testing.assert_array_equal(c, imgs[:, :, 2:8, 2:10])
    r = random_crop(imgs, (6, 8), rng)
    assert r.shape == (8, 2, 6, 8, 3)
    found = []
    for b in range(8):  # each sample is a crop of itself at one offset shared by both time steps
        hits = [(y, x) for y in range(5) for x in range(5) if np.array_equal(r[b], imgs[b, :, y:y + 6, x:x + 8])]
        assert hits
        found.append(hits[0])
    assert len(set(found)) > 1
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(imgs, (11, 4))


def test_dataset_batch_contract_matches_the_store(synth_store):
    cfg = DatasetConfig(n_obs_steps=2, horizon=8, crop_shape=(28, 28), val_ratio=0.34)
    train, val = make_datasets(str(synth_store), cfg, progress=False)
    assert set(train.episodes).isdisjoint(val.episodes) and len(train.episodes) == 4
    store = EpisodeStore.open(synth_store)
    b = val.__getitems__([0, 1, 5])
    assert b["obs.image"].shape == (3, 2, 3, 28, 28) and b["obs.image"].dtype == torch.uint8
    assert b["obs.agent_pos"].shape == (3, 2, 2) and b["action"].shape == (3, 8, 2)
    ep = val.episodes[0]
    s, e = store.episode_bounds(ep)
    raw = store.read("action", s, e)
    # sample 1 is anchored at the episode's second step: actions s+0 .. s+7, none padded
    got = val.normalizer.unnormalize("action", b["action"][1].numpy())
    np.testing.assert_allclose(got, raw[0:8], atol=1e-5)
    assert b["action_is_pad"][0].tolist() == [True] + [False] * 7
    assert b["obs_is_pad"][:, 0].tolist() == [True, False, False]
    # centre crop of the stored frame, channels first
    img = store.read("image", s + 1, s + 2)[0]
    np.testing.assert_array_equal(b["obs.image"][1, 1].numpy(), img[2:30, 2:30].transpose(2, 0, 1))
    # normaliser fitted on the training episodes only
    tr_actions = np.concatenate([store.episode(i)["action"] for i in train.episodes])
    assert np.allclose(train.normalizer.stats["action"].max, tr_actions.max(0))


def test_stream_mode_equals_ram_mode_and_workers_share(synth_store):
    cfg = dict(n_obs_steps=2, horizon=8, crop_shape=None, val_ratio=0.2)
    _, val_ram = make_datasets(str(synth_store), DatasetConfig(cache="ram", **cfg), progress=False)
    _, val_stream = make_datasets(str(synth_store), DatasetConfig(cache="stream", **cfg), progress=False)
    assert val_ram.arrays.in_ram and not val_stream.arrays.in_ram
    idx = list(range(len(val_ram)))
    a, b = val_ram.__getitems__(idx), val_stream.__getitems__(idx)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    loader = torch.utils.data.DataLoader(val_stream, batch_size=4, num_workers=2, collate_fn=identity_collate)
    got = torch.cat([batch["action"] for batch in loader])
    assert torch.equal(got, a["action"])


def test_random_crops_differ_across_dataloader_workers(synth_store):
    train, _ = make_datasets(str(synth_store), DatasetConfig(crop_shape=(20, 20), val_ratio=0.2), progress=False)
    sampler = [[0, 0, 0, 0]] * 4  # the same sample, four times per batch, four batches
    loader = torch.utils.data.DataLoader(train, batch_sampler=sampler, num_workers=2, collate_fn=identity_collate)
    crops = torch.cat([b["obs.image"] for b in loader])
    assert len({c.numpy().tobytes() for c in crops}) > 4


def test_derived_key_is_a_slice_of_a_stored_key(synth_store):
    cfg = DatasetConfig(lowdim_keys=["x"], derived_keys={"x": "agent_pos[0:1]"}, crop_shape=None, val_ratio=0.2)
    train, _ = make_datasets(str(synth_store), cfg, progress=False)
    assert train.schema.keys["x"].shape == (1,) and "agent_pos[0:1]" in train.schema.keys["x"].description
    b = train.__getitems__([3])
    store = EpisodeStore.open(synth_store)
    s, _ = store.episode_bounds(train.episodes[0])
    raw = store.read("agent_pos", s + 2, s + 4)[:, :1]
    np.testing.assert_allclose(train.normalizer.unnormalize("x", b["obs.x"][0].numpy()), raw, atol=1e-6)
    with pytest.raises(ValueError, match="must look like 'key\\[start:stop\\]'"):
        DatasetConfig(derived_keys={"x": "agent_pos[2:1]"})
    with pytest.raises(ValueError, match="does not fit the store's keys"):
        make_datasets(str(synth_store), DatasetConfig(derived_keys={"x": "agent_pos[0:3]"}), progress=False)


def test_normaliser_floors_a_nearly_constant_dimension_at_diffusion_policys_range_eps():
    from df_policy.data.normalizer import KeyStats, Normalizer

    x = np.zeros((100, 3))
    x[:, 0] = np.linspace(-1.0, 1.0, 100)
    x[:, 1] = 0.5 + np.linspace(0.0, 2e-5, 100)  # nearly constant: range 2e-5 < 1e-4
    x[:, 2] = np.linspace(0.0, 2e-4, 100)         # small but above the floor
    n = Normalizer.fit({"a": x})
    y = n.normalize("a", x)
    assert np.abs(y[:, 1]).max() < 1e-4, "a near-constant dimension must not be blown up (was scale 1e5)"
    np.testing.assert_allclose(y[[0, -1], 2], [-1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(n.unnormalize("a", y), x, atol=1e-9)
    old = KeyStats("minmax", [0.0], [2e-5], [1e-5], [1e-5], eps=1e-6)  # a checkpoint fitted with the old floor
    assert Normalizer({"a": old}).stats["a"].scale_offset()[0][0] == pytest.approx(1e5)


def test_capture_stamps_are_stored_but_never_a_default_policy_input(tmp_path):
    from df_policy.data.schema import KeySpec, StoreSchema

    schema = StoreSchema(keys={
        "joint_pos": KeySpec("lowdim", (2,), "float32"),
        "stamp_s": KeySpec("lowdim", (1,), "float32", unit="s"),
        "action": KeySpec("action", (2,), "float32"),
    }, fps=10)
    assert schema.lowdim_keys == ["joint_pos", "stamp_s"] and schema.observation_keys == ["joint_pos"]
    with EpisodeStore.create(tmp_path / "s.zarr", schema) as store:
        for _ in range(3):
            t = np.arange(12, dtype=np.float32)[:, None]
            store.append_episode({"joint_pos": np.hstack([t, -t]), "stamp_s": t / 10, "action": np.hstack([t, t])})
    cfg = DatasetConfig(n_obs_steps=2, horizon=4, val_ratio=0.34)
    train, _ = make_datasets(str(tmp_path / "s.zarr"), cfg, progress=False)
    assert train.lowdim_keys == ["joint_pos"] and "obs.stamp_s" not in train.__getitems__([0])
    # asked for by name, it is an input like any other key
    train, _ = make_datasets(str(tmp_path / "s.zarr"), DatasetConfig(n_obs_steps=2, horizon=4, val_ratio=0.34,
                                                                      lowdim_keys=["joint_pos", "stamp_s"]),
                             progress=False)
    assert "obs.stamp_s" in train.__getitems__([0])


def test_windows_never_span_a_gap_in_the_recording(tmp_path):
    """A dropped step (stamp_s jumps by two periods) splits the episode: windows near it are
    padded and masked on the other side, as at an episode end."""
    from df_policy.data.sampler import find_gaps
    from df_policy.data.schema import KeySpec, StoreSchema

    schema = StoreSchema(keys={"joint_pos": KeySpec("lowdim", (1,), "float32"),
                               "stamp_s": KeySpec("lowdim", (1,), "float32", unit="s"),
                               "action": KeySpec("action", (1,), "float32")}, fps=10)
    stamps = np.r_[np.arange(6), np.arange(7, 13)].astype(np.float32)[:, None] / 10  # step 6 never recorded
    with EpisodeStore.create(tmp_path / "s.zarr", schema) as store:
        for _ in range(2):
            store.append_episode({"joint_pos": stamps * 10, "stamp_s": stamps, "action": stamps * 10})
    assert find_gaps(stamps[:, 0], np.array([12]), fps=10).tolist() == [6]
    assert find_gaps(np.r_[stamps[:, 0], stamps[:, 0]], np.array([12, 24]), fps=10).tolist() == [6, 18]
    cfg = DatasetConfig(n_obs_steps=2, horizon=4, val_ratio=0.0, crop_shape=None)
    train, _ = make_datasets(str(tmp_path / "s.zarr"), cfg, progress=False)
    assert len(train) == 24  # every step is an anchor, in segments of 6
    steps, pad = train.index.action_indices(np.arange(24))
    b = train.__getitems__(list(range(24)))
    raw = train.normalizer.unnormalize("action", b["action"].numpy())[..., 0]
    for i in range(24):
        real = raw[i][~pad[i]]
        assert np.allclose(np.diff(real), 1, atol=1e-4), (i, raw[i], pad[i])  # never a jump across the hole
    # the anchor just before the hole: its actions after it are padding (masked)
    assert pad[5].tolist() == [False, False, True, True] and b["action_is_pad"][5].tolist() == pad[5].tolist()
    off, _ = make_datasets(str(tmp_path / "s.zarr"), DatasetConfig(n_obs_steps=2, horizon=4, val_ratio=0.0,
                                                                   crop_shape=None, split_at_gaps=False),
                           progress=False)
    assert not off.index.action_indices(np.array([5]))[1].any()  # without it, the window spans the hole


def test_available_memory_respects_the_cgroup_limit(tmp_path):
    """A container or a Slurm job limits memory through its cgroup; the RAM-or-stream decision
    must use that limit, not the host's free memory. The files are laid out as the kernel writes them."""
    from df_policy.data.dataset import available_memory

    free = available_memory(tmp_path / "none", proc_cgroup=str(tmp_path / "none"))
    v2 = tmp_path / "v2"
    (v2 / "job").mkdir(parents=True)
    (v2 / "job" / "memory.max").write_text("1073741824\n")
    (v2 / "job" / "memory.current").write_text("268435456\n")
    (tmp_path / "cgroup_v2").write_text("0::/job\n")
    assert free > 1 << 30 and available_memory(v2, proc_cgroup=str(tmp_path / "cgroup_v2")) == 768 << 20
    (v2 / "job" / "memory.max").write_text("max\n")
    assert available_memory(v2, proc_cgroup=str(tmp_path / "cgroup_v2")) == pytest.approx(free, rel=0.1)  # free moves
    v1 = tmp_path / "v1" / "memory" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(2 << 30))
    (v1 / "memory.usage_in_bytes").write_text(str(1 << 30))
    (tmp_path / "cgroup_v1").write_text("4:memory:/docker/abc\n0::/\n")
    assert available_memory(tmp_path / "v1", proc_cgroup=str(tmp_path / "cgroup_v1")) == 1 << 30
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    assert available_memory(tmp_path / "v1", proc_cgroup=str(tmp_path / "cgroup_v1")) == pytest.approx(free, rel=0.1)
    assert 0 < available_memory() <= free * 1.1  # this machine, whatever its cgroup says


def test_a_rank_shard_holds_only_its_episodes_with_the_global_normaliser(synth_store):
    cfg = DatasetConfig(crop_shape=None, val_ratio=0.2, cache="ram", horizon=8)
    full, val = make_datasets(str(synth_store), cfg, progress=False)
    shards = [make_datasets(str(synth_store), cfg, progress=False, shard=(r, 2))[0] for r in (0, 1)]
    assert shards[0].episodes == full.episodes[0::2] and shards[1].episodes == full.episodes[1::2]
    assert sorted(shards[0].episodes + shards[1].episodes) == sorted(full.episodes)
    store = EpisodeStore.open(synth_store)
    for shard in shards:
        for k in ("agent_pos", "action"):  # every rank normalises with the stats of all training episodes
            np.testing.assert_array_equal(shard.normalizer.stats[k].min, full.normalizer.stats[k].min)
            np.testing.assert_array_equal(shard.normalizer.stats[k].max, full.normalizer.stats[k].max)
        held = {i for i in range(store.n_episodes) if shard.arrays.resident[slice(*store.episode_bounds(i))].all()}
        assert held == set(shard.episodes) | set(val.episodes)  # nothing else was loaded
        b = shard.__getitems__([3])  # the first episode of the share, anchor step 3
        s, _ = store.episode_bounds(shard.episodes[0])
        np.testing.assert_allclose(shard.normalizer.unnormalize("agent_pos", b["obs.agent_pos"][0].numpy()),
                                   store.read("agent_pos", s + 2, s + 4), atol=1e-6)
    other = next(i for i in shards[1].episodes)
    with pytest.raises(IndexError, match="outside the resident episodes"):
        shards[0].arrays.gather("action", np.array([store.episode_bounds(other)[0]]))
    with pytest.raises(ValueError, match="cannot give every one of 40 ranks"):
        make_datasets(str(synth_store), cfg, progress=False, shard=(39, 40))
