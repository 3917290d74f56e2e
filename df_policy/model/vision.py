"""ResNet-18-style image encoder with GroupNorm and a spatial-softmax keypoint head.

No BatchNorm anywhere (it interacts badly with EMA weights and tiny per-GPU batches); every
normalisation layer is ``nn.GroupNorm``. Trained from scratch unless ``weights_path`` names a
local file with torchvision ``resnet18`` weights; nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STEMS = ("imagenet", "small")
MIN_IMAGE_SIZE = 32
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class VisionEncoderConfig:
    """Image encoder hyper-parameters.

    Attributes:
        out_dim: size of the feature vector produced per image.
        num_keypoints: spatial-softmax keypoints; the head yields ``2 * num_keypoints``
            coordinates that a Linear maps to ``out_dim``.
        width: channels of the first stage (stages use ``width * (1, 2, 4, 8)``); ResNet-18
            uses 64, which is required for torchvision weights to match.
        stem: ``"imagenet"``: 7x7/2 conv + 3x3/2 max-pool, total stride 32 (torchvision
            layout; a 96 px image gives a 3x3 keypoint map). ``"small"``: 3x3/1 conv, no pool,
            total stride 8, for small images (a 32 px image gives 4x4 instead of 1x1).
        group_size: target channels per GroupNorm group (groups = largest divisor of C that
            is <= C // group_size, at least 1).
        in_channels: image channels (3 RGB, or 1 grey).
        imagenet_normalize: after scaling to [0, 1], standardise with ImageNet mean/std.
        weights_path: optional local ``.safetensors`` or torch file holding torchvision
            ``resnet18`` tensors; convolution kernels whose names and shapes match are loaded.
    """

    out_dim: int = 64
    num_keypoints: int = 32
    width: int = 64
    stem: str = "imagenet"
    group_size: int = 16
    in_channels: int = 3
    imagenet_normalize: bool = True
    weights_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("out_dim", "num_keypoints", "width", "group_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VisionEncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.stem not in STEMS:
            raise ValueError(f"VisionEncoderConfig.stem must be one of {STEMS}, got {self.stem!r}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"VisionEncoderConfig.in_channels must be 1 or 3, got {self.in_channels}")
        if self.weights_path is not None:
            self.weights_path = str(self.weights_path)


def group_norm(channels: int, group_size: int) -> nn.GroupNorm:
    """GroupNorm with about ``group_size`` channels per group (groups always divide C)."""
    groups = max(1, channels // group_size)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with GroupNorm; parameter names follow torchvision."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = group_norm(out_ch, group_size)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = group_norm(out_ch, group_size)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), group_norm(out_ch, group_size)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + identity)


class ResNet18GN(nn.Module):
    """ResNet-18 trunk (no pooling / fc): ``(B, C, H, W)`` float -> ``(B, 8 * width, h, w)``."""

    def __init__(self, width: int = 64, stem: str = "imagenet", group_size: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.norm1 = group_norm(width, group_size)
        chans = [width, 2 * width, 4 * width, 8 * width]
        in_ch = width
        for i, (ch, stride) in enumerate(zip(chans, (1, 2, 2, 2)), start=1):
            blocks = nn.Sequential(BasicBlock(in_ch, ch, stride, group_size), BasicBlock(ch, ch, 1, group_size))
            self.add_module(f"layer{i}", blocks)
            in_ch = ch
        self.out_channels = in_ch

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.norm1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SpatialSoftmax(nn.Module):
    """Keypoints: ``(B, C, H, W)`` -> ``(B, 2 * K)`` expected ``(x, y)`` in ``[-1, 1]``.

    A 1x1 conv gives K heat maps; each is softmax-normalised over the ``H * W`` positions (with a
    learned temperature) and reduced to its expected image coordinate. Output order is
    ``(x_0, y_0, x_1, y_1, ...)``.
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: Tensor) -> Tensor:
        B, _, H, W = features.shape
        logits = self.keypoints(features).flatten(2) / self.log_temperature.exp()  # (B, K, H*W)
        attention = logits.softmax(dim=-1)
        ys = torch.linspace(-1.0, 1.0, H, device=features.device, dtype=attention.dtype)
        xs = torch.linspace(-1.0, 1.0, W, device=features.device, dtype=attention.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        ex = attention @ grid_x.reshape(-1, 1)
        ey = attention @ grid_y.reshape(-1, 1)
        return torch.cat([ex, ey], dim=-1).reshape(B, -1)


class ImageEncoder(nn.Module):
    """Image -> feature vector.

    Input ``(B, C, H, W)`` with ``H, W >= 32``, either ``uint8`` in ``0..255`` (divided by 255)
    or floating point in ``[0, 1]``. Output ``(B, out_dim)`` in the parameters' dtype.
    """

    def __init__(self, config: VisionEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or VisionEncoderConfig()
        c = self.config
        self.backbone = ResNet18GN(c.width, c.stem, c.group_size, c.in_channels)
        self.pool = SpatialSoftmax(self.backbone.out_channels, c.num_keypoints)
        self.proj = nn.Linear(2 * c.num_keypoints, c.out_dim)
        mean = _IMAGENET_MEAN if c.in_channels == 3 else (sum(_IMAGENET_MEAN) / 3,)
        std = _IMAGENET_STD if c.in_channels == 3 else (sum(_IMAGENET_STD) / 3,)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        if c.weights_path is not None:
            load_torchvision_resnet18(self.backbone, c.weights_path)

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def forward(self, images: Tensor) -> Tensor:
        c = self.config
        if images.ndim != 4 or images.shape[1] != c.in_channels:
            raise ValueError(f"expected images (B, {c.in_channels}, H, W), got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(
                f"images must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, got {tuple(images.shape[-2:])}"
            )
        weight = self.proj.weight
        if images.dtype == torch.uint8:
            x = images.to(weight.device).to(weight.dtype) / 255.0
        elif images.is_floating_point():
            x = images.to(weight.device, weight.dtype)
        else:
            raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
        if c.imagenet_normalize:
            x = (x - self.pixel_mean) / self.pixel_std
        if self.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # weights converted for inference
        return self.proj(self.pool(self.backbone(x)))


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """Read tensors from a safetensors file or a torch file (``weights_only=True``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, disallowed pickle content, ...
        raise ValueError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights file {path} does not hold a state dict (got {type(obj).__name__})")
    return obj


def load_torchvision_resnet18(backbone: ResNet18GN, weights_path: str | Path) -> list[str]:
    """Copy torchvision ``resnet18`` convolution kernels into ``backbone`` in place.

    Only ``nn.Conv2d`` weights whose torchvision name (``conv1.weight``,
    ``layer2.0.downsample.0.weight``, ...) and shape match are copied; BatchNorm (``bn*``,
    ``downsample.1``) and ``fc`` parameters are skipped (the GroupNorms keep their init).
    Returns the loaded names. Raises ``FileNotFoundError`` / ``ValueError`` naming the file if
    it is missing, unreadable, or contributes no tensor.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"vision weights file not found: {path}")
    source = _read_state_dict(path)
    conv_names = {f"{name}.weight" for name, mod in backbone.named_modules() if isinstance(mod, nn.Conv2d)}
    target = backbone.state_dict()
    loaded: list[str] = []
    with torch.no_grad():
        for name in sorted(conv_names):
            tensor = source.get(name)
            if isinstance(tensor, Tensor) and tuple(tensor.shape) == tuple(target[name].shape):
                target[name].copy_(tensor.to(target[name].dtype))
                loaded.append(name)
    if not loaded:
        sample = ", ".join(list(source)[:5]) or "<empty>"
        raise ValueError(
            f"weights file {path} has no convolution weight matching a torchvision resnet18 name "
            f"and shape for this encoder (first keys: {sample})"
        )
    return loaded

