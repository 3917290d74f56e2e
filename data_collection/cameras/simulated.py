"""Simulated camera: frames from a render callable or a deterministic moving test pattern.

Clock model: frame ``k`` (``k = 0, 1, …``) is *captured* at ``t0 + k / fps`` where ``t0`` is
:func:`time.monotonic` at :meth:`start`. With ``realtime=True`` the camera behaves like a real
one with a one-frame buffer (``max_queue`` widens it): ``read`` sleeps until the next frame is
due, and a reader that falls behind gets the newest frame, the skipped ones counting as
dropped. With ``realtime=False`` (virtual clock, for tests and offline rendering) ``read``
returns the next frame at once, stamped with its scheduled time.

Injected drops (``drop_frames`` / ``drop_probability``) model frames the device never delivers:
they leave a gap in ``frame_number`` and are counted in ``stats.frames_dropped`` and in
``stats.extra["injected_drops"]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np

from .base import (
    Camera,
    CameraConfig,
    CameraConfigError,
    CameraError,
    CameraIntrinsics,
    CameraTimeoutError,
    EndOfStream,
    Frame,
)

__all__ = ["RenderFn", "SimulatedCamera", "make_test_pattern"]

RenderOutput = np.ndarray | tuple[np.ndarray, np.ndarray]
RenderFn = Callable[[int, float], RenderOutput]
"""``render(frame_number, timestamp_s) -> color`` or ``(color, depth)``; colour ``uint8 (H, W, 3)``
RGB, depth ``uint16 (H, W)`` in units of the camera's ``depth_scale``."""


def make_test_pattern(frame_number: int, width: int, height: int, with_depth: bool = False) -> RenderOutput:
    """Deterministic moving pattern: colour gradient, blue channel = ``(8 * frame_number) % 256``,
    a white square (side ``height // 4``) moving right by 4 px per frame (wrapping).

    Depth (if asked): 1000 units everywhere, 500 inside the square.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    color = np.empty((height, width, 3), np.uint8)
    color[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    color[..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    color[..., 2] = (8 * frame_number) % 256
    side = max(height // 4, 1)
    x0 = (4 * frame_number) % width
    y0 = (height - side) // 2
    cols = (np.arange(x0, x0 + side) % width)
    color[y0 : y0 + side, cols] = 255
    if not with_depth:
        return color
    depth = np.full((height, width), 1000, np.uint16)
    depth[y0 : y0 + side, cols] = 500
    return color, depth


class SimulatedCamera(Camera):
    """Camera backed by ``render_fn`` (e.g. a simulator's render) or :func:`make_test_pattern`.

    Args:
        config: size, fps, ``enable_depth``; ``serial`` is ignored.
        render_fn: see :data:`RenderFn`; called from the reading thread. ``None`` = test pattern.
        realtime: pace frames on the host clock (see module docstring).
        drop_frames: frame numbers that are never delivered.
        drop_probability: probability in ``[0, 1)`` that any frame is dropped, decided
            deterministically from ``(seed, frame_number)``.
        seed: seed for ``drop_probability``.
        max_frames: frames ``>= max_frames`` do not exist (``read`` raises :class:`EndOfStream`).
        hfov_deg: horizontal field of view for the default ideal-pinhole intrinsics.
        depth_scale: metres per depth unit.
        max_queue: realtime only: how many captured-but-unread frames the camera keeps; a
            reader further behind loses the older ones (1 = newest frame only, like a webcam).
    """

    def __init__(
        self,
        config: CameraConfig,
        render_fn: RenderFn | None = None,
        *,
        realtime: bool = True,
        drop_frames: Iterable[int] = (),
        drop_probability: float = 0.0,
        seed: int = 0,
        max_frames: int | None = None,
        hfov_deg: float = 60.0,
        depth_scale: float = 0.001,
        max_queue: int = 1,
    ) -> None:
        super().__init__(config)
        if not 0.0 <= drop_probability < 1.0:
            raise CameraConfigError(f"{config.name}: drop_probability must be in [0, 1), got {drop_probability}")
        if max_frames is not None and max_frames < 0:
            raise CameraConfigError(f"{config.name}: max_frames must be >= 0, got {max_frames}")
        if max_queue < 1:
            raise CameraConfigError(f"{config.name}: max_queue must be >= 1, got {max_queue}")
        if not (math.isfinite(depth_scale) and depth_scale > 0):
            raise CameraConfigError(f"{config.name}: depth_scale must be > 0, got {depth_scale}")
        self._render = render_fn
        self._realtime = bool(realtime)
        self._drop_set = frozenset(int(k) for k in drop_frames)
        self._drop_p = float(drop_probability)
        self._seed = int(seed)
        self._max_frames = max_frames
        self._depth_scale = float(depth_scale)
        self._max_queue = int(max_queue)
        self._sim_intrinsics = CameraIntrinsics.from_fov(config.width, config.height, hfov_deg)
        self._t0 = 0.0
        self._next = 0  # smallest frame number not yet delivered or skipped

    # -- drop model
    def is_dropped(self, frame_number: int) -> bool:
        """Whether the drop model removes ``frame_number`` (deterministic)."""
        if frame_number in self._drop_set:
            return True
        if self._drop_p > 0.0:
            return bool(np.random.default_rng([self._seed, frame_number]).random() < self._drop_p)
        return False

    def frame_time(self, frame_number: int) -> float:
        """Scheduled capture time of ``frame_number``, host monotonic seconds (valid after start)."""
        return self._t0 + frame_number / self.config.fps

    # -- Camera hooks
    def _open(self) -> None:
        self._t0 = time.monotonic()
        self._next = 0
        self.stats.extra["injected_drops"] = 0

    def _close(self) -> None:
        pass

    def _device_intrinsics(self) -> CameraIntrinsics:
        return self._sim_intrinsics

    def _read(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        k = self._next
        if self._realtime:
            # Only the newest max_queue captured frames survive; older undelivered ones are lost.
            due = math.floor((time.monotonic() - self._t0) * self.config.fps + 1e-9)
            k = max(k, due - self._max_queue + 1)
        while True:
            if self._max_frames is not None and k >= self._max_frames:
                self._skip_to(self._max_frames)
                raise EndOfStream(f"{self.name}: simulated stream ended after {self._max_frames} frames")
            if not self.is_dropped(k):
                break
            k += 1
        t_k = self.frame_time(k)
        if self._realtime:
            wait = t_k - time.monotonic()
            if t_k > deadline:
                raise CameraTimeoutError(f"{self.name}: next frame due in {wait:.3f} s > timeout {timeout_s} s")
            if wait > 0:
                time.sleep(wait)
        self._skip_to(k)
        self._next = k + 1
        return self._make_frame(k, t_k)

    # -- helpers
    def _skip_to(self, k: int) -> None:
        """Count injected drops among frames ``self._next .. k-1`` (skipped by this read)."""
        self.stats.extra["injected_drops"] = self.stats.extra.get("injected_drops", 0) + sum(
            1 for j in range(self._next, k) if self.is_dropped(j)
        )
        self._next = max(self._next, k)

    def _make_frame(self, k: int, t_k: float) -> Frame:
        c = self.config
        if self._render is not None:
            out = self._render(k, t_k)
        else:
            out = make_test_pattern(k, c.width, c.height, c.enable_depth)
        depth = None
        if isinstance(out, tuple):
            if len(out) != 2:
                raise CameraError(f"{self.name}: render_fn must return color or (color, depth), got a {len(out)}-tuple")
            color, depth = out
        else:
            color = out
        if not isinstance(color, np.ndarray) or color.shape != (c.height, c.width, 3) or color.dtype != np.uint8:
            desc = f"{color.dtype} {color.shape}" if isinstance(color, np.ndarray) else type(color).__name__
            raise CameraError(f"{self.name}: render_fn color must be uint8 ({c.height}, {c.width}, 3) RGB, got {desc}")
        if c.enable_depth and depth is None:
            raise CameraError(f"{self.name}: enable_depth is set but render_fn returned no depth")
        if not c.enable_depth:
            depth = None
        return Frame(
            color=np.ascontiguousarray(color),
            depth=None if depth is None else np.ascontiguousarray(depth),
            depth_scale=self._depth_scale if depth is not None else None,
            timestamp_s=t_k,
            frame_number=k,
            hw_timestamp_ms=(t_k - self._t0) * 1000.0,
            hw_timestamp_domain="simulated",
            depth_hw_timestamp_ms=(t_k - self._t0) * 1000.0 if depth is not None else None,
            camera=self.name,
        )
