"""Training level patterns (uniform / stream / shared), context treatment and the future-attention mask."""

from __future__ import annotations

import pytest
import torch

from df_policy.model.denoiser import CausalDenoiser, DenoiserConfig, causal_time_mask
from df_policy.model.level_sampling import LEVEL_PATTERNS, LevelSamplingConfig, sample_levels

K, N, C = 1000, 16, 1


def draw(mixture, n=4000, **kw):
    cfg = LevelSamplingConfig(mixture=mixture, **kw)
    return sample_levels(cfg, n, N, C, K, torch.Generator().manual_seed(0))


def test_mixture_frequencies_and_range():
    levels, pattern = draw({"uniform": 1, "stream": 2, "shared": 1}, n=20000)
    assert levels.shape == (20000, N) and levels.dtype == torch.int64
    assert int(levels.min()) >= 0 and int(levels.max()) <= K
    freq = torch.bincount(pattern, minlength=3).float() / 20000
    assert freq.tolist() == pytest.approx([0.25, 0.5, 0.25], abs=0.02)


def test_uniform_is_independent_uniform():
    levels, _ = draw({"uniform": 1.0}, n=20000)
    assert levels.float().mean().item() == pytest.approx(K / 2, rel=0.02)
    # neighbouring tokens uncorrelated
    a, b = levels[:, 3].float(), levels[:, 4].float()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.03


def test_stream_pattern_is_a_ramp_after_a_clean_prefix():
    levels, _ = draw({"stream": 1.0}, max_frozen=2, context_levels=(0, 20))
    future = levels[:, C:]
    assert (future[:, 1:] >= future[:, :-1]).all(), "levels must not decrease along the horizon"
    assert (levels[:, :C] <= 20).all()
    # a frozen prefix of 0..2 clean tokens, then a positive level: every length occurs
    frozen = (future == 0).long().cumprod(dim=1).sum(dim=1)
    counts = torch.bincount(frozen, minlength=4).float() / len(frozen)
    assert (counts[:3] > 0.2).all() and counts[3:].sum() < 0.02  # one more only when the phase rounds to 0
    # ramps of every length occur: the far end is pure noise for short ramps, below K for the longest
    assert (future[:, -1] == K).float().mean() > 0.5 and (future[:, -1] < K).any()
    # steady-state steps: consecutive levels differ by about K / R
    steps = future[:, 1:] - future[:, :-1]
    assert (steps <= K).all()


def test_shared_pattern_one_level_for_the_future():
    levels, _ = draw({"shared": 1.0}, max_frozen=1)
    future = levels[:, C:]
    rest = future[:, 1:]
    assert (rest == rest[:, :1]).all()
    head_frozen = future[:, 0] == 0
    assert 0.1 < head_frozen.float().mean() < 0.5  # D > 0 in a quarter of the samples (and level 0 rarely)


def test_context_dropout_masks_the_context():
    levels, _ = draw({"stream": 1.0}, context_dropout=0.3, n=20000)
    dropped = (levels[:, :C] == K).all(dim=1).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.02)
    levels, _ = draw({"stream": 1.0}, context_dropout=0.0)
    assert (levels[:, :C] < K).all()


def test_config_validation():
    with pytest.raises(ValueError, match="unknown pattern"):
        LevelSamplingConfig(mixture={"pyramidd": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        LevelSamplingConfig(mixture={"uniform": 0.0})
    with pytest.raises(ValueError, match="context_dropout"):
        LevelSamplingConfig(context_dropout=1.5)
    with pytest.raises(ValueError, match="context_levels"):
        LevelSamplingConfig(context_levels=(30, 10))
    assert set(LEVEL_PATTERNS) == {"uniform", "stream", "shared"}


def test_policy_uses_the_configured_sampling_and_pads_to_K():
    from df_policy.model.policy import DiffusionForcingConfig, DiffusionForcingPolicy

    cfg = DiffusionForcingConfig(lowdim_shapes={"state": 5}, action_dim=2, horizon=8, n_action_steps=4,
                                 level_sampling={"mixture": {"shared": 1.0}, "max_frozen": 0},
                                 denoiser={"d_model": 32, "n_layers": 1, "n_heads": 2})
    policy = DiffusionForcingPolicy(cfg)
    pad = torch.zeros(64, 8, dtype=torch.bool)
    pad[:, -2:] = True
    levels = policy.sample_training_levels(pad, torch.Generator().manual_seed(1))
    assert (levels[:, -2:] == cfg.num_train_levels).all()
    assert (levels[:, 1:-2] == levels[:, 1:2]).all()  # one shared level over the future
    # the loss runs with the new sampling, and the config round-trips through a dict
    batch = {"obs.state": torch.randn(4, 2, 5), "action": torch.randn(4, 8, 2)}
    loss, _ = policy.compute_loss(batch)
    assert torch.isfinite(loss)
    again = DiffusionForcingConfig.from_dict(cfg.to_dict())
    assert again.level_sampling == cfg.level_sampling


def test_full_future_attention_mask():
    obs_t, act_t = torch.arange(2), torch.arange(4)  # now = 1; tokens at 0 (past), 1, 2, 3 (future)
    causal = causal_time_mask(obs_t, act_t, "causal")
    full = causal_time_mask(obs_t, act_t, "full")
    a = slice(2, 6)
    assert not causal[a, a][1, 3] and full[a, a][1, 3]  # the head sees the far future only with "full"
    assert not full[a, a][0, 1]                          # the past token stays causal
    assert not full[:2, 2:].any()                        # observations never see actions
    with pytest.raises(ValueError, match="future_attention"):
        DenoiserConfig(future_attention="bidirectional")


def test_full_future_attention_changes_only_future_outputs():
    torch.manual_seed(0)
    cfg = DenoiserConfig(d_model=32, n_layers=2, n_heads=2, future_attention="full")
    net = CausalDenoiser(cfg, action_dim=2, obs_dim=3).eval()
    for block in net.blocks:  # make the blocks non-identity
        torch.nn.init.normal_(block.modulation[1].weight, std=0.1)
    x, lv, obs = torch.randn(1, 6, 2), torch.randint(0, 1000, (1, 6)), torch.randn(1, 2, 3)
    out = net(x, lv, obs)
    x2 = x.clone()
    x2[:, -1] += 1.0  # change the last (future) token only
    out2 = net(x2, lv, obs)
    assert torch.allclose(out[:, 0], out2[:, 0])          # the past token cannot see it
    assert not torch.allclose(out[:, 1], out2[:, 1])      # the head can, with full future attention
