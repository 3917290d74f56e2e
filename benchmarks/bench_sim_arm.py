"""Cost of the simulated SO-101 arm (``df_policy.sim``) on this CPU, and the scripted
expert's success rate. Prints one JSON object.

Per GL backend (each in its own process, since MuJoCo reads ``MUJOCO_GL`` once):

* ``physics_ms``: one control step (``env.step``: 50 physics substeps of 2 ms at 10 Hz) while
  the expert does pick-and-place (contacts included);
* ``render_ms``: one image of each camera at each size (simplified meshes, the default);
* ``render_original_meshes_ms``: the same with the package's original ~320k-triangle meshes;
* ``recorded_step_ms``: physics + rendering every camera at the configured size, i.e. what one
  recorded step costs (the 20 ms budget); ``expert_act_ms``: the expert's IK per step.

Timings are median and 90th percentile over ``--steps`` samples (the machine is shared, so
expect noise). Then ``expert``: success rate over ``--episodes`` seeds (0 .. N-1).

    python benchmarks/bench_sim_arm.py [--backends egl,osmesa] [--sizes 64,96,128] [--steps 60] [--episodes 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"median": round(float(np.median(ms)), 2), "p90": round(float(np.percentile(ms, 90)), 2), "n": int(ms.size)}


def child(backend: str, sizes: list[int], steps: int) -> dict:
    os.environ["MUJOCO_GL"] = backend
    sys.path.insert(0, str(REPO))
    from df_policy.sim import SceneConfig, ScriptedExpert, SimArmConfig, SimArmEnv

    out: dict = {"backend": backend}
    t0 = time.perf_counter()
    env = SimArmEnv()
    out["build_s"] = round(time.perf_counter() - t0, 2)
    out["mesh_triangles"] = int(env.model.mesh_facenum.sum())
    out["cameras"] = list(env.camera_names)
    out["image_size"] = list(env.config.image_size)
    expert = ScriptedExpert(env)

    physics, act, recorded = [], [], []
    render: dict[str, dict[int, list[float]]] = {c: {s: [] for s in sizes} for c in env.camera_names}
    seed = 0
    env.reset(seed)
    expert.reset()
    for c in env.camera_names:  # warm-up: renderer creation and first frame
        for s in sizes:
            env.render(c, s, s)
    while len(physics) < steps:
        t = time.perf_counter()
        action = expert.act()
        act.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = env.step(action)
        physics.append(time.perf_counter() - t)
        t_obs = time.perf_counter()
        env.observation(images=True)
        recorded.append(physics[-1] + time.perf_counter() - t_obs)
        for c in env.camera_names:
            for s in sizes:
                t = time.perf_counter()
                env.render(c, s, s)
                render[c][s].append(time.perf_counter() - t)
        if expert.done or result.truncated:
            seed += 1
            env.reset(seed)
            expert.reset()
    out["physics_ms"] = _stats(physics)
    out["expert_act_ms"] = _stats(act)
    out["recorded_step_ms"] = _stats(recorded)
    out["render_ms"] = {c: {f"{s}x{s}": _stats(v) for s, v in per.items()} for c, per in render.items()}
    env.close()

    t0 = time.perf_counter()
    full = SimArmEnv(SimArmConfig(scene=SceneConfig(mesh_cell_m=None)))
    out["original_meshes_build_s"] = round(time.perf_counter() - t0, 2)
    out["original_mesh_triangles"] = int(full.model.mesh_facenum.sum())
    cam = full.camera_names[0]
    size = 96
    full.render(cam, size, size)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        full.render(cam, size, size)
        samples.append(time.perf_counter() - t)
    out["render_original_meshes_ms"] = {cam: {f"{size}x{size}": _stats(samples)}}
    full.close()
    return out


def expert_success(episodes: int) -> dict:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("MUJOCO_GL", "egl")
    from df_policy.sim import ScriptedExpert, SimArmEnv, run_expert_episode

    env = SimArmEnv()
    expert = ScriptedExpert(env)
    t0 = time.perf_counter()
    outcomes = [run_expert_episode(env, seed, expert) for seed in range(episodes)]
    wall = time.perf_counter() - t0
    ok = [o for o in outcomes if o.success]
    return {
        "episodes": episodes,
        "successes": len(ok),
        "success_rate": round(len(ok) / episodes, 3),
        "failed_seeds": [o.seed for o in outcomes if not o.success],
        "mean_steps_to_success": round(float(np.mean([o.first_success_step for o in ok])), 1) if ok else None,
        "mean_episode_steps": round(float(np.mean([o.steps for o in outcomes])), 1),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="egl,osmesa")
    ap.add_argument("--sizes", default="64,96,128")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.child:
        print(json.dumps(child(args.child, sizes, args.steps)))
        return
    report: dict = {"cpu_count": os.cpu_count(), "backends": {}}
    for backend in [b for b in args.backends.split(",") if b]:
        env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", backend, "--sizes", args.sizes, "--steps", str(args.steps)],
            env=env, capture_output=True, text=True, check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            report["backends"][backend] = json.loads(lines[-1])
        else:
            err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            report["backends"][backend] = {"error": err[-1] if err else f"exit code {proc.returncode}"}
    if args.episodes > 0:
        report["expert"] = expert_success(args.episodes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
