"""A fixed-rate control loop thread around :meth:`PolicyRuntime.control_tick`.

Every ``period_s`` (scheduled at ``start + k * period_s`` on the runtime's clock) the loop calls
``control_tick`` and hands the result (:class:`Command` or :class:`Hold`) to ``sink`` (e.g. a
ROS publisher). The tick never waits for inference. Ticks that could not start within one
period of their schedule are skipped and counted (``missed_ticks``); ``jitter_s`` (actual start
minus scheduled start) and ``tick_s`` (time spent in ``control_tick`` + ``sink``) are recorded.
An exception raised by ``sink`` is logged and counted (``sink_errors``); the loop goes on.
An exception raised by ``control_tick`` itself (a bug: the runtime cannot say what is safe to
send) **stops the loop and latches** :attr:`ControlLoop.failure`, which callers report as an
error (the ROS node turns it into a fault); nothing more is sent until :meth:`start` is called
again. ``measure`` (optional) returns the robot's latest measured position in action space, or
``None``, and is passed to every ``control_tick`` (the tracking bound of the safety filter).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from df_policy.runtime.runner import STATS_WINDOW, PolicyRuntime
from df_policy.runtime.safety import Command, Hold

log = logging.getLogger(__name__)

Sink = Callable[[Command | Hold], None]
Measure = Callable[[], "np.ndarray | None"]


class ControlLoop:
    """Runs ``runtime.control_tick`` at a fixed rate on its own thread."""

    def __init__(self, runtime: PolicyRuntime, sink: Sink | None = None, period_s: float | None = None,
                 measure: Measure | None = None) -> None:
        self.runtime = runtime
        self.sink = sink or (lambda result: None)
        self.measure = measure or (lambda: None)
        self.period_s = float(period_s or runtime.period_s)
        if not self.period_s > 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        self.jitter_s: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self.tick_s: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self.results: collections.deque[Command | Hold] = collections.deque(maxlen=STATS_WINDOW)
        self.ticks = 0
        self.missed_ticks = 0
        self.sink_errors = 0
        self.last_error: str | None = None
        self.failure: str | None = None
        self._tick_started: float | None = None  # time.monotonic() while a tick runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the loop thread is running (False after :meth:`stop` or a failure)."""
        return self._thread is not None and self._thread.is_alive()

    def busy_for_s(self) -> float:
        """Wall seconds the current tick has been running (0 between ticks): a tick stuck in a
        deadlock or a blocking call shows here while the thread is still alive."""
        started = self._tick_started
        return 0.0 if started is None else time.monotonic() - started

    def start(self) -> "ControlLoop":
        self._stop.clear()
        self.failure = None
        self._thread = threading.Thread(target=self._run, name="dfp-control", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_ticks(self, n: int) -> None:
        """Run ``n`` ticks in the calling thread (with a fake clock: deterministic)."""
        clock = self.runtime.clock
        scheduled = clock.now()
        for _ in range(n):
            scheduled = self._tick(scheduled)

    def _wait(self, scheduled: float) -> bool:
        """Sleep until ``scheduled`` on the runtime's clock; ``False`` if stopped meanwhile. A clock
        may return early (simulation time, which stands still while the simulation is paused):
        then wait again, so a tick never starts before its time."""
        clock = self.runtime.clock
        clock.sleep_until(scheduled)
        while clock.now() < scheduled:
            if self._stop.is_set():
                return False
            clock.sleep_until(scheduled)
        return True

    def _tick(self, scheduled: float) -> float:
        clock = self.runtime.clock
        if not self._wait(scheduled):
            return scheduled
        start = clock.now()
        late = start - scheduled
        if late > self.period_s:
            skipped = int(late // self.period_s)
            self.missed_ticks += skipped
            scheduled += skipped * self.period_s
        self.jitter_s.append(start - scheduled)
        t0 = time.perf_counter()
        self._tick_started = time.monotonic()
        try:
            result = self.runtime.control_tick(start, self.measure())
        finally:
            self._tick_started = None
        self.ticks += 1
        try:
            self.sink(result)
        except Exception as e:  # a failing sink must not stop the loop; it is counted and logged
            self.sink_errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("control-loop sink failed")
        self.tick_s.append(time.perf_counter() - t0)
        self.results.append(result)
        return scheduled + self.period_s

    def _run(self) -> None:
        scheduled = self.runtime.clock.now()
        try:
            while not self._stop.is_set():
                scheduled = self._tick(scheduled)
        except Exception as e:  # the runtime cannot say what is safe: stop commanding, latch it
            self.failure = f"control loop stopped: {type(e).__name__}: {e}"
            log.exception("control loop failed; no further commands")

    def report(self) -> dict[str, float | int | None]:
        """Tick count, missed ticks, jitter and tick-time percentiles (ms)."""
        def pct(values: collections.deque[float], q: float) -> float | None:
            return float(np.percentile(np.asarray(values), q) * 1000.0) if values else None

        return {"ticks": self.ticks, "missed_ticks": self.missed_ticks, "sink_errors": self.sink_errors,
                "failure": self.failure,
                "jitter_ms_p50": pct(self.jitter_s, 50), "jitter_ms_p99": pct(self.jitter_s, 99),
                "jitter_ms_max": pct(self.jitter_s, 100), "tick_ms_p50": pct(self.tick_s, 50),
                "tick_ms_p99": pct(self.tick_s, 99), "tick_ms_max": pct(self.tick_s, 100)}
