"""DiffusionForcingPolicy: per-token levels, padding, dropout, sampler, guidance, queue API."""

from unittest import mock

import numpy as np
import pytest
import torch

from df_policy.model import DenoiserConfig, DiffusionForcingConfig, DiffusionForcingPolicy, VisionEncoderConfig
from df_policy.model.schedules import full_sequence, pyramid

K = 1000


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def tiny_config(**overrides) -> DiffusionForcingConfig:
    kwargs = dict(
        image_shapes={"cam": (3, 32, 32)}, lowdim_shapes={"state": 3}, action_dim=2, n_obs_steps=2, horizon=8,
        n_action_steps=4, num_train_levels=K, num_sampling_steps=4, lowdim_embed_dim=16,
        vision=VisionEncoderConfig(out_dim=16, num_keypoints=4, width=4),
        denoiser=DenoiserConfig(d_model=32, n_layers=2, n_heads=2),
    )
    kwargs.update(overrides)
    return DiffusionForcingConfig(**kwargs)


def tiny_policy(**overrides) -> DiffusionForcingPolicy:
    torch.manual_seed(0)
    policy = DiffusionForcingPolicy(tiny_config(**overrides))
    for block in policy.denoiser.blocks:  # move off adaLN-Zero's identity init so outputs vary
        torch.nn.init.normal_(block.modulation[1].weight, std=0.2)
    torch.nn.init.normal_(policy.denoiser.head.weight, std=0.5)
    return policy


def make_batch(B: int = 4, To: int = 2, Tp: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs.cam": torch.randint(0, 256, (B, To, 3, 32, 32), dtype=torch.uint8, generator=g),
        "obs.state": torch.rand(B, To, 3, generator=g) * 2 - 1,
        "obs_is_pad": torch.zeros(B, To, dtype=torch.bool),
        "action": torch.rand(B, Tp, 2, generator=g) * 2 - 1,
        "action_is_pad": torch.zeros(B, Tp, dtype=torch.bool),
    }


def _capture_levels(policy: DiffusionForcingPolicy) -> tuple[list[torch.Tensor], mock._patch]:
    captured: list[torch.Tensor] = []
    original = policy.sample_training_levels

    def spy(token_pad, generator=None):
        levels = original(token_pad, generator)
        captured.append(levels)
        return levels

    return captured, mock.patch.object(policy, "sample_training_levels", side_effect=spy)


def test_training_levels_are_independent_per_token() -> None:
    policy = tiny_policy()
    levels = policy.sample_training_levels(torch.zeros(4000, 8, dtype=torch.bool), torch.Generator().manual_seed(0))
    assert levels.dtype == torch.int64 and levels.min() == 0 and levels.max() == K
    values = levels.double()
    mean, var = values.mean(0), values.var(0)
    assert ((mean - K / 2).abs() < 15).all()
    assert ((var / ((K + 1) ** 2 - 1) * 12 - 1).abs() < 0.06).all(), "uniform over 0..K per token"
    corr = torch.corrcoef(values.T)
    off_diagonal = corr[~torch.eye(8, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.06, "tokens of a sample must be drawn independently"
    assert (levels.unique(dim=1).shape[1] > 1) and (levels.max(1).values != levels.min(1).values).all()

    captured, patch = _capture_levels(policy)
    with patch:
        policy.compute_loss(make_batch(B=4), generator=torch.Generator().manual_seed(1))
    (used,) = captured
    assert used.shape == (4, 8)
    assert all(len(set(row.tolist())) >= 6 for row in used), "compute_loss must use per-token levels"


def test_padded_tokens_get_full_noise_and_no_loss() -> None:
    policy = tiny_policy(actions_per_token=2, history_dropout_prob=0.0, unconditional_prob=0.0)
    batch = make_batch(B=3)
    batch["action_is_pad"][0, 5:] = True  # tokens 2 (actions 4,5 partly padded) and 3
    batch["action_is_pad"][1, 7] = True  # token 3
    token_pad = torch.tensor([[False, False, True, True], [False, False, False, True], [False] * 4])

    def loss_with(actions: torch.Tensor):
        b = dict(batch, action=actions)
        captured, patch = _capture_levels(policy)
        with patch:
            loss, info = policy.compute_loss(b, generator=torch.Generator().manual_seed(7))
        return loss, info, captured[0]

    loss, info, levels = loss_with(batch["action"])
    assert (levels[token_pad] == K).all() and (levels[~token_pad] < K).any()
    assert info["valid_token_frac"] == pytest.approx(9 / 12)
    garbage = batch["action"].clone()
    garbage[batch["action_is_pad"]] = float("nan")
    garbage[0, 4] = 1e6  # unpadded action inside a padded token
    loss2, _, _ = loss_with(garbage)
    assert torch.isfinite(loss2) and torch.equal(loss, loss2), "padded targets must not influence the loss"

    actions = batch["action"].clone().requires_grad_(True)
    outputs = []

    def keep_output(module, inputs, output) -> None:
        output.retain_grad()
        outputs.append(output)

    handle = policy.denoiser.register_forward_hook(keep_output)
    loss3, _, _ = loss_with(actions)
    handle.remove()
    loss3.backward()
    pad_actions = token_pad.repeat_interleave(2, dim=1)
    assert (actions.grad[pad_actions] == 0).all() and (actions.grad[~pad_actions] != 0).any()
    v_grad = outputs[0].grad
    assert (v_grad[pad_actions] == 0).all() and (v_grad[~pad_actions] != 0).all()


def test_padded_observation_steps_are_ignored() -> None:
    policy = tiny_policy(history_dropout_prob=0.0, unconditional_prob=0.0)
    batch = make_batch(B=2)
    batch["obs_is_pad"][:, 0] = True
    loss, _ = policy.compute_loss(batch, generator=torch.Generator().manual_seed(0))
    garbage = dict(batch)
    garbage["obs.state"] = batch["obs.state"].clone()
    garbage["obs.state"][:, 0] = float("nan")
    garbage["obs.cam"] = batch["obs.cam"].clone()
    garbage["obs.cam"][:, 0] = 255 - garbage["obs.cam"][:, 0]
    loss2, _ = policy.compute_loss(garbage, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss, loss2)
    loss2.backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


def test_history_dropout_modes_and_rates() -> None:
    policy = tiny_policy(history_dropout_prob=1.0, unconditional_prob=0.0)
    none_missing = torch.zeros(5, 3, dtype=torch.bool)
    assert policy.apply_history_dropout(none_missing).tolist() == [[True, True, False]] * 5
    policy.config.history_dropout_prob, policy.config.unconditional_prob = 0.0, 1.0
    assert policy.apply_history_dropout(none_missing).all()
    policy.config.history_dropout_prob, policy.config.unconditional_prob = 0.3, 0.2
    out = policy.apply_history_dropout(torch.zeros(4000, 3, dtype=torch.bool), torch.Generator().manual_seed(0))
    dropped_all = out.all(1).float().mean().item()
    dropped_history = (out[:, :2].all(1) & ~out[:, 2]).float().mean().item()
    assert abs(dropped_all - 0.2) < 0.03 and abs(dropped_history - 0.3) < 0.03
    assert not (out[:, 0] ^ out[:, 1]).any(), "history is dropped as a whole"
    pad = torch.tensor([[True, False, False]])  # obs_is_pad is never un-masked
    policy.config.history_dropout_prob, policy.config.unconditional_prob = 0.0, 0.0
    assert policy.apply_history_dropout(pad).tolist() == [[True, False, False]]

    policy = tiny_policy(history_dropout_prob=0.5, unconditional_prob=0.5)
    _, info = policy.compute_loss(make_batch(B=8), generator=torch.Generator().manual_seed(0))
    assert info["obs_dropped_frac"] > 0.4
    policy.eval()
    _, info = policy.compute_loss(make_batch(B=8), generator=torch.Generator().manual_seed(0))
    assert info["obs_dropped_frac"] == 0.0, "no dropout in eval mode"
    assert any(key.startswith("v_mse/levels_") for key in info) and np.isfinite(info["loss"])


def test_denoise_step_moves_each_token_to_its_own_level() -> None:
    policy = tiny_policy().eval()
    batch = make_batch(B=2)
    x = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(0))
    from_levels = torch.tensor([[1000, 1000, 800, 800, 500, 20, 0, 0]] * 2)
    to_levels = torch.tensor([[1000, 750, 800, 0, 250, 20, 0, 0]] * 2)
    out = policy.denoise_step(x, from_levels, to_levels, batch)
    same = from_levels == to_levels
    assert torch.equal(out[same], x[same])
    assert ((out - x).abs().amax(-1)[~same] > 1e-4).all()


def test_sample_runs_any_schedule_and_is_reproducible() -> None:
    policy = tiny_policy().eval()
    batch = make_batch(B=2)
    for schedule in (None, full_sequence(8, 4), pyramid(12, 4, 2.0)):
        out = policy.sample(batch, schedule, generator=torch.Generator().manual_seed(0))
        n_tokens = 8 if schedule is None else schedule.shape[1]
        assert out.shape == (2, n_tokens, 2) and torch.isfinite(out).all()
    a = policy.sample(batch, generator=torch.Generator().manual_seed(5))
    b = policy.sample(batch, generator=torch.Generator().manual_seed(5), history_guidance=0.0)
    c = policy.sample(batch, generator=torch.Generator().manual_seed(5), history_guidance=1.5)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-4), "history guidance must change the result"
    with pytest.raises(ValueError):
        policy.sample(batch, np.array([[4, 4], [4, 4], [0, 0]]))


def test_context_tokens_are_kept_and_condition_the_rest() -> None:
    policy = tiny_policy().eval()
    batch = make_batch(B=2)
    context = torch.rand(2, 8, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :3] = True
    out = policy.sample(batch, context_actions=context, context_mask=mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :3], context[:, :3])
    other = context.clone()
    other[:, :3] += 0.5
    out2 = policy.sample(batch, context_actions=other, context_mask=mask, generator=torch.Generator().manual_seed(0))
    assert ((out2[:, 3:] - out[:, 3:]).abs().amax(-1) > 1e-4).all(), "context must condition later tokens"
    clean = policy.sample(batch, context_actions=context, context_mask=mask, stabilization_level=0,
                          generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(clean[:, 3:], out[:, 3:], atol=1e-5), "stabilisation level must be used"
    policy_tok = tiny_policy(actions_per_token=2).eval()
    bad = torch.zeros(2, 8, dtype=torch.bool)
    bad[:, 0] = True  # half a token
    with pytest.raises(ValueError, match="whole tokens"):
        policy_tok.sample(batch, context_actions=context, context_mask=bad)


def test_cost_guidance_and_monte_carlo_reduce_cost() -> None:
    policy = tiny_policy().eval()
    batch = make_batch(B=2)

    def cost(actions: torch.Tensor) -> torch.Tensor:  # (B, Tp, Da) -> (B,): first action dim -> 0.6
        return ((actions[..., 0] - 0.6) ** 2).sum(-1)

    plain = policy.sample(batch, generator=torch.Generator().manual_seed(0))
    guided = policy.sample(batch, cost_fn=cost, cost_scale=0.2, generator=torch.Generator().manual_seed(0))
    assert (cost(guided) < 0.5 * cost(plain)).all()

    best, samples, costs = policy.monte_carlo_guidance(
        batch, 6, cost, generator=torch.Generator().manual_seed(0), return_all=True
    )
    assert best.shape == (2, 8, 2) and samples.shape == (2, 6, 8, 2) and costs.shape == (2, 6)
    for b in range(2):
        assert torch.equal(best[b], samples[b, costs[b].argmin()])
        assert costs[b].min() < costs[b].max()


def test_select_action_queue_and_single_frame_history() -> None:
    policy = tiny_policy().eval()
    batch = make_batch(B=2)
    window = {k: v for k, v in batch.items() if k.startswith("obs")}
    with mock.patch.object(policy, "sample", wraps=policy.sample) as spy:
        chunk = policy.predict_action_chunk(window, generator=torch.Generator().manual_seed(0))
        policy.reset()
        actions = [policy.select_action(window, generator=torch.Generator().manual_seed(0)) for _ in range(5)]
        assert spy.call_count == 3, "one sample for the chunk, one per n_action_steps=4 actions"
    assert chunk.shape == (2, 8, 2) and actions[0].shape == (2, 2)
    for i in range(4):  # queued actions start at index To - 1 = 1
        assert torch.equal(actions[i], chunk[:, 1 + i])

    policy.reset()
    frame = {"obs.cam": batch["obs.cam"][:, 1], "obs.state": batch["obs.state"][:, 1]}
    seen = []
    original = policy.sample

    def recording_sample(obs, **kwargs):
        seen.append(obs)
        return original(obs, **kwargs)

    with mock.patch.object(policy, "sample", side_effect=recording_sample):
        policy.select_action(frame)
        for _ in range(4):
            policy.select_action(frame)
    first, second = seen
    assert first["obs_is_pad"].tolist() == [[True, False]] * 2, "missing history is flagged, not repeated"
    assert second["obs_is_pad"].tolist() == [[False, False]] * 2
    assert torch.equal(second["obs.cam"][:, 1], frame["obs.cam"])


def test_config_validation_and_round_trip() -> None:
    cfg = tiny_config(actions_per_token=2)
    again = DiffusionForcingConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.n_tokens == 4
    with pytest.raises(ValueError, match="multiple of actions_per_token"):
        tiny_config(actions_per_token=3)
    with pytest.raises(ValueError, match="exceeds horizon"):
        tiny_config(n_action_steps=8)
    with pytest.raises(ValueError, match="at least one"):
        tiny_config(image_shapes={}, lowdim_shapes={})
    with pytest.raises(ValueError, match="image 'cam'"):
        tiny_config(image_shapes={"cam": (3, 16, 16)})
    with pytest.raises(ValueError, match="must be <= 1"):
        tiny_config(history_dropout_prob=0.7, unconditional_prob=0.5)
