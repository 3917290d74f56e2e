"""Low-dim feature encodings (angles as cos/sin, planar poses as keypoints): geometry, the PushT
keypoints against Diffusion Policy's own array, training/runtime parity, errors."""

from __future__ import annotations

import numpy as np
import pytest

from df_policy.data.dataset import DatasetConfig, make_datasets
from df_policy.data.features import (LowdimFeatures, check_angle_dims, check_pose_keypoints, encode_angles,
                                     encode_pose_keypoints, encoded_dim)
from df_policy.data.store import EpisodeStore
from df_policy.model.policy import DiffusionForcingConfig
from df_policy.runtime.preprocess import ObservationError, Preprocessor


def test_an_angle_becomes_cos_sin_and_is_continuous_across_the_seam():
    # PushT's state: agent x, y, block x, y, angle in [0, 2π)
    a = np.array([[10.0, 20.0, 30.0, 40.0, 2 * np.pi - 1e-4], [10.0, 20.0, 30.0, 40.0, 1e-4]], np.float32)
    out = encode_angles(a, [4])
    assert out.shape == (2, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :4], a[:, :4])
    np.testing.assert_allclose(out[:, 4], np.cos(a[:, 4]), rtol=1e-6)
    np.testing.assert_allclose(out[:, 5], np.sin(a[:, 4]), atol=1e-6)
    # the two poses are the same physical angle: 2π apart raw, 2e-4 apart encoded
    assert abs(a[0, 4] - a[1, 4]) > 6.0 and np.abs(out[0] - out[1]).max() < 1e-3
    # several angles: the others in order, then the cosines, then the sines, angles in the order given
    two = encode_angles(np.array([0.0, 5.0, np.pi / 2]), [2, 0])
    np.testing.assert_allclose(two, [5.0, 0.0, 1.0, 1.0, 0.0], atol=1e-12)
    assert encode_angles(a, []) is a and encoded_dim(5, [4]) == 6


def test_bad_angle_dims_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="distinct dimension indices"):
        check_angle_dims({"state": [4, 4]})
    with pytest.raises(ValueError, match="distinct dimension indices"):
        check_angle_dims({"state": [-1]})
    with pytest.raises(ValueError, match="out of range for a 5-dimensional key"):
        encode_angles(np.zeros((3, 5)), [5])
    assert check_angle_dims({"state": 4}) == {"state": [4]}


def _preprocessor(train, cfg: DatasetConfig) -> Preprocessor:
    policy_cfg = DiffusionForcingConfig(lowdim_shapes={k: train.lowdim_dim(k) for k in train.lowdim_keys},
                                        action_dim=2, n_obs_steps=cfg.n_obs_steps, horizon=cfg.horizon)
    return Preprocessor(policy_cfg, train.normalizer, train.action_key, None, cfg.derived_keys, cfg.angle_dims)


def test_training_batches_and_the_runtime_encode_the_same_features(synth_store):
    cfg = DatasetConfig(lowdim_keys=["agent_pos"], angle_dims={"agent_pos": [1]}, crop_shape=None,
                        val_ratio=0.2, horizon=16)
    train, _ = make_datasets(str(synth_store), cfg, progress=False)
    assert train.lowdim_dim("agent_pos") == 3 and train.schema.keys["agent_pos"].shape == (2,)  # store stays raw
    batch = train.__getitems__([5])
    assert batch["obs.agent_pos"].shape == (1, 2, 3)
    store = EpisodeStore.open(synth_store)
    s, _ = store.episode_bounds(train.episodes[0])
    raw = store.read("agent_pos", s + 4, s + 6)  # the window of anchor 5 (To = 2)
    pre = _preprocessor(train, cfg)
    runtime = np.stack([pre.observation({"agent_pos": r})["obs.agent_pos"] for r in raw])
    np.testing.assert_allclose(batch["obs.agent_pos"][0].numpy(), runtime, atol=1e-6)
    # the normaliser was fitted on the encoded features: cos and sin stay within [-1, 1]
    assert train.normalizer.stats["agent_pos"].min.shape == (3,)
    with pytest.raises(ObservationError, match="must have 2 values"):
        pre.observation({"agent_pos": np.zeros(3)})


def test_angle_dims_must_name_a_lowdim_input_that_has_the_dimension(synth_store):
    with pytest.raises(ValueError, match="not a low-dim input"):
        make_datasets(str(synth_store), DatasetConfig(lowdim_keys=["agent_pos"], angle_dims={"state": [0]},
                                                      crop_shape=None), progress=False)
    with pytest.raises(ValueError, match=r"angle_dims\['agent_pos'\].*out of range"):
        make_datasets(str(synth_store), DatasetConfig(lowdim_keys=["agent_pos"], angle_dims={"agent_pos": [2]},
                                                      crop_shape=None), progress=False)


@pytest.mark.parametrize("cache", ["ram", "stream"])
def test_images_resized_on_load_match_what_the_runtime_feeds(synth_store, cache):
    """resize_shape: frames are resized once on load (RAM holds the small frames) and the runtime
    resizes raw camera frames with the same function, so training and serving see the same pixels."""
    from df_policy.data.augment import center_crop, resize

    cfg = DatasetConfig(image_keys=["image"], lowdim_keys=["agent_pos"], resize_shape=(40, 48), crop_shape=(36, 40),
                        val_ratio=0.2, horizon=16, cache=cache)
    train, val = make_datasets(str(synth_store), cfg, progress=False)
    if cache == "ram":
        assert train.arrays.ram["image"].shape[1:] == (40, 48, 3)  # the 32x32 frames, resized
    b = val.__getitems__([5])
    assert b["obs.image"].shape == (1, 2, 3, 36, 40)
    store = EpisodeStore.open(synth_store)
    s, _ = store.episode_bounds(val.episodes[0])
    raw = store.read("image", s + 4, s + 6)  # the window of anchor 5, full-size frames
    expected = center_crop(resize(raw, (40, 48)), (36, 40)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(b["obs.image"][0].numpy(), expected)
    policy_cfg = DiffusionForcingConfig(image_shapes={"image": (3, 36, 40)}, lowdim_shapes={"agent_pos": 2},
                                        action_dim=2, n_obs_steps=2, horizon=16)
    pre = Preprocessor(policy_cfg, val.normalizer, "action", cfg.crop_shape, resize_shape=cfg.resize_shape)
    for t in range(2):
        out = pre.observation({"image": raw[t], "agent_pos": store.read("agent_pos", s + 4 + t, s + 5 + t)[0]})
        np.testing.assert_array_equal(out["obs.image"], expected[t])
    with pytest.raises(ValueError, match="does not fit resize_shape"):
        DatasetConfig(resize_shape=(16, 16), crop_shape=(20, 20))


def _pusht_keypoints() -> dict:
    from df_policy.training.config import load_run_config

    return load_run_config("pusht_state_keypoints_cpu").dataset.pose_keypoints


def test_a_pose_becomes_the_world_coordinates_of_its_body_points():
    # state (a, x, y, θ, b): a body at (10, 20) turned a quarter turn counter-clockwise
    x = np.array([[7.0, 10.0, 20.0, np.pi / 2, 8.0]], np.float32)
    out = encode_pose_keypoints(x, [1, 2, 3], [[1.0, 0.0], [0.0, 2.0]])
    assert out.shape == (1, 6) and out.dtype == np.float32
    # the other dims first, then (1, 0) -> (10, 21) and (0, 2) -> (8, 20)
    np.testing.assert_allclose(out[0], [7.0, 8.0, 10.0, 21.0, 8.0, 20.0], atol=1e-5)
    # a full turn is the same pose: the features do not jump at the angle's seam
    a, b = x.copy(), x.copy()
    a[0, 3], b[0, 3] = 2 * np.pi - 1e-4, 1e-4
    assert np.abs(encode_pose_keypoints(a, [1, 2, 3], [[1.0, 0.0]]) - encode_pose_keypoints(b, [1, 2, 3], [[1.0, 0.0]])).max() < 1e-3
    f = LowdimFeatures(pose_keypoints={"s": {"pose_dims": [1, 2, 3], "points": [[1, 0], [0, 2]]}})
    assert f.encoded_dim("s", 5) == 6 and f.raw_dim("s", 6) == 5 and f.encode("other", x) is x


def test_the_pusht_keypoints_reproduce_diffusion_policys_keypoint_array(pusht_zip):
    """The 9 body-frame points in pusht_state_keypoints_cpu, moved by each step's block pose,
    are the ``keypoint`` array that Diffusion Policy recorded beside the state (every step of
    the 186 demonstrations, to 2.5 units of the 512-unit workspace; 0.03 units typical)."""
    import zarr

    group = zarr.open_group(zarr.storage.ZipStore(str(pusht_zip), mode="r"), mode="r")
    state, keypoint = group["data/state"][:], group["data/keypoint"][:]
    spec = _pusht_keypoints()["state"]
    assert spec["pose_dims"] == [2, 3, 4] and len(spec["points"]) == 9
    out = encode_pose_keypoints(state, spec["pose_dims"], spec["points"])
    np.testing.assert_allclose(out[:, :2], state[:, :2])  # the agent's position is kept
    err = np.abs(out[:, 2:] - keypoint.reshape(len(keypoint), 18))
    assert err.max() < 2.5 and np.median(err) < 0.1, (err.max(), np.median(err))


def test_training_batches_and_the_runtime_encode_the_same_keypoints(pusht_zip):
    cfg = DatasetConfig(image_keys=[], lowdim_keys=["state"], pose_keypoints=_pusht_keypoints(), crop_shape=None,
                        val_ratio=0.05, fps=10, horizon=16)
    train, val = make_datasets(str(pusht_zip), cfg, progress=False)
    assert train.lowdim_dim("state") == 2 + 18 and train.schema.keys["state"].shape == (5,)
    batch = val.__getitems__([7])
    assert batch["obs.state"].shape == (1, 2, 20)
    policy_cfg = DiffusionForcingConfig(lowdim_shapes={"state": 20}, action_dim=2, n_obs_steps=2, horizon=16)
    pre = Preprocessor(policy_cfg, train.normalizer, train.action_key, None, pose_keypoints=cfg.pose_keypoints)
    import zarr

    steps, _ = val.index.obs_indices(np.array([7]))  # global steps of the sample's observations
    raw = zarr.open_group(zarr.storage.ZipStore(str(pusht_zip), mode="r"), mode="r")["data/state"][:][steps[0]]
    runtime = np.stack([pre.observation({"state": r})["obs.state"] for r in raw])
    np.testing.assert_allclose(batch["obs.state"][0].numpy(), runtime, atol=1e-5)
    with pytest.raises(ObservationError, match="must have 5 values"):
        pre.observation({"state": np.zeros(20)})


def test_bad_pose_keypoints_are_refused_with_the_reason(synth_store):
    with pytest.raises(ValueError, match="three distinct dimension indices"):
        check_pose_keypoints({"state": {"pose_dims": [2, 3], "points": [[0, 1]]}})
    with pytest.raises(ValueError, match="finite \\[x, y\\] pairs"):
        check_pose_keypoints({"state": {"pose_dims": [2, 3, 4], "points": [[0, 1, 2]]}})
    with pytest.raises(ValueError, match="exactly 'pose_dims' and 'points'"):
        check_pose_keypoints({"state": {"pose_dims": [2, 3, 4]}})
    with pytest.raises(ValueError, match="a key takes one encoding"):
        DatasetConfig(angle_dims={"state": [4]}, pose_keypoints={"state": {"pose_dims": [2, 3, 4], "points": [[0, 1]]}})
    with pytest.raises(ValueError, match=r"pose_keypoints\['agent_pos'\].*out of range for a 2-dimensional key"):
        make_datasets(str(synth_store), DatasetConfig(lowdim_keys=["agent_pos"], crop_shape=None,
                                                      pose_keypoints={"agent_pos": {"pose_dims": [0, 1, 2],
                                                                                    "points": [[0, 1]]}}),
                      progress=False)
