"""Replay evaluation: recorded episodes fed through the runtime exactly as the robot would.

    dfp eval replay --checkpoint CKPT --data STORE --out DIR [--episodes val|all|0,3,5-7]
                    [--mode stream|chunk|autoregressive|stream,chunk|all] [--fps 10] [--planner KEY=VALUE ...]

Per episode the runtime is reset and driven by a :class:`~df_policy.runtime.clock.FakeClock`
stepping one control period (``1 / fps``: ``--fps``, else the checkpoint's rate, else the
store's; a checkpoint trained on a Diffusion Policy zip without a rate needs ``--fps``) per
recorded step ``k``: the clock
is set to ``k * period``, the raw observation of step ``k`` (robot units, full-size images;
crops, derived keys and normalisation are the runtime's job) is pushed with that stamp, one
inference runs (synchronously, so it costs no simulated time; with ``delay_steps > 0`` the
planner still plans that many steps ahead, as on the robot) and one control tick emits a
command through the same safety layer. Emitted actions are compared with the recorded ones.

``DIR/metrics.json`` (errors in normalised units, over steps that emitted a command)::

    action_mse, action_mae                      overall
    per_episode: {ep: {action_mse, action_mae, steps, commands, holds, boundary_jump}}
    per_dim: {action_mse: [Da], action_mae: [Da]}
    boundary_jump, boundary_jump_reference      see below
    smoothness_ratio                            mean|Δexecuted| / mean|Δrecorded| (same step pairs)
    tick_latency_ms_p50 / _p99                  wall time of the per-tick inference (incl. preprocessing)
    control_tick_ms_p50 / _p99                  wall time of the control tick (safety filter, queue)
    network_calls_per_action                    denoiser calls / commands emitted
    holds {kind: n}, overruns, violations {kind: n}, dropped_late, commands, steps
    lookahead: {by_lookahead: {L: {count, policy_mse, policy_mae, repeat_last_mse, ...,
                constant_velocity_mse, ...}}, matched, main_lookahead, verdict, baseline_curve}
    verdict                                     "beats / does not beat the baselines ... at lookahead L"
    fps, period_s, planner {PlannerConfig fields}

``lookahead`` (:mod:`~df_policy.evaluation.lookahead`): the error of the executed actions per
lookahead (step executed minus the step of the observation it was planned from) beside the
repeat-last and constant-velocity baselines on the same actions. Stream modes execute at
lookahead ``delay_steps``, chunk mode at ``delay_steps .. delay_steps + replan_every - 1``, so
their overall ``action_mse`` values are not comparable: compare at equal lookahead. With several
``--mode`` values each goes to ``DIR/<mode>/`` and ``DIR/metrics.json`` / ``DIR/report.md``
compare them at the lookaheads they share.

``boundary_jump``: ``|Δa|`` of a consecutive pair of executed actions ``(k-1, k)`` is the mean
absolute difference over action dimensions (normalised units); pairs with a hold are skipped.
A pair is a *boundary* when the two actions were made clean by different planner calls, else
*inside*. Chunk mode: ``boundary_jump = mean |Δa| over boundaries / mean |Δa| inside`` (reference
``"inside_chunk"``). Stream modes: every executed action is made clean by its own tick, so (apart
from the priming tick) every pair is a tick boundary and there is no inside-chunk motion to
compare with; the reference is the demonstration: ``boundary_jump = mean |Δa_executed| / mean
|Δa_recorded|`` over the boundary pairs (reference ``"recorded"``). In both cases 1.0 means
seamless; > 1 means steps at boundaries are larger than the trajectory's ordinary motion.

Also written: ``DIR/lookahead.png`` (MSE vs lookahead, policy vs baselines),
``DIR/episode_<i>.png`` (recorded vs executed action per dimension over time, plus the path in
the plane for 2-D actions; holds marked, chunk boundaries as vertical lines) and
``DIR/report.md`` linking them (verdict and per-lookahead table first).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from df_policy.evaluation.common import finite, parse_planner_overrides, resolve_fps
from df_policy.evaluation.lookahead import lookahead_metrics, lookahead_table, plot_lookahead, write_mode_comparison
from df_policy.runtime.clock import FakeClock
from df_policy.runtime.planning import MODES, PlannerConfig
from df_policy.runtime.runner import PolicyRuntime, RuntimeConfig
from df_policy.runtime.safety import Command, SafetyConfig


@dataclass
class EpisodeTrace:
    """Everything recorded while replaying one episode (``T`` steps, ``Da`` action dims).

    Attributes:
        episode: episode index in the store.
        recorded: ``(T, Da)`` recorded actions, robot units.
        executed: ``(T, Da)`` emitted commands, robot units (NaN where the tick held).
        recorded_norm, executed_norm: the same in normalised units.
        plan_id: ``(T,)`` planner call that made each executed action clean (-1 = hold).
        hold_kind: per step, the hold kind or ``""``.
        tick_latency_s: ``(T,)`` wall time of each step's inference.
        control_tick_s: ``(T,)`` wall time of each control tick.
        obs_step: ``(T,)`` step of the newest observation each executed action was planned
            from (-1 = hold); lookahead = step - obs_step (:mod:`~df_policy.evaluation.lookahead`).
    """

    episode: int
    recorded: np.ndarray
    executed: np.ndarray
    recorded_norm: np.ndarray
    executed_norm: np.ndarray
    plan_id: np.ndarray
    hold_kind: list[str]
    tick_latency_s: np.ndarray
    control_tick_s: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    obs_step: np.ndarray | None = None


def replay_episode(runtime: PolicyRuntime, steps: dict[str, np.ndarray], actions: np.ndarray,
                   episode: int, t_start: float) -> EpisodeTrace:
    """Drive ``runtime`` through one recorded episode (``steps``: raw key -> ``(T, ...)``)."""
    T, Da = actions.shape
    period = runtime.period_s
    runtime.reset(t0=t_start)
    executed = np.full((T, Da), np.nan)
    executed_norm = np.full((T, Da), np.nan, dtype=np.float32)
    plan_id = np.full(T, -1, dtype=np.int64)
    obs_step = np.full(T, -1, dtype=np.int64)
    holds, lat, ctl = [""] * T, np.zeros(T), np.zeros(T)
    for k in range(T):
        raw = {key: value[k] for key, value in steps.items()}
        result, lat[k], ctl[k] = runtime.step_synchronously(raw, t_start + k * period)
        if isinstance(result, Command):
            executed[k] = result.action
            executed_norm[k] = runtime.preprocessor.normalize_action(result.action)
            source = runtime.last_tick.source if runtime.last_tick is not None else None
            plan_id[k] = source.plan_id if source is not None else -1
            obs_step[k] = runtime.step_of(source.obs_time) if source is not None else -1
        else:
            holds[k] = result.kind
    recorded_norm = runtime.preprocessor.normalize_action(actions)
    return EpisodeTrace(episode, actions.astype(np.float64), executed, recorded_norm, executed_norm, plan_id, holds,
                        lat, ctl, runtime.stats(), obs_step)


def _pair_deltas(trace: EpisodeTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|Δexecuted|, |Δrecorded|, is_boundary)`` over consecutive pairs with no hold."""
    ok = ~np.isnan(trace.executed_norm).any(axis=1)
    pair = ok[1:] & ok[:-1]
    d_exec = np.abs(np.diff(trace.executed_norm, axis=0)).mean(axis=1)[pair]
    d_rec = np.abs(np.diff(trace.recorded_norm, axis=0)).mean(axis=1)[pair]
    boundary = (trace.plan_id[1:] != trace.plan_id[:-1])[pair]
    return d_exec, d_rec, boundary


def boundary_jump(traces: list[EpisodeTrace], reference: str = "inside_chunk") -> tuple[float | None, str, float | None]:
    """``(boundary_jump, reference, smoothness_ratio)`` over ``traces`` (module docstring);
    ``reference`` is ``"inside_chunk"`` (chunk mode) or ``"recorded"`` (stream modes)."""
    if reference not in ("inside_chunk", "recorded"):
        raise ValueError(f"reference must be 'inside_chunk' or 'recorded', got {reference!r}")
    parts = [_pair_deltas(t) for t in traces]
    if not parts:
        return None, reference, None
    d_exec = np.concatenate([p[0] for p in parts])
    d_rec = np.concatenate([p[1] for p in parts])
    boundary = np.concatenate([p[2] for p in parts])

    def ratio(a: np.ndarray, b: np.ndarray) -> float | None:
        return float(a.mean() / b.mean()) if a.size and b.size and b.mean() > 0 else None

    smooth = ratio(d_exec, d_rec)
    if reference == "recorded":
        return ratio(d_exec[boundary], d_rec[boundary]), reference, smooth
    return ratio(d_exec[boundary], d_exec[~boundary]), reference, smooth


def _errors(traces: list[EpisodeTrace]) -> tuple[np.ndarray, int]:
    errs = [t.executed_norm - t.recorded_norm for t in traces]
    err = np.concatenate(errs) if errs else np.zeros((0, 1))
    err = err[~np.isnan(err).any(axis=1)]
    return err, len(err)


def compute_metrics(traces: list[EpisodeTrace], mode: str, curve_max: int = 8) -> dict[str, Any]:
    """The ``metrics.json`` content (see the module docstring); ``curve_max``: the baselines'
    policy-independent curve spans lookaheads ``0 .. curve_max`` (at least)."""
    err, n = _errors(traces)
    reference = "inside_chunk" if mode == "chunk" else "recorded"
    jump, reference, smooth = boundary_jump(traces, reference)
    lat = np.concatenate([t.tick_latency_s for t in traces]) if traces else np.zeros(0)
    ctl = np.concatenate([t.control_tick_s for t in traces]) if traces else np.zeros(0)
    holds: dict[str, int] = {}
    violations: dict[str, int] = {}
    calls = commands = dropped = 0
    per_episode = {}
    for t in traces:
        s = t.stats
        for k, v in s["holds"].items():
            holds[k] = holds.get(k, 0) + int(v)
        for k, v in s["violations"].items():
            violations[k] = violations.get(k, 0) + int(v)
        calls += s["network_calls"]
        commands += s["commands"]
        dropped += s["dropped_late"]
        e, m = _errors([t])
        ej, _, _ = boundary_jump([t], reference)
        per_episode[str(t.episode)] = {
            "action_mse": float((e ** 2).mean()) if m else None, "action_mae": float(np.abs(e).mean()) if m else None,
            "steps": len(t.recorded), "commands": int(s["commands"]), "holds": int(sum(s["holds"].values())),
            "boundary_jump": ej, "network_calls": int(s["network_calls"]),
        }

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q) * 1000.0) if values.size else None

    return {
        "mode": mode,
        "episodes": [t.episode for t in traces],
        "steps": int(sum(len(t.recorded) for t in traces)),
        "commands": int(commands),
        "action_mse": float((err ** 2).mean()) if n else None,
        "action_mae": float(np.abs(err).mean()) if n else None,
        "per_dim": {"action_mse": (err ** 2).mean(axis=0).tolist() if n else None,
                    "action_mae": np.abs(err).mean(axis=0).tolist() if n else None},
        "per_episode": per_episode,
        "boundary_jump": jump,
        "boundary_jump_reference": reference,
        "smoothness_ratio": smooth,
        "tick_latency_ms_p50": pct(lat, 50), "tick_latency_ms_p99": pct(lat, 99),
        "control_tick_ms_p50": pct(ctl, 50), "control_tick_ms_p99": pct(ctl, 99),
        "network_calls": int(calls),
        "network_calls_per_action": calls / commands if commands else None,
        "holds": holds, "overruns": int(holds.get("overrun", 0)), "violations": violations,
        "dropped_late": int(dropped),
        "lookahead": (la := lookahead_metrics([t.recorded_norm for t in traces], [t.executed_norm for t in traces],
                                              [t.obs_step for t in traces], curve_max)),
        "verdict": la["verdict"],
        "units": "errors and boundary statistics in normalised action units; latencies in ms (wall clock)",
    }


def plot_episode(trace: EpisodeTrace, period_s: float, path: Path, names: list[str] | None = None) -> None:
    """PNG of recorded vs executed actions (robot units) for one episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, Da = trace.recorded.shape
    xy = Da == 2
    n_plots = Da + int(xy)
    fig, axes = plt.subplots(1, n_plots, figsize=(3.6 * n_plots, 3.0), squeeze=False)
    t = np.arange(T) * period_s
    boundaries = np.flatnonzero((trace.plan_id[1:] != trace.plan_id[:-1]) & (trace.plan_id[1:] >= 0)) + 1
    held = np.array([bool(h) for h in trace.hold_kind])
    for d in range(Da):
        ax = axes[0, d]
        ax.plot(t, trace.recorded[:, d], color="k", lw=1.2, label="recorded")
        ax.plot(t, trace.executed[:, d], color="C1", lw=1.0, label="executed")
        if len(boundaries) < 0.6 * T:  # chunk boundaries (in stream mode every step is one)
            for b in boundaries:
                ax.axvline(t[b], color="C0", lw=0.4, alpha=0.4)
        if held.any():
            ax.plot(t[held], np.full(held.sum(), np.nanmin(trace.recorded[:, d])), "rx", ms=3, label="hold")
        ax.set_title(names[d] if names and d < len(names) else f"action[{d}]", fontsize=9)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    if xy:
        ax = axes[0, Da]
        ax.plot(trace.recorded[:, 0], trace.recorded[:, 1], color="k", lw=1.2, label="recorded")
        ax.plot(trace.executed[:, 0], trace.executed[:, 1], color="C1", lw=1.0, label="executed")
        ax.set_title("path", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"episode {trace.episode}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(out: Path, metrics: dict[str, Any], plots: dict[int, str], header: dict[str, Any],
                 lookahead_plot: str | None = None) -> Path:
    """``report.md``: settings, verdict, per-lookahead table (policy vs baselines), headline
    metrics, per-episode table with plot links."""
    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["# Replay evaluation", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in header.items()]
    la = metrics.get("lookahead")
    if la:
        lines += ["", f"**Verdict:** {metrics['mode']} mode {la['verdict']}."]
        if la.get("verdict_matched"):
            lines += ["", f"Over all lookaheads: {la['verdict_matched']}."]
        lines += ["", "## Error per lookahead", "",
                  "Lookahead = step the action is executed at minus the step of the observation it was planned "
                  "from. Baselines use the recorded actions executed before that observation "
                  "(repeat-last: a[t-1]; constant-velocity: a[t-1] + (L+1)(a[t-1] - a[t-2])) and are scored on the "
                  "same actions as the policy; planning observations t < 2 are not scored here. "
                  "Compare modes at equal lookahead, not by overall MSE.", "",
                  *lookahead_table(la, fmt), ""]
        if lookahead_plot:
            lines += [f"![error vs lookahead]({lookahead_plot})", ""]
    lines += ["", "| metric | value |", "| --- | --- |"]
    for key in ("action_mse", "action_mae", "boundary_jump", "boundary_jump_reference", "smoothness_ratio",
                "tick_latency_ms_p50", "tick_latency_ms_p99", "network_calls_per_action", "commands", "steps",
                "overruns", "dropped_late"):
        lines.append(f"| {key} | {fmt(metrics.get(key))} |")
    lines.append(f"| holds | {fmt(metrics['holds'])} |")
    lines.append(f"| violations | {fmt(metrics['violations'])} |")
    lines += ["", "Errors are in normalised action units; see `metrics.json` for per-dimension values.", "",
              "| episode | steps | commands | holds | action_mse | action_mae | boundary_jump | plot |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for ep, m in metrics["per_episode"].items():
        plot = plots.get(int(ep))
        link = f"[{plot}]({plot})" if plot else ""
        lines.append(f"| {ep} | {m['steps']} | {m['commands']} | {m['holds']} | {fmt(m['action_mse'])} | "
                     f"{fmt(m['action_mae'])} | {fmt(m['boundary_jump'])} | {link} |")
    lines.append("")
    for ep, plot in plots.items():
        lines += [f"## Episode {ep}", "", f"![episode {ep}]({plot})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def select_episodes(spec: str | list[int] | None, n_episodes: int, run_dataset: dict[str, Any],
                    bad: list[int]) -> list[int]:
    """Episode indices from ``"val"`` (the checkpoint's validation split of this store; all
    episodes if it has none), ``"all"`` (every episode not marked bad), or ``"0,3,5-7"``."""
    if isinstance(spec, list):
        chosen = spec
    elif spec in (None, "val"):
        from df_policy.data.sampler import split_episodes

        ratio = float(run_dataset.get("val_ratio", 0.0) or 0.0)
        val: list[int] = []
        if ratio > 0:
            _, val = split_episodes(n_episodes, ratio, int(run_dataset.get("split_seed", 0)), exclude=bad)
        chosen = list(val) or [i for i in range(n_episodes) if i not in bad]
    elif spec == "all":
        chosen = [i for i in range(n_episodes) if i not in bad]
    else:
        chosen = []
        for part in str(spec).replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                chosen.extend(range(int(a), int(b) + 1))
            else:
                chosen.append(int(part))
    for i in chosen:
        if not 0 <= i < n_episodes:
            raise IndexError(f"episode {i} out of range (the store has {n_episodes} episodes)")
    return sorted(dict.fromkeys(int(i) for i in chosen))


def run_replay(checkpoint: str | Path, data: str | Path, out: str | Path, *, episodes: str | list[int] | None = "val",
               max_episodes: int | None = None, max_steps: int | None = None,
               config: RuntimeConfig | None = None, plots: bool = True, progress: bool = False,
               fps: float | None = None) -> dict[str, Any]:
    """Replay ``episodes`` of the store ``data`` through a runtime built from ``checkpoint``;
    writes ``metrics.json``, plots and ``report.md`` into ``out`` and returns the metrics.

    The control rate is ``fps`` (``--fps``; ``config.period_s`` counts as ``1 / fps``), else the
    checkpoint's, else the store's; it must agree with those that are known. A checkpoint
    trained on a Diffusion Policy zip without a rate needs ``fps`` (PushT: 10)."""
    from df_policy.data.dataset import derive_schema
    from df_policy.data.legacy import open_episodes
    from df_policy.training.checkpoint import load_checkpoint

    config = config or RuntimeConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(checkpoint, device=config.device)
    ds = dict(loaded.run_config.get("dataset") or {})
    reader = open_episodes(data)
    if fps is None and config.period_s is not None:
        fps = 1.0 / config.period_s
    rate = resolve_fps(fps, loaded.fps, reader.schema.fps, data_label=f"the data ({data})")
    loaded.check_compatible(derive_schema(reader.schema, ds.get("derived_keys") or {}))
    clock = FakeClock(0.0)
    config = dataclasses.replace(config, period_s=1.0 / rate)
    runtime = PolicyRuntime.from_loaded(loaded, config, clock)
    bad = [i for i, m in enumerate(reader.episode_meta) if m.bad]
    chosen = select_episodes(episodes, reader.n_episodes, ds, bad)
    if max_episodes is not None:
        chosen = chosen[:max_episodes]
    if not chosen:
        raise ValueError(f"{data}: no episodes selected")
    action_key = loaded.schema.action_key
    keys = runtime.preprocessor.source_keys()
    traces: list[EpisodeTrace] = []
    t_start = 0.0
    started = time.perf_counter()
    for n, ep in enumerate(chosen):
        arrays = reader.episode(ep, keys=[*keys, action_key])
        actions = arrays.pop(action_key).reshape(len(arrays[keys[0]]), -1)
        if max_steps is not None:
            arrays = {k: v[:max_steps] for k, v in arrays.items()}
            actions = actions[:max_steps]
        traces.append(replay_episode(runtime, arrays, actions, ep, t_start))
        t_start += (len(actions) + 10) * runtime.period_s  # the fake clock only moves forward
        if progress:
            print(f"[{n + 1}/{len(chosen)}] episode {ep}: {len(actions)} steps "
                  f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    metrics = compute_metrics(traces, config.planner.mode, curve_max=loaded.policy.config.horizon)
    metrics["checkpoint"] = str(loaded.path)
    metrics["data"] = str(data)
    metrics["fps"] = rate
    metrics["period_s"] = runtime.period_s
    metrics["planner"] = {k: _jsonable(v) for k, v in dataclasses.asdict(config.planner).items()}
    plot_paths: dict[int, str] = {}
    lookahead_png = None
    if plots:
        names = loaded.schema.keys[action_key].names
        for trace in traces:
            name = f"episode_{trace.episode:04d}.png"
            plot_episode(trace, runtime.period_s, out / name, list(names) if names else None)
            plot_paths[trace.episode] = name
        lookahead_png = "lookahead.png"
        plot_lookahead({config.planner.mode: metrics["lookahead"]}, out / lookahead_png,
                       f"replay, {config.planner.mode} mode: action MSE vs lookahead")
    metrics["plots"] = {str(k): v for k, v in plot_paths.items()}
    metrics["lookahead_plot"] = lookahead_png
    (out / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2))
    write_report(out, metrics, plot_paths, {"checkpoint": loaded.path, "data": data, "mode": config.planner.mode,
                                            "delay_steps": config.planner.delay_steps, "fps": rate,
                                            "period_s": runtime.period_s, "episodes": chosen},
                 lookahead_plot=lookahead_png)
    return metrics


def run_replay_modes(checkpoint: str | Path, data: str | Path, out: str | Path, modes: list[str],
                     config: RuntimeConfig | None = None, plots: bool = True, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_replay` once per mode into ``out/<mode>/``, then ``out/metrics.json``,
    ``out/report.md`` and ``out/lookahead.png`` comparing the modes at equal lookahead."""
    config = config or RuntimeConfig()
    out = Path(out)
    per_mode = {}
    for mode in modes:
        cfg = dataclasses.replace(config, planner=dataclasses.replace(config.planner, mode=mode))
        per_mode[mode] = run_replay(checkpoint, data, out / mode, config=cfg, plots=plots, **kwargs)
    return write_mode_comparison(per_mode, out, plots=plots)


def _jsonable(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


_finite = finite  # NaN/Inf -> None, so metrics.json is strict JSON


# ---------------------------------------------------------------------------------- CLI
def _limit(text: str | None) -> Any:
    if text is None:
        return None
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or run directory")
    p.add_argument("--data", required=True, help="episode store (ours or Diffusion Policy .zarr/.zarr.zip)")
    p.add_argument("--out", required=True, help="output directory (metrics.json, plots, report.md)")
    p.add_argument("--episodes", default="val",
                   help="'val' (the checkpoint's validation split, default), 'all', or a list like 0,3,5-7")
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="replay at most this many steps per episode")
    p.add_argument("--mode", type=_modes, default=["stream"], metavar="MODE[,MODE...]|all",
                   help=f"planner mode(s): {', '.join(MODES)}, a comma list or 'all' (default stream); with several, "
                        "each mode goes to OUT/<mode>/ and OUT/report.md compares them at equal lookahead")
    p.add_argument("--fps", type=float, default=None,
                   help="control rate in Hz; needed when neither the checkpoint nor the store records one "
                        "(a checkpoint trained on a Diffusion Policy .zarr.zip without dataset.fps; PushT: --fps 10)")
    p.add_argument("--delay-steps", type=int, default=1,
                   help="steps planned ahead to cover inference latency (default 1, as on the robot; "
                        "0 = the observation's own step, pure prediction quality)")
    p.add_argument("--calls-per-tick", type=int, default=None, help="stream modes: denoiser calls per tick")
    p.add_argument("--ramp-tokens", type=int, default=None,
                   help="stream modes: ticks a token takes from noise to clean (default: PlannerConfig's)")
    p.add_argument("--schedule", default=None, help="chunk mode: full_sequence (default), pyramid, autoregressive, trapezoid")
    p.add_argument("--replan-every", type=int, default=None, help="chunk mode: steps per chunk (default n_action_steps)")
    p.add_argument("--context-level", type=int, default=None, help="level of executed context (default: stabilization_level)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--planner", action="append", default=[], metavar="KEY=VALUE",
                   help="any other PlannerConfig field, value parsed as YAML (repeatable), e.g. "
                        "--planner history_guidance=1.5 --planner prime=false")
    p.add_argument("--low", default=None, help="position limits, robot units (one value or comma list)")
    p.add_argument("--high", default=None)
    p.add_argument("--max-velocity", default=None, help="units/s (one value or comma list)")
    p.add_argument("--max-acceleration", default=None, help="units/s^2 (one value or comma list)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="inference precision (RuntimeConfig.precision): bf16 = encoder and denoiser under bf16 "
                        "autocast, for GPUs; compare its replay error with fp32's")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-plots", action="store_true")


def _modes(text: str) -> list[str]:
    modes = list(MODES) if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"invalid mode(s) {bad or text!r}: choose from {', '.join(MODES)}, a comma "
                                         "list of them, or 'all'")
    return list(dict.fromkeys(modes))


def config_from_args(args: argparse.Namespace) -> RuntimeConfig:
    """The runtime settings of ``dfp eval replay`` (the first of ``--mode``)."""
    explicit = {"calls_per_tick": args.calls_per_tick, "ramp_tokens": args.ramp_tokens, "schedule": args.schedule,
                "replan_every": args.replan_every, "context_level": args.context_level}
    extra = parse_planner_overrides(getattr(args, "planner", None), reserved=("mode", "delay_steps", "seed"))
    both = [k for k in extra if explicit.get(k) is not None]
    if both:
        raise ValueError(f"--planner {both[0]}=... and --{both[0].replace('_', '-')} given: use one")
    modes = args.mode if isinstance(args.mode, list) else [args.mode]
    planner = PlannerConfig(mode=modes[0], delay_steps=args.delay_steps, seed=args.seed,
                            **{**{k: v for k, v in explicit.items() if v is not None}, **extra})
    safety = SafetyConfig(low=_limit(args.low), high=_limit(args.high), max_velocity=_limit(args.max_velocity),
                          max_acceleration=_limit(args.max_acceleration))
    return RuntimeConfig(planner=planner, safety=safety, device=args.device,
                         precision=getattr(args, "precision", "fp32"))


def cmd_eval_replay(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    modes = args.mode if isinstance(args.mode, list) else [args.mode]
    common = dict(episodes=args.episodes, max_episodes=args.max_episodes, max_steps=args.max_steps,
                  config=config_from_args(args), plots=not args.no_plots, progress=True, fps=args.fps)
    if len(modes) > 1:
        comparison = run_replay_modes(args.checkpoint, args.data, args.out, modes, **common)
        for mode, m in comparison["per_mode"].items():
            print(f"{mode}: action_mse {m['action_mse']:.4g}; {m['verdict']}")
        print(f"report: {Path(args.out) / 'report.md'}")
        return 0
    metrics = run_replay(args.checkpoint, args.data, args.out, **common)
    summary = {k: metrics[k] for k in ("action_mse", "action_mae", "boundary_jump", "boundary_jump_reference",
                                        "tick_latency_ms_p50", "tick_latency_ms_p99", "network_calls_per_action",
                                        "overruns", "commands", "steps", "verdict")}
    summary["mse_by_lookahead"] = {L: r["policy_mse"] for L, r in metrics["lookahead"]["by_lookahead"].items()}
    print(json.dumps(_finite(summary), indent=2))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def add_eval_replay_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``replay`` to the ``dfp eval`` sub-command group (``subparsers`` of ``eval``)."""
    p = subparsers.add_parser("replay", help="replay recorded episodes through the runtime and compare actions")
    add_replay_arguments(p)
    p.set_defaults(func=cmd_eval_replay)
    return p


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` group with ``replay`` to the top-level ``dfp`` sub-commands."""
    ev = sub.add_parser("eval", help="evaluate trained policies")
    add_eval_replay_command(ev.add_subparsers(dest="eval_cmd", required=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m df_policy.evaluation.replay", description=__doc__.split("\n")[0])
    add_replay_arguments(p)
    return cmd_eval_replay(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
