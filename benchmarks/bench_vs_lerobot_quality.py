"""Quality at equal budget: LeRobot's DiffusionPolicy on the PushT tasks (issue 13).

    .venv-lerobot/bin/python benchmarks/bench_vs_lerobot_quality.py train --store runs/pusht.zarr \
        --out runs/lerobot_state_small --minutes 60 [--task state|image] [--size small|matched|pusht] [--threads 2] [--warmup 500]
    .venv-lerobot/bin/python benchmarks/bench_vs_lerobot_quality.py eval --run runs/lerobot_state_small \
        --episodes 100 --seed 0 [--workers 2] [--sampler ddpm100|ddim10]
    .venv-lerobot/bin/python benchmarks/bench_vs_lerobot_quality.py replay --run runs/lerobot_state_small \
        --store runs/pusht.zarr [--sampler ddpm100]

Runs in ``.venv-lerobot`` (``bash scripts/install_lerobot.sh bench``: LeRobot with diffusers, gym-pusht).
The comparison it is made for: ``dfp train --config pusht_state_cpu`` (state task) or ``--config
pusht_cpu`` (image task), 60 minutes on this CPU, figures in docs/BENCHMARKS.md, against LeRobot's
DiffusionPolicy trained here for the same wall-clock budget on the same training episodes
(df_policy's episode split, ``val_ratio`` 0.05, seed 0), then both closed loop in the same
``gym-pusht`` environment on the same seeds (``df_policy.evaluation.sim``'s environment: 300
steps, success = coverage >= 0.95, mean max coverage), no added latency.

* Data: the PushT store's training episodes written with LeRobot's writer as a LeRobotDataset.
  ``--task state``: ``observation.state`` = agent position, ``observation.environment_state`` =
  the 5-dim PushT state. ``--task image``: ``observation.image`` = the 96x96 camera (video,
  LeRobot's encoder, decoded by its loader with PyAV) and ``observation.state`` = agent position,
  the inputs of df_policy's ``pusht_cpu``. Read by ``LeRobotDataset`` with DiffusionPolicy's
  ``delta_timestamps`` and LeRobot's ``EpisodeAwareSampler`` (``drop_n_last_frames`` 7),
  normalised by LeRobot's own processors (min-max to [-1, 1] for state and action, mean/std per
  channel for images; statistics of the training episodes).
* Model: LeRobot's PushT recipe (To 2, horizon 16, 8 actions per chunk, DDPM with 100 training
  steps, AdamW 1e-4, betas 0.95/0.999, weight decay 1e-6, batch 64, 500 warm-up steps; images:
  ResNet-18 from scratch with group norm, 32 spatial-softmax keypoints, random 84x84 crops); the
  learning rate follows a cosine over the wall-clock budget (as df_policy's does) instead of over
  LeRobot's 200,000 steps, which a 60-minute run would never reach. ``--size pusht``: U-Net
  512/1024/2048 (LeRobot's); ``small``: 64/128/256; ``matched``: 32/64/128 (state task: 1.35 M
  parameters, against 1.26 M in ``pusht_state_cpu``).
* Weights are saved as safetensors + JSON (no pickles); ``eval`` rebuilds the policy from them.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lerobot_policy import lerobot_diffusion_policy  # noqa: E402  (same folder)

FPS = 10
SIZES = {"matched": (32, 64, 128), "small": (64, 128, 256), "pusht": (512, 1024, 2048)}
SAMPLERS = {"ddpm100": ("DDPM", 100), "ddim10": ("DDIM", 10)}
IMAGE_KEY = "observation.image"
AGENT = {"dtype": "float32", "shape": (2,), "names": ["agent_x", "agent_y"]}
ACTION = {"dtype": "float32", "shape": (2,), "names": ["target_x", "target_y"]}
FEATURES = {
    "state": {"observation.state": AGENT,
              "observation.environment_state": {"dtype": "float32", "shape": (5,),
                                                "names": ["agent_x", "agent_y", "block_x", "block_y", "block_angle"]},
              "action": ACTION},
    "image": {IMAGE_KEY: {"dtype": "video", "shape": (96, 96, 3), "names": ["height", "width", "channels"]},
              "observation.state": AGENT, "action": ACTION},
}


def build_policy(down_dims: tuple[int, ...], scheduler: str = "DDPM", steps: int = 100, task: str = "state"):
    """The task's LeRobot policy: state = agent position + the 5-dim PushT state; image = camera + agent position."""
    if task == "state":
        return lerobot_diffusion_policy(down_dims, scheduler, steps, image_key=None, env_state_dim=5)
    return lerobot_diffusion_policy(down_dims, scheduler, steps, image_key=IMAGE_KEY)


def processors(policy, stats: dict):
    from lerobot.policies.diffusion.processor_diffusion import make_diffusion_pre_post_processors

    return make_diffusion_pre_post_processors(
        policy.config, {k: {s: torch.tensor(v, dtype=torch.float32) for s, v in d.items()} for k, d in stats.items()})


def _frame(task: str, state: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One LeRobot observation from a PushT step (``state``: the 5-dim state; ``image``: 96x96x3 uint8)."""
    if task == "state":
        return {"observation.state": state[:2], "observation.environment_state": state}
    return {IMAGE_KEY: image, "observation.state": state[:2]}


def _as_batch(frame: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A frame as the policy's unbatched input (images CHW float in [0, 1], as LeRobot's loader gives)."""
    return {k: (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1).float() / 255.0 if k == IMAGE_KEY
                else torch.as_tensor(np.asarray(v, np.float32))) for k, v in frame.items()}


def write_dataset(store_path: Path, root: Path, task: str) -> tuple[dict, list[int]]:
    """Training episodes of the store as a LeRobotDataset; returns (stats, episodes)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from df_policy.data.sampler import split_episodes
    from df_policy.data.store import EpisodeStore

    store = EpisodeStore.open(store_path)
    train, _ = split_episodes(store.n_episodes, 0.05, 0)
    features = FEATURES[task]
    ds = LeRobotDataset.create(f"local/pusht_{task}", fps=FPS, features=features, root=root,
                               use_videos=task == "image")
    values: dict[str, list[np.ndarray]] = {k: [] for k in features if k != IMAGE_KEY}
    pixels = np.zeros((2, 3))  # per-channel sum and sum of squares, [0, 1] units
    n_pixels = 0
    keys = ["state", "action"] + (["img"] if task == "image" else [])
    for i in train:
        ep = store.episode(i, keys=keys)
        if task == "image":
            img = ep["img"].astype(np.float64) / 255.0
            pixels += np.stack([img.sum((0, 1, 2)), (img ** 2).sum((0, 1, 2))])
            n_pixels += img.shape[0] * img.shape[1] * img.shape[2]
        for t in range(len(ep["action"])):
            frame = _frame(task, ep["state"][t], ep["img"][t] if task == "image" else None)
            frame["action"] = ep["action"][t]
            ds.add_frame({**frame, "task": "push the T"})
            for k in values:
                values[k].append(frame[k])
        ds.save_episode()
        print(f"\rwrote {train.index(i) + 1}/{len(train)} episodes", end="", file=sys.stderr)
    ds.finalize()
    stats = {k: {"min": np.min(v, 0).tolist(), "max": np.max(v, 0).tolist(),
                 "mean": np.mean(v, 0).tolist(), "std": np.std(v, 0).tolist()} for k, v in values.items()}
    if task == "image":
        mean = pixels[0] / n_pixels
        std = np.sqrt(pixels[1] / n_pixels - mean ** 2)
        stats[IMAGE_KEY] = {"mean": mean.reshape(3, 1, 1).tolist(), "std": std.reshape(3, 1, 1).tolist(),
                            "min": [[[0.0]]] * 3, "max": [[[1.0]]] * 3}
    return stats, train


def cmd_train(a: argparse.Namespace) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.sampler import EpisodeAwareSampler
    from safetensors.torch import save_file

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=False)
    stats, train_episodes = write_dataset(Path(a.store), out / "data", a.task)
    obs = [-1 / FPS, 0.0]
    deltas = {k: obs for k in FEATURES[a.task] if k != "action"}
    ds = LeRobotDataset(f"local/pusht_{a.task}", root=out / "data", video_backend="pyav",
                        delta_timestamps={**deltas, "action": [i / FPS for i in range(-1, 15)]})
    policy = build_policy(SIZES[a.size], task=a.task).train()
    pre, _ = processors(policy, stats)
    sampler = EpisodeAwareSampler(ds.meta.episodes["dataset_from_index"], ds.meta.episodes["dataset_to_index"],
                                  drop_n_last_frames=7, shuffle=True, seed=a.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, sampler=sampler, num_workers=0, drop_last=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=a.lr, betas=(0.95, 0.999), eps=1e-8, weight_decay=1e-6)
    budget_s, warmup = 60.0 * a.minutes, a.warmup
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"LeRobot DiffusionPolicy ({a.task} task, {a.size}, {n_params:,} parameters), {len(train_episodes)} training episodes, "
          f"{len(ds)} frames, {a.minutes} min", file=sys.stderr)
    t0, step, log = time.perf_counter(), 0, []
    while True:
        for batch in loader:
            elapsed = time.perf_counter() - t0
            if elapsed > budget_s:
                break
            factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget_s)))
            for g in opt.param_groups:
                g["lr"] = a.lr * factor
            batch = pre({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
            loss, _ = policy.forward(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                log.append({"step": step, "loss": float(loss), "lr": a.lr * factor, "elapsed_s": round(elapsed, 1)})
                print(json.dumps(log[-1]), file=sys.stderr)
        else:
            continue
        break
    seconds = time.perf_counter() - t0
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(out / "model.safetensors"))
    summary = {"task": a.task, "size": a.size, "down_dims": SIZES[a.size], "parameters": n_params, "steps": step,
               "seconds": round(seconds, 1), "samples_per_s": round(step * a.batch / seconds, 1), "batch": a.batch,
               "lr": a.lr, "warmup": a.warmup, "threads": a.threads, "train_episodes": train_episodes, "stats": stats,
               "log": log}
    (out / "run.json").write_text(json.dumps(summary, indent=1))
    print(f"{step} steps in {seconds / 60:.1f} min -> {out}", file=sys.stderr)


_WORKER: dict = {}


def _init(run: str, sampler: str) -> None:
    from safetensors.torch import load_file

    from df_policy.evaluation.sim import _make_env

    torch.set_num_threads(1)
    summary = json.loads((Path(run) / "run.json").read_text())
    task = summary.get("task", "state")
    policy = build_policy(tuple(summary["down_dims"]), *SAMPLERS[sampler], task=task)
    policy.load_state_dict(load_file(str(Path(run) / "model.safetensors")))
    pre, post = processors(policy.eval(), summary["stats"])
    _WORKER.update(policy=policy, pre=pre, post=post, task=task,
                   env=_make_env(300, "state" if task == "state" else "pixels"))


def _episode(seed: int) -> dict:
    policy, pre, post, env, task = (_WORKER[k] for k in ("policy", "pre", "post", "env", "task"))
    obs, info = env.reset(seed=seed)
    policy.reset()
    max_cov, success = 0.0, False
    with torch.inference_mode():
        for _ in range(300):
            if task == "state":
                frame = _frame(task, np.asarray(obs, np.float32).reshape(-1))
            else:  # gym-pusht pixels: {"pixels": 96x96x3 uint8, "agent_pos": (2,)}
                frame = _frame(task, np.asarray(obs["agent_pos"], np.float32), obs["pixels"])
            batch = pre(_as_batch(frame))
            action = post(policy.select_action(batch))
            obs, _, terminated, truncated, info = env.step(action.reshape(-1).numpy().astype(np.float32))
            max_cov = max(max_cov, float(info.get("coverage", 0.0)))
            success = success or bool(info.get("is_success", False))
            if terminated or truncated:
                break
    return {"seed": seed, "success": success, "max_coverage": max_cov}


def cmd_eval(a: argparse.Namespace) -> None:
    seeds = list(range(a.seed, a.seed + a.episodes))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.workers, initializer=_init, initargs=(a.run, a.sampler)) as pool:
        results = []
        for r in pool.imap(_episode, seeds):
            results.append(r)
            print(f"\r{len(results)}/{len(seeds)} episodes", end="", file=sys.stderr)
    m = {"run": a.run, "sampler": a.sampler, "seeds": [seeds[0], seeds[-1]], "episodes": len(seeds),
         "success_rate": float(np.mean([r["success"] for r in results])),
         "avg_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
         "seconds": round(time.perf_counter() - t0, 1), "results": results}
    out = Path(a.run) / f"eval_{a.sampler}_seed{a.seed}_n{a.episodes}.json"
    out.write_text(json.dumps(m, indent=1))
    print(f"\n{a.episodes} episodes ({a.sampler}, seeds {seeds[0]}..{seeds[-1]}): success rate "
          f"{m['success_rate']:.3f}, mean max coverage {m['avg_max_coverage']:.3f}; {out}")


def cmd_replay(a: argparse.Namespace) -> None:
    """Offline replay on the held-out episodes (df_policy's validation split): LeRobot's
    ``select_action`` fed the recorded observations step by step (a chunk of 8 every 8 steps, as
    in closed loop), scored per lookahead with df_policy's own scorer against the recorded
    actions, beside the repeat-last and constant-velocity baselines, in min-max normalised units
    (the training episodes' range, the same as df_policy's normaliser)."""
    from safetensors.torch import load_file

    from df_policy.data.sampler import split_episodes
    from df_policy.data.store import EpisodeStore
    from df_policy.evaluation.lookahead import lookahead_metrics, lookahead_table

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    summary = json.loads((Path(a.run) / "run.json").read_text())
    task = summary.get("task", "state")
    policy = build_policy(tuple(summary["down_dims"]), *SAMPLERS[a.sampler], task=task)
    policy.load_state_dict(load_file(str(Path(a.run) / "model.safetensors")))
    pre, post = processors(policy.eval(), summary["stats"])
    lo, hi = (np.asarray(summary["stats"]["action"][k], np.float64) for k in ("min", "max"))

    def norm(x: np.ndarray) -> np.ndarray:
        return 2.0 * (np.asarray(x, np.float64) - lo) / (hi - lo) - 1.0

    store = EpisodeStore.open(a.store)
    _, val = split_episodes(store.n_episodes, 0.05, 0)
    recorded, executed, obs_steps = [], [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for ep in val:
            data = store.episode(ep, keys=["state", "action"] + (["img"] if task == "image" else []))
            policy.reset()
            out = []
            for t in range(len(data["action"])):
                frame = _frame(task, np.asarray(data["state"][t], np.float32), data["img"][t] if task == "image" else None)
                batch = pre(_as_batch(frame))
                out.append(post(policy.select_action(batch)).reshape(-1).numpy())
            T = len(out)
            recorded.append(norm(data["action"]))
            executed.append(norm(np.stack(out)))
            obs_steps.append(np.arange(T) - np.arange(T) % 8)  # the queue refills every 8 steps
    la = lookahead_metrics(recorded, executed, obs_steps)
    m = {"run": a.run, "sampler": a.sampler, "episodes": val, "steps": int(sum(len(r) for r in recorded)),
         "seconds": round(time.perf_counter() - t0, 1), "lookahead": la}
    path = Path(a.run) / f"replay_{a.sampler}.json"
    path.write_text(json.dumps(m, indent=1))
    print("\n".join(lookahead_table(la, lambda v: "-" if v is None else f"{v:.4f}")))
    print(f"{la['verdict']}\n{la.get('verdict_matched', '')}\n{len(val)} held-out episodes {val}; {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--store", default="runs/pusht.zarr")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--task", choices=sorted(FEATURES), default="state")
    t.add_argument("--size", choices=sorted(SIZES), default="small")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--warmup", type=int, default=500,
                   help="linear warm-up steps (LeRobot's 500; a run that makes few steps in its budget needs fewer)")
    e = sub.add_parser("eval")
    e.add_argument("--run", required=True)
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--sampler", choices=sorted(SAMPLERS), default="ddpm100")
    r = sub.add_parser("replay")
    r.add_argument("--run", required=True)
    r.add_argument("--store", default="runs/pusht.zarr")
    r.add_argument("--sampler", choices=sorted(SAMPLERS), default="ddpm100")
    r.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"train": cmd_train, "eval": cmd_eval, "replay": cmd_replay}[a.cmd](a)


if __name__ == "__main__":
    main()
