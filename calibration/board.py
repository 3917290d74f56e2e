"""ChArUco calibration board description.

Board frame (``board``): origin at the outer top-left corner of the chessboard
(the corner of the first square, as rendered by :func:`render_board_image`),
x along the ``squares_x`` direction (image right), y along ``squares_y`` (image
down), z into the board (away from a viewer looking at the printed side).
Inner chessboard corners ("ChArUco corners") lie at ``z = 0``; corner id ``k``
is at ``((k % (squares_x - 1)) + 1, (k // (squares_x - 1)) + 1) * square_length_m``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import cv2
import numpy as np

__all__ = ["ARUCO_DICTIONARIES", "CharucoBoardSpec", "render_board_image"]

#: Names accepted for ``CharucoBoardSpec.dictionary`` (OpenCV predefined dictionaries).
ARUCO_DICTIONARIES: tuple[str, ...] = tuple(
    sorted(
        name
        for name in dir(cv2.aruco)
        if name.startswith("DICT_") and isinstance(getattr(cv2.aruco, name), int)
    )
)


def _dictionary_size(name: str) -> int:
    return int(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0])


@dataclass(frozen=True)
class CharucoBoardSpec:
    """Geometry of a ChArUco board.

    ``squares_x`` x ``squares_y`` chessboard squares of side ``square_length_m``
    (metres, as printed: measure it!), ArUco markers of side ``marker_length_m``
    inside the white squares, from the OpenCV predefined ``dictionary`` (e.g.
    ``"DICT_5X5_100"``). ``legacy_pattern`` selects the pre-4.6 OpenCV layout
    (only differs for an even number of rows).
    """

    squares_x: int
    squares_y: int
    square_length_m: float
    marker_length_m: float
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        for field in ("squares_x", "squares_y"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"CharucoBoardSpec.{field} must be an int, got {value!r}")
            if value < 2:
                raise ValueError(f"CharucoBoardSpec.{field} must be >= 2, got {value}")
            object.__setattr__(self, field, int(value))
        for field in ("square_length_m", "marker_length_m"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ValueError(f"CharucoBoardSpec.{field} must be a number (metres), got {value!r}")
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"CharucoBoardSpec.{field} must be > 0 metres, got {value}")
            object.__setattr__(self, field, float(value))
        if self.square_length_m > 1.0:
            raise ValueError(
                f"CharucoBoardSpec.square_length_m = {self.square_length_m} m is implausibly large; "
                "lengths are in metres (e.g. 0.03 for 30 mm)"
            )
        if self.marker_length_m >= self.square_length_m:
            raise ValueError(
                f"CharucoBoardSpec.marker_length_m ({self.marker_length_m}) must be smaller than "
                f"square_length_m ({self.square_length_m})"
            )
        if self.dictionary not in ARUCO_DICTIONARIES:
            raise ValueError(
                f"CharucoBoardSpec.dictionary {self.dictionary!r} is not an OpenCV ArUco dictionary; "
                f"choose one of {', '.join(ARUCO_DICTIONARIES)}"
            )
        if not isinstance(self.legacy_pattern, (bool, np.bool_)):
            raise ValueError(f"CharucoBoardSpec.legacy_pattern must be a bool, got {self.legacy_pattern!r}")
        object.__setattr__(self, "legacy_pattern", bool(self.legacy_pattern))
        n_markers = (self.squares_x * self.squares_y) // 2
        capacity = _dictionary_size(self.dictionary)
        if n_markers > capacity:
            raise ValueError(
                f"a {self.squares_x}x{self.squares_y} board needs {n_markers} markers but "
                f"{self.dictionary} only has {capacity}"
            )

    # ----------------------------------------------------------------- geometry
    @property
    def n_corners(self) -> int:
        """Number of inner chessboard (ChArUco) corners."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_m(self) -> tuple[float, float]:
        """Chessboard extent (width, height) in metres, without the print margin."""
        return (self.squares_x * self.square_length_m, self.squares_y * self.square_length_m)

    def corner_points_m(self) -> np.ndarray:
        """(n_corners, 3) ChArUco corner positions in the board frame, indexed by corner id."""
        return np.asarray(self.make_board().getChessboardCorners(), dtype=np.float64).reshape(-1, 3)

    def make_board(self) -> cv2.aruco.CharucoBoard:
        """A new ``cv2.aruco.CharucoBoard`` for this spec."""
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square_length_m, self.marker_length_m, dictionary
        )
        board.setLegacyPattern(self.legacy_pattern)
        return board

    # --------------------------------------------------------------- dict / YAML
    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (YAML friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CharucoBoardSpec":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on missing/unknown keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"board spec must be a mapping, got {type(data).__name__}")
        required = ("squares_x", "squares_y", "square_length_m", "marker_length_m")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"board spec is missing required key(s): {', '.join(missing)}")
        allowed = set(required) | {"dictionary", "legacy_pattern"}
        unknown = sorted(set(data) - allowed - {"kind", "format_version"})
        if unknown:
            raise ValueError(f"board spec has unknown key(s): {', '.join(map(str, unknown))}")
        return cls(**{k: data[k] for k in allowed if k in data})


def render_board_image(
    spec: CharucoBoardSpec, px_per_square: int = 100, margin_px: int | None = None
) -> np.ndarray:
    """Render the board as a grayscale uint8 image (black/white, white margin).

    Each square is exactly ``px_per_square`` pixels; the chessboard's outer
    corner sits at pixel-edge ``margin_px`` (default: half a square), so board
    point ``(X, Y)`` metres is at pixel ``margin_px - 0.5 + X / square_length_m * px_per_square``
    (pixel centres at integer coordinates). For printing at ``dpi``, use
    ``px_per_square = round(square_length_m / 0.0254 * dpi)``.
    """
    if int(px_per_square) != px_per_square or px_per_square < 10:
        raise ValueError(f"px_per_square must be an integer >= 10, got {px_per_square}")
    px_per_square = int(px_per_square)
    if margin_px is None:
        margin_px = px_per_square // 2
    if int(margin_px) != margin_px or margin_px < 0:
        raise ValueError(f"margin_px must be a non-negative integer, got {margin_px}")
    margin_px = int(margin_px)
    marker_px = spec.marker_length_m / spec.square_length_m * px_per_square
    # 5x5 dictionary + 1 border bit needs 7 cells; keep at least ~3 px per cell.
    if marker_px < 20:
        raise ValueError(
            f"px_per_square={px_per_square} gives {marker_px:.1f} px markers; too small to render"
        )
    width = spec.squares_x * px_per_square + 2 * margin_px
    height = spec.squares_y * px_per_square + 2 * margin_px
    img = spec.make_board().generateImage((width, height), marginSize=margin_px, borderBits=1)
    return np.ascontiguousarray(img, dtype=np.uint8)
