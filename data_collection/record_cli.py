"""``dfp record`` / ``python -m data_collection.recorder``: record demonstrations from the command line.

Sources: ``--sim arm`` (:func:`~data_collection.sim.record.record_sim`) or ``--config RIG.yaml``
(:mod:`data_collection.rig` builds the robot, cameras, teleop and recorder settings, then
:class:`~data_collection.recorder.Recorder` runs). Exit status: 0 done, 1 a device failed
(robot, camera — a lost camera included —, teleop), 2 bad arguments / rig file / store,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from data_collection.recorder import Recorder, RecorderError
from data_collection.sim.record import record_sim
from df_policy.data.store import StoreError

DESCRIPTION = "Record teleoperated demonstrations into an episode store."


_CLI_HELP = """\
Sources (exactly one):
  --sim arm            simulated SO-101 + scripted teleoperator, lockstep, as fast as the CPU allows
  --config RIG.yaml    the robot, cameras, teleop device and recorder settings of a rig file
                       (reference: data_collection/README.md; examples: --list-configs)
  --list-configs       list the example rig files shipped with the package
  --print-config NAME  print one of them (start your own from it)

Keys while recording from a rig (teleop keyboard on): s or space start the next episode /
stop and save the current one, d discard, y success, n failure, q quit (the episode in
progress is discarded). Rig files wait for s before every episode (recorder.wait_for_start;
the loop keeps commanding the arm meanwhile, nothing is recorded). Exit status: 0 done,
1 a device failed, 2 bad arguments / rig file / store, 130 interrupted (Ctrl-C).
"""


def _configure_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _CLI_HELP
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sim", choices=["arm"],
                     help="record from a simulated robot with a scripted teleoperator (only 'arm' for now)")
    src.add_argument("--config", metavar="RIG.yaml", help="record from the rig described in this file")
    src.add_argument("--list-configs", action="store_true", help="list the shipped example rig files and exit")
    src.add_argument("--print-config", metavar="NAME", help="print a shipped example rig file and exit")
    p.add_argument("--out", metavar="STORE", help="episode store directory (created or appended to); required to record")
    p.add_argument("--episodes", type=int, default=None, metavar="N",
                   help="episodes to save (--sim: default 1; --config: default recorder.episodes, else until q)")
    p.add_argument("--task", default=None, help="task description stored with every episode (overrides the rig's)")
    p.add_argument("--fps", type=float, default=None, help="--config only: loop and recording rate (recorder.fps)")
    p.add_argument("--seed", type=int, default=0, help="--sim only: seed of the first episode (+1 per episode)")
    p.add_argument("--check", action="store_true",
                   help="--config only: validate the rig file, print what would be built, and exit")
    p.add_argument("--no-status", action="store_true", help="no live status line on stderr")
    p.add_argument("--allow-camera-change", action="store_true",
                   help="--config only: append to a store recorded with another camera under the same name "
                        "(serial or intrinsics changed); the old camera info is kept in the store's history")


def _error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _print_summary(summary: dict[str, Any]) -> None:
    import json

    print(json.dumps(summary), flush=True)


def _list_configs() -> int:
    from data_collection.rig import RigConfigError, example_configs, load_rig

    for name, path in example_configs().items():
        try:
            about = load_rig(path).description
        except RigConfigError as e:  # a broken example must not hide the others
            about = f"(invalid: {e})"
        print(f"{name:24s} {about}")
    print("\nprint one with: dfp record --print-config NAME > my_rig.yaml")
    return 0


def _print_config(name: str) -> int:
    from data_collection.rig import RigConfigError, example_config_path

    try:
        path = example_config_path(name)
    except RigConfigError as e:
        return _error(str(e))
    sys.stdout.write(path.read_text())
    sys.stdout.flush()
    return 0


def _run_sim(args: argparse.Namespace) -> int:
    if args.fps is not None or args.check:
        return _error("--fps and --check apply to --config only (the simulation records at its control rate)")
    try:
        summary = record_sim(args.out, args.episodes or 1, args.seed, log=lambda line: print(line, flush=True),
                             status=not args.no_status, task=args.task)
    except (RecorderError, StoreError) as e:
        return _error(str(e))
    _print_summary(summary)
    return 0


def _run_rig(args: argparse.Namespace) -> int:
    """``--config``: load, validate, build, record (see the module docstring of :mod:`data_collection.rig`)."""
    from data_collection.cameras.base import CameraError
    from data_collection.rig import RigConfigError, load_rig
    from data_collection.rig_build import build
    from data_collection.robots.base import RobotError
    from data_collection.teleop.base import TeleopError

    try:
        rig = load_rig(args.config).with_recorder(
            fps=args.fps, episodes=args.episodes, task=args.task, status=False if args.no_status else None,
            allow_camera_change=True if args.allow_camera_change else None,
        )
    except RigConfigError as e:
        return _error(str(e))
    if args.check:
        print(rig.describe(), flush=True)
        return 0
    try:
        built = build(rig, store_path=args.out)
    except RigConfigError as e:
        return _error(str(e))
    except (RobotError, CameraError, TeleopError) as e:
        return _error(f"{args.config}: {e}", 1)
    for warning in rig.warnings():
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    with built:
        recorder = Recorder(built.recorder_config, built.robot, built.cameras, built.teleop,
                            on_episode_start=built.on_episode_start, log=lambda line: print(line, flush=True))
        try:
            summary = recorder.run()
        except (RecorderError, StoreError) as e:
            return _error(str(e))
        except (RobotError, CameraError, TeleopError) as e:
            return _error(f"recording stopped: {e}", 1)
        except KeyboardInterrupt:
            return _error("interrupted: the episode in progress was discarded, earlier ones are kept", 130)
    _print_summary(summary)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.list_configs:
        return _list_configs()
    if args.print_config is not None:
        return _print_config(args.print_config)
    if args.episodes is not None and args.episodes < 1:
        return _error("--episodes must be >= 1")
    if args.sim:
        if not args.out:
            return _error("--out STORE is required to record")
        return _run_sim(args)
    return _run_rig(args)  # --out may come from recorder.store_path


def add_record_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``record`` to a CLI's subparsers (``dfp record``); the handler is ``args.func``."""
    p = subparsers.add_parser("record", help="record demonstrations into an episode store",
                              description=DESCRIPTION)
    _configure_parser(p)
    p.set_defaults(func=_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_collection.recorder", description=DESCRIPTION)
    _configure_parser(p)
    return _run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
