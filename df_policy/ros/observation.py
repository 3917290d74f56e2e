"""Assemble the latest received ROS messages into one model-input observation step.

ROS-free: the assembler takes messages that were already received (any objects with the
message fields) plus a clock time, and returns arrays in the episode-store conventions
(``float32 (D,)`` low-dim keys, ``uint8 (H, W, 3)`` RGB images). Every input's **age** (clock
time minus the message's time) is reported so callers can refuse stale observations.

Clocks: with ``stamp_source="header"`` ages use ``header.stamp`` (ROS time of the sender, as
float seconds), so ``now_s`` must be ROS time too (``node.get_clock().now()``). With
``stamp_source="receipt"`` the caller passes each message's receipt time in any clock it likes
(e.g. :func:`time.monotonic`) and ``now_s`` in the same clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .messages import NS_PER_S, JointStateConverter, MessageConversionError, image_to_rgb, time_to_ns

__all__ = [
    "INPUT_KINDS",
    "MissingInputError",
    "ObservationAssembler",
    "ObservationAssemblerConfig",
    "ObservationError",
    "ObservationInput",
    "ObservationStep",
    "StaleInputError",
]

INPUT_KINDS = ("joint_state", "camera")
_JOINT_FIELDS = ("position", "velocity", "effort")
_STAMP_SOURCES = ("header", "receipt")


class ObservationError(ValueError):
    """An observation cannot be assembled. The message names the input and the problem."""


class MissingInputError(ObservationError):
    """No message has been received yet for an input source."""


class StaleInputError(ObservationError):
    """An input is older than ``max_age_s``."""


@dataclass(frozen=True)
class ObservationInput:
    """Where one observation key comes from.

    Attributes:
        kind: ``"joint_state"`` or ``"camera"``.
        name: for ``joint_state`` the field (``position``, ``velocity``, ``effort``); for
            ``camera`` the image topic, which is also the key of its message in
            :meth:`ObservationAssembler.assemble`'s ``messages``.
        image_size: cameras only: ``(H, W)`` to resize to (OpenCV ``INTER_AREA``), or ``None``
            to keep the published size.
    """

    kind: str
    name: str
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ObservationError(f"input kind {self.kind!r} is not one of {INPUT_KINDS}")
        if self.kind == "joint_state":
            if self.name not in _JOINT_FIELDS:
                raise ObservationError(f"joint_state field {self.name!r} is not one of {_JOINT_FIELDS}")
            if self.image_size is not None:
                raise ObservationError("image_size only applies to camera inputs")
        elif not isinstance(self.name, str) or not self.name:
            raise ObservationError(f"camera input needs a topic name, got {self.name!r}")
        if self.image_size is not None:
            size = tuple(int(s) for s in self.image_size)
            if len(size) != 2 or min(size) <= 0:
                raise ObservationError(f"image_size must be (H, W) with positive sizes, got {self.image_size}")
            object.__setattr__(self, "image_size", size)

    @classmethod
    def parse(cls, spec: Any) -> ObservationInput:
        """An ``ObservationInput`` or a tuple ``(kind, name)`` / ``(kind, name, (H, W))``."""
        if isinstance(spec, ObservationInput):
            return spec
        if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
            return cls(*spec)
        raise ObservationError(f"input spec must be (kind, name) or (kind, name, (H, W)), got {spec!r}")


@dataclass(frozen=True)
class ObservationAssemblerConfig:
    """What goes into one observation step.

    Attributes:
        inputs: observation key -> :class:`ObservationInput` or tuple, e.g.
            ``{"agent_pos": ("joint_state", "position"), "image": ("camera", "/camera/color/image_raw")}``.
        joint_names: joint order for ``joint_state`` inputs (required if there are any).
        max_age_s: inputs older than this (seconds) are reported stale; ``None`` = never stale.
        stamp_source: ``"header"`` (message ``header.stamp``) or ``"receipt"`` (caller-given
            receipt times) — see the module docstring for the clock each implies.
        joint_state_source: key of the JointState message in ``assemble(messages=...)``.
    """

    inputs: Mapping[str, Any]
    joint_names: tuple[str, ...] = ()
    max_age_s: float | None = None
    stamp_source: str = "header"
    joint_state_source: str = "joint_state"

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ObservationError("inputs must not be empty")
        parsed = {}
        for key, spec in self.inputs.items():
            if not isinstance(key, str) or not key:
                raise ObservationError(f"observation keys must be non-empty strings, got {key!r}")
            parsed[key] = ObservationInput.parse(spec)
        object.__setattr__(self, "inputs", parsed)
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        if any(i.kind == "joint_state" for i in parsed.values()) and not self.joint_names:
            raise ObservationError("joint_names is required when an input reads the joint state")
        if self.max_age_s is not None and not (float(self.max_age_s) > 0):
            raise ObservationError(f"max_age_s must be > 0 or None, got {self.max_age_s}")
        if self.stamp_source not in _STAMP_SOURCES:
            raise ObservationError(f"stamp_source {self.stamp_source!r} is not one of {_STAMP_SOURCES}")
        if not self.joint_state_source:
            raise ObservationError("joint_state_source must be a non-empty key")


@dataclass(frozen=True)
class ObservationStep:
    """One assembled observation step.

    Attributes:
        values: observation key -> array (``float32 (D,)`` joint data, ``uint8 (H, W, 3)`` RGB).
        ages_s: observation key -> ``time_s`` minus the input's message time, seconds (negative
            when the message claims to be from the future, e.g. clock skew between machines).
        stamps_s: observation key -> the input's message time in seconds.
        time_s: the clock time the step was assembled for.
        max_age_s: the staleness threshold used, or ``None``.
    """

    values: dict[str, np.ndarray]
    ages_s: dict[str, float]
    stamps_s: dict[str, float]
    time_s: float
    max_age_s: float | None = None

    @property
    def stale(self) -> tuple[str, ...]:
        """Keys whose age exceeds ``max_age_s`` (empty when no threshold)."""
        if self.max_age_s is None:
            return ()
        return tuple(k for k, age in self.ages_s.items() if age > self.max_age_s)

    @property
    def is_fresh(self) -> bool:
        """True when no input is stale."""
        return not self.stale

    def raise_if_stale(self) -> ObservationStep:
        """Raise :class:`StaleInputError` naming every stale input; else return ``self``."""
        stale = self.stale
        if stale:
            ages = ", ".join(f"{k}={self.ages_s[k]:.3f}s" for k in stale)
            raise StaleInputError(f"stale observation inputs (max_age_s={self.max_age_s}): {ages}")
        return self


@dataclass
class ObservationAssembler:
    """Turn the latest messages into an :class:`ObservationStep` (see the module docstring).

    Thread-safe: holds no per-call state.
    """

    config: ObservationAssemblerConfig
    _joints: JointStateConverter | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.config, ObservationAssemblerConfig):
            raise ObservationError(f"expected an ObservationAssemblerConfig, got {type(self.config).__name__}")
        if self.config.joint_names:
            # NaN/Inf checks only on the fields the model reads (e.g. a NaN effort must not
            # invalidate positions)
            used = tuple(dict.fromkeys(i.name for i in self.config.inputs.values() if i.kind == "joint_state"))
            self._joints = JointStateConverter(self.config.joint_names, check_finite=used)

    def _source(self, inp: ObservationInput) -> str:
        return self.config.joint_state_source if inp.kind == "joint_state" else inp.name

    @property
    def required_sources(self) -> dict[str, tuple[str, ...]]:
        """Message key (JointState source / image topic) -> observation keys read from it."""
        out: dict[str, list[str]] = {}
        for key, inp in self.config.inputs.items():
            out.setdefault(self._source(inp), []).append(key)
        return {s: tuple(keys) for s, keys in out.items()}

    def assemble(
        self,
        messages: Mapping[str, Any],
        now_s: float,
        receipt_s: Mapping[str, float] | None = None,
    ) -> ObservationStep:
        """Build one step from ``messages`` (source key -> latest message).

        ``now_s``: the current time in the clock of the stamps. ``receipt_s``: source key ->
        receipt time, required with ``stamp_source="receipt"``. Raises
        :class:`MissingInputError` for a source with no message, :class:`ObservationError`
        for a message that cannot be converted. Staleness is reported, not raised (see
        :meth:`ObservationStep.raise_if_stale`).
        """
        now_s = float(now_s)
        sources = self.required_sources
        missing = [s for s in sources if messages.get(s) is None]
        if missing:
            detail = "; ".join(f"{s} (for {list(sources[s])})" for s in missing)
            raise MissingInputError(f"no message received yet from: {detail}")

        stamps: dict[str, float] = {}
        for src in sources:
            stamps[src] = self._stamp_s(src, messages[src], receipt_s)

        joint_sample = None
        images: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        for key, inp in self.config.inputs.items():
            src = self._source(inp)
            try:
                if inp.kind == "joint_state":
                    if joint_sample is None:
                        joint_sample = self._joints.read(messages[src])
                    value = getattr(joint_sample, inp.name)
                    if value is None:
                        raise ObservationError(
                            f"observation {key!r}: the JointState on {src!r} has no {inp.name} values"
                        )
                    values[key] = value
                else:
                    if src not in images:
                        images[src] = image_to_rgb(messages[src])
                    values[key] = _resize(images[src], inp.image_size)
            except MessageConversionError as exc:
                raise ObservationError(f"observation {key!r} from {src!r}: {exc}") from exc
        ages = {key: now_s - stamps[self._source(inp)] for key, inp in self.config.inputs.items()}
        stamps_by_key = {key: stamps[self._source(inp)] for key, inp in self.config.inputs.items()}
        return ObservationStep(values, ages, stamps_by_key, now_s, self.config.max_age_s)

    def _stamp_s(self, src: str, msg: Any, receipt_s: Mapping[str, float] | None) -> float:
        if self.config.stamp_source == "receipt":
            if receipt_s is None or src not in receipt_s:
                raise ObservationError(f"stamp_source='receipt' but no receipt time was given for {src!r}")
            return float(receipt_s[src])
        try:
            ns = time_to_ns(msg.header.stamp)
        except (AttributeError, MessageConversionError) as exc:
            raise ObservationError(f"message from {src!r} has no valid header.stamp: {exc}") from exc
        if ns == 0:
            raise ObservationError(
                f"message from {src!r} has a zero header.stamp (sender does not stamp); use stamp_source='receipt'"
            )
        return ns / NS_PER_S


def _resize(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or rgb.shape[:2] == size:
        return rgb
    import cv2  # lazy: only needed when resizing

    h, w = size
    return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))
