"""Image encoder: GroupNorm only, shapes, input dtypes, local torchvision-style weights."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from df_policy.model.vision import ImageEncoder, VisionEncoderConfig, load_torchvision_resnet18


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _torchvision_like_state_dict(encoder: ImageEncoder) -> dict[str, torch.Tensor]:
    """Tensors named and shaped like torchvision's resnet18 (convs, BatchNorms, fc)."""
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}
    for name, module in encoder.backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            sd[f"{name}.weight"] = torch.randn(module.weight.shape, generator=g)
            bn = name.replace("conv", "bn") if "downsample" not in name else name[:-1] + "1"
            for stat in ("weight", "bias", "running_mean", "running_var"):
                sd[f"{bn}.{stat}"] = torch.randn(module.out_channels, generator=g)
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512, generator=g), torch.randn(1000, generator=g)
    return sd


def test_group_norm_only_and_output_shapes() -> None:
    enc = ImageEncoder(VisionEncoderConfig(out_dim=24, num_keypoints=32, width=8))
    kinds = {type(m) for m in enc.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert sum(isinstance(m, nn.GroupNorm) for m in enc.modules()) == 20  # stem + 8 blocks x 2 + 3 downsamples
    assert enc.pool.keypoints.out_channels == 32 and enc.proj.in_features == 64
    assert enc(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)).shape == (2, 24)
    assert enc(torch.rand(3, 3, 48, 64)).shape == (3, 24)
    with pytest.raises(ValueError, match="at least 32"):
        enc(torch.rand(1, 3, 16, 64))


def test_uint8_is_scaled_like_float_and_images_matter() -> None:
    torch.manual_seed(0)
    enc = ImageEncoder(VisionEncoderConfig(out_dim=16, num_keypoints=8, width=8, stem="small"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(enc(images), enc(images.float() / 255.0))
    out = enc(images)
    assert not torch.allclose(out[0], out[1], atol=1e-4), "different images must give different features"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_torchvision_weights_load(tmp_path: Path, suffix: str) -> None:
    enc = ImageEncoder(VisionEncoderConfig(width=64))
    sd = _torchvision_like_state_dict(enc)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    loaded_enc = ImageEncoder(VisionEncoderConfig(width=64, weights_path=str(path)))
    torch.testing.assert_close(loaded_enc.backbone.conv1.weight, sd["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        loaded_enc.backbone.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"], rtol=0, atol=0
    )
    # GroupNorm parameters keep their init: BatchNorm tensors are skipped even where shapes match
    assert torch.equal(loaded_enc.backbone.layer3[0].downsample[1].weight, torch.ones(256))
    assert len(load_torchvision_resnet18(ImageEncoder(VisionEncoderConfig()).backbone, path)) == 20


def test_missing_or_unusable_weights_file_gives_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ImageEncoder(VisionEncoderConfig(weights_path=str(missing)))
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(unrelated))
    with pytest.raises(ValueError, match="unrelated.safetensors"):
        ImageEncoder(VisionEncoderConfig(weights_path=str(unrelated)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        ImageEncoder(VisionEncoderConfig(weights_path=str(garbage)))
