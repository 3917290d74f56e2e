"""Checkpoints: safetensors weights + JSON config, normaliser and store schema. Never pickles.

Layout of a checkpoint directory::

    model.safetensors        raw weights
    ema.safetensors          EMA weights (what inference uses by default), if EMA is on
    config.json              {"run": RunConfig, "policy": DiffusionForcingConfig, "step": int, ...}
    normalizer.json          per-key normalisation stats (df_policy.data.normalizer)
    schema.json              the store schema the policy was trained on
    train_state.safetensors  optimiser moments + RNG states (for resuming only)
    train_state.json         step, scheduler and optimiser hyper-parameters (for resuming only)

A run directory keeps ``checkpoints/step_<N>/`` and ``checkpoints/last/``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from df_policy import __version__
from df_policy.data.normalizer import Normalizer
from df_policy.data.schema import StoreSchema
from df_policy.model.policy import DiffusionForcingConfig, DiffusionForcingPolicy


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not fit the data/robot it is used with."""


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, meta = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                meta[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": meta}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    directory: str | os.PathLike,
    policy: DiffusionForcingPolicy,
    *,
    ema: DiffusionForcingPolicy | None,
    normalizer: Normalizer,
    schema: StoreSchema,
    run_config: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    train_info: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint into ``directory`` (written to a temporary sibling, then renamed).

    ``train_info`` (JSON values, e.g. the training time spent) goes into ``train_state.json``
    beside the step, for resuming."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(policy, str(tmp / "model.safetensors"))
    if ema is not None:
        save_model(ema, str(tmp / "ema.safetensors"))
    _write_json(tmp / "config.json", {
        "df_policy_version": __version__, "step": step, "run": run_config,
        "policy": policy.config.to_dict(), "has_ema": ema is not None, **(extra or {}),
    })
    normalizer.save(tmp / "normalizer.json")
    _write_json(tmp / "schema.json", schema.to_dict())
    if optimizer is not None:
        tensors, meta = _optimizer_to_flat(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        save_file(tensors, str(tmp / "train_state.safetensors"))
        _write_json(tmp / "train_state.json", {
            **(train_info or {}), "step": step, "optimizer": meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
        })
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


@dataclass
class LoadedPolicy:
    """A policy ready for inference, with everything needed to feed it."""

    policy: DiffusionForcingPolicy
    normalizer: Normalizer
    schema: StoreSchema
    run_config: dict[str, Any]
    step: int
    path: Path

    @property
    def fps(self) -> float | None:
        """The control rate the policy was trained at (its dataset config, else the store schema),
        or ``None`` when neither records one (a Diffusion Policy zip trained without ``dataset.fps``)."""
        fps = (self.run_config.get("dataset") or {}).get("fps") or self.schema.fps
        return float(fps) if fps else None

    def check_compatible(self, schema: StoreSchema) -> None:
        """Raise :class:`CheckpointError` if ``schema`` (data or robot) lacks what the policy needs."""
        cfg = self.policy.config
        keys = [*cfg.image_shapes, *cfg.lowdim_shapes, self.schema.action_key]
        errors = self.schema.compatibility_errors(schema, keys)
        if schema.action_key != self.schema.action_key and not any("action" in e for e in errors):
            errors.append(f"action key {schema.action_key!r} != trained {self.schema.action_key!r}")
        if errors:
            raise CheckpointError(
                f"checkpoint {self.path} does not match this data/robot: " + "; ".join(errors)
            )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON: {e}") from e


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Accept a checkpoint directory or a run directory (uses ``checkpoints/last``)."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    if (p / "checkpoints" / "last" / "config.json").is_file():
        return p / "checkpoints" / "last"
    raise CheckpointError(f"{p} is neither a checkpoint directory nor a run directory with checkpoints/last")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", use_ema: bool = True,
                    schema: StoreSchema | None = None) -> LoadedPolicy:
    """Load a checkpoint for inference (EMA weights when present and ``use_ema``).

    If ``schema`` is given (the data or robot the policy will be used with), a mismatch raises
    :class:`CheckpointError` naming the differing keys.
    """
    p = resolve_checkpoint(path)
    cfg = _read_json(p / "config.json")
    try:
        policy_cfg = DiffusionForcingConfig.from_dict(cfg["policy"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{p}/config.json: invalid policy config: {e}") from e
    policy = DiffusionForcingPolicy(policy_cfg)
    weights = p / ("ema.safetensors" if use_ema and cfg.get("has_ema") else "model.safetensors")
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing")
    missing, unexpected = load_model(policy, str(weights), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not fit the configured model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    policy.to(device).eval()
    try:
        normalizer = Normalizer.load(p / "normalizer.json")
        trained_schema = StoreSchema.from_dict(_read_json(p / "schema.json"))
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from e
    loaded = LoadedPolicy(policy, normalizer, trained_schema, cfg.get("run", {}), int(cfg.get("step", 0)), p)
    if schema is not None:
        loaded.check_compatible(schema)
    return loaded


def load_train_state(path: Path, policy: torch.nn.Module, ema: torch.nn.Module | None,
                     optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Restore weights, EMA, optimiser, scheduler and RNG from a checkpoint; returns its step."""
    load_model(policy, str(path / "model.safetensors"))
    if ema is not None and (path / "ema.safetensors").is_file():
        load_model(ema, str(path / "ema.safetensors"))
    state = _read_json(path / "train_state.json")
    tensors = load_file(str(path / "train_state.safetensors"))
    _optimizer_from_flat(optimizer, tensors, state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(state["step"])
