"""Causal denoiser: time-causal attention, per-token levels, null observations, any horizon."""

import pytest
import torch

from df_policy.model.denoiser import CausalDenoiser, DenoiserConfig, causal_time_mask


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _model(actions_per_token: int = 1) -> CausalDenoiser:
    torch.manual_seed(0)
    model = CausalDenoiser(DenoiserConfig(d_model=32, n_layers=2, n_heads=2), action_dim=3, obs_dim=5,
                           actions_per_token=actions_per_token, num_levels=100)
    for block in model.blocks:  # leave adaLN-Zero's identity init so every path is exercised
        torch.nn.init.normal_(block.modulation[1].weight, std=0.3)
        torch.nn.init.normal_(block.modulation[1].bias, std=0.3)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    return model.eval()


def _inputs(B: int = 2, T: int = 6, To: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, 3, generator=g), torch.randint(0, 101, (B, T), generator=g),
            torch.randn(B, To, 5, generator=g))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per action index, max |a - b| over batch and action dims."""
    return (a - b).abs().amax(dim=(0, 2))


def test_mask_follows_time_not_position() -> None:
    mask = causal_time_mask(torch.arange(2), torch.arange(3) * 2)  # obs at 0,1; tokens at 0,2,4
    assert mask[:2, :2].tolist() == [[True, False], [True, True]]
    assert not mask[:2, 2:].any(), "observations never attend to actions"
    assert mask[2:, :2].tolist() == [[True, False], [True, True], [True, True]]
    assert mask[2:, 2:].tolist() == [[True, False, False], [True, True, False], [True, True, True]]


@torch.no_grad()
def test_future_observation_only_affects_later_tokens() -> None:
    model = _model()
    x, levels, obs = _inputs()
    base = model(x, levels, obs)
    changed = obs.clone()
    changed[:, 2] += 3.0  # observation at time 2
    diff = _max_diff(model(x, levels, changed), base)
    assert (diff[:2] < 1e-6).all(), "actions at times 0, 1 must not see observation 2"
    assert (diff[2:] > 1e-3).all(), "actions at times >= 2 must see observation 2"
    missing = torch.zeros(2, 3, dtype=torch.bool)
    missing[:, 2] = True  # a missing step is the learned null embedding, also causal
    diff = _max_diff(model(x, levels, obs, missing), base)
    assert (diff[:2] < 1e-6).all() and (diff[2:] > 1e-3).all()


@torch.no_grad()
def test_future_action_token_and_its_level_only_affect_later_tokens() -> None:
    model = _model()
    x, levels, obs = _inputs()
    base = model(x, levels, obs)
    x2 = x.clone()
    x2[:, 3] += 2.0
    diff = _max_diff(model(x2, levels, obs), base)
    assert (diff[:3] < 1e-6).all() and (diff[3:] > 1e-3).all()
    levels2 = levels.clone()
    levels2[:, 4] = (levels2[:, 4] + 50) % 101
    diff = _max_diff(model(x, levels2, obs), base)
    assert (diff[:4] < 1e-6).all() and (diff[4:] > 1e-3).all()


@torch.no_grad()
def test_grouped_tokens_are_causal_per_token() -> None:
    model = _model(actions_per_token=2)  # tokens at times 0, 2, 4 covering actions (0,1), (2,3), (4,5)
    x, _, obs = _inputs()
    levels = torch.randint(0, 101, (2, 3), generator=torch.Generator().manual_seed(3))
    base = model(x, levels, obs)
    changed = obs.clone()
    changed[:, 1] -= 2.0  # observation 1 is after token 0's time (0) but before token 1's (2)
    diff = _max_diff(model(x, levels, changed), base)
    assert (diff[:2] < 1e-6).all() and (diff[2:] > 1e-3).all()


@torch.no_grad()
def test_horizon_not_fixed_and_prefix_consistent() -> None:
    model = _model()
    x, levels, obs = _inputs(T=6)
    long_x = torch.cat([x, torch.randn(2, 14, 3)], dim=1)
    long_levels = torch.cat([levels, torch.full((2, 14), 100)], dim=1)
    out_long = model(long_x, long_levels, obs)
    assert out_long.shape == (2, 20, 3)
    torch.testing.assert_close(out_long[:, :6], model(x, levels, obs), atol=1e-5, rtol=0)


def test_level_tables_in_a_large_training_batch_are_the_per_token_function_with_its_gradients() -> None:
    """A training batch with more action tokens than levels gathers from per-level tables;
    output and every parameter gradient must equal running the level MLP and modulations per token."""
    model = _model().train()
    noisy, _, obs = _inputs(B=24, T=6)  # 144 action tokens > 101 levels: the table path
    levels = torch.randint(0, 101, (24, 6), generator=torch.Generator().manual_seed(3))
    assert 24 * 6 > model.num_levels + 1

    def run(force_per_token: bool):
        model.zero_grad()
        if force_per_token:  # the same batch in slices small enough for the per-token path
            out = torch.cat([model(noisy[i:i + 4], levels[i:i + 4], obs[i:i + 4]) for i in range(0, 24, 4)])
        else:
            out = model(noisy, levels, obs)
        (out ** 2).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out_tab, grads_tab = run(False)
    out_tok, grads_tok = run(True)
    torch.testing.assert_close(out_tab, out_tok, atol=1e-5, rtol=1e-5)
    assert grads_tab.keys() == grads_tok.keys() and "blocks.0.modulation.1.weight" in grads_tab
    for name in grads_tok:
        torch.testing.assert_close(grads_tab[name], grads_tok[name], atol=1e-4, rtol=1e-4, msg=name)
