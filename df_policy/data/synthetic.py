"""A tiny synthetic reaching task, for tests that need a store fast (and ``dfp data synth``).

A point agent in the unit square moves toward a goal with a smooth, slightly noisy controller.
Per step: ``image`` (uint8 ``(S, S, 3)``: agent red, goal green), ``agent_pos`` (float32 (2,),
unit-square coordinates) and ``action`` (float32 (2,), the commanded next position). Nothing
here is a substitute for real data; it exists so that every code path can run in seconds.
"""

from __future__ import annotations

import os

from typing import Any

import numpy as np

from df_policy.data.schema import EpisodeMeta, KeySpec, StoreSchema
from df_policy.data.store import EpisodeStore

SYNTH_FPS = 10.0


def synthetic_schema(image_size: int = 32) -> StoreSchema:
    return StoreSchema(
        keys={
            "image": KeySpec("image", (image_size, image_size, 3), "uint8", unit="rgb", camera="top"),
            "agent_pos": KeySpec("lowdim", (2,), "float32", unit="unit square", names=("x", "y")),
            "action": KeySpec("action", (2,), "float32", unit="unit square", names=("x", "y"),
                              description="commanded next agent position"),
        },
        fps=SYNTH_FPS,
        cameras={"top": {"intrinsics": None, "description": "synthetic top-down render"}},
        action_space="absolute target position of the agent, unit-square coordinates",
        robot="synthetic point agent",
    )


def render(agent: np.ndarray, goal: np.ndarray, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 image of the agent (red) and goal (green) disks."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.full((size, size, 3), 30, np.uint8)
    r = 0.08
    img[(xx - goal[0]) ** 2 + (yy - goal[1]) ** 2 < r**2] = (40, 200, 60)
    img[(xx - agent[0]) ** 2 + (yy - agent[1]) ** 2 < r**2] = (220, 40, 40)
    return img


def synthetic_episode(rng: np.random.Generator, length: int = 40, image_size: int = 32) -> dict[str, np.ndarray]:
    agent = rng.uniform(0.1, 0.9, 2)
    goal = rng.uniform(0.1, 0.9, 2)
    images, pos, act = [], [], []
    for _ in range(length):
        target = agent + 0.25 * (goal - agent) + rng.normal(0, 0.005, 2)
        images.append(render(agent, goal, image_size))
        pos.append(agent.copy())
        act.append(target)
        agent = agent + 0.8 * (target - agent)
    return {
        "image": np.stack(images),
        "agent_pos": np.asarray(pos, np.float32),
        "action": np.asarray(act, np.float32),
    }


def make_synthetic_store(path: str | os.PathLike, n_episodes: int = 20, length: int = 40, image_size: int = 32,
                         seed: int = 0, overwrite: bool = False, **layout: Any) -> EpisodeStore:
    """Create a store of ``n_episodes`` synthetic episodes at ``path``; ``layout`` goes to
    :meth:`EpisodeStore.create` (``image_chunk_frames``, ``image_shard_frames``, ...)."""
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, synthetic_schema(image_size), overwrite=overwrite, **layout) as store:
        for i in range(n_episodes):
            store.append_episode(synthetic_episode(rng, length, image_size),
                                 EpisodeMeta(task="reach the green goal", success=True, notes=f"synthetic {i}"))
    return store  # closed: readable, and the writer lock is free
