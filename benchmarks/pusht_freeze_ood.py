"""Where do PushT episodes end, measured against the demonstrations? Frozen vs solved episodes.

For every episode of one or more ``dfp eval sim --env pusht`` results (``metrics.json``, whose
episodes carry ``end_state`` = agent x, y, block x, y, angle), the distance from the end state to
the nearest state of the demonstrations (every step of every episode of the training zip), as
the RMS distance over 10 points in PushT units (512 across): the agent and the 9 keypoints of
the T that Diffusion Policy's low-dim task feeds (``pusht_state_keypoints_cpu``), so a pose
that is 30 units from any demonstrated pose has its T (and agent) 30 units away on average.
Grouped into solved, failed-moving and frozen episodes: if frozen episodes end far from the
demonstrations, the freeze is the policy's answer outside its data, not a sampling artefact.

    python benchmarks/pusht_freeze_ood.py --data ../shared/data/pusht/pusht_cchi_v7_replay_train.zarr.zip \
        runs/eval_kp/stream_s0_500 [more metrics dirs ...] [--out runs/freeze_ood.md] [--mirror-from RUN]

``--mirror-from RUN``: the run trained with ``dataset.mirror`` (its ``config.yaml``), so the
mirror images of the demonstrated states count as demonstrated too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial import cKDTree

from df_policy.data.features import encode_pose_keypoints


def t_points() -> np.ndarray:
    """The T's 9 body-frame keypoints, as shipped in ``pusht_state_keypoints_cpu``."""
    config = Path(__file__).resolve().parents[1] / "df_policy" / "configs" / "pusht_state_keypoints_cpu.yaml"
    return np.asarray(yaml.safe_load(config.read_text())["dataset"]["pose_keypoints"]["state"]["points"])


def point_features(states: np.ndarray) -> np.ndarray:
    """``(n, 5)`` PushT states -> ``(n, 20)``: agent x, y then the 9 T points, PushT units."""
    return encode_pose_keypoints(np.asarray(states, np.float64), [2, 3, 4], t_points())


def demonstration_states(zip_path: str) -> np.ndarray:
    import zarr

    group = zarr.open_group(zarr.storage.ZipStore(zip_path, mode="r"), mode="r")
    return np.asarray(group["data/state"][:], np.float64)


def nearest_demo_distance(end_states: np.ndarray, demo_states: np.ndarray) -> np.ndarray:
    """RMS point distance (PushT units) from each end state to its nearest demonstrated state."""
    tree = cKDTree(point_features(demo_states))
    d, _ = tree.query(point_features(end_states))
    return d / np.sqrt(10.0)  # RMS over the 10 points


def group_of(episode: dict) -> str:
    if episode["success"]:
        return "solved"
    return "frozen" if episode["frozen"] else "failed, moving"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", nargs="+", help="dfp eval sim output folders (or their metrics.json)")
    ap.add_argument("--data", required=True, help="the demonstrations the checkpoint was trained on (.zarr.zip)")
    ap.add_argument("--out", default=None, help="also write the table here (markdown)")
    ap.add_argument("--mirror-from", default=None,
                    help="a run trained with dataset.mirror: mirrored demonstrated states count as demonstrated")
    a = ap.parse_args()
    demos = demonstration_states(a.data)
    if a.mirror_from:
        from df_policy.data.symmetry import MirrorConfig, PlanarMirror

        mirror = (yaml.safe_load((Path(a.mirror_from) / "config.yaml").read_text())["dataset"] or {}).get("mirror")
        if not mirror:
            raise SystemExit(f"{a.mirror_from}/config.yaml has no dataset.mirror")
        demos = np.concatenate([demos, PlanarMirror(MirrorConfig(**mirror)).apply("state", demos)])
    lines = [f"Nearest-demonstration distance of the episode's end state (RMS over agent + 9 T points, "
             f"PushT units; {len(demos)} demonstrated states)", "",
             "| result | group | episodes | median | 10th–90th percentile | share > 20 units |", "|---|---|---|---|---|---|"]
    for item in a.metrics:
        path = Path(item)
        path = path / "metrics.json" if path.is_dir() else path
        m = json.loads(path.read_text())
        episodes = [e for e in m["episodes"] if len(e.get("end_state", [])) == 5]
        if not episodes:
            raise SystemExit(f"{path}: no episode has a 5-value end_state (evaluate again with the current dfp eval sim)")
        dist = nearest_demo_distance(np.array([e["end_state"] for e in episodes]), demos)
        for group in ("solved", "failed, moving", "frozen"):
            d = dist[[group_of(e) == group for e in episodes]]
            if len(d):
                lines.append(f"| {path.parent.name} ({m.get('mode')}) | {group} | {len(d)} | {np.median(d):.1f} | "
                             f"{np.percentile(d, 10):.1f}–{np.percentile(d, 90):.1f} | {np.mean(d > 20):.2f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
