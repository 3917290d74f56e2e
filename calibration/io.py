"""YAML files for calibration: board spec, camera intrinsics, hand-eye result, robot poses.

Every written file carries ``kind`` and ``format_version`` so that other
components (e.g. the episode store, which references these files by path) can
validate what they load. Loaders raise :class:`CalibrationFileError` (a
``ValueError``) naming the file and the offending field.

Robot poses file (input to hand-eye), translations in metres::

    poses:
      - image: img_000.png            # optional; matched to image basenames
        T_base_gripper: [[r, r, r, x], [r, r, r, y], [r, r, r, z], [0, 0, 0, 1]]
      - image: img_001.png
        translation_m: [x, y, z]       # alternative to T_base_gripper
        quaternion_xyzw: [qx, qy, qz, qw]

Without ``image`` keys the poses are paired with the images in sorted order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import yaml

from calibration.board import CharucoBoardSpec
from calibration.hand_eye import (
    FIXED_BOARD_TRANSFORM,
    HAND_EYE_METHODS,
    HAND_EYE_MODES,
    SOLVED_TRANSFORM,
    HandEyeResidual,
    HandEyeResult,
)
from calibration.intrinsics import CameraIntrinsics, IntrinsicsCalibration, RejectedView, ViewResult
from calibration.transforms import as_transform, xyz_quat_to_transform

__all__ = [
    "FORMAT_VERSION",
    "CalibrationFileError",
    "RobotPose",
    "load_board_spec",
    "load_hand_eye",
    "load_intrinsics",
    "load_robot_poses",
    "read_image",
    "save_board_spec",
    "save_hand_eye",
    "save_intrinsics",
    "save_robot_poses",
]

FORMAT_VERSION = 1
KIND_BOARD = "charuco_board"
KIND_INTRINSICS = "camera_intrinsics"
KIND_HAND_EYE = "hand_eye"
KIND_ROBOT_POSES = "robot_poses"

PathLike = str | os.PathLike


class CalibrationFileError(ValueError):
    """A calibration file is missing fields, malformed, or of the wrong kind."""


# ----------------------------------------------------------------------------- helpers
def _to_list(a: Any) -> Any:
    """numpy -> nested lists of Python floats (exact YAML round trip via repr)."""
    return np.asarray(a, dtype=np.float64).tolist()


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars (vectors, matrix rows) inline."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(v, (int, float, str, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _dump(data: Mapping[str, Any], path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _load_mapping(path: PathLike, kind: str | None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CalibrationFileError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CalibrationFileError(f"{path}: expected a YAML mapping at top level, got {type(data).__name__}")
    if kind is not None:
        found = data.get("kind")
        if found is not None and found != kind:
            raise CalibrationFileError(f"{path}: expected kind '{kind}', found '{found}'")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CalibrationFileError(
                f"{path}: unsupported format_version {version!r} (this code reads {FORMAT_VERSION})"
            )
    return data


def _require(data: Mapping[str, Any], key: str, path: PathLike) -> Any:
    if key not in data:
        raise CalibrationFileError(f"{path}: missing required field '{key}'")
    return data[key]


def _matrix(value: Any, shape: tuple[int, ...], field: str, path: PathLike) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationFileError(f"{path}: field '{field}' must be numeric, got {value!r}") from None
    if arr.shape != shape:
        raise CalibrationFileError(
            f"{path}: field '{field}' must have shape {shape}, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise CalibrationFileError(f"{path}: field '{field}' contains non-finite values")
    return arr


def _transform(value: Any, field: str, path: PathLike) -> np.ndarray:
    arr = _matrix(value, (4, 4), field, path)
    try:
        return as_transform(arr, field)
    except ValueError as exc:
        raise CalibrationFileError(f"{path}: {exc}") from None


def _number(value: Any, field: str, path: PathLike, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationFileError(f"{path}: field '{field}' must be a number, got {value!r}")
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        raise CalibrationFileError(f"{path}: field '{field}' must be finite and >= {minimum}, got {value}")
    return float(value)


def _rejected_to_yaml(rejected: Sequence[RejectedView]) -> list[dict[str, str]]:
    return [{"name": r.name, "reason": r.reason} for r in rejected]


def _rejected_from_yaml(value: Any, path: PathLike) -> tuple[RejectedView, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, dict) and "name" in r for r in value):
        raise CalibrationFileError(f"{path}: field 'rejected' must be a list of {{name, reason}}")
    return tuple(RejectedView(str(r["name"]), str(r.get("reason", ""))) for r in value)


# ----------------------------------------------------------------------------- board
def save_board_spec(spec: CharucoBoardSpec, path: PathLike) -> Path:
    """Write a board spec YAML (lengths in metres)."""
    return _dump({"kind": KIND_BOARD, "format_version": FORMAT_VERSION, **spec.to_dict()}, path)


def _board_from(data: Any, path: PathLike, field: str = "board") -> CharucoBoardSpec:
    try:
        return CharucoBoardSpec.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CalibrationFileError(f"{path}: invalid {field}: {exc}") from None


def load_board_spec(path: PathLike) -> CharucoBoardSpec:
    """Read a board spec YAML written by :func:`save_board_spec` (or hand-written)."""
    data = _load_mapping(path, KIND_BOARD)
    return _board_from(data, path, "board spec")


# ----------------------------------------------------------------------------- intrinsics
def save_intrinsics(result: IntrinsicsCalibration, path: PathLike) -> Path:
    """Write an intrinsics YAML: camera name, image size, K, dist, RMS, views, board spec, date."""
    cam = result.camera
    data = {
        "kind": KIND_INTRINSICS,
        "format_version": FORMAT_VERSION,
        "camera_name": result.camera_name,
        "date": result.date,
        "image_size": {"width": cam.image_size[0], "height": cam.image_size[1]},
        "camera_model": "opencv_pinhole",
        "K": _to_list(cam.K),
        "dist": _to_list(cam.dist),
        "rms_px": float(result.rms_px),
        "n_views": result.n_views,
        "std_dev_px": {k: float(v) for k, v in result.std_dev.items()},
        "board": result.board.to_dict(),
        "views": [{"name": v.name, "n_corners": int(v.n_corners), "rms_px": float(v.rms_px)} for v in result.views],
        "rejected": _rejected_to_yaml(result.rejected),
    }
    return _dump(data, path)


def load_intrinsics(path: PathLike) -> IntrinsicsCalibration:
    """Read and validate an intrinsics YAML. ``views[i].T_cam_board`` is None (not stored)."""
    data = _load_mapping(path, KIND_INTRINSICS)
    name = _require(data, "camera_name", path)
    if not isinstance(name, str) or not name.strip():
        raise CalibrationFileError(f"{path}: field 'camera_name' must be a non-empty string")
    size = _require(data, "image_size", path)
    if isinstance(size, dict) and set(size) >= {"width", "height"}:
        size = (size["width"], size["height"])
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise CalibrationFileError(f"{path}: field 'image_size' must be {{width, height}} positive ints, got {size!r}")
    K = _matrix(_require(data, "K", path), (3, 3), "K", path)
    dist_raw = _require(data, "dist", path)
    if not isinstance(dist_raw, list):
        raise CalibrationFileError(f"{path}: field 'dist' must be a list of numbers, got {dist_raw!r}")
    dist = _matrix(dist_raw, (len(dist_raw),), "dist", path)
    try:
        camera = CameraIntrinsics(K=K, dist=dist, image_size=(size[0], size[1]))
    except ValueError as exc:
        raise CalibrationFileError(f"{path}: {exc}") from None
    rms = _number(_require(data, "rms_px", path), "rms_px", path, minimum=0.0)
    board = _board_from(_require(data, "board", path), path)
    views_raw = data.get("views") or []
    if not isinstance(views_raw, list):
        raise CalibrationFileError(f"{path}: field 'views' must be a list")
    views = []
    for i, v in enumerate(views_raw):
        if (not isinstance(v, dict) or not {"name", "n_corners", "rms_px"} <= set(v)
                or isinstance(v["n_corners"], bool) or not isinstance(v["n_corners"], int)):
            raise CalibrationFileError(f"{path}: views[{i}] must have name, n_corners (int), rms_px")
        rms_i = _number(v["rms_px"], f"views[{i}].rms_px", path, 0.0)
        views.append(ViewResult(str(v["name"]), int(v["n_corners"]), rms_i))
    n_views = data.get("n_views", len(views))
    if views and n_views != len(views):
        raise CalibrationFileError(f"{path}: n_views = {n_views} but {len(views)} views are listed")
    std = data.get("std_dev_px") or {}
    if not isinstance(std, dict):
        raise CalibrationFileError(f"{path}: field 'std_dev_px' must be a mapping")
    date = data.get("date")
    return IntrinsicsCalibration(
        camera_name=name,
        camera=camera,
        rms_px=rms,
        board=board,
        views=tuple(views),
        rejected=_rejected_from_yaml(data.get("rejected"), path),
        std_dev={str(k): _number(v, f"std_dev_px.{k}", path) for k, v in std.items()},
        date=str(date) if date is not None else "",
    )


# ----------------------------------------------------------------------------- hand-eye
def save_hand_eye(result: HandEyeResult, path: PathLike) -> Path:
    """Write a hand-eye YAML: mode, solved transform (4x4, metres), method, residuals, date."""
    r = result.residual
    data: dict[str, Any] = {
        "kind": KIND_HAND_EYE,
        "format_version": FORMAT_VERSION,
        "mode": result.mode,
        "transform": result.transform_name,
        "T": _to_list(result.T),
        "method": result.method,
        "date": result.date,
        "n_poses": result.n_poses,
        "residuals": {
            "translation_rms_mm": r.translation_rms_mm,
            "translation_max_mm": r.translation_max_mm,
            "rotation_rms_deg": r.rotation_rms_deg,
            "rotation_max_deg": r.rotation_max_deg,
        },
        "fixed_board_transform": FIXED_BOARD_TRANSFORM[result.mode],
        "T_fixed_board": None if result.T_fixed_board is None else _to_list(result.T_fixed_board),
        "poses": [
            {"name": n, "translation_mm": t, "rotation_deg": a}
            for n, t, a in zip(result.pose_names, r.per_pose_translation_mm, r.per_pose_rotation_deg)
        ],
        "rejected": _rejected_to_yaml(result.rejected),
    }
    if result.camera_name is not None:
        data["camera_name"] = result.camera_name
    if result.intrinsics_file is not None:
        data["intrinsics_file"] = result.intrinsics_file
    return _dump(data, path)


def load_hand_eye(path: PathLike) -> HandEyeResult:
    """Read and validate a hand-eye YAML written by :func:`save_hand_eye`."""
    data = _load_mapping(path, KIND_HAND_EYE)
    mode = _require(data, "mode", path)
    if mode not in HAND_EYE_MODES:
        raise CalibrationFileError(f"{path}: field 'mode' must be one of {HAND_EYE_MODES}, got {mode!r}")
    transform = data.get("transform", SOLVED_TRANSFORM[mode])
    if transform != SOLVED_TRANSFORM[mode]:
        raise CalibrationFileError(
            f"{path}: mode '{mode}' solves {SOLVED_TRANSFORM[mode]}, but the file says transform '{transform}'"
        )
    T = _transform(_require(data, "T", path), "T", path)
    method = _require(data, "method", path)
    if not isinstance(method, str) or method.upper() not in HAND_EYE_METHODS:
        raise CalibrationFileError(f"{path}: field 'method' must be one of {tuple(HAND_EYE_METHODS)}, got {method!r}")
    res = _require(data, "residuals", path)
    if not isinstance(res, dict):
        raise CalibrationFileError(f"{path}: field 'residuals' must be a mapping")
    keys = ("translation_rms_mm", "translation_max_mm", "rotation_rms_deg", "rotation_max_deg")
    vals = {k: _number(_require(res, k, path), f"residuals.{k}", path, 0.0) for k in keys}
    poses = data.get("poses") or []
    if not isinstance(poses, list) or not all(isinstance(p, dict) for p in poses):
        raise CalibrationFileError(f"{path}: field 'poses' must be a list of mappings")
    try:
        per_t = tuple(float(p["translation_mm"]) for p in poses)
        per_r = tuple(float(p["rotation_deg"]) for p in poses)
        names = tuple(str(p["name"]) for p in poses)
    except (KeyError, TypeError, ValueError):
        raise CalibrationFileError(f"{path}: each of 'poses' needs name, translation_mm, rotation_deg") from None
    residual = HandEyeResidual(**vals, per_pose_translation_mm=per_t, per_pose_rotation_deg=per_r)
    fixed = data.get("T_fixed_board")
    T_fixed = _transform(fixed, "T_fixed_board", path) if fixed is not None else None
    n_poses = data.get("n_poses", len(poses))
    if isinstance(n_poses, bool) or not isinstance(n_poses, int) or n_poses < 0:
        raise CalibrationFileError(f"{path}: field 'n_poses' must be a non-negative int, got {n_poses!r}")
    cam = data.get("camera_name")
    intr = data.get("intrinsics_file")
    return HandEyeResult(
        mode=mode,
        method=method,
        T=T,
        residual=residual,
        T_fixed_board=T_fixed,
        n_poses=n_poses,
        pose_names=names,
        rejected=_rejected_from_yaml(data.get("rejected"), path),
        date=str(data.get("date", "")),
        camera_name=None if cam is None else str(cam),
        intrinsics_file=None if intr is None else str(intr),
    )


# ----------------------------------------------------------------------------- robot poses
@dataclass(frozen=True)
class RobotPose:
    """One robot pose ``T_base_gripper`` (4x4, metres), optionally tied to an image file name."""

    T_base_gripper: np.ndarray
    image: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_base_gripper", as_transform(self.T_base_gripper, "T_base_gripper"))


def save_robot_poses(poses: Sequence[RobotPose], path: PathLike) -> Path:
    """Write a robot poses YAML (format in the module docstring)."""
    entries = []
    for p in poses:
        e: dict[str, Any] = {}
        if p.image is not None:
            e["image"] = p.image
        e["T_base_gripper"] = _to_list(p.T_base_gripper)
        entries.append(e)
    return _dump({"kind": KIND_ROBOT_POSES, "format_version": FORMAT_VERSION, "poses": entries}, path)


_MAX_PLAUSIBLE_TRANSLATION_M = 10.0


def load_robot_poses(path: PathLike) -> list[RobotPose]:
    """Read a robot poses YAML; each entry has ``T_base_gripper`` or ``translation_m`` + ``quaternion_xyzw``."""
    data = _load_mapping(path, KIND_ROBOT_POSES)
    entries = _require(data, "poses", path)
    if not isinstance(entries, list) or not entries:
        raise CalibrationFileError(f"{path}: field 'poses' must be a non-empty list")
    out: list[RobotPose] = []
    for i, e in enumerate(entries):
        where = f"poses[{i}]"
        if not isinstance(e, dict):
            raise CalibrationFileError(f"{path}: {where} must be a mapping")
        if "T_base_gripper" in e:
            T = _transform(e["T_base_gripper"], f"{where}.T_base_gripper", path)
        elif "translation_m" in e and "quaternion_xyzw" in e:
            xyz = _matrix(e["translation_m"], (3,), f"{where}.translation_m", path)
            q = _matrix(e["quaternion_xyzw"], (4,), f"{where}.quaternion_xyzw", path)
            try:
                T = xyz_quat_to_transform(xyz, q)
            except ValueError as exc:
                raise CalibrationFileError(f"{path}: {where}: {exc}") from None
        else:
            raise CalibrationFileError(
                f"{path}: {where} needs 'T_base_gripper' or 'translation_m' + 'quaternion_xyzw'"
            )
        if np.linalg.norm(T[:3, 3]) > _MAX_PLAUSIBLE_TRANSLATION_M:
            raise CalibrationFileError(
                f"{path}: {where} translation {np.linalg.norm(T[:3, 3]):.1f} m is implausible; "
                "translations must be in metres (not millimetres)"
            )
        image = e.get("image")
        out.append(RobotPose(T, None if image is None else str(image)))
    with_image = [p.image is not None for p in out]
    if any(with_image) and not all(with_image):
        raise CalibrationFileError(f"{path}: either every pose or none must have an 'image' key")
    names = [p.image for p in out if p.image is not None]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CalibrationFileError(f"{path}: duplicate image names in poses: {', '.join(dupes)}")
    return out


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file (as stored: gray or BGR uint8); ``ValueError`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cannot read image (unsupported or corrupt file)")
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got {img.dtype}")
    return img
