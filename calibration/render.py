"""Synthetic photos of a ChArUco board with known ground truth (tests / demos).

:func:`render_board_view` images the board texture through a pinhole camera
``K`` (optionally with OpenCV distortion ``dist``) at pose ``T_cam_board``
using the plane homography ``K [r1 r2 t]``. Rendering is supersampled and
box-filtered down, so corner positions agree with the projection model to a
small fraction of a pixel. :func:`sample_board_poses` draws random poses for
which the whole board is inside the image.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from calibration.board import CharucoBoardSpec, render_board_image
from calibration.transforms import make_transform

__all__ = ["look_at_board", "render_board_view", "sample_board_poses"]

_TEXTURE_PX_PER_SQUARE = 120


@lru_cache(maxsize=8)
def _texture(spec: CharucoBoardSpec, px_per_square: int) -> tuple[np.ndarray, np.ndarray]:
    """Board texture and A_board_tex (3x3): texture pixel (u, v, 1) -> board (X, Y, 1) metres."""
    margin = px_per_square // 2
    tex = render_board_image(spec, px_per_square=px_per_square, margin_px=margin)
    s = spec.square_length_m / px_per_square
    off = -(margin - 0.5) * s
    A = np.array([[s, 0.0, off], [0.0, s, off], [0.0, 0.0, 1.0]])
    tex.setflags(write=False)
    return tex, A


def _fine_camera(K: np.ndarray, ss: int) -> np.ndarray:
    """K of a camera with ``ss``x the resolution whose ``ss``x``ss`` pixel blocks average to the original pixels."""
    S = np.array([[ss, 0, (ss - 1) / 2.0], [0, ss, (ss - 1) / 2.0], [0, 0, 1.0]])
    return S @ K


@lru_cache(maxsize=4)
def _normalized_ray_map(K_bytes: bytes, dist_bytes: bytes, width: int, height: int, ss: int) -> np.ndarray:
    """(3, H*ss*W*ss) undistorted normalized rays (x, y, 1) for every fine pixel of a distorted camera."""
    K = np.frombuffer(K_bytes, dtype=np.float64).reshape(3, 3)
    dist = np.frombuffer(dist_bytes, dtype=np.float64)
    fw, fh = width * ss, height * ss
    uf, vf = np.meshgrid(np.arange(fw, dtype=np.float64), np.arange(fh, dtype=np.float64))
    uc = (uf + 0.5) / ss - 0.5
    vc = (vf + 0.5) / ss - 0.5
    pts = np.stack([uc.ravel(), vc.ravel()], axis=1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 40, 1e-10)
    und = cv2.undistortPointsIter(pts, K, dist, None, None, criteria).reshape(-1, 2)
    rays = np.ones((3, und.shape[0]))
    rays[:2] = und.T
    return rays


def render_board_view(
    spec: CharucoBoardSpec,
    K: np.ndarray,
    T_cam_board: np.ndarray,
    image_size: tuple[int, int],
    dist: np.ndarray | None = None,
    background: int = 160,
    noise_sigma: float = 0.0,
    blur_sigma: float = 0.0,
    supersample: int = 2,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Render a grayscale uint8 image (``image_size`` = (width, height)) of the board.

    The board (with its white print margin) is seen by camera ``K`` with
    distortion ``dist`` (None/zeros: pure pinhole via ``cv2.warpPerspective``;
    otherwise a per-pixel remap) at ``T_cam_board`` (4x4, metres). Outside the
    board the image is ``background`` gray. Optional Gaussian ``blur_sigma`` (px)
    and additive Gaussian ``noise_sigma`` (gray levels, seeded by ``rng``).
    Raises ``ValueError`` if the board is behind the camera or seen from behind.
    """
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    T = np.asarray(T_cam_board, dtype=np.float64).reshape(4, 4)
    width, height = int(image_size[0]), int(image_size[1])
    ss = int(supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    tex, A = _texture(spec, _TEXTURE_PX_PER_SQUARE)
    th, tw = tex.shape
    # Texture outline (incl. margin) must be in front of the camera, printed side facing it.
    outline_tex = np.array([[-0.5, -0.5, 1], [tw - 0.5, -0.5, 1], [tw - 0.5, th - 0.5, 1], [-0.5, th - 0.5, 1]]).T
    outline_board = A @ outline_tex
    outline_cam = T[:3, :3] @ np.vstack([outline_board[:2], np.zeros(4)]) + T[:3, 3:4]
    if np.any(outline_cam[2] <= 1e-3):
        raise ValueError("render_board_view: part of the board is behind the camera")
    if float(T[:3, 2] @ T[:3, 3]) <= 0:
        raise ValueError("render_board_view: the board is seen from behind (board z axis points at the camera)")
    P = np.column_stack([T[:3, 0], T[:3, 1], T[:3, 3]])  # normalized image <- board plane (X, Y, 1)
    dist_arr = None if dist is None else np.asarray(dist, dtype=np.float64).reshape(-1)
    if dist_arr is None or not np.any(dist_arr):
        H = _fine_camera(K, ss) @ P @ A
        fine = cv2.warpPerspective(
            tex, H, (width * ss, height * ss), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=int(background),
        )
    else:
        rays = _normalized_ray_map(K.tobytes(), dist_arr.tobytes(), width, height, ss)
        tex_h = np.linalg.inv(P @ A) @ rays
        with np.errstate(divide="ignore", invalid="ignore"):
            map_x = (tex_h[0] / tex_h[2]).astype(np.float32).reshape(height * ss, width * ss)
            map_y = (tex_h[1] / tex_h[2]).astype(np.float32).reshape(height * ss, width * ss)
        behind = (tex_h[2] <= 0).reshape(height * ss, width * ss)
        map_x[behind | ~np.isfinite(map_x)] = -1e4
        map_y[behind | ~np.isfinite(map_y)] = -1e4
        fine = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=int(background))
    img = cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA) if ss > 1 else fine
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), float(blur_sigma))
    if noise_sigma > 0:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        noisy = img.astype(np.float32) + gen.normal(0.0, float(noise_sigma), img.shape).astype(np.float32)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def look_at_board(spec: CharucoBoardSpec, distance_m: float, R_cam_board: np.ndarray | None = None,
                  center_ray: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``T_cam_board`` placing the board centre at ``distance_m`` along normalized ray ``(x, y, 1)``."""
    R = np.eye(3) if R_cam_board is None else np.asarray(R_cam_board, dtype=np.float64)
    w, h = spec.size_m
    center_board = np.array([w / 2.0, h / 2.0, 0.0])
    ray = np.array([center_ray[0], center_ray[1], 1.0])
    center_cam = distance_m * ray / np.linalg.norm(ray)
    return make_transform(R, center_cam - R @ center_board)


def sample_board_poses(
    spec: CharucoBoardSpec,
    K: np.ndarray,
    image_size: tuple[int, int],
    n: int,
    rng: np.random.Generator | int | None = 0,
    distance_m: tuple[float, float] = (0.35, 0.7),
    max_tilt_deg: float = 40.0,
    max_roll_deg: float = 30.0,
    margin_px: float = 15.0,
    center_range: tuple[float, float] = (0.3, 0.7),
    max_tries: int = 10000,
) -> list[np.ndarray]:
    """Draw ``n`` random ``T_cam_board`` with the whole board (incl. print margin) inside the image.

    Tilt: rotation up to ``max_tilt_deg`` about a random in-plane axis; roll:
    uniform in +-``max_roll_deg`` about the board normal; board centre at a
    random distance in ``distance_m`` on the ray through a random pixel whose
    coordinates are uniform in ``center_range`` (fractions of width / height;
    widen it to cover the image periphery, e.g. for distortion). Raises ``ValueError`` if
    ``max_tries`` draws do not yield ``n`` poses (board too large for the view).
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    width, height = image_size
    w, h = spec.size_m
    m = spec.square_length_m / 2.0  # print margin used by the renderer
    outline = np.array([[-m, -m, 0], [w + m, -m, 0], [w + m, h + m, 0], [-m, h + m, 0]]).T
    Kinv = np.linalg.inv(K)
    poses: list[np.ndarray] = []
    for _ in range(max_tries):
        if len(poses) == n:
            break
        roll = np.deg2rad(gen.uniform(-max_roll_deg, max_roll_deg))
        axis_angle = gen.uniform(0, 2 * np.pi)
        tilt = np.deg2rad(max_tilt_deg) * np.sqrt(gen.uniform(0, 1))
        axis = np.array([np.cos(axis_angle), np.sin(axis_angle), 0.0])
        R = Rotation.from_rotvec(axis * tilt).as_matrix() @ Rotation.from_rotvec([0, 0, roll]).as_matrix()
        u = gen.uniform(center_range[0] * width, center_range[1] * width)
        v = gen.uniform(center_range[0] * height, center_range[1] * height)
        ray = Kinv @ np.array([u, v, 1.0])
        T = look_at_board(spec, gen.uniform(*distance_m), R, (ray[0], ray[1]))
        pts = T[:3, :3] @ outline + T[:3, 3:4]
        if np.any(pts[2] <= 0.05):
            continue
        proj = K @ (pts / pts[2])
        if (proj[0].min() < margin_px or proj[1].min() < margin_px
                or proj[0].max() > width - 1 - margin_px or proj[1].max() > height - 1 - margin_px):
            continue
        poses.append(T)
    if len(poses) < n:
        raise ValueError(
            f"sample_board_poses: only {len(poses)} of {n} poses fit in the image after {max_tries} tries; "
            "increase distance_m or reduce max_tilt_deg"
        )
    return poses

