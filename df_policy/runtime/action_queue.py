"""Time-stamped clean actions waiting to be executed, one per control step.

A newer plan replaces queued actions of the same step. An action is *due* at a control tick at
time ``now`` when ``target_time <= now + early_s``; it is *late* when ``target_time < now -
late_s`` and is then dropped (counted), never executed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QueuedAction:
    """A clean action in robot units (``action`` float64 ``(Da,)``) plus its normalised value."""

    step: int
    time: float
    action: np.ndarray
    normalized: np.ndarray
    plan_id: int
    obs_time: float


class ActionQueue:
    """Not thread-safe: the runtime guards it with its lock."""

    def __init__(self) -> None:
        self._items: dict[int, QueuedAction] = {}
        self.dropped_late = 0
        self.superseded = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def put(self, item: QueuedAction, now: float, late_s: float) -> bool:
        """Queue ``item`` unless it is already late (then count it and return False)."""
        if item.time < now - late_s:
            self.dropped_late += 1
            return False
        if item.step in self._items:
            self.superseded += 1
        self._items[item.step] = item
        return True

    def drop_late(self, now: float, late_s: float) -> int:
        """Remove every late action; returns how many."""
        late = [s for s, it in self._items.items() if it.time < now - late_s]
        for s in late:
            del self._items[s]
        self.dropped_late += len(late)
        return len(late)

    def pop_due(self, now: float, late_s: float, early_s: float) -> QueuedAction | None:
        """Drop late actions, then remove and return the earliest due one (or None)."""
        self.drop_late(now, late_s)
        if not self._items:
            return None
        step = min(self._items)
        if self._items[step].time <= now + early_s:
            return self._items.pop(step)
        return None

    def following(self, step: int, n: int) -> list[QueuedAction]:
        """Up to ``n`` queued actions for steps ``step + 1, step + 2, ...``, stopping at the first gap."""
        out = []
        while len(out) < n and step + 1 + len(out) in self._items:
            out.append(self._items[step + 1 + len(out)])
        return out

    def last_step(self) -> int | None:
        """Largest queued step, or None when empty."""
        return max(self._items) if self._items else None
