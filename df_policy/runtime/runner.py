"""The ROS-free policy runtime: observations in, safe commands out, inference off the control path.

Threads and timing (all times in seconds on the runtime's clock, see :mod:`~df_policy.runtime.clock`):

* :meth:`PolicyRuntime.push_observation` (any thread, e.g. a camera callback) stores one raw
  observation (robot units) under its control step ``round((stamp - t0) / period_s)``.
* Inference (:meth:`PolicyRuntime.start` runs it on its own thread; :meth:`run_inference_once`
  runs one in the caller's thread, for deterministic replay) takes the newest observation
  window, runs the planner *without holding the runtime lock*, and queues the clean actions it
  returns, stamped with their target times; actions already late when they arrive are dropped.
* :meth:`PolicyRuntime.control_tick` (the control loop, once per period; see
  :class:`~df_policy.runtime.control_loop.ControlLoop`) never waits for inference: it sends the
  due clean action through the :class:`~df_policy.runtime.safety.SafetyFilter`, or holds the
  last safe command when the newest observation is stale or invalid, or when no clean action is
  due (``overrun`` once planning has started, ``no_action`` before).

Observation history: a missing step inside the window is fed as masked (``obs_is_pad=True``),
never as a repeated stale frame. Executed commands (or held ones) are logged per step, in
normalised units, and fed back to the planner as context.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from df_policy.model.observation import OBS_PREFIX
from df_policy.model.policy import DiffusionForcingPolicy
from df_policy.runtime.action_queue import ActionQueue, QueuedAction
from df_policy.runtime.clock import Clock, FakeClock, MonotonicClock
from df_policy.runtime.planning import ObsWindow, PlannerConfig, make_planner
from df_policy.runtime.preprocess import InvalidObservation, Preprocessor
from df_policy.runtime.safety import Command, Hold, SafetyConfig, SafetyFilter

log = logging.getLogger(__name__)


@dataclass
class RuntimeConfig:
    """Runtime settings.

    Attributes:
        planner: how actions are generated (mode, latency compensation, ...).
        safety: limits and watchdogs applied to every command.
        period_s: control period in seconds (``None`` = ``1 / fps`` of the checkpoint's data).
        early_tolerance: an action may be sent up to this fraction of a period before its
            target time (the lateness bound is ``safety.max_action_age_s``).
        device: torch device for inference.
        accelerate: inference fast path, one of
            :data:`~df_policy.runtime.acceleration.ACCELERATE_MODES` (``"off"`` = eager for
            debugging; ``"compile"``: call :meth:`PolicyRuntime.warmup` before commanding).
        precision: ``"fp32"`` (exact) or ``"bf16"`` (encoder and denoiser under bf16 autocast,
            for GPUs; not with ``onnx``): :data:`~df_policy.runtime.acceleration.PRECISIONS`.
    """

    planner: PlannerConfig = field(default_factory=PlannerConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    period_s: float | None = None
    early_tolerance: float = 0.5
    device: str = "cpu"
    accelerate: str = "channels_last"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from df_policy.runtime.acceleration import ACCELERATE_MODES, check_precision

        if self.accelerate not in ACCELERATE_MODES:
            raise ValueError(f"RuntimeConfig: accelerate must be one of {ACCELERATE_MODES}, got {self.accelerate!r}")
        try:
            check_precision(self.precision, self.accelerate)
        except ValueError as e:
            raise ValueError(f"RuntimeConfig: {e}") from None
        if isinstance(self.planner, Mapping):
            self.planner = PlannerConfig(**self.planner)
        if isinstance(self.safety, Mapping):
            self.safety = SafetyConfig(**self.safety)
        if self.period_s is not None and not self.period_s > 0:
            raise ValueError(f"RuntimeConfig: period_s must be > 0, got {self.period_s}")
        if not 0.0 <= self.early_tolerance <= 1.0:
            raise ValueError(f"RuntimeConfig: early_tolerance must be in [0, 1], got {self.early_tolerance}")


@dataclass(frozen=True)
class InferenceReport:
    """What one inference did: the step it planned from, wall time (s), network calls, actions
    queued and dropped as late."""

    step: int
    latency_s: float
    network_calls: int
    queued: int
    dropped_late: int
    plan_id: int


@dataclass(frozen=True)
class TickRecord:
    """The last control tick: its time, result and the queued action it sent (if any)."""

    time: float
    result: Command | Hold
    source: QueuedAction | None


STATS_WINDOW = 2048
"""Latency percentiles in :meth:`PolicyRuntime.stats` cover the most recent this many samples."""


def _percentile_ms(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q) * 1000.0) if values.size else None


class PolicyRuntime:
    """Streams safe robot commands from a Diffusion Forcing policy (see the module docstring)."""

    def __init__(self, policy: DiffusionForcingPolicy, preprocessor: Preprocessor, config: RuntimeConfig,
                 clock: Clock | None = None) -> None:
        if config.period_s is None:
            raise ValueError("PolicyRuntime needs config.period_s (from_checkpoint fills it from the data fps)")
        from df_policy.runtime.acceleration import accelerate

        self.policy = policy.eval()
        self.accelerate = accelerate(self.policy, config.accelerate, config.precision)  # in place: inference only
        self.preprocessor = preprocessor
        self.config = config
        self.clock = clock or MonotonicClock()
        self.period_s = float(config.period_s)
        self.action_dim = policy.config.action_dim
        self.n_obs_steps = policy.config.n_obs_steps
        self.planner = make_planner(policy, config.planner, self.period_s)
        self.safety = SafetyFilter(config.safety, self.action_dim, self.period_s)
        self.late_s = self.safety.max_action_age_s
        self.early_s = config.early_tolerance * self.period_s
        self._lock = threading.Lock()
        self._planner_lock = threading.Lock()
        self._new_obs = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._obs_seq = 0  # observations pushed so far (valid or not); wakes the inference thread
        self.reset()

    @classmethod
    def from_loaded(cls, loaded: Any, config: RuntimeConfig | None = None, clock: Clock | None = None) -> "PolicyRuntime":
        """From a :class:`~df_policy.training.checkpoint.LoadedPolicy`; the period defaults to
        ``1 / fps`` of the checkpoint's dataset config (or its schema)."""
        config = config or RuntimeConfig()
        if config.period_s is None:
            fps = loaded.fps
            if not fps:
                raise ValueError("the checkpoint records no control rate (fps), e.g. it was trained on a Diffusion "
                                 "Policy .zarr.zip without dataset.fps: pass the recording rate on the command line, "
                                 "e.g. `--fps 10` (PushT) to `dfp eval replay` / `dfp eval sim` "
                                 "(dfp serve: rate_hz in the node config; Python: RuntimeConfig(period_s=0.1))")
            config = dataclasses.replace(config, period_s=1.0 / float(fps))
        return cls(loaded.policy, Preprocessor.from_loaded(loaded), config, clock)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: RuntimeConfig | None = None,
                        clock: Clock | None = None) -> "PolicyRuntime":
        """Load a checkpoint (directory or run directory) onto ``config.device``."""
        from df_policy.training.checkpoint import load_checkpoint

        config = config or RuntimeConfig()
        return cls.from_loaded(load_checkpoint(path, device=config.device), config, clock)

    # ------------------------------------------------------------------ lifecycle
    def reset(self, t0: float | None = None, initial_command: np.ndarray | None = None) -> None:
        """Start a new episode: clear history, queue, planner and counters.

        Args:
            t0: time of control step 0 (default: the stamp of the first observation).
            initial_command: the robot's current position in action space (robot units), so
                velocity/acceleration limits apply from the first command.
        """
        with self._planner_lock, self._lock:
            self.planner.reset()
            self.safety.reset(initial_command)
            self.queue = ActionQueue()
            self._t0 = None if t0 is None else float(t0)
            self._history: dict[int, tuple[dict[str, np.ndarray], float]] = {}
            self._newest_step: int | None = None
            self._newest_valid_stamp: float | None = None
            self._invalid_stamp: float | None = None
            self._last_inferred: int | None = None
            self._executed: dict[int, np.ndarray] = {}
            self._epoch = getattr(self, "_epoch", 0) + 1
            self._ever_planned = False
            self.counters = collections.Counter()
            self.inference_latency_s: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
            self.control_tick_s: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
            self.last_error: str | None = None
            self.last_tick: TickRecord | None = None

    def warmup(self, ticks: int = 3) -> float:
        """Run ``ticks`` inferences on synthetic (zero) observations, then :meth:`reset`; returns
        the seconds it took. With ``accelerate="compile"`` this is where compilation happens:
        call it before commanding a robot, never on the control path."""
        t_start = time.perf_counter()
        cfg = self.policy.config
        step = {OBS_PREFIX + k: np.zeros((c, h, w), np.uint8) for k, (c, h, w) in cfg.image_shapes.items()}
        step.update({OBS_PREFIX + k: np.zeros(d, np.float32) for k, d in cfg.lowdim_shapes.items()})
        with self._planner_lock:
            self.planner.reset()
            for t in range(ticks):  # the first window has one frame, later ones To: every encoder shape
                steps = [step if t - self.n_obs_steps + 1 + i >= 0 else None for i in range(self.n_obs_steps)]
                stamps = [(t - self.n_obs_steps + 1 + i) * self.period_s if s is not None else None
                          for i, s in enumerate(steps)]
                self.planner.update(ObsWindow(self.preprocessor.window(steps), t, t * self.period_s, {}, stamps))
        self.reset()
        return time.perf_counter() - t_start

    def start(self) -> "PolicyRuntime":
        """Run inference on a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._inference_loop, name="dfp-inference", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the inference thread (waits for a running network call to finish)."""
        self._stop.set()
        with self._new_obs:
            self._new_obs.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "PolicyRuntime":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ observations
    def step_of(self, t: float) -> int:
        """Control step of time ``t`` (requires ``t0``)."""
        return int(round((t - self._t0) / self.period_s))

    def push_observation(self, raw: Mapping[str, Any], stamp: float | None = None) -> int:
        """Store one raw observation (robot units, images HWC uint8) captured at ``stamp``
        (default: now). Returns its control step. An observation with NaN/Inf is counted and
        makes the control loop hold until a newer valid one arrives; it never reaches the model.
        Raises :class:`~df_policy.runtime.preprocess.ObservationError` on missing keys/shapes."""
        stamp = self.clock.now() if stamp is None else float(stamp)
        try:
            processed: dict[str, np.ndarray] | None = self.preprocessor.observation(raw)
        except InvalidObservation as e:
            processed = None
            log.warning("invalid observation at t=%.3f: %s", stamp, e)
        with self._new_obs:
            self._obs_seq += 1
            self._new_obs.notify_all()
            if self._t0 is None:
                self._t0 = stamp
            step = self.step_of(stamp)
            if processed is None:
                self.counters["invalid_observations"] += 1
                if self._invalid_stamp is None or stamp > self._invalid_stamp:
                    self._invalid_stamp = stamp
                return step
            self._history[step] = (processed, stamp)
            if self._newest_step is None or step >= self._newest_step:
                self._newest_step = step
                self._newest_valid_stamp = stamp
                if self._invalid_stamp is not None and stamp > self._invalid_stamp:
                    self._invalid_stamp = None
            for s in [s for s in self._history if s < self._newest_step - self.n_obs_steps - 2]:
                del self._history[s]
            self.counters["observations"] += 1
            return step

    # ------------------------------------------------------------------ inference
    def run_inference_once(self) -> InferenceReport | None:
        """Plan from the newest observation if it is new, valid and fresh; queue the result.

        Blocks for the network calls (call it from the inference thread or, in replay, from the
        loop). Returns ``None`` when there was nothing to do."""
        t_start = time.perf_counter()
        with self._lock:
            t = self._newest_step
            if t is None or t == self._last_inferred or self._invalid_stamp is not None:
                return None
            stamp = self._history[t][1]
            if self.clock.now() - stamp > self.safety.config.max_obs_age_s:
                self._last_inferred = t  # never plan from a stale observation
                return None
            entries = [self._history.get(s, (None, None)) for s in range(t - self.n_obs_steps + 1, t + 1)]
            executed = dict(self._executed)
            self._last_inferred = t
            epoch = self._epoch
        with self._planner_lock:
            if epoch != self._epoch:
                return None
            window = ObsWindow(self.preprocessor.window([e[0] for e in entries]), t, stamp, executed,
                               [e[1] for e in entries])
            result = self.planner.update(window)
        latency = time.perf_counter() - t_start
        with self._lock:
            if epoch != self._epoch:
                return None
            now = self.clock.now()
            dropped = 0
            for a in result.actions:
                item = QueuedAction(a.step, a.time, self.preprocessor.unnormalize_action(a.action), a.action,
                                    a.plan_id, a.obs_time)
                dropped += not self.queue.put(item, now, self.late_s)
            self._ever_planned |= bool(result.actions)
            self.counters["inferences"] += 1
            self.counters["network_calls"] += result.network_calls
            self.counters["encoder_calls"] += result.encoder_calls
            self.counters["planned_actions"] += len(result.actions)
            self.inference_latency_s.append(latency)
        return InferenceReport(t, latency, result.network_calls, len(result.actions) - dropped, dropped, result.plan_id)

    def step_synchronously(self, raw: Mapping[str, Any], now: float) -> tuple[Command | Hold, float, float]:
        """One control step with inference in the caller's thread (replay and simulators).

        Moves the runtime's :class:`FakeClock` to ``now``, pushes ``raw`` stamped ``now``, runs
        one inference, then one control tick. Inference takes no simulated time, so results do
        not depend on this machine's speed. Returns ``(result, inference_s, tick_s)``, the last
        two in wall-clock seconds.
        """
        if not isinstance(self.clock, FakeClock):
            raise TypeError("step_synchronously needs a runtime built with a FakeClock")
        self.clock.set(now)
        self.push_observation(raw, stamp=now)
        t0 = time.perf_counter()
        self.run_inference_once()
        t1 = time.perf_counter()
        result = self.control_tick(now)
        return result, t1 - t0, time.perf_counter() - t1

    def _inference_loop(self) -> None:
        seen = -1
        while not self._stop.is_set():
            with self._new_obs:  # one attempt per pushed observation; none while nothing arrives
                arrived = self._new_obs.wait_for(lambda: self._stop.is_set() or self._obs_seq != seen, timeout=0.1)
                seen = self._obs_seq
            if self._stop.is_set():
                break
            if not arrived:  # the wait timed out: nothing new to plan from
                continue
            try:
                self.run_inference_once()
            except Exception as e:  # keep the thread alive; the control loop will report overruns
                with self._lock:
                    self.counters["inference_errors"] += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                log.exception("inference failed")
                self._stop.wait(self.period_s)

    # ------------------------------------------------------------------ control
    def control_tick(self, now: float | None = None, measured: np.ndarray | None = None) -> Command | Hold:
        """The command for this control period (never blocks on inference); ``measured`` is the
        robot's latest measured position in action space (robot units), which the safety filter
        checks every command against when ``safety.max_tracking_error`` is set."""
        t_start = time.perf_counter()
        with self._lock:
            now = self.clock.now() if now is None else float(now)
            self.counters["ticks"] += 1
            source = None
            if self._invalid_stamp is not None:
                result: Command | Hold = self.safety.hold(
                    "invalid_observation", f"newest observation (t={self._invalid_stamp:.3f}) contains NaN/Inf", now)
            else:
                result = self.safety.check_observation(self._newest_valid_stamp, now)
                if result is None:
                    dropped = self.queue.dropped_late
                    source = self.queue.pop_due(now, self.late_s, self.early_s)
                    if source is None:
                        kind = "overrun" if self._ever_planned else "no_action"
                        why = ("no clean action is due: inference fell behind" if kind == "overrun"
                               else "no action planned yet")
                        if self.queue.dropped_late > dropped:  # the action for now exists but came too late
                            self.counters["late_overruns"] += 1
                            why = (f"the planned action for now arrived too late (delay_steps="
                                   f"{self.config.planner.delay_steps}); increase delay_steps")
                        result = self.safety.hold(kind, why, now)
                    else:
                        result = self.safety.filter(source.action, now, source.time, source.step, measured)
            if result.action is not None and self._t0 is not None:
                step = result.step if isinstance(result, Command) else self.step_of(now)
                self._executed[step] = self.preprocessor.normalize_action(result.action)
                horizon = self.policy.config.horizon + self.n_obs_steps
                for s in [s for s in self._executed if s < step - horizon]:
                    del self._executed[s]
            self.last_tick = TickRecord(now, result, source if isinstance(result, Command) else None)
            self.control_tick_s.append(time.perf_counter() - t_start)
            return result

    def planned_after(self, command: Command, n: int) -> np.ndarray:
        """Up to ``n`` clean planned actions for the steps after ``command`` (robot units,
        ``(k, Da)``), bounded by :meth:`SafetyFilter.bound_future`: what a trajectory controller
        may follow if the next command does not arrive. Empty when nothing is planned."""
        with self._lock:
            future = [a.action for a in self.queue.following(command.step, n)]
        if not future:
            return np.zeros((0, self.action_dim))
        return self.safety.bound_future(command.action, np.stack(future))

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        """Counters since the last :meth:`reset` and latency percentiles (ms) over the last
        :data:`STATS_WINDOW` samples. The lock that :meth:`control_tick` needs is held only to
        copy (bounded, O(window)); percentiles are computed after releasing it."""
        with self._lock:
            safety = self.safety.report()
            c = collections.Counter(self.counters)
            inference = np.fromiter(self.inference_latency_s, np.float64, len(self.inference_latency_s))
            ticks = np.fromiter(self.control_tick_s, np.float64, len(self.control_tick_s))
            dropped_late, superseded, last_error = self.queue.dropped_late, self.queue.superseded, self.last_error
            fault = self.safety.fault
        return {
            "ticks": c["ticks"], "commands": safety["commands"], "holds": safety["holds"],
            "overruns": safety["holds"]["overrun"], "violations": safety["violations"],
            "violations_per_dim": safety["violations_per_dim"], "fault": fault,
            "tracking_ratio_max": safety["tracking_ratio_max"],
            "tracking_ratio_max_dim": safety["tracking_ratio_max_dim"],
            "dropped_late": dropped_late, "superseded": superseded,
            "observations": c["observations"], "invalid_observations": c["invalid_observations"],
            "inferences": c["inferences"], "network_calls": c["network_calls"],
            "encoder_calls": c["encoder_calls"], "planned_actions": c["planned_actions"],
            "network_calls_per_action": c["network_calls"] / max(1, safety["commands"]),
            "inference_ms_p50": _percentile_ms(inference, 50),
            "inference_ms_p99": _percentile_ms(inference, 99),
            "control_tick_ms_p50": _percentile_ms(ticks, 50),
            "control_tick_ms_p99": _percentile_ms(ticks, 99),
            "inference_errors": c["inference_errors"], "last_error": last_error,
            "late_overruns": c["late_overruns"],
            "recommended_delay_steps": self._recommended_delay(inference),
        }

    def _recommended_delay(self, latency_s: np.ndarray) -> int | None:
        """``ceil(p99 inference latency / period)`` over the inferences after the first (which
        may include priming), at least 1; ``None`` before two inferences."""
        lat = latency_s[1:]
        if not lat.size:
            return None
        return max(1, int(np.ceil(np.percentile(lat, 99) / self.period_s)))
