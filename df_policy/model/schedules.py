"""Scheduling matrices: which noise level every token has at every sampling row.

A scheduling matrix ``M`` is an ``int64`` numpy array of shape ``(R, T)``: ``M[m, t]`` is the
noise level of token ``t`` after row ``m``, in *sampling-step units* ``0..S`` (``S`` = number
of denoising steps; ``S`` = pure noise, ``0`` = clean). Going from row ``m`` to row ``m + 1`` is
one network call in which every token moves from its own level to its own next level.
:func:`to_training_levels` maps step units to the training levels ``0..K`` of
:class:`~df_policy.model.noise.NoiseSchedule`.

All builders return matrices whose first row is all ``S`` and last row all ``0``, whose columns
never increase, and whose consecutive rows differ (no idle network calls); see
:func:`validate_schedule`.
"""

from __future__ import annotations

import numpy as np
import torch

SCHEDULE_NAMES = ("full_sequence", "autoregressive", "pyramid", "trapezoid")


def _check_sizes(T: int, S: int) -> None:
    if T < 1:
        raise ValueError(f"number of tokens T must be >= 1, got {T}")
    if S < 1:
        raise ValueError(f"number of sampling steps S must be >= 1, got {S}")


def _staggered(offsets: np.ndarray, S: int) -> np.ndarray:
    """``M[m, t] = clip(S + offsets[t] - m, 0, S)`` for ``m = 0 .. S + max(offsets)``."""
    rows = S + int(offsets.max()) + 1
    m = np.arange(rows, dtype=np.int64)[:, None]
    return np.clip(S + offsets[None, :] - m, 0, S).astype(np.int64)


def full_sequence(T: int, S: int) -> np.ndarray:
    """All tokens share one level: shape ``(S + 1, T)``, ``M[m, t] = S - m``."""
    _check_sizes(T, S)
    return _staggered(np.zeros(T, dtype=np.int64), S)


def pyramid(T: int, S: int, u: float = 1.0) -> np.ndarray:
    """Later tokens lag behind: ``M[m, t] = clip(S + int(t * u) - m, 0, S)``.

    Shape ``(S + int((T - 1) * u) + 1, T)``. ``u`` (uncertainty scale) is how many rows each
    token lags its predecessor; ``0 <= u <= S`` (``u = 0`` is :func:`full_sequence`, ``u = S``
    is :func:`autoregressive`; larger ``u`` would create rows where nothing changes).
    """
    _check_sizes(T, S)
    if not 0.0 <= u <= S:
        raise ValueError(f"uncertainty scale u must be in [0, S={S}], got {u}")
    offsets = np.array([int(t * u) for t in range(T)], dtype=np.int64)
    return _staggered(offsets, S)


def autoregressive(T: int, S: int) -> np.ndarray:
    """Token ``t`` starts denoising once token ``t - 1`` is clean: ``pyramid(T, S, u=S)``.

    Shape ``(T * S + 1, T)``; in every row at most one token is strictly between 0 and S.
    """
    return pyramid(T, S, u=float(S))


def trapezoid(T: int, S: int, u: float = 1.0) -> np.ndarray:
    """Pyramid rising from both ends: both ends are denoised first, the middle last.

    ``M[m, t] = clip(S + int(d(t) * u) - m, 0, S)`` with ``d(t) = min(t, T - 1 - t)``, the
    distance to the nearest end; shape ``(S + int(max_t d(t) * u) + 1, T)``, symmetric under
    ``t -> T - 1 - t``. Diffusion Forcing's ``df_base.py`` builds the same shape but indexes the
    right half with ``-t``, which shifts it by one token and, for even ``T``, leaves one middle
    column at level 0 from the start; this version is exactly symmetric and never skips a token.
    Useful when both ends are pinned (e.g. start state and goal) by context or guidance.
    """
    _check_sizes(T, S)
    if not 0.0 <= u <= S:
        raise ValueError(f"uncertainty scale u must be in [0, S={S}], got {u}")
    t = np.arange(T)
    distance = np.minimum(t, T - 1 - t)
    offsets = np.array([int(d * u) for d in distance], dtype=np.int64)
    return _staggered(offsets, S)


def make_schedule(name: str, T: int, S: int, u: float = 1.0) -> np.ndarray:
    """Build a schedule by name (one of :data:`SCHEDULE_NAMES`); ``u`` is ignored where unused."""
    if name == "full_sequence":
        return full_sequence(T, S)
    if name == "autoregressive":
        return autoregressive(T, S)
    if name == "pyramid":
        return pyramid(T, S, u)
    if name == "trapezoid":
        return trapezoid(T, S, u)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULE_NAMES}")


def validate_schedule(M: np.ndarray, S: int, *, start_from_noise: bool = True) -> None:
    """Raise ``ValueError`` unless ``M`` is a usable scheduling matrix in step units ``0..S``.

    Checks: 2-D integer array with at least 2 rows and 1 column; values in ``[0, S]``; every
    column non-increasing along ``m``; consecutive rows differ somewhere; last row all 0; and,
    if ``start_from_noise``, first row all ``S``.
    """
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] < 2 or M.shape[1] < 1:
        raise ValueError(f"schedule must be 2-D with >= 2 rows and >= 1 column, got shape {M.shape}")
    if not np.issubdtype(M.dtype, np.integer):
        raise ValueError(f"schedule must hold integers, got dtype {M.dtype}")
    if M.min() < 0 or M.max() > S:
        raise ValueError(f"schedule values must be in [0, {S}], got [{M.min()}, {M.max()}]")
    steps = np.diff(M, axis=0)
    if (steps > 0).any():
        m, t = np.argwhere(steps > 0)[0]
        raise ValueError(f"column {t} increases from row {m} to row {m + 1}")
    idle = ~(steps != 0).any(axis=1)
    if idle.any():
        raise ValueError(f"rows {int(np.argmax(idle))} and {int(np.argmax(idle)) + 1} are identical")
    if (M[-1] != 0).any():
        raise ValueError("last row must be all 0 (every token clean)")
    if start_from_noise and (M[0] != S).any():
        raise ValueError(f"first row must be all S={S} (every token pure noise)")


def to_training_levels(M: np.ndarray, S: int, K: int) -> np.ndarray:
    """Map step units ``0..S`` to training levels ``0..K`` (evenly spaced, rounded): ``0 -> 0``,
    ``S -> K``. Returns ``int64`` of ``M``'s shape."""
    if S < 1 or K < 1:
        raise ValueError(f"S and K must be >= 1, got S={S}, K={K}")
    M = np.asarray(M, dtype=np.int64)
    return (M * K + S // 2) // S


def stabilize(levels: torch.Tensor, context_mask: torch.Tensor, level: int) -> torch.Tensor:
    """Hold context tokens at a small stabilisation level.

    Args:
        levels: integer levels, e.g. ``(B, T)``.
        context_mask: bool, broadcastable to ``levels``; True = context (known) token.
        level: training level the context tokens are labelled with (0 = exactly clean).
    Returns:
        New tensor: ``level`` where ``context_mask`` else ``levels``.
    """
    return torch.where(context_mask, torch.full_like(levels, level), levels)
