"""``dfp`` command line: one sub-command group per stage (data, train, eval, calib, ...)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from df_policy.data.store import StoreError


def _print_info(info: dict) -> None:
    print(f"store      {info['path']}  ({info['format']})")
    print(f"episodes   {info['episodes']}   steps {info['steps']}   fps {info['fps']}")
    el = info["episode_length"]
    print(f"length     min {el['min']}  mean {el['mean']:.1f}  max {el['max']} steps")
    print(f"size       {info['size_on_disk_bytes'] / 1e6:.1f} MB on disk, {info['files']} files, layout {info['layout']}")
    print("keys:")
    for k, s in info["keys"].items():
        scale = f" x {s['scale']:g} (depth scale)" if s.get("scale") is not None else ""
        print(f"  {k:<16} {s['kind']:<7} {str(tuple(s['shape'])):<16} {s['dtype']:<8} {s['unit']}{scale}")
    if info["bad_episodes"]:
        print(f"bad        {info['bad_episodes']}")
    if info["partial_episode"]:
        print(f"WARNING    {info['partial_episode']}")


def cmd_data_info(args: argparse.Namespace) -> int:
    from df_policy.data.legacy import open_episodes
    from df_policy.data.ops import store_info

    info = store_info(open_episodes(args.store, fps=args.fps))
    print(json.dumps(info, indent=2)) if args.json else _print_info(info)
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from df_policy.data.ops import validate_store

    problems = validate_store(args.store, deep=not args.quick, progress=True)
    for p in problems:
        print(f"INVALID: {p}")
    if not problems:
        print(f"{args.store}: valid")
    return 1 if problems else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from df_policy.data.lerobot_format import import_lerobot, is_lerobot_dataset
    from df_policy.data.ops import convert, store_info

    if is_lerobot_dataset(args.src):
        out, notes = import_lerobot(args.src, args.dst, overwrite=args.overwrite, fps=args.fps)
        for note in notes:
            print(f"note: {note}")
    else:
        out = convert(args.src, args.dst, fps=args.fps, overwrite=args.overwrite)
    _print_info(store_info(out))
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from df_policy.data.lerobot_format import export_lerobot

    dst, notes = export_lerobot(args.store, args.dst, repo_id=args.repo_id, use_videos=not args.images,
                                include_bad=args.include_bad)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote LeRobotDataset v3 to {dst}")
    return 0


def cmd_data_recover(args: argparse.Namespace) -> int:
    from df_policy.data.store import EpisodeStore

    with EpisodeStore.open(args.store, mode="r+") as store:
        if store.partial is None:
            print(f"{args.store}: no partial episode")
            return 0
        print(store.partial.describe())
        if args.discard:
            print(f"discarded {store.discard_partial()} steps")
        else:
            idx = store.recover_partial()
            print("nothing to recover" if idx is None
                  else f"recovered as episode {idx} ({store.episode_meta[idx].length} steps)")
    return 0


def cmd_data_mark(args: argparse.Namespace) -> int:
    from df_policy.data.store import EpisodeStore

    fields = {}
    if args.bad is not None:
        fields["bad"] = args.bad
    if args.success is not None:
        fields["success"] = {"yes": True, "no": False, "unknown": None}[args.success]
    if args.notes is not None:
        fields["notes"] = args.notes
    if not fields:
        raise StoreError("nothing to mark: give --bad/--good, --success or --notes")
    with EpisodeStore.open(args.store, mode="r+") as store:
        for ep in args.episodes:
            store.set_episode_meta(ep, **fields)
    print(f"marked episodes {args.episodes}: {fields}")
    return 0


def cmd_data_drop(args: argparse.Namespace) -> int:
    from df_policy.data.ops import drop_episodes

    store = drop_episodes(args.store, args.episodes)
    print(f"dropped {len(set(args.episodes))} episodes; {store.n_episodes} remain")
    return 0


def cmd_data_compact(args: argparse.Namespace) -> int:
    from df_policy.data.ops import compact, store_info
    from df_policy.data.store import EpisodeStore

    before = store_info(EpisodeStore.open(args.store))
    after = store_info(compact(args.store))
    print(f"{args.store}: {before['files']} -> {after['files']} files, "
          f"{before['size_on_disk_bytes'] / 1e6:.1f} -> {after['size_on_disk_bytes'] / 1e6:.1f} MB, "
          f"{after['episodes']} episodes, layout {after['layout']}")
    return 0


def cmd_data_push(args: argparse.Namespace) -> int:
    from df_policy.data.remote import push_store

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="push", unit="file")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    report = push_store(args.store, args.url, replace=args.replace, progress=progress)
    if bar is not None:
        bar.close()
    print(f"{args.store} -> {args.url}: {report.episodes} episodes committed there; {len(report.uploaded)} files "
          f"uploaded ({report.bytes_sent / 1e6:.1f} MB), {len(report.skipped)} unchanged, {len(report.deleted)} stale "
          f"deleted{' (incremental)' if report.incremental else ''}")
    return 0


def cmd_data_merge(args: argparse.Namespace) -> int:
    from df_policy.data.ops import merge, store_info

    _print_info(store_info(merge(args.sources, args.dst)))
    return 0


def cmd_data_import_bag(args: argparse.Namespace) -> int:
    from data_collection.bag_import import run_import_bag_command

    return run_import_bag_command(args)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from df_policy.data.ops import store_info
    from df_policy.data.synthetic import make_synthetic_store

    store = make_synthetic_store(args.out, args.episodes, args.length, args.image_size, args.seed, args.overwrite)
    _print_info(store_info(store))
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, validate, convert and edit episode stores")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    p = dsub.add_parser("info", help="episodes, steps, keys, shapes, fps, size on disk")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--fps", type=float, default=None, help="rate for stores that do not record one")
    p.set_defaults(func=cmd_data_info)

    p = dsub.add_parser("validate", help="check structure and every chunk; exit 0 only when valid")
    p.add_argument("store")
    p.add_argument("--quick", action="store_true", help="structure only, do not decode chunks")
    p.set_defaults(func=cmd_data_validate)

    p = dsub.add_parser("convert", help="Diffusion Policy Zarr (dir or .zarr.zip) or a local LeRobotDataset v3 "
                                        "directory -> df_policy store (LeRobot: needs the lerobot extra)")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--fps", type=float, default=None, help="recording rate of the source (PushT: 10)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_convert)

    p = dsub.add_parser("export", help="df_policy store -> LeRobotDataset v3 directory (needs the lerobot extra)")
    p.add_argument("store")
    p.add_argument("dst", help="new directory for the LeRobot dataset")
    p.add_argument("--format", choices=["lerobot"], default="lerobot", help="only LeRobotDataset v3 for now")
    p.add_argument("--repo-id", default=None, help="LeRobot repo_id written into the dataset (default local/<dst name>)")
    p.add_argument("--images", action="store_true", help="store frames as PNG images instead of LeRobot's video")
    p.add_argument("--include-bad", action="store_true", help="also export episodes marked bad")
    p.set_defaults(func=cmd_data_export)

    p = dsub.add_parser("recover", help="keep (default) or --discard a partial episode left by a crash")
    p.add_argument("store")
    p.add_argument("--discard", action="store_true")
    p.set_defaults(func=cmd_data_recover)

    p = dsub.add_parser("mark", help="mark episodes bad/good, successful or not, or annotate them")
    p.add_argument("store")
    p.add_argument("episodes", type=int, nargs="+")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bad", dest="bad", action="store_const", const=True, default=None)
    g.add_argument("--good", dest="bad", action="store_const", const=False)
    p.add_argument("--success", choices=["yes", "no", "unknown"], default=None)
    p.add_argument("--notes", default=None)
    p.set_defaults(func=cmd_data_mark)

    p = dsub.add_parser("drop", help="delete episodes (rewrites the store, swapped in atomically)")
    p.add_argument("store")
    p.add_argument("episodes", type=int, nargs="+")
    p.set_defaults(func=cmd_data_drop)

    p = dsub.add_parser("compact", help="rewrite a store in the current layout (sharded images: few files), "
                                        "swapped in atomically")
    p.add_argument("store")
    p.set_defaults(func=cmd_data_compact)

    p = dsub.add_parser("push", help="upload a local store's committed episodes to object storage (s3://...) in "
                                     "commit order; only what changed when the URL holds its earlier state")
    p.add_argument("store")
    p.add_argument("url", help="e.g. s3://bucket/demos.zarr (credentials and endpoint: AWS_* / DFP_STORAGE_OPTIONS)")
    p.add_argument("--replace", action="store_true", help="overwrite a store there that is not an earlier state of this one")
    p.set_defaults(func=cmd_data_push)

    p = dsub.add_parser("merge", help="concatenate stores with the same schema into a new store")
    p.add_argument("dst")
    p.add_argument("sources", nargs="+")
    p.set_defaults(func=cmd_data_merge)

    from data_collection.bag_import import add_import_bag_arguments

    p = dsub.add_parser("import-bag", help="import ROS 2 bags (sqlite3 / MCAP) as episodes (docs/BAG_IMPORT.md)")
    add_import_bag_arguments(p)
    p.set_defaults(func=cmd_data_import_bag)

    p = dsub.add_parser("synth", help="write a small synthetic reaching-task store (for trying things out)")
    p.add_argument("out")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--length", type=int, default=40)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_synth)


def add_calib_commands(sub: argparse._SubParsersAction) -> None:
    from calibration.cli import add_calibration_commands

    calib = sub.add_parser("calib", help="camera intrinsics (ChArUco) and hand-eye calibration")
    add_calibration_commands(calib.add_subparsers(dest="calib_cmd", required=True))


def add_record_commands(sub: argparse._SubParsersAction) -> None:
    from data_collection.record_cli import add_record_command

    add_record_command(sub)


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    from df_policy.training.trainer import add_train_arguments, run_from_args

    p = sub.add_parser("train", help="train a Diffusion Forcing policy on an episode store")
    add_train_arguments(p)
    p.set_defaults(func=run_from_args)


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    from df_policy.evaluation.replay import add_eval_replay_command
    from df_policy.evaluation.sim import add_eval_sim_command
    from df_policy.evaluation.sim_arm_ros import add_eval_arm_command

    ev = sub.add_parser("eval", help="evaluate a checkpoint: offline replay or closed loop in simulation")
    esub = ev.add_subparsers(dest="eval_cmd", required=True)
    add_eval_replay_command(esub)
    add_eval_sim_command(esub)
    add_eval_arm_command(esub)


def add_demo_commands(sub: argparse._SubParsersAction) -> None:
    from df_policy.demo import add_demo_command

    add_demo_command(sub)


def add_serve_commands(sub: argparse._SubParsersAction) -> None:
    from df_policy.ros.policy_node import add_node_arguments, run_from_args

    p = sub.add_parser("serve", help="run a checkpoint on a robot through ROS 2 (the policy node; ros_ws/README.md)")
    add_node_arguments(p)
    p.set_defaults(func=run_from_args)


COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_data_commands, add_record_commands, add_calib_commands, add_train_commands, add_eval_commands,
    add_demo_commands, add_serve_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfp", description="Diffusion Forcing policies for real robots")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (StoreError, ValueError, KeyError, IndexError, FileNotFoundError) as e:
        print(f"dfp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
