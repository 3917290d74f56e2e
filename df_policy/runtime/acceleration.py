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
* ``"onnx"`` (CPU): ``channels_last`` plus the observation encoder and the denoiser run by ONNX
  Runtime (the ``onnx`` extra: onnxruntime, onnx, onnxscript), exported with ``torch.onnx``
  (dynamo exporter) at the shapes they are called with: each distinct input signature is exported
  once, on its first call (a few seconds each: :meth:`~df_policy.runtime.runner.PolicyRuntime.warmup`).
  ORT's fused CPU kernels skip PyTorch's per-operator dispatch, which dominates at batch 1: about
  3x faster for the ``pusht_cpu`` denoiser on one thread (docs/BENCHMARKS.md). The session uses
  ``torch.get_num_threads()`` threads. Falls back to ``channels_last`` (with a warning) on another
  device or without onnxruntime.

Precision (``RuntimeConfig.precision``), independent of the mode:

* ``"fp32"``: the reference. ``"bf16"``: the observation encoder and the denoiser run under
  ``torch.autocast(dtype=torch.bfloat16)`` (matrix products and convolutions in bf16, their
  outputs returned in fp32); the DDIM update, the action buffer and everything after stay fp32.
  For GPUs (tensor cores); on a CPU without bf16 units it is slower. Not exact: the difference
  to fp32 is reported by ``benchmarks/bench_runtime.py --precision fp32 bf16`` and by
  ``tests/test_runtime_runner.py``. Not with ``onnx`` (the exported graphs are fp32).

The compiled callables share the policy's weights (the ONNX graphs hold a copy, taken when each
signature is exported: call :func:`accelerate` again after changing the weights) and are
installed with :meth:`DiffusionForcingPolicy.set_inference_modules`, so checkpoints and
``state_dict`` are unchanged and training (``policy.train()``) always runs eager.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from df_policy.model.observation import OBS_PREFIX
from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.model.unet_denoiser import UNetDenoiser

log = logging.getLogger(__name__)

ACCELERATE_MODES = ("off", "channels_last", "compile", "onnx")
PRECISIONS = ("fp32", "bf16")


class Bf16Autocast:
    """``fn`` run under bf16 autocast on ``device_type``; its tensor output back in fp32."""

    def __init__(self, fn: Callable[..., Tensor], device_type: str) -> None:
        self.fn, self.device_type = fn, device_type

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
            out = self.fn(*args, **kwargs)
        return out.float()


def accelerate(policy: DiffusionForcingPolicy, mode: str, precision: str = "fp32") -> str:
    """Apply ``mode`` and ``precision`` to ``policy`` (in place, inference only); returns the mode in effect."""
    if mode not in ACCELERATE_MODES:
        raise ValueError(f"accelerate must be one of {ACCELERATE_MODES}, got {mode!r}")
    check_precision(precision, mode)
    policy.obs_encoder.set_channels_last(mode != "off")
    policy.set_inference_modules(None, None)
    policy.denoiser.train(policy.denoiser.training)  # drops level tables
    if mode != "off":
        policy.denoiser.freeze_level_tables()
    if mode == "onnx":
        return _install_onnx(policy)
    encoder: Callable[..., Tensor] = policy.obs_encoder
    denoiser: Callable[..., Tensor] = policy.denoiser
    if precision == "bf16":
        encoder, denoiser = Bf16Autocast(encoder, policy.device.type), Bf16Autocast(denoiser, policy.device.type)
    if mode == "compile" and not hasattr(torch, "compile"):
        log.warning("torch.compile is not available in torch %s: using channels_last", torch.__version__)
        mode = "channels_last"
    if mode == "compile":
        compile_mode = "reduce-overhead" if policy.device.type == "cuda" else None
        encoder = torch.compile(encoder, dynamic=False, mode=compile_mode)
        denoiser = torch.compile(denoiser, dynamic=False, mode=compile_mode)
    if mode == "compile" or precision == "bf16":
        policy.set_inference_modules(encoder, denoiser)
    return mode


def check_precision(precision: str, mode: str) -> None:
    """Raise ``ValueError`` for an unknown precision or one the mode cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and mode == "onnx":
        raise ValueError("precision bf16 runs through PyTorch autocast; accelerate=onnx exports fp32 graphs: "
                         "use accelerate compile or channels_last with bf16")


class OnnxRuntimeModule:
    """``module`` run by ONNX Runtime at the input signatures it is called with.

    ``flatten(*args, **kwargs)`` turns a call into ``(tensors, options)``: the tensor inputs of
    the exported graph and a hashable description of what else the call fixes (e.g. "no
    missing steps"); ``rebuild(module, options)`` returns the ``torch.nn.Module`` to export for
    those options, whose ``forward`` takes exactly those tensors. The first call with a new
    signature (shapes, dtypes, options) exports and builds a session; the output is the graph's
    first output as a CPU tensor.
    """

    def __init__(self, module: torch.nn.Module, flatten: Callable[..., tuple[list[Tensor], Any]],
                 rebuild: Callable[[torch.nn.Module, Any], torch.nn.Module], name: str) -> None:
        import onnxruntime  # noqa: F401 - fail here, not on the control path

        self.module, self.flatten, self.rebuild, self.name = module, flatten, rebuild, name
        self._sessions: dict[Any, tuple[Any, list[str]]] = {}

    @property
    def n_exports(self) -> int:
        return len(self._sessions)

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        tensors, options = self.flatten(*args, **kwargs)
        key = (options, tuple((tuple(t.shape), t.dtype) for t in tensors))
        entry = self._sessions.get(key)
        if entry is None:
            entry = self._sessions[key] = self._export(tensors, options)
        session, names = entry
        if len(names) != len(tensors):
            raise RuntimeError(f"ONNX graph of the {self.name} takes {len(names)} inputs, the call gave {len(tensors)}")
        out = session.run(None, {n: t.detach().contiguous().numpy() for n, t in zip(names, tensors)})
        return torch.from_numpy(out[0])

    def _export(self, tensors: list[Tensor], options: Any) -> tuple[Any, list[str]]:
        import onnxruntime as ort

        log.info("exporting %s to ONNX for input shapes %s", self.name, [tuple(t.shape) for t in tensors])
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(self.rebuild(self.module, options).eval(), tuple(tensors), dynamo=True,
                                        verbose=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(program.model_proto.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
        return session, [i.name for i in session.get_inputs()]


class _EncoderCall(torch.nn.Module):
    """The observation encoder over positional tensors (``keys`` order)."""

    def __init__(self, encoder: torch.nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.encoder, self.keys = encoder, keys

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.encoder(dict(zip(self.keys, tensors)))


class _DenoiserCall(torch.nn.Module):
    """The denoiser over positional tensors; ``with_times``: time indices are inputs too."""

    def __init__(self, denoiser: torch.nn.Module, with_times: bool) -> None:
        super().__init__()
        self.denoiser, self.with_times = denoiser, with_times

    def forward(self, x: Tensor, levels: Tensor, features: Tensor, missing: Tensor, *times: Tensor) -> Tensor:
        if self.with_times:
            return self.denoiser(x, levels, features, missing, obs_times=times[0], action_times=times[1])
        return self.denoiser(x, levels, features, missing)


def _install_onnx(policy: DiffusionForcingPolicy) -> str:
    if policy.device.type != "cpu":
        log.warning("accelerate=onnx runs on the CPU only (the policy is on %s): using channels_last", policy.device)
        return "channels_last"
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        log.warning("accelerate=onnx needs the onnx extra (pip install 'df_policy[onnx]'): %s; using channels_last", e)
        return "channels_last"
    cfg = policy.config
    keys = tuple(sorted(OBS_PREFIX + k for k in [*cfg.image_shapes, *cfg.lowdim_shapes]))
    A = cfg.actions_per_token

    def encoder_inputs(obs: Mapping[str, Tensor]) -> tuple[list[Tensor], Any]:
        return [obs[k] for k in keys], None

    # The transformer takes the time indices as graph inputs (one graph whatever the window's
    # alignment, which changes from tick to tick with grouped tokens); the U-Net has only the
    # training layout (it checks it itself when run eagerly) and takes none.
    with_times = not isinstance(policy.denoiser, UNetDenoiser)

    def denoiser_inputs(x: Tensor, levels: Tensor, features: Tensor, missing: Tensor | None = None, *,
                        obs_times: Tensor | None = None, action_times: Tensor | None = None) -> tuple[list[Tensor], Any]:
        if missing is None:
            missing = torch.zeros(features.shape[:2], dtype=torch.bool)
        tensors = [x, levels, features, missing]
        if with_times:
            tensors += [torch.arange(features.shape[1]) if obs_times is None else obs_times.cpu(),
                        torch.arange(levels.shape[1]) * A if action_times is None else action_times.cpu()]
        return tensors, with_times

    encoder = OnnxRuntimeModule(policy.obs_encoder, encoder_inputs, lambda m, _: _EncoderCall(m, keys),
                                "observation encoder")
    policy.set_inference_modules(StepwiseEncoder(encoder, keys),
                                 OnnxRuntimeModule(policy.denoiser, denoiser_inputs, _DenoiserCall, "denoiser"))
    return "onnx"


class StepwiseEncoder:
    """Runs an encoder one observation step at a time and stacks the steps (the observation
    encoder treats steps independently): a window of 1 or ``To`` new frames, or a tick that
    finds two frames to encode, all use the one exported single-step graph, so no export can
    happen on the control path after warm-up."""

    def __init__(self, encoder: OnnxRuntimeModule, keys: tuple[str, ...]) -> None:
        self.encoder, self.keys = encoder, keys

    @property
    def n_exports(self) -> int:
        return self.encoder.n_exports

    def __call__(self, obs: Mapping[str, Tensor]) -> Tensor:
        steps = obs[self.keys[0]].shape[1]
        return torch.cat([self.encoder({k: obs[k][:, t:t + 1] for k in self.keys}) for t in range(steps)], dim=1)
