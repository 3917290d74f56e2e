"""The real PushT demonstrations (Diffusion Policy Zarr v2 zip) through our data layer."""

from __future__ import annotations

import json

import numpy as np
import torch

from df_policy.cli import main as dfp
from df_policy.data.dataset import DatasetConfig, make_datasets
from df_policy.data.legacy import ReplayBufferReader
from df_policy.data.ops import validate_store
from df_policy.data.store import EpisodeStore


def test_info_reports_the_pusht_demos(pusht_zip, capsys):
    assert dfp(["data", "info", str(pusht_zip), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 186 and info["steps"] == 22972
    assert info["keys"]["img"] == {"kind": "image", "shape": [96, 96, 3], "dtype": "uint8", "unit": "rgb"}
    assert info["keys"]["action"]["kind"] == "action"


def test_conversion_is_valid_and_identical(pusht_zip, pusht_store):
    src = ReplayBufferReader(pusht_zip)
    dst = EpisodeStore.open(pusht_store)
    assert dst.schema.fps == 10 and dst.n_episodes == 186
    np.testing.assert_array_equal(dst.episode_ends, src.episode_ends)
    for key in src.schema.keys:
        a, b = dst.read(key), src.read(key)
        assert a.dtype == b.dtype and np.array_equal(a, b), key
    raw = np.asarray(src.array("img")[:50])  # float32 0..255 in the source
    assert np.array_equal(raw, dst.read("img", 0, 50).astype(np.float32))
    assert validate_store(pusht_store) == []


def test_pusht_training_batch(pusht_store):
    cfg = DatasetConfig(lowdim_keys=["state"], n_obs_steps=2, horizon=16, crop_shape=(84, 84))
    train, val = make_datasets(str(pusht_store), cfg, progress=False)
    assert len(train.episodes) + len(val.episodes) == 186
    b = train.__getitems__(np.arange(0, len(train), 97).tolist())
    assert b["obs.img"].shape[1:] == (2, 3, 84, 84)
    assert b["action"].abs().max() <= 1.0 + 1e-5 and torch.isfinite(b["obs.state"]).all()
