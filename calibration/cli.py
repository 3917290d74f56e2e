"""Command-line interface for calibration (``dfp calib ...`` / ``python -m calibration.cli``).

Subcommands::

    board      --spec BOARD.yaml --out board.png [--dpi 300] [--squares-x ... to create the spec]
    intrinsics --images GLOB --board BOARD.yaml --out CAM.yaml [--camera-name N]
    handeye    --mode eye_in_hand|eye_to_hand --images GLOB --robot-poses POSES.yaml
               --intrinsics CAM.yaml [--board BOARD.yaml] --out HE.yaml [--method PARK]

:func:`add_calibration_commands` registers them on an existing argparse
``subparsers`` object; each sets ``func`` so the host CLI can run
``return args.func(args)`` (0 on success, 2 on bad input with a one-line error on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2

from calibration.board import ARUCO_DICTIONARIES, CharucoBoardSpec, render_board_image
from calibration.hand_eye import HAND_EYE_METHODS, HAND_EYE_MODES, board_poses_from_images, calibrate_hand_eye
from calibration.intrinsics import calibrate_intrinsics
from calibration.io import (
    CalibrationFileError,
    load_board_spec,
    load_intrinsics,
    load_robot_poses,
    read_image,
    save_board_spec,
    save_hand_eye,
    save_intrinsics,
)

__all__ = ["add_calibration_commands", "build_parser", "main"]

_INCH_M = 0.0254


def _expand_images(patterns: Sequence[str]) -> list[Path]:
    """Expand glob patterns (or literal paths) to a sorted, de-duplicated list of files."""
    found: set[str] = set()
    for pat in patterns:
        matches = glob.glob(os.path.expanduser(pat))
        if not matches and os.path.isfile(pat):
            matches = [pat]
        found.update(m for m in matches if os.path.isfile(m))
    if not found:
        raise ValueError(f"no image files match {' '.join(patterns)!r}")
    return sorted(Path(p) for p in found)


def _write_png(path: Path, image: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"{path}: could not write image (check the extension, e.g. .png)")


# ----------------------------------------------------------------------------- board
def _cmd_board(args: argparse.Namespace) -> int:
    spec_path = Path(args.spec)
    given = [args.squares_x, args.squares_y, args.square_mm, args.marker_mm]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise ValueError("to create a board spec give all of --squares-x --squares-y --square-mm --marker-mm")
        spec = CharucoBoardSpec(
            squares_x=args.squares_x,
            squares_y=args.squares_y,
            square_length_m=args.square_mm / 1000.0,
            marker_length_m=args.marker_mm / 1000.0,
            dictionary=args.dictionary,
        )
        if spec_path.exists() and load_board_spec(spec_path) != spec:
            raise ValueError(f"{spec_path}: exists with a different board; remove it or drop the size options")
        save_board_spec(spec, spec_path)
        print(f"wrote board spec {spec_path}")
    else:
        spec = load_board_spec(spec_path)
    if args.dpi <= 0:
        raise ValueError(f"--dpi must be > 0, got {args.dpi}")
    px_per_square = round(spec.square_length_m / _INCH_M * args.dpi)
    margin = round(args.margin_mm / 1000.0 / _INCH_M * args.dpi)
    img = render_board_image(spec, px_per_square=px_per_square, margin_px=margin)
    out = Path(args.out)
    _write_png(out, img)
    h, w = img.shape
    print(
        f"wrote {out}: {w}x{h} px; print at {args.dpi:g} dpi without scaling -> "
        f"{w / args.dpi * 25.4:.1f} x {h / args.dpi * 25.4:.1f} mm\n"
        f"  {spec.squares_x}x{spec.squares_y} squares of {spec.square_length_m * 1000:.2f} mm, "
        f"markers {spec.marker_length_m * 1000:.2f} mm ({spec.dictionary}); "
        "measure the printed square and fix square_length_m in the spec if it differs"
    )
    return 0


# ----------------------------------------------------------------------------- intrinsics
def _cmd_intrinsics(args: argparse.Namespace) -> int:
    spec = load_board_spec(args.board)
    paths = _expand_images(args.images)
    images = [read_image(p) for p in paths]
    result = calibrate_intrinsics(
        images,
        spec,
        names=[p.name for p in paths],
        camera_name=args.camera_name,
        min_corners=args.min_corners,
        min_views=args.min_views,
        on_bad_view="raise" if args.strict else "skip",
        fix_k3=args.fix_k3,
    )
    out = save_intrinsics(result, args.out)
    print(result.summary())
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- hand-eye
def _cmd_handeye(args: argparse.Namespace) -> int:
    intr = load_intrinsics(args.intrinsics)
    spec = load_board_spec(args.board) if args.board else intr.board
    paths = _expand_images(args.images)
    poses = load_robot_poses(args.robot_poses)
    names = [p.name for p in paths]
    if poses[0].image is not None:
        if len(set(names)) != len(names):
            raise ValueError("image basenames are not unique; cannot pair them with robot poses by name")
        by_name = {p.image: p for p in poses}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"{args.robot_poses}: no robot pose for image(s): {', '.join(missing)}")
        extra = sorted(set(by_name) - set(names))
        if extra:
            raise ValueError(f"{args.robot_poses}: robot poses for images not matched by --images: {', '.join(extra)}")
        T_base_gripper = [by_name[n].T_base_gripper for n in names]
    else:
        if len(poses) != len(paths):
            raise ValueError(
                f"{args.robot_poses}: {len(poses)} robot poses but {len(paths)} images; without 'image' keys "
                "they are paired in sorted image order and counts must match"
            )
        T_base_gripper = [p.T_base_gripper for p in poses]
    images = [read_image(p) for p in paths]
    obs = board_poses_from_images(
        images,
        spec,
        intr.camera,
        names=names,
        min_corners=args.min_corners,
        on_bad_view="raise" if args.strict else "skip",
        max_reprojection_px=args.max_reprojection_px,
    )
    result = calibrate_hand_eye(
        [T_base_gripper[i] for i in obs.indices],
        list(obs.T_cam_board),
        mode=args.mode,
        method=args.method,
        pose_names=obs.names,
        min_poses=args.min_poses,
        rejected=obs.rejected,
    )
    result = dataclasses.replace(result, camera_name=intr.camera_name, intrinsics_file=str(args.intrinsics))
    out = save_hand_eye(result, args.out)
    print(result.summary())
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- wiring
def _guarded(cmd: str, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (CalibrationFileError, ValueError, FileNotFoundError) as exc:
            print(f"calib {cmd}: error: {exc}", file=sys.stderr)
            return 2

    run.__name__ = f"calib_{cmd}"
    return run


def add_calibration_commands(subparsers: Any) -> None:
    """Register ``board``, ``intrinsics`` and ``handeye`` on an argparse ``subparsers`` object.

    Each subparser sets ``func(args) -> int`` (exit code).
    """
    p = subparsers.add_parser("board", help="render a printable ChArUco board (and optionally create its spec)")
    p.add_argument("--spec", required=True, help="board spec YAML (read, or written when size options are given)")
    p.add_argument("--out", required=True, help="output image (PNG)")
    p.add_argument("--dpi", type=float, default=300.0, help="print resolution (default 300)")
    p.add_argument("--margin-mm", type=float, default=10.0, help="white margin around the board (default 10 mm)")
    p.add_argument("--squares-x", type=int, help="create spec: squares along x")
    p.add_argument("--squares-y", type=int, help="create spec: squares along y")
    p.add_argument("--square-mm", type=float, help="create spec: square side in mm")
    p.add_argument("--marker-mm", type=float, help="create spec: marker side in mm")
    p.add_argument("--dictionary", default="DICT_5X5_100", choices=ARUCO_DICTIONARIES, metavar="DICT",
                   help="create spec: ArUco dictionary (default DICT_5X5_100)")
    p.set_defaults(func=_guarded("board", _cmd_board))

    p = subparsers.add_parser("intrinsics", help="calibrate camera intrinsics from ChArUco images")
    p.add_argument("--images", required=True, nargs="+", help="image glob(s), e.g. 'shots/*.png' (quote it)")
    p.add_argument("--board", required=True, help="board spec YAML")
    p.add_argument("--out", required=True, help="output intrinsics YAML")
    p.add_argument("--camera-name", default="camera", help="camera name stored in the file")
    p.add_argument("--min-corners", type=int, default=6, help="reject views with fewer corners (default 6)")
    p.add_argument("--min-views", type=int, default=4, help="fail with fewer usable views (default 4)")
    p.add_argument("--fix-k3", action="store_true", help="fix k3 = 0 (recommended for low-distortion lenses)")
    p.add_argument("--strict", action="store_true", help="fail on the first image without a usable board")
    p.set_defaults(func=_guarded("intrinsics", _cmd_intrinsics))

    p = subparsers.add_parser("handeye", help="hand-eye calibration from ChArUco images and robot poses")
    p.add_argument("--mode", required=True, choices=HAND_EYE_MODES)
    p.add_argument("--images", required=True, nargs="+", help="image glob(s) (quote it)")
    p.add_argument("--robot-poses", required=True, help="robot poses YAML (T_base_gripper per image, metres)")
    p.add_argument("--intrinsics", required=True, help="intrinsics YAML of the camera")
    p.add_argument("--board", help="board spec YAML (default: the board stored in the intrinsics file)")
    p.add_argument("--out", required=True, help="output hand-eye YAML")
    p.add_argument("--method", default="PARK", type=str.upper, choices=tuple(HAND_EYE_METHODS))
    p.add_argument("--min-corners", type=int, default=6)
    p.add_argument("--min-poses", type=int, default=5)
    p.add_argument("--max-reprojection-px", type=float, default=None,
                   help="reject views whose board-pose reprojection RMS exceeds this")
    p.add_argument("--strict", action="store_true", help="fail on the first image without a usable board")
    p.set_defaults(func=_guarded("handeye", _cmd_handeye))


def build_parser(prog: str = "python -m calibration.cli") -> argparse.ArgumentParser:
    """Standalone parser with the calibration subcommands."""
    parser = argparse.ArgumentParser(prog=prog, description="Camera and hand-eye calibration (ChArUco)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_calibration_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
