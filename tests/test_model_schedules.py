"""Scheduling matrices: documented shapes, monotone columns, all-zero last row, formulas."""

import numpy as np
import pytest
import torch

from df_policy.model.schedules import (
    SCHEDULE_NAMES,
    autoregressive,
    full_sequence,
    make_schedule,
    pyramid,
    stabilize,
    to_training_levels,
    trapezoid,
    validate_schedule,
)


def _expected_rows(name: str, T: int, S: int, u: float) -> int:
    if name == "full_sequence":
        return S + 1
    if name == "autoregressive":
        return T * S + 1
    if name == "pyramid":
        return S + int((T - 1) * u) + 1
    return S + int(max(min(t, T - 1 - t) for t in range(T)) * u) + 1  # trapezoid


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("T,S,u", [(1, 1, 1.0), (7, 5, 1.0), (8, 10, 2.5), (16, 4, 0.5), (5, 3, 3.0)])
def test_every_schedule_has_documented_shape_and_contract(name: str, T: int, S: int, u: float) -> None:
    M = make_schedule(name, T, S, u)
    assert M.dtype == np.int64
    assert M.shape == (_expected_rows(name, T, S, u), T)
    validate_schedule(M, S)  # values in [0, S], first row S, last row 0, monotone, no idle rows
    assert (np.diff(M, axis=0) <= 0).all()
    assert (M[0] == S).all() and (M[-1] == 0).all()
    assert (np.diff(M, axis=0) != 0).any(axis=1).all()


def test_pyramid_matches_formula() -> None:
    T, S, u = 9, 6, 1.5
    M = pyramid(T, S, u)
    for m in range(M.shape[0]):
        for t in range(T):
            assert M[m, t] == min(max(S + int(t * u) - m, 0), S)


def test_full_sequence_and_autoregressive_structure() -> None:
    assert (full_sequence(4, 3) == np.array([[3] * 4, [2] * 4, [1] * 4, [0] * 4])).all()
    M = autoregressive(5, 4)
    np.testing.assert_array_equal(M, pyramid(5, 4, u=4.0))
    in_progress = ((M > 0) & (M < 4)).sum(axis=1)
    assert in_progress.max() == 1, "autoregressive denoises one token at a time"
    first_clean = (M == 0).argmax(axis=0)
    assert (np.diff(first_clean) == 4).all(), "each token finishes S rows after its predecessor"


@pytest.mark.parametrize("T", [1, 2, 5, 8])
def test_trapezoid_is_symmetric_and_ends_finish_first(T: int) -> None:
    M = trapezoid(T, 4, 1.0)
    np.testing.assert_array_equal(M, M[:, ::-1])
    distance = np.minimum(np.arange(T), T - 1 - np.arange(T))
    for m in range(M.shape[0]):
        np.testing.assert_array_equal(M[m], np.clip(4 + distance - m, 0, 4))
    assert (M[1:-1] > 0).any(axis=0).all(), "no token may be clean before denoising starts"


def test_validate_schedule_rejects_bad_matrices() -> None:
    good = pyramid(4, 3)
    validate_schedule(good, 3)
    bad_increase = good.copy()
    bad_increase[2, 0] = 3
    bad_last = good[:-1]
    bad_idle = np.concatenate([good[:2], good[1:]])
    bad_range = good.copy()
    bad_range[0, 0] = 4
    cases = [(bad_increase, "increases"), (bad_last, "last row"), (bad_idle, "identical"), (bad_range, r"\[0, 3\]")]
    for bad, msg in cases:
        with pytest.raises(ValueError, match=msg):
            validate_schedule(bad, 3)
    with pytest.raises(ValueError, match="first row"):
        validate_schedule(good[1:], 3)
    validate_schedule(good[1:], 3, start_from_noise=False)
    with pytest.raises(ValueError):
        pyramid(4, 3, u=3.5)  # would create idle rows


def test_training_levels_and_stabilize() -> None:
    M = full_sequence(2, 3)
    np.testing.assert_array_equal(to_training_levels(M, 3, 1000)[:, 0], [1000, 667, 333, 0])
    np.testing.assert_array_equal(to_training_levels(M, 3, 30)[:, 0], [30, 20, 10, 0])
    levels = torch.tensor([[1000, 500, 0], [7, 8, 9]])
    mask = torch.tensor([[True, False, False], [False, False, True]])
    assert stabilize(levels, mask, 10).tolist() == [[10, 500, 0], [7, 8, 10]]
