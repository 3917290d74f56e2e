"""The mirror augmentation (dataset.mirror): PushT really is mirror-symmetric in gym-pusht, the
reflection's geometry, mirrored windows in both batch paths, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from df_policy.data.dataset import DatasetConfig, make_datasets
from df_policy.data.device_batches import DeviceBatcher
from df_policy.data.legacy import open_episodes
from df_policy.data.symmetry import IMAGE_OPS, MirrorConfig, PlanarMirror, mirror_images_chw, mirror_images_hwc
from df_policy.training.config import RunConfig, load_run_config

# PushT: the goal T's stem axis, the line through (256, 256) at 3π/4; the T is symmetric about
# its body y axis; state = agent x, y, block x, y, angle in [0, 2π); action = agent target x, y.
# The mirror the shipped config trains with is the one these tests check against the simulator.
PUSHT_MIRROR = {k: v for k, v in load_run_config("pusht_state_keypoints_cpu").dataset.mirror.__dict__.items()
                if k != "prob"}


def test_the_shipped_pusht_mirror_is_the_goal_axis():
    m = MirrorConfig(**PUSHT_MIRROR)
    assert m.line_point == (256.0, 256.0) and m.line_angle == pytest.approx(3 * np.pi / 4)
    assert m.body_axis == pytest.approx(np.pi / 2) and m.angles == {"state": [4]}
    assert m.points == {"state": [[0, 1], [2, 3]], "action": [[0, 1]]} and not m.images


def test_reflection_geometry():
    m = PlanarMirror(MirrorConfig(**PUSHT_MIRROR))
    np.testing.assert_allclose(m.reflect_points([[10.0, 20.0], [256.0, 256.0]]), [[492.0, 502.0], [256.0, 256.0]])
    np.testing.assert_allclose(m.reflect_angles([0.0, np.pi / 4, np.pi]), [np.pi / 2, np.pi / 4, 3 * np.pi / 2])
    state = np.array([[100.0, 400.0, 300.0, 150.0, 5.5], [0.0, 512.0, 256.0, 256.0, np.pi / 4]])
    twice = m.apply("state", m.apply("state", state))
    np.testing.assert_allclose(twice, state, atol=1e-9)  # a reflection is its own inverse
    np.testing.assert_allclose(m.apply("state", state)[1], [0.0, 512.0, 256.0, 256.0, np.pi / 4])  # the goal is fixed
    # the mirrored pose puts the T exactly where the reflected T is (the T's corners, as a set)
    corners = np.array([[-60, 0], [60, 0], [-60, 30], [60, 30], [-15, 30], [15, 30], [-15, 120], [15, 120]], float)

    def world(pose):
        c, s = np.cos(pose[2]), np.sin(pose[2])
        return pose[:2] + corners @ np.array([[c, -s], [s, c]]).T

    for pose in state[:, 2:]:
        mirrored = m.apply("state", np.r_[0.0, 0.0, pose])[2:]
        got, want = world(mirrored), m.reflect_points(world(pose))
        assert np.abs(got[:, None] - want[None]).sum(-1).min(1).max() < 1e-9
    assert m.apply("gripper", np.ones(3)).tolist() == [1.0, 1.0, 1.0]  # keys it does not move pass through
    # free vectors reflect without the line's offset
    vec = PlanarMirror(MirrorConfig(line_point=[5.0, 5.0], line_angle=0.0, vectors={"vel": [[0, 1]]}))
    np.testing.assert_allclose(vec.apply("vel", np.array([2.0, 3.0])), [2.0, -3.0])


def _pusht_env(state, obs_type: str = "state"):
    """gym-pusht at ``state`` (:func:`set_pusht_state`: angle first, since gym-pusht's own
    reset_to_state turns the T by an amount that depends on the previous angle)."""
    import gym_pusht  # noqa: F401
    import gymnasium as gym

    from df_policy.evaluation.sim import set_pusht_state

    env = gym.make("gym_pusht/PushT-v0", obs_type=obs_type)
    env.reset(seed=0)
    set_pusht_state(env, state)
    return env


def _rollout(state, actions):
    env = _pusht_env(state)
    out = [env.step(a) for a in actions]
    env.close()
    return np.array([o[0] for o in out]), np.array([o[4]["coverage"] for o in out])


def test_pusht_is_mirror_symmetric_in_gym_pusht(pusht_zip):
    """A mirrored start state driven by the mirrored demonstration actions gives the mirrored
    trajectory in the real simulator: the augmentation's premise, measured, not assumed."""
    m = PlanarMirror(MirrorConfig(**PUSHT_MIRROR))
    reader = open_episodes(str(pusht_zip), fps=10)
    s, e = reader.episode_bounds(40)  # pushes the T 190 units, away from the walls
    state, action = reader.read("state", s, e).astype(np.float64), reader.read("action", s, e).astype(np.float64)
    traj, cov = _rollout(state[0], action)
    mirror_traj, mirror_cov = _rollout(m.apply("state", state[0]), m.apply("action", action))
    assert np.abs(traj[-1, 2:4] - traj[0, 2:4]).max() > 100  # the T was really pushed
    err = np.abs(m.apply("state", traj)[:, :4] - mirror_traj[:, :4]).max()
    ang = np.abs(np.angle(np.exp(1j * (m.apply("state", traj)[:, 4] - mirror_traj[:, 4])))).max()
    assert err < 1e-6 and ang < 1e-6, (err, ang)
    np.testing.assert_allclose(cov, mirror_cov, atol=1e-9)  # the goal region is mirror-symmetric too
    # against the walls the symmetry holds to about a unit (the walls sit 1 unit off it)
    rng = np.random.default_rng(0)
    wall = np.clip(np.cumsum(rng.normal(0, 15, (200, 2)), 0) + 30, 0, 512)
    start = np.array([30.0, 30.0, 100.0, 120.0, 1.0])
    a, _ = _rollout(start, wall)
    b, _ = _rollout(m.apply("state", start), m.apply("action", wall))
    assert np.abs(m.apply("state", a)[:, :4] - b[:, :4]).max() < 3.0


def test_pusht_camera_sees_the_mirror_as_an_anti_transpose():
    """Re-rendering the mirrored state gives the anti-transposed frame (96x96 pixels observation),
    up to the rasterisation of polygon edges."""
    m = PlanarMirror(MirrorConfig(**PUSHT_MIRROR))

    def frame(state):
        env = _pusht_env(state, "pixels_agent_pos")
        pixels = env.unwrapped.get_obs()["pixels"]
        env.close()
        return pixels.astype(int)

    for state in ([100.0, 400.0, 300.0, 150.0, 5.5], [60.0, 60.0, 200.0, 300.0, 1.0]):
        plain, mirrored = frame(np.array(state)), frame(m.apply("state", np.array(state)))
        diff = np.abs(mirror_images_hwc(plain, "anti_transpose") - mirrored)
        assert diff.mean() < 1.0 and (diff.max(-1) > 30).mean() < 0.01, (diff.mean(), (diff.max(-1) > 30).mean())
        assert np.abs(plain - mirrored).mean() > 3 * diff.mean()  # the scenes do differ
    x = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    for op in IMAGE_OPS:  # each pixel operation is a reflection: its own inverse, same on both layouts
        np.testing.assert_array_equal(mirror_images_hwc(mirror_images_hwc(x, op), op), x)
        chw = mirror_images_chw(torch.as_tensor(x).permute(0, 3, 1, 2), op).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(chw, mirror_images_hwc(x, op))


def test_mirrored_image_windows_in_both_batch_paths(pusht_store):
    mirror = {**PUSHT_MIRROR, "prob": 1.0, "images": {"img": "anti_transpose"}}
    cfg = DatasetConfig(image_keys=["img"], lowdim_keys=["agent_pos"], derived_keys={"agent_pos": "state[0:2]"},
                        crop_shape=(84, 84), val_ratio=0.05, cache="ram", mirror=mirror)
    train, _ = make_datasets(str(pusht_store), cfg, progress=False)
    full, _ = make_datasets(str(pusht_store), DatasetConfig(**{**cfg.__dict__, "crop_shape": None}), progress=False)
    idx = [3, 700]
    host, ref = train.__getitems__(idx), full.__getitems__(idx)  # ref: mirrored whole frames, no crop
    plain = full.arrays.gather("img", full.index.obs_indices(np.asarray(idx))[0])  # (B, To, H, W, C)
    want = torch.as_tensor(np.ascontiguousarray(mirror_images_hwc(plain, "anti_transpose"))).permute(0, 1, 4, 2, 3)
    assert torch.equal(ref["obs.img"], want)
    for b in range(len(idx)):  # every mirrored crop is a window of the mirrored frame
        crop, frame = host["obs.img"][b, -1], want[b, -1]
        assert any(torch.equal(frame[:, y:y + 84, x:x + 84], crop) for y in range(13) for x in range(13))
    dev = DeviceBatcher(full, "cpu")
    torch.testing.assert_close(dev.batch(torch.as_tensor(idx))["obs.img"], want)
    torch.testing.assert_close(dev.batch(torch.as_tensor(idx))["obs.agent_pos"], ref["obs.agent_pos"])


def test_mirrored_windows_in_both_batch_paths(pusht_store):
    cfg = DatasetConfig(image_keys=[], lowdim_keys=["state"], crop_shape=None, val_ratio=0.05, cache="ram",
                        pose_keypoints={"state": {"pose_dims": [2, 3, 4], "points": [[0.0, 0.0], [0.0, 100.0]]}},
                        mirror={**PUSHT_MIRROR, "prob": 1.0})
    train, val = make_datasets(str(pusht_store), cfg, progress=False)
    plain, _ = make_datasets(str(pusht_store), DatasetConfig(**{**cfg.__dict__, "mirror": None}), progress=False)
    idx = [0, 500, len(train) - 1]
    got = train.__getitems__(idx)
    # the expected batch: the raw stored window, mirrored, then encoded and normalised
    m = PlanarMirror(cfg.mirror)
    obs_idx, _ = train.index.obs_indices(np.asarray(idx))
    act_idx, _ = train.index.action_indices(np.asarray(idx))
    raw_state = train.arrays.ram["state"][obs_idx]
    want_obs = train.normalizer.normalize("state", cfg.features.encode("state", m.apply("state", raw_state)))
    want_act = train.normalizer.normalize("action", m.apply("action", train.arrays.ram["action"][act_idx]))
    np.testing.assert_allclose(got["obs.state"].numpy(), want_obs, atol=1e-5)
    np.testing.assert_allclose(got["action"].numpy(), want_act, atol=1e-5)
    # the normaliser was fitted on both: every mirrored and plain training value lies in [-1, 1]
    dev = DeviceBatcher(train, "cpu")
    every = torch.arange(len(dev))
    for batch in (dev.batch(every), dev.batch(every, train=False)):
        assert batch["obs.state"].abs().max() <= 1.0 + 1e-5 and batch["action"].abs().max() <= 1.0 + 1e-5
    # the on-device batcher gives the host loader's batch
    on_device = dev.batch(torch.as_tensor(idx))
    for k in ("obs.state", "action", "obs_is_pad", "action_is_pad"):
        torch.testing.assert_close(on_device[k], got[k], atol=1e-5, rtol=0)
    # validation is never mirrored; neither is the training batch without a mirror
    plain_val = plain.__getitems__(idx)
    assert not torch.allclose(plain_val["action"], got["action"])
    assert val is not None and torch.equal(DeviceBatcher(val, "cpu").batch(torch.as_tensor([0, 1]))["obs_is_pad"],
                                            val.__getitems__([0, 1])["obs_is_pad"])
    # at prob 0.5 about half the windows are mirrored, on both paths
    half_cfg = DatasetConfig(**{**cfg.__dict__, "mirror": {**PUSHT_MIRROR, "prob": 0.5}})
    half, _ = make_datasets(str(pusht_store), half_cfg, progress=False)
    sample = list(range(0, len(half), 7))
    a = half.__getitems__(sample)["action"]
    plain_a = half.normalizer.normalize("action", half.arrays.gather("action", half.index.action_indices(
        np.asarray(sample))[0]))
    host_flipped = np.abs(a.numpy() - plain_a).max(axis=(1, 2)) > 1e-5
    assert 0.4 < host_flipped.mean() < 0.6
    dev_half = DeviceBatcher(half, "cpu")
    flipped = (dev_half.batch(torch.as_tensor(sample), torch.Generator().manual_seed(1))["action"]
               - dev_half.batch(torch.as_tensor(sample), train=False)["action"]).abs().amax(dim=(1, 2)) > 1e-5
    assert 0.4 < flipped.float().mean() < 0.6


def test_mirror_config_is_checked_and_survives_a_run_config_round_trip(pusht_store):
    with pytest.raises(ValueError, match=r"nothing about \['action'\]"):
        make_datasets(str(pusht_store), DatasetConfig(image_keys=[], lowdim_keys=["state"], crop_shape=None,
                                                      mirror={"points": {"state": [[0, 1]]}}), progress=False)
    with pytest.raises(ValueError, match=r"nothing about \['img'\]"):  # a camera must be declared
        make_datasets(str(pusht_store), DatasetConfig(lowdim_keys=["state"], crop_shape=None, mirror=PUSHT_MIRROR),
                      progress=False)
    with pytest.raises(ValueError, match="needs square images"):
        make_datasets(str(pusht_store), DatasetConfig(lowdim_keys=["state"], crop_shape=(84, 80), mirror={
            **PUSHT_MIRROR, "images": {"img": "anti_transpose"}}), progress=False)
    with pytest.raises(ValueError, match="unknown pixel operation"):
        MirrorConfig(**{**PUSHT_MIRROR, "images": {"image": "rotate"}})
    with pytest.raises(ValueError, match="dimension 5 of 'state' is out of range"):
        make_datasets(str(pusht_store), DatasetConfig(image_keys=[], lowdim_keys=["state"], crop_shape=None, mirror={
            **PUSHT_MIRROR, "angles": {"state": [5]}}), progress=False)
    with pytest.raises(ValueError, match="prob"):
        MirrorConfig(**{**PUSHT_MIRROR, "prob": 0.0})
    with pytest.raises(ValueError, match="listed twice"):
        MirrorConfig(points={"state": [[0, 1], [1, 2]]})
    with pytest.raises(ValueError, match="both moved and listed as unchanged"):
        MirrorConfig(points={"state": [[0, 1]]}, unchanged=["state"])
    with pytest.raises(ValueError, match="unexpected keyword"):
        DatasetConfig(mirror={**PUSHT_MIRROR, "axis": 1.0})
    # a derived key is mirrored through the stored key it slices
    cfg = DatasetConfig(image_keys=[], lowdim_keys=["agent_pos"], derived_keys={"agent_pos": "state[0:2]"},
                        crop_shape=None, cache="ram", mirror={**PUSHT_MIRROR, "prob": 1.0})
    train, _ = make_datasets(str(pusht_store), cfg, progress=False)
    obs_idx, _ = train.index.obs_indices(np.asarray([10]))
    raw = train.arrays.ram["state"][obs_idx][..., :2]
    want = train.normalizer.normalize("agent_pos", PlanarMirror(cfg.mirror).reflect_points(raw))
    np.testing.assert_allclose(train.__getitems__([10])["obs.agent_pos"].numpy(), want, atol=1e-5)
    run = RunConfig(dataset=cfg)
    again = RunConfig.from_dict(run.to_dict())
    assert again.dataset.mirror == cfg.mirror and isinstance(again.dataset.mirror, MirrorConfig)
