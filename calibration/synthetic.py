"""Synthetic hand-eye scenarios with known ground truth (tests / demos).

Pairs with :mod:`calibration.render` to turn the board poses into images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from calibration.board import CharucoBoardSpec
from calibration.hand_eye import FIXED_BOARD_TRANSFORM, HAND_EYE_MODES, SOLVED_TRANSFORM, HandEyeMode
from calibration.render import sample_board_poses
from calibration.transforms import as_transform, invert, make_transform

__all__ = ["HandEyeScenario", "make_hand_eye_scenario", "random_transform"]


def random_transform(
    rng: np.random.Generator, max_angle_deg: float = 180.0, max_translation_m: float = 0.1
) -> np.ndarray:
    """Random rigid transform: rotation up to ``max_angle_deg`` about a random axis, translation in a cube."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.0, max_angle_deg))
    t = rng.uniform(-max_translation_m, max_translation_m, size=3)
    return make_transform(Rotation.from_rotvec(axis * angle).as_matrix(), t)


@dataclass(frozen=True)
class HandEyeScenario:
    """Ground truth for one hand-eye data set (all 4x4, metres).

    ``X`` is ``T_gripper_cam`` (eye_in_hand) or ``T_base_cam`` (eye_to_hand);
    ``T_fixed_board`` is ``T_base_board`` or ``T_gripper_board`` respectively.
    ``T_base_gripper[i]`` and ``T_cam_board[i]`` are exactly consistent.
    """

    mode: str
    X: np.ndarray
    T_fixed_board: np.ndarray
    T_base_gripper: tuple[np.ndarray, ...]
    T_cam_board: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if self.mode not in HAND_EYE_MODES:
            raise ValueError(f"HandEyeScenario.mode must be one of {HAND_EYE_MODES}, got {self.mode!r}")
        object.__setattr__(self, "X", as_transform(self.X, SOLVED_TRANSFORM[self.mode]))
        object.__setattr__(
            self, "T_fixed_board", as_transform(self.T_fixed_board, FIXED_BOARD_TRANSFORM[self.mode])
        )
        if len(self.T_base_gripper) != len(self.T_cam_board):
            raise ValueError("HandEyeScenario: T_base_gripper and T_cam_board must have equal length")


def make_hand_eye_scenario(
    mode: HandEyeMode,
    X: np.ndarray,
    T_fixed_board: np.ndarray,
    spec: CharucoBoardSpec,
    K: np.ndarray,
    image_size: tuple[int, int],
    n: int,
    rng: np.random.Generator | int | None = 0,
    **pose_kwargs: float,
) -> HandEyeScenario:
    """Robot poses and board views consistent with ``X``, with the board fully visible in every view.

    Board views are drawn by :func:`calibration.render.sample_board_poses`
    (``pose_kwargs`` forwarded, e.g. ``max_tilt_deg``, ``max_roll_deg``); the
    robot poses follow from the kinematic loop:
    eye_in_hand ``T_base_gripper = T_base_board @ inv(T_cam_board) @ inv(X)``,
    eye_to_hand ``T_base_gripper = X @ T_cam_board @ inv(T_gripper_board)``.
    """
    if mode not in HAND_EYE_MODES:
        raise ValueError(f"mode must be one of {HAND_EYE_MODES}, got {mode!r}")
    X = as_transform(X, SOLVED_TRANSFORM[mode])
    T_fixed_board = as_transform(T_fixed_board, FIXED_BOARD_TRANSFORM[mode])
    views = sample_board_poses(spec, K, image_size, n, rng=rng, **pose_kwargs)
    if mode == "eye_in_hand":
        robot = [T_fixed_board @ invert(T_cb) @ invert(X) for T_cb in views]
    else:
        robot = [X @ T_cb @ invert(T_fixed_board) for T_cb in views]
    return HandEyeScenario(mode, X, T_fixed_board, tuple(robot), tuple(views))
