"""Faster inference for the runtime, with the same actions: memory layout and compilation.

Modes (``RuntimeConfig.accelerate``):

* ``"off"``: eager PyTorch, the reference.
* ``"channels_last"``: the image encoders' convolution weights (and their inputs) in NHWC, which
  makes PyTorch use its oneDNN convolutions on the CPU (and tensor-core friendly layouts on the
  GPU), and the denoiser's level lookup tables
  (:meth:`~df_policy.model.denoiser.CausalDenoiser.freeze_level_tables`: level embeddings and
  per-block adaLN modulation tabulated over the ``K + 1`` integer levels, about a third of the
  denoiser's arithmetic). Exact to ~1e-7 against eager; no start-up cost. The default.
  The weights must not change afterwards (call :func:`accelerate` again if they do).
* ``"compile"``: ``channels_last`` plus ``torch.compile(dynamic=False)`` of the observation
  encoder and the denoiser (Inductor: fused C++ kernels on the CPU, Triton and CUDA graphs on the
  GPU with ``mode="reduce-overhead"``). Shapes in the runtime are static (batch 1, fixed window),
  so each distinct shape compiles once; compiling takes tens of seconds, so call
  :meth:`~df_policy.runtime.runner.PolicyRuntime.warmup` before commanding a robot. Falls back to
  ``channels_last`` (with a warning) where ``torch.compile`` is unavailable.

The compiled callables share the policy's weights and are installed with
:meth:`DiffusionForcingPolicy.set_inference_modules`, so checkpoints and ``state_dict`` are
unchanged and training (``policy.train()``) always runs eager.
"""

from __future__ import annotations

import logging

import torch

from df_policy.model.policy import DiffusionForcingPolicy

log = logging.getLogger(__name__)

ACCELERATE_MODES = ("off", "channels_last", "compile")


def _image_encoders(policy: DiffusionForcingPolicy) -> list[torch.nn.Module]:
    return list(getattr(policy.obs_encoder, "cameras", {}).values())


def accelerate(policy: DiffusionForcingPolicy, mode: str) -> str:
    """Apply ``mode`` to ``policy`` (in place, inference only); returns the mode in effect."""
    if mode not in ACCELERATE_MODES:
        raise ValueError(f"accelerate must be one of {ACCELERATE_MODES}, got {mode!r}")
    memory_format = torch.contiguous_format if mode == "off" else torch.channels_last
    for encoder in _image_encoders(policy):
        encoder.to(memory_format=memory_format)
    policy.set_inference_modules(None, None)
    policy.denoiser.train(policy.denoiser.training)  # drops level tables
    if mode != "off":
        policy.denoiser.freeze_level_tables()
    if mode != "compile":
        return mode
    if not hasattr(torch, "compile"):
        log.warning("torch.compile is not available in torch %s: using channels_last", torch.__version__)
        return "channels_last"
    compile_mode = "reduce-overhead" if policy.device.type == "cuda" else None
    policy.set_inference_modules(
        torch.compile(policy.obs_encoder, dynamic=False, mode=compile_mode),
        torch.compile(policy.denoiser, dynamic=False, mode=compile_mode),
    )
    return mode
