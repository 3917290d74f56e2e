"""Training windows over episodes: which global steps a sample reads, and which are padding.

A sample is anchored at its *current* step ``t`` (the newest observation). On one time axis:

* observation steps ``t - To + 1 … t``                    (``To`` steps)
* action steps      ``t - To + 1 … t - To + Tp``          (``Tp`` steps; the action window starts
  at the first observation step, as in Diffusion Policy, so action ``i`` and observation ``i``
  share a time instant)

Steps outside the sample's episode are *padding*: their index is clamped to the episode's edge
(so the arrays hold a repeated edge value) and their mask is True. Diffusion Forcing treats
padded action tokens as fully noised and excludes them from the loss, so the masks must reach
the loss. Anchors run over every step of an episode, but a window may have at most
``max_action_pad`` padded actions after the episode end.

**Gaps.** A recording can miss steps (no fresh camera frame: the recorder and the bag importer
drop the step, so the next stored step is two or more periods later). ``breaks`` (from
:func:`find_gaps` on the ``stamp_s`` key) split an episode into segments that are treated like
episodes: no window spans a gap; the steps on the other side of it are padding, masked like
the steps beyond an episode's end (Diffusion Forcing's noise as masking: fully noised, no loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry.

    Attributes:
        n_obs_steps: ``To``, observation steps per sample (≥ 1).
        horizon: ``Tp``, action steps per sample (≥ ``To``).
        max_action_pad: largest number of padded actions after the episode end a window may
            have (``None`` = ``Tp - To``, i.e. every step of the episode is an anchor).
    """

    n_obs_steps: int = 2
    horizon: int = 16
    max_action_pad: int | None = None

    def __post_init__(self) -> None:
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if self.horizon < self.n_obs_steps:
            raise ValueError(f"horizon ({self.horizon}) must be >= n_obs_steps ({self.n_obs_steps})")
        if self.max_action_pad is not None and not 0 <= self.max_action_pad <= self.horizon - self.n_obs_steps:
            raise ValueError(
                f"max_action_pad must be in [0, horizon - n_obs_steps = {self.horizon - self.n_obs_steps}]"
            )

    @property
    def action_pad_limit(self) -> int:
        return self.horizon - self.n_obs_steps if self.max_action_pad is None else self.max_action_pad


def find_gaps(stamps_s: np.ndarray, episode_ends: np.ndarray, fps: float, factor: float = 1.5) -> np.ndarray:
    """Global indices of the steps that follow a gap: ``stamps_s[i] - stamps_s[i - 1] > factor / fps``
    within one episode (``stamps_s``: ``(n_steps,)`` seconds, e.g. the ``stamp_s`` key)."""
    if not fps > 0 or not factor > 1:
        raise ValueError(f"find_gaps needs fps > 0 and factor > 1, got fps={fps}, factor={factor}")
    stamps = np.asarray(stamps_s, dtype=np.float64).reshape(-1)
    late = np.flatnonzero(np.diff(stamps) > factor / float(fps)) + 1
    starts = set(np.concatenate([[0], np.asarray(episode_ends, dtype=np.int64)[:-1]]).tolist())
    return np.asarray([i for i in late if int(i) not in starts], dtype=np.int64)


class WindowIndex:
    """All sample anchors of a set of episodes, with vectorised index/mask lookup.

    Args:
        episode_ends: ``(n_episodes,)`` exclusive cumulative ends of the whole store.
        episodes: indices of the episodes to draw samples from (a split).
        spec: window geometry.
        breaks: global step indices that start a new segment (the step after a gap,
            :func:`find_gaps`); windows never reach across one.
    """

    def __init__(self, episode_ends: np.ndarray, episodes: list[int] | np.ndarray, spec: WindowSpec,
                 breaks: np.ndarray | None = None) -> None:
        ends = np.asarray(episode_ends, dtype=np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        episodes = np.asarray(sorted(episodes), dtype=np.int64)
        breaks = np.unique(np.asarray(breaks if breaks is not None else [], dtype=np.int64))
        self.spec = spec
        anchors, ep_start, ep_end = [], [], []
        # The last anchor keeps at most `action_pad_limit` actions beyond the segment end:
        # last action step = t - To + Tp  <=  end - 1 + limit.
        reach = spec.horizon - spec.n_obs_steps
        for ep in episodes:
            s_ep, e_ep = int(starts[ep]), int(ends[ep])
            cuts = breaks[(breaks > s_ep) & (breaks < e_ep)].tolist()
            for s, e in zip([s_ep, *cuts], [*cuts, e_ep]):
                last = min(e - 1, e - 1 + spec.action_pad_limit - reach)
                t = np.arange(s, last + 1, dtype=np.int64)
                anchors.append(t)
                ep_start.append(np.full_like(t, s))
                ep_end.append(np.full_like(t, e))
        cat = (lambda xs: np.concatenate(xs)) if anchors else (lambda xs: np.zeros(0, np.int64))
        self.anchor = cat(anchors)
        self.ep_start = cat(ep_start)
        self.ep_end = cat(ep_end)
        self.obs_offsets = np.arange(-spec.n_obs_steps + 1, 1, dtype=np.int64)
        self.action_offsets = np.arange(spec.horizon, dtype=np.int64) - spec.n_obs_steps + 1

    def __len__(self) -> int:
        return len(self.anchor)

    def _lookup(self, idx: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.anchor[idx, None] + offsets[None, :]
        s = self.ep_start[idx, None]
        e = self.ep_end[idx, None]
        pad = (t < s) | (t >= e)
        return np.clip(t, s, e - 1), pad

    def obs_indices(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global step indices ``(B, To)`` (edge-clamped) and pad mask ``(B, To)`` for samples ``idx``."""
        return self._lookup(np.asarray(idx), self.obs_offsets)

    def action_indices(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global step indices ``(B, Tp)`` (edge-clamped) and pad mask ``(B, Tp)`` for samples ``idx``."""
        return self._lookup(np.asarray(idx), self.action_offsets)


def split_episodes(n_episodes: int, val_ratio: float = 0.1, seed: int = 0,
                   exclude: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split by episode (``exclude``: e.g. episodes marked bad).

    At least one validation episode when ``val_ratio > 0`` and there are two or more episodes.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    pool = [i for i in range(n_episodes) if i not in set(exclude or [])]
    if not pool:
        raise ValueError("no episodes left to split")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(pool)
    n_val = int(round(len(pool) * val_ratio))
    if val_ratio > 0 and len(pool) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(pool) - 1)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())
