"""Image resizing and crops shared by training (random crop) and evaluation/serving (centre crop).

Images are ``uint8`` ``(..., H, W, C)`` (store layout) on input; outputs keep the layout.
One random offset per sample is applied to all of that sample's observation steps, so
the history of one sample stays spatially consistent.
"""

from __future__ import annotations

import numpy as np


def _check(h: int, w: int, crop: tuple[int, int]) -> None:
    if crop[0] > h or crop[1] > w or min(crop) <= 0:
        raise ValueError(f"crop {crop} does not fit images of size {(h, w)}")


def center_crop(images: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """Centre crop ``(..., H, W, C)`` to ``(..., ch, cw, C)`` (a view)."""
    h, w = images.shape[-3:-1]
    _check(h, w, crop)
    y0, x0 = (h - crop[0]) // 2, (w - crop[1]) // 2
    return images[..., y0 : y0 + crop[0], x0 : x0 + crop[1], :]


def random_crop(images: np.ndarray, crop: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random crop of ``(B, T, H, W, C)``: one offset per sample ``b``, shared over ``T``."""
    b, t, h, w, c = images.shape
    _check(h, w, crop)
    ys = rng.integers(0, h - crop[0] + 1, size=b)
    xs = rng.integers(0, w - crop[1] + 1, size=b)
    out = np.empty((b, t, crop[0], crop[1], c), dtype=images.dtype)
    for i in range(b):
        out[i] = images[i, :, ys[i] : ys[i] + crop[0], xs[i] : xs[i] + crop[1], :]
    return out


def resize(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize ``(..., H, W, C)`` uint8 frames to ``(..., h, w, C)`` with OpenCV's area filter
    (the right one for shrinking camera frames to a model's input); frames already at ``shape``
    are returned unchanged. Training (on load) and the runtime call this same function."""
    h, w = int(shape[0]), int(shape[1])
    if images.shape[-3:-1] == (h, w):
        return images
    import cv2

    lead, (H, W, C) = images.shape[:-3], images.shape[-3:]
    flat = images.reshape(-1, H, W, C)
    out = np.empty((len(flat), h, w, C), dtype=images.dtype)
    for i, frame in enumerate(flat):
        r = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        out[i] = r.reshape(h, w, C)
    return out.reshape(*lead, h, w, C)
