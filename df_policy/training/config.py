"""Run configuration: dataset + policy + optimisation, from YAML files and ``key=value`` overrides.

A run config file has three sections::

    dataset: {n_obs_steps: 2, horizon: 16, crop_shape: [84, 84], lowdim_keys: [state], ...}
    policy:  {num_sampling_steps: 10, denoiser: {d_model: 256}, ...}   # shapes come from the data
    train:   {steps: 20000, batch_size: 64, lr: 3.0e-4, ...}

Ready configs ship in ``df_policy/configs/`` (``dfp train --config pusht`` or a path).
Overrides use dotted keys: ``train.steps=100 policy.denoiser.n_layers=2 dataset.crop_shape=[76,76]``
(values are parsed as YAML).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from df_policy.data.dataset import DatasetConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    Attributes:
        steps: optimiser steps in total (resume continues up to this number).
        batch_size: samples per step *per process* (before gradient accumulation).
        grad_accum: micro-batches accumulated per optimiser step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to norms, biases and embeddings).
        betas: AdamW betas.
        warmup_steps: linear warm-up, then cosine decay to ``min_lr_ratio * lr``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        grad_clip: max global gradient norm (``None`` = off).
        ema_decay: EMA decay of the weights (0 = no EMA); warmed up as ``min(decay, (1+s)/(10+s))``.
        mixed_precision: ``"auto"`` (bf16 autocast on CUDA, off on CPU), ``"bf16"`` or ``"off"``.
        seed: global seed (per-rank streams are derived from it).
        num_workers: DataLoader worker processes per rank.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        log_every: steps between TensorBoard scalars.
        val_every: steps between validations (0 = only at the end).
        val_batches: validation batches per validation (action error is sampled, so keep it small).
        ckpt_every: steps between checkpoints (the last one is always written).
        keep_checkpoints: how many step checkpoints to keep (``last`` is always kept).
        max_minutes: wall-clock training budget; training stops (validating and checkpointing)
            once it is spent, even before ``steps`` (``None`` = no budget). The learning-rate
            cosine then runs over the budget (whichever of steps and time runs out first), and a
            resumed run continues the same budget.
        data_on_device: keep the training data on the training device and build batches there
            (:class:`~df_policy.data.device_batches.DeviceBatcher`; needs the data in RAM and
            memory on the device; the fast path on a GPU fed by few CPU cores).
        channels_last: train the image encoders with their convolutions in NHWC memory layout
            (the layout the runtime already infers in): the same model and loss up to
            floating-point summation order, faster on CPUs (oneDNN) and for bf16 on GPUs
            (``benchmarks/bench_train_step.py``). Checkpoints are layout-free either way.
    """

    steps: int = 1000
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    mixed_precision: str = "auto"
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    log_every: int = 20
    val_every: int = 500
    val_batches: int = 4
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    max_minutes: float | None = None
    data_on_device: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        for name in ("steps", "batch_size", "grad_accum", "log_every", "val_batches", "ckpt_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_steps:
            raise ValueError("train.warmup_steps must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in ("auto", "bf16", "off"):
            raise ValueError(f"train.mixed_precision must be auto, bf16 or off, got {self.mixed_precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("train.max_minutes must be > 0 or null")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("train.grad_clip must be > 0 or null")


@dataclass
class RunConfig:
    """Everything a training run needs besides the data path."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    policy: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": dataclasses.asdict(self.dataset), "policy": self.policy,
                "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        unknown = set(d) - {"dataset", "policy", "train"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)} (expected dataset, policy, train)")
        try:
            return cls(dataset=DatasetConfig(**(d.get("dataset") or {})), policy=dict(d.get("policy") or {}),
                       train=TrainConfig(**(d.get("train") or {})))
        except TypeError as e:  # unknown field name
            raise ValueError(f"invalid config: {e}") from e


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ValueError(f"override {dotted!r}: {p!r} is not a section")
    d[parts[-1]] = value


def resolve_config_path(name: str) -> Path:
    """A config file path, or the name of a ready config in ``df_policy/configs/``."""
    p = Path(name)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    ready = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {name!r} is neither a file nor one of the ready configs {ready}")


def load_run_config(config: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config (or the defaults) and apply ``key=value`` overrides."""
    d: dict[str, Any] = {}
    if config:
        d = yaml.safe_load(resolve_config_path(config).read_text()) or {}
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like section.key=value")
        key, value = ov.split("=", 1)
        _set_dotted(d, key.strip(), yaml.safe_load(value))
    return RunConfig.from_dict(d)
