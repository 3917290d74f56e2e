"""NoiseSchedule: cosine levels, v-prediction algebra, per-token DDIM, min-SNR weights."""

import pytest
import torch

from df_policy.model.noise import NoiseSchedule


@pytest.fixture(scope="module")
def sched() -> NoiseSchedule:
    return NoiseSchedule(1000)


def test_endpoints_are_exact(sched: NoiseSchedule) -> None:
    assert sched.alpha_bar[0].item() == 1.0
    assert sched.alpha_bar[-1].item() == 0.0
    assert len(sched.alpha_bar) == 1001
    assert bool((sched.alpha_bar[1:] < sched.alpha_bar[:-1]).all()), "alpha_bar must strictly decrease"
    x0, noise = torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    assert torch.equal(sched.add_noise(x0, noise, torch.zeros(3, 5, dtype=torch.long)), x0)
    assert torch.equal(sched.add_noise(x0, noise, torch.full((3, 5), 1000)), noise)


def test_v_prediction_inverts_exactly(sched: NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    levels = torch.randint(0, 1001, (4, 6), generator=g)
    levels[0, 0], levels[0, 1] = 0, 1000
    x_t = sched.add_noise(x0, noise, levels)
    x0_hat, eps_hat = sched.predict_x0_eps(x_t, sched.v_target(x0, noise, levels), levels)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_hat, noise, atol=1e-5, rtol=0)


def test_ddim_step_is_per_token_and_keeps_unchanged_tokens_bit_identical(sched: NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(1)
    x_t, v = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    from_levels = torch.tensor([[1000, 700, 300, 300, 0], [500, 500, 10, 999, 0]])
    to_levels = torch.tensor([[800, 700, 0, 300, 0], [0, 500, 10, 0, 0]])
    out = sched.ddim_step(x_t, v, from_levels, to_levels)
    same = from_levels == to_levels
    assert torch.equal(out[same], x_t[same]), "tokens with from == to must be bit-identical"
    assert not torch.isclose(out[~same], x_t[~same]).all(dim=-1).any(), "moving tokens must change"
    x0_hat, eps_hat = sched.predict_x0_eps(x_t, v, from_levels)
    to_zero = (to_levels == 0) & ~same
    assert torch.equal(out[to_zero], x0_hat[to_zero]), "a step to level 0 must return the x0 estimate"
    # every other moving token is re-noised to its own target level
    expected = sched.add_noise(x0_hat, eps_hat, to_levels)
    torch.testing.assert_close(out[~same], expected[~same])


def test_ddim_with_true_v_lands_on_forward_process(sched: NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, 4, 2, generator=g), torch.randn(3, 4, 2, generator=g)
    from_levels = torch.tensor([[1000, 900, 600, 50]]).expand(3, 4)
    to_levels = torch.tensor([[500, 100, 599, 0]]).expand(3, 4)
    x_from = sched.add_noise(x0, noise, from_levels)
    out = sched.ddim_step(x_from, sched.v_target(x0, noise, from_levels), from_levels, to_levels)
    torch.testing.assert_close(out, sched.add_noise(x0, noise, to_levels), atol=1e-5, rtol=0)


def test_stochastic_ddim_samples_the_forward_marginal_and_keeps_the_exact_tokens(sched: NoiseSchedule) -> None:
    """eta = 1 with the true (x0, eps): the result is distributed as the forward process at the
    target level (mean a x0, std s), not the deterministic point; level 0, unchanged tokens and
    eta = 0 stay exact; bad eta or missing noise are refused."""
    g = torch.Generator().manual_seed(3)
    n = 40_000
    x0, eps, z = (torch.randn(n, 1, 2, generator=g) for _ in range(3))
    f, t = torch.full((n, 1), 700), torch.full((n, 1), 400)
    x_f = sched.add_noise(x0, eps, f)
    a, s = sched._coefs(400, x0)
    out = sched.step_from_estimates(x_f, x0, eps, f, t, eta=1.0, noise=z)
    r = (out - a * x0) / s
    assert abs(r.mean().item()) < 0.02 and abs(r.std().item() - 1.0) < 0.02
    # the fresh noise carries weight: the same (x0, eps) with other z lands elsewhere
    assert not torch.allclose(out, sched.step_from_estimates(x_f, x0, eps, f, t, eta=1.0, noise=-z))
    assert torch.equal(sched.step_from_estimates(x_f, x0, eps, f, t, eta=0.0), sched.add_noise(x0, eps, t))
    assert torch.equal(sched.step_from_estimates(x_f, x0, eps, f, torch.zeros_like(t), eta=1.0, noise=z), x0)
    assert torch.equal(sched.step_from_estimates(x_f, x0, eps, f, f, eta=1.0, noise=z), x_f)
    with pytest.raises(ValueError, match="eta must be in"):
        sched.step_from_estimates(x_f, x0, eps, f, t, eta=1.5, noise=z)
    with pytest.raises(ValueError, match="needs noise"):
        sched.step_from_estimates(x_f, x0, eps, f, t, eta=0.5)


def test_min_snr_weight_is_finite_and_well_behaved_at_both_ends(sched: NoiseSchedule) -> None:
    levels = torch.arange(1001)
    w = sched.min_snr_weight(levels, gamma=5.0, floor=1.0)
    assert torch.isfinite(w).all()
    assert w[0].item() == 0.0, "level 0 (v target = pure noise) must get zero weight"
    assert w[-1].item() == pytest.approx(1.0), "pure-noise tokens must stay trained"
    snr = sched.snr(levels[1:-1])
    classic = sched.min_snr_weight(levels[1:-1], gamma=5.0, floor=0.0).double()
    torch.testing.assert_close(classic, snr.clamp(max=5.0) / (snr + 1.0), atol=1e-6, rtol=1e-5)
    assert sched.min_snr_weight(torch.tensor(1000), floor=0.0).item() == 0.0
