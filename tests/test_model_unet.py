"""The 1-D U-Net denoiser: per-token level conditioning, the fixed layout it accepts, config
selection through ``policy.denoiser.architecture`` and a checkpoint round trip."""

import json

import pytest
import torch
from safetensors.torch import load_model, save_model

from df_policy.model import DiffusionForcingConfig, DiffusionForcingPolicy
from df_policy.model.unet_denoiser import UNetDenoiser, UNetDenoiserConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _net(**kw) -> UNetDenoiser:
    torch.manual_seed(0)
    kw = {"channels": (16, 32), **kw}
    net = UNetDenoiser(UNetDenoiserConfig(n_groups=4, cond_dim=16, **kw), action_dim=2, obs_dim=5,
                       n_obs_steps=2, num_levels=100)
    torch.nn.init.normal_(net.head.weight, std=0.5)  # off the near-zero init so outputs vary
    return net.eval()


def _inputs(B: int = 3, N: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(B, N, 2, generator=g), torch.randint(0, 101, (B, N), generator=g),
            torch.randn(B, 2, 5, generator=g))


def test_each_token_is_conditioned_on_its_own_level() -> None:
    x, levels, obs = _inputs()
    changed = levels.clone()
    changed[:, 5] = (changed[:, 5] + 50) % 101
    net = _net()
    out = net(x, levels, obs)
    assert out.shape == x.shape
    assert ((net(x, changed, obs) - out).abs().sum(-1)[:, 5] > 1e-4).all()
    # one resolution, 1-wide kernels: only GroupNorm's statistics (over the window) mix tokens,
    # so token 5 must move most when its own level changes (the condition is not pooled)
    pointwise = _net(channels=(16,), kernel_size=1)
    diff = (pointwise(x, changed, obs) - pointwise(x, levels, obs)).abs().sum(-1)  # (B, N)
    assert torch.equal(diff.argmax(dim=1), torch.full((3,), 5)), diff


def test_observations_and_missing_steps_condition_the_output() -> None:
    net = _net()
    x, levels, obs = _inputs()
    out = net(x, levels, obs)
    assert not torch.allclose(net(x, levels, obs + 1.0), out)
    missing = torch.tensor([[True, False]] * 3)
    masked = net(x, levels, obs, missing)
    assert not torch.allclose(masked, out)
    garbage = obs.clone()
    garbage[:, 0] = 1e6  # a missing step's features are never read
    assert torch.allclose(net(x, levels, garbage, missing), masked)


def test_level_table_path_is_the_per_token_function_with_gradients() -> None:
    net = _net()
    x, levels, obs = _inputs(B=20, N=8)
    table_out = net.train()(x, levels, obs)  # 160 tokens > 101 levels: embedded once per level, gathered
    grads = torch.autograd.grad(table_out.square().sum(), list(net.level_mlp.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    net.eval()
    with torch.no_grad():
        per_token = torch.cat([net(x[i:i + 1], levels[i:i + 1], obs[i:i + 1]) for i in range(20)])  # 8 tokens each
        assert torch.allclose(per_token, table_out, atol=1e-5)
        net.freeze_level_tables()
        assert torch.allclose(net(x, levels, obs), table_out, atol=1e-5)


def test_layout_other_than_training_is_refused() -> None:
    net = _net()
    x, levels, obs = _inputs()
    net(x, levels, obs, obs_times=torch.arange(2), action_times=torch.arange(8))  # the training layout
    with pytest.raises(ValueError, match="action_times"):
        net(x, levels, obs, action_times=torch.arange(8) + 1)
    with pytest.raises(ValueError, match="obs_times"):
        net(x, levels, obs, obs_times=torch.arange(2) + 3)
    with pytest.raises(ValueError, match="multiple of 2"):
        net(torch.randn(3, 7, 2), torch.zeros(3, 7, dtype=torch.long), obs)
    with pytest.raises(ValueError, match="2 observation steps"):
        net(x, levels, torch.randn(3, 3, 5))


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="n_groups"):
        UNetDenoiserConfig(channels=(12, 24), n_groups=8)
    with pytest.raises(ValueError, match="kernel_size"):
        UNetDenoiserConfig(kernel_size=4)
    with pytest.raises(ValueError, match="architecture"):
        DiffusionForcingConfig(lowdim_shapes={"s": 3}, denoiser={"architecture": "lstm"})
    with pytest.raises(ValueError, match="d_model"):  # a transformer field given to the U-Net
        DiffusionForcingConfig(lowdim_shapes={"s": 3}, denoiser={"architecture": "unet", "d_model": 64})
    with pytest.raises(ValueError, match="actions_per_token 1"):
        DiffusionForcingConfig(lowdim_shapes={"s": 3}, actions_per_token=2, denoiser={"architecture": "unet"})
    with pytest.raises(ValueError, match="multiple of 4"):
        DiffusionForcingConfig(lowdim_shapes={"s": 3}, horizon=10, n_action_steps=4,
                               denoiser={"architecture": "unet", "channels": [8, 16, 32]})


def test_policy_with_unet_round_trips_through_a_checkpoint(tmp_path) -> None:
    config = DiffusionForcingConfig(lowdim_shapes={"state": 5}, action_dim=2, horizon=8, n_action_steps=4,
                                    num_train_levels=100, num_sampling_steps=5, lowdim_embed_dim=16,
                                    denoiser={"architecture": "unet", "channels": [16, 32], "n_groups": 4,
                                              "cond_dim": 16})
    policy = DiffusionForcingPolicy(config)
    assert isinstance(policy.denoiser, UNetDenoiser)
    batch = {"obs.state": torch.randn(4, 2, 5), "action": torch.randn(4, 8, 2)}
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert all(p.grad is not None for p in policy.denoiser.parameters())

    restored_config = DiffusionForcingConfig.from_dict(config.to_dict())
    assert isinstance(restored_config.denoiser, UNetDenoiserConfig)
    assert restored_config.denoiser == config.denoiser
    save_model(policy, str(tmp_path / "model.safetensors"))  # what a checkpoint holds: config JSON + safetensors
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    loaded = DiffusionForcingPolicy(DiffusionForcingConfig.from_dict(json.loads((tmp_path / "config.json").read_text())))
    assert isinstance(loaded.denoiser, UNetDenoiser)
    missing, unexpected = load_model(loaded, str(tmp_path / "model.safetensors"))
    assert not missing and not unexpected
    obs = {"obs.state": batch["obs.state"][:1]}
    sample = lambda p: p.eval().sample(obs, p.make_schedule("pyramid"), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sample(policy), sample(loaded))


def test_unet_runs_under_onnx_runtime_with_the_same_samples() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from df_policy.runtime.acceleration import accelerate

    config = DiffusionForcingConfig(lowdim_shapes={"state": 5}, action_dim=2, horizon=8, n_action_steps=4,
                                    num_train_levels=100, num_sampling_steps=5, lowdim_embed_dim=16,
                                    denoiser={"architecture": "unet", "channels": [16, 32], "n_groups": 4})
    policy = DiffusionForcingPolicy(config).eval()
    obs = {"obs.state": torch.randn(1, 2, 5)}
    sample = lambda: policy.sample(obs, policy.make_schedule("pyramid"), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = sample()
        assert accelerate(policy, "onnx") == "onnx"
        fast = sample()
    assert policy._inference_denoiser.n_exports == 1
    assert (fast - eager).abs().max() <= 1e-5
