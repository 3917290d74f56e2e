"""Action error per lookahead step, and the trivial baselines at the same lookahead.

*Lookahead* of an executed action: the step it is executed at (its target step, the recorded
step it is scored against) minus the step ``t`` of the newest observation it was planned from.
Stream modes execute every action at lookahead ``delay_steps`` (the priming tick of an episode
also emits step ``t`` itself); chunk mode executes lookaheads ``delay_steps .. delay_steps +
replan_every - 1``. Errors grow with lookahead for any predictor, so a single overall MSE is
not comparable between modes: compare at equal lookahead.

Baselines (normalised action units, computed from the *recorded* actions, so they are the same
for every mode and checkpoint). A plan made from observation ``t`` knows the actions executed
before that observation, ``a[t-1], a[t-2], ...`` (the runtime's executed-action context); the
baselines predict the action at target step ``k = t + L`` from them:

* ``repeat_last``: ``â[k] = a[t-1]``
* ``constant_velocity``: ``â[k] = a[t-1] + (k - (t-1)) · (a[t-1] - a[t-2])``

An executed action is *scored* here when its planning observation has two executed actions
before it (``t >= 2``); the few actions planned from the first two observations of an episode
are left out of the lookahead tables (they are in the overall ``action_mse``). The policy and
the baselines are scored on exactly the same (episode, step) pairs, lookahead by lookahead
(``by_lookahead``) and over all scored pairs (``matched``: the same lookahead mix for all
three). ``baseline_curve`` gives the baselines at every lookahead ``0 .. L_max`` over every
step of the replayed episodes, independent of the policy, for plots and cross-mode tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

BASELINES = ("repeat_last", "constant_velocity")
BASELINE_NAMES = {"repeat_last": "repeat-last", "constant_velocity": "constant-velocity"}
DEFINITION = ("lookahead = target step of the executed action - step of the newest observation it was planned "
              "from; baselines predict a[t+L] from the recorded actions executed before observation t: "
              "repeat_last = a[t-1], constant_velocity = a[t-1] + (L+1)(a[t-1] - a[t-2]); scored where t >= 2")


def baseline_prediction(recorded: np.ndarray, targets: np.ndarray, obs_steps: np.ndarray, kind: str) -> np.ndarray:
    """Baseline ``kind`` for the actions at ``targets`` planned from observations ``obs_steps``
    (integer arrays of equal length, ``obs_steps >= 2``), from ``recorded`` ``(T, Da)``."""
    targets, obs_steps = np.asarray(targets, np.int64), np.asarray(obs_steps, np.int64)
    if (obs_steps < 2).any():
        raise ValueError("baselines need two executed actions before the observation (obs step >= 2)")
    last = recorded[obs_steps - 1].astype(np.float64)
    if kind == "repeat_last":
        return last
    if kind == "constant_velocity":
        velocity = last - recorded[obs_steps - 2]
        return last + (targets - (obs_steps - 1))[:, None] * velocity
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def scored_pairs(executed_norm: np.ndarray, obs_step: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, obs_steps)`` of one episode's scored actions: a command was executed (no
    hold, finite), its planning observation is known and ``>= 2``."""
    T = len(executed_norm)
    if obs_step is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    obs_step = np.asarray(obs_step, np.int64)
    k = np.arange(T)
    ok = ~np.isnan(executed_norm).any(axis=1) & (obs_step >= 2) & (obs_step <= k)
    return k[ok], obs_step[ok]


def _stats(err: np.ndarray) -> tuple[float | None, float | None]:
    if not len(err):
        return None, None
    return float((err ** 2).mean()), float(np.abs(err).mean())


def _row(err: dict[str, np.ndarray]) -> dict[str, Any]:
    row: dict[str, Any] = {"count": int(len(err["policy"]))}
    for who in ("policy", *BASELINES):
        row[f"{who}_mse"], row[f"{who}_mae"] = _stats(err[who])
    return row


def baseline_curve(recorded: Sequence[np.ndarray], max_lookahead: int) -> dict[str, list]:
    """Baseline MSE at lookahead ``0 .. max_lookahead`` over every step of every episode
    (``recorded``: per episode ``(T, Da)`` normalised actions; policy-independent)."""
    out: dict[str, list] = {"lookahead": list(range(max_lookahead + 1)), "count": []}
    for kind in BASELINES:
        out[f"{kind}_mse"] = []
    for L in out["lookahead"]:
        errs: dict[str, list[np.ndarray]] = {kind: [] for kind in BASELINES}
        n = 0
        for rec in recorded:
            targets = np.arange(L + 2, len(rec))
            if not len(targets):
                continue
            n += len(targets)
            for kind in BASELINES:
                errs[kind].append(baseline_prediction(rec, targets, targets - L, kind) - rec[targets])
        out["count"].append(n)
        for kind in BASELINES:
            e = np.concatenate(errs[kind]) if errs[kind] else np.zeros((0, 1))
            out[f"{kind}_mse"].append(_stats(e)[0])
    return out


def main_lookahead(counts: dict[int, int]) -> int | None:
    """The smallest lookahead holding at least half as many scored actions as the most frequent
    one: ``delay_steps`` in every mode (the first action after each plan)."""
    if not counts:
        return None
    top = max(counts.values())
    return min(L for L, n in counts.items() if n >= 0.5 * top)


def verdict(row: dict[str, Any] | None, where: str) -> str:
    """One line: ``beats / does not beat the baselines (repeat-last, constant-velocity) <where>``."""
    if not row or not row.get("count") or row.get("policy_mse") is None:
        return f"n/a: no scored actions {where}"
    p = row["policy_mse"]
    beaten = {kind: p < row[f"{kind}_mse"] for kind in BASELINES}
    numbers = (f"policy MSE {p:.4g} vs " + ", ".join(f"{BASELINE_NAMES[k]} {row[f'{k}_mse']:.4g}" for k in BASELINES)
               + f" (n={row['count']})")
    names = ", ".join(BASELINE_NAMES[k] for k in BASELINES)
    if all(beaten.values()):
        return f"beats the baselines ({names}) {where}: {numbers}"
    only = [BASELINE_NAMES[k] for k, b in beaten.items() if b]
    extra = f" (beats {only[0]} only)" if only else ""
    return f"does not beat the baselines ({names}) {where}{extra}: {numbers}"


def lookahead_metrics(recorded: Sequence[np.ndarray], executed: Sequence[np.ndarray],
                      obs_steps: Sequence[np.ndarray | None], curve_max: int = 8) -> dict[str, Any]:
    """Per-lookahead policy and baseline errors over episodes (module docstring).

    Args:
        recorded, executed: per episode ``(T, Da)`` normalised recorded / executed actions
            (executed NaN where the tick held).
        obs_steps: per episode ``(T,)`` step of the observation each executed action was planned
            from (``-1`` = none).
        curve_max: the policy-independent ``baseline_curve`` spans lookaheads ``0 ..
            max(curve_max, largest scored lookahead)``.
    """
    by_l: dict[int, dict[str, list[np.ndarray]]] = {}
    for rec, exe, obs in zip(recorded, executed, obs_steps):
        targets, t = scored_pairs(exe, obs)
        if not len(targets):
            continue
        L = targets - t
        err = {"policy": exe[targets] - rec[targets]}
        for kind in BASELINES:
            err[kind] = baseline_prediction(rec, targets, t, kind) - rec[targets]
        for value in np.unique(L):
            sel = L == value
            slot = by_l.setdefault(int(value), {who: [] for who in ("policy", *BASELINES)})
            for who, e in err.items():
                slot[who].append(e[sel])
    merged = {L: {who: np.concatenate(v) for who, v in d.items()} for L, d in sorted(by_l.items())}
    rows = {L: _row(e) for L, e in merged.items()}
    matched = _row({who: np.concatenate([e[who] for e in merged.values()]) if merged else np.zeros((0, 1))
                    for who in ("policy", *BASELINES)})
    matched["mean_lookahead"] = (sum(L * r["count"] for L, r in rows.items()) / matched["count"]
                                 if matched["count"] else None)
    main = main_lookahead({L: r["count"] for L, r in rows.items()})
    lines = {"verdict": verdict(rows.get(main) if main is not None else None, f"at lookahead {main}")}
    if len(rows) > 1:
        lines["verdict_matched"] = verdict(matched, f"over lookaheads {min(rows)}-{max(rows)} "
                                                    f"(mean {matched['mean_lookahead']:.2f}, matched)")
    return {
        "definition": DEFINITION,
        "lookaheads": list(rows),
        "by_lookahead": {str(L): r for L, r in rows.items()},
        "matched": matched,
        "main_lookahead": main,
        **lines,
        "baseline_curve": baseline_curve(recorded, max([curve_max, *rows])),
    }


def lookahead_table(la: dict[str, Any], fmt: Any) -> list[str]:
    """Markdown rows: lookahead | n | policy | repeat-last | constant-velocity (MSE)."""
    lines = ["| lookahead | scored actions | policy MSE | repeat-last MSE | constant-velocity MSE | policy MAE |",
             "| --- | --- | --- | --- | --- | --- |"]
    rows = [(L, r) for L, r in la["by_lookahead"].items()] + [("all (matched)", la["matched"])]
    for L, r in rows:
        lines.append(f"| {L} | {r['count']} | {fmt(r['policy_mse'])} | {fmt(r['repeat_last_mse'])} | "
                     f"{fmt(r['constant_velocity_mse'])} | {fmt(r['policy_mae'])} |")
    return lines


def plot_lookahead(policies: dict[str, dict[str, Any]], path: Path, title: str = "") -> None:
    """PNG: action MSE vs lookahead for each policy (label -> :func:`lookahead_metrics` result),
    the baselines on the same scored actions (open markers) and over all steps (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    positive: list[float] = []
    curve = next((la["baseline_curve"] for la in policies.values() if la.get("baseline_curve")), None)
    if curve is not None:
        for kind, color in zip(BASELINES, ("0.45", "C2")):
            ys = np.array([np.nan if v is None else v for v in curve[f"{kind}_mse"]], dtype=float)
            ax.plot(curve["lookahead"], ys, ls="--", lw=1.0, color=color, label=f"{BASELINE_NAMES[kind]} (all steps)")
            positive += [v for v in ys if np.isfinite(v) and v > 0]
    for i, (label, la) in enumerate(policies.items()):
        Ls = [int(L) for L in la["by_lookahead"]]
        if not Ls:
            continue
        rows = [la["by_lookahead"][str(L)] for L in Ls]
        ys = [r["policy_mse"] for r in rows]
        color = f"C{(i + 3) % 10}" if len(policies) > 1 else "C1"
        ax.plot(Ls, ys, "o-", color=color, lw=1.5, ms=5, label=f"policy: {label}")
        positive += [v for v in ys if v and v > 0]
        if len(policies) == 1:  # paired baselines on exactly the policy's scored actions
            for kind, color_b in zip(BASELINES, ("0.45", "C2")):
                ax.plot(Ls, [r[f"{kind}_mse"] for r in rows], "o", mfc="none", color=color_b, ms=6,
                        label=f"{BASELINE_NAMES[kind]} (same actions)")
    if positive:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(min(positive), max(positive) * 1e-4) / 2)  # a near-exact baseline would squash the rest
    ax.set_xlabel("lookahead (steps after the planning observation)", fontsize=9)
    ax.set_ylabel("action MSE (normalised units)", fontsize=9)
    ax.set_title(title or "action error vs lookahead", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(r["count"] for r in rows)
    out: dict[str, Any] = {"count": n}
    for who in ("policy", *BASELINES):
        out[f"{who}_mse"] = sum(r[f"{who}_mse"] * r["count"] for r in rows) / n if n else None
    return out


def write_mode_comparison(per_mode: dict[str, dict[str, Any]], out: Path, plots: bool = True) -> dict[str, Any]:
    """``out/metrics.json``, ``out/report.md`` (and ``out/lookahead.png``) comparing replay
    metrics of several modes (mode -> ``metrics.json`` content, each in ``out/<mode>/``) at equal
    lookahead. ``matched_lookahead``: per mode, the policy and baselines pooled over the
    lookaheads that every mode executes (the one figure comparable between modes)."""
    import json

    from df_policy.evaluation.common import finite

    las = {m: metrics["lookahead"] for m, metrics in per_mode.items()}
    all_l = sorted({int(L) for la in las.values() for L in la["by_lookahead"]})
    common = sorted(set.intersection(*[{int(L) for L in la["by_lookahead"]} for la in las.values()])) if las else []
    curve = next(iter(las.values()))["baseline_curve"] if las else None  # same episodes: same for every mode
    by_l: dict[str, dict[str, Any]] = {}
    for L in all_l:
        row: dict[str, Any] = {m: (la["by_lookahead"].get(str(L)) or {}).get("policy_mse") for m, la in las.items()}
        if curve is not None and L < len(curve["lookahead"]):
            for kind in BASELINES:
                row[f"{kind}_mse_all_steps"] = curve[f"{kind}_mse"][L]
        by_l[str(L)] = row
    matched = {m: _pooled([la["by_lookahead"][str(L)] for L in common]) for m, la in las.items()}
    for m, la in las.items():
        matched[m]["verdict"] = verdict(matched[m], f"at lookahead(s) {common} (shared by every mode)")
    metrics = {
        "modes": list(per_mode),
        "per_mode": {m: {"dir": m, "action_mse": x["action_mse"], "action_mae": x["action_mae"],
                         "main_lookahead": x["lookahead"]["main_lookahead"], "verdict": x["lookahead"]["verdict"],
                         "verdict_matched": x["lookahead"].get("verdict_matched"),
                         "lookaheads": x["lookahead"]["lookaheads"],
                         "network_calls_per_action": x["network_calls_per_action"],
                         "tick_latency_ms_p50": x["tick_latency_ms_p50"]} for m, x in per_mode.items()},
        "by_lookahead": by_l,
        "common_lookaheads": common,
        "matched_lookahead": matched,
        "baseline_curve": curve,
        "definition": DEFINITION,
    }
    lines = ["# Replay evaluation: modes compared at equal lookahead", ""]
    for m in per_mode:
        lines.append(f"- **{m}** ([report]({m}/report.md)): {las[m]['verdict']}")
    lines += ["", f"Lookaheads executed by every mode: {common}. Pooled over them (the comparable figure):", "",
              "| mode | scored actions | policy MSE | repeat-last MSE | constant-velocity MSE "
              "| overall action_mse (mixed lookaheads) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for m, r in matched.items():
        lines.append(f"| {m} | {r['count']} | {_fmt(r['policy_mse'])} | {_fmt(r['repeat_last_mse'])} | "
                     f"{_fmt(r['constant_velocity_mse'])} | {_fmt(per_mode[m]['action_mse'])} |")
    lines += ["", "Action MSE per lookahead (baselines over all steps of the same episodes):", "",
              "| lookahead | " + " | ".join(per_mode) + " | repeat-last | constant-velocity |",
              "| --- |" + " --- |" * (len(per_mode) + 2)]
    for L, row in by_l.items():
        cells = [_fmt(row[m]) for m in per_mode] + [_fmt(row.get(f"{k}_mse_all_steps")) for k in BASELINES]
        lines.append(f"| {L} | " + " | ".join(cells) + " |")
    if plots:
        plot_lookahead(las, out / "lookahead.png", "replay: action MSE vs lookahead, by mode")
        lines += ["", "![error vs lookahead](lookahead.png)"]
    metrics["lookahead_plot"] = "lookahead.png" if plots else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(finite(metrics), indent=2))
    (out / "report.md").write_text("\n".join(lines) + "\n\n" + DEFINITION + ".\n")
    return metrics


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
