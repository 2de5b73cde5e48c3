"""The test metric against the LR, and every strategy's compute against its test metric and as it
ran (test_acc_vs_lr.png, compute_vs_accuracy.png, search_progress.png); each panel on its
setting's metric (`summary["settings"][label]["metric"]`, val_acc by default)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from study.analysis import SEARCH_PICKS
from study.config import is_accuracy, test_metric
from study.figures.layout import (CYCLIC_COLOUR, FINDER_COLOUR, faint, finish, joined, log_x_panels, marker, panels,
                                  present, strategy_colours)


def _measures(summary: dict) -> dict[str, dict]:
    """Each setting's metric, test metric, mode and target, by label (an older summary: val_acc)."""
    return {label: {"metric": s.get("metric", "val_acc"), "test_metric": test_metric(s.get("metric", "val_acc")),
                    "mode": s.get("mode", "max"), "target": s.get("target", summary.get("target_acc"))}
            for label, s in (summary.get("settings") or {}).items()}


def _ylabel(axes: dict, measures: dict, key: str, prefix: str = "") -> None:
    """Every panel's y axis names its own metric (as logged), when the panels' metrics differ."""
    names = {label: prefix + measures.get(label, {}).get(key, "?") for label in axes}
    for label, ax in axes.items():
        if len(set(names.values())) > 1 or ax is next(iter(axes.values())):
            ax.set_ylabel(names[label])


def plot_test_acc_vs_lr(summary: dict) -> Figure | None:
    """Every trial's test metric (its setting's, test_acc by default) against its LR: `plot_test_metric_vs_lr`."""
    return plot_test_metric_vs_lr(summary)


def plot_test_metric_vs_lr(summary: dict) -> Figure | None:
    """Every trial's test metric (the test counterpart of its setting's metric) against its LR
    (log x), a panel per setting.

    Manual trials are blue points (their mean per LR a thin line, the best manual LR circled; for a
    Bayesian search, each seed's best manual trial circled), finder trials red markers shaped by
    rule, cyclic trials green bars from min to max LR, learning-rate-free arms grey crosses at the
    step size they adapted to. Trials without a test metric (pruned, diverged, failed) are not drawn.
    """
    measures = _measures(summary)
    tested = {label: m["test_metric"] for label, m in measures.items()}
    rows = []
    for t in summary.get("trials", []):
        value = t.get(tested.get(t.get("setting"), "test_acc"))
        if isinstance(t.get("lr"), (int, float)) and t["lr"] > 0 and value is not None:
            rows.append({**t, "value": value})
    trials = pd.DataFrame(rows)
    if trials.empty:
        return None
    labels = present(summary, trials["setting"].tolist())
    fig, axes = panels(labels, sharey=len({tested.get(label) for label in labels}) == 1)
    for label, ax in axes[0].items():
        mine, name = trials[trials["setting"] == label], measures.get(label, {}).get("metric", "val_acc")
        manual = mine[mine["arm"] == "manual"]
        best = ((summary.get("settings") or {}).get(label, {}).get("arms") or {}).get("manual")
        per_seed = bool(best) and best["chosen"] == SEARCH_PICKS  # a Bayesian search: LRs differ by seed
        if len(manual):
            ax.scatter(manual["lr"], manual["value"], s=22, color="tab:blue", alpha=max(0.2, faint(len(manual) / 5)),
                       label="manual trial", zorder=2)
            means = manual.groupby("lr")["value"].mean()
            if len(means) > 1 and not per_seed:
                ax.plot(means.index, means.values, color="tab:blue", lw=1, alpha=0.6, label="manual, mean over seeds")
        if per_seed:  # each seed's own pick, at its own LR
            picks = [p for p in best["picks"] if p["lr"] and p.get(tested[label]) is not None]
            ax.scatter([p["lr"] for p in picks], [p[tested[label]] for p in picks], s=180, facecolors="none",
                       edgecolors="black", lw=1.5, zorder=3, label=f"each seed's best manual trial ({_by(name)})")
        elif best and (best.get(tested.get(label)) or {}).get("mean") is not None:
            ax.scatter([best["lr"]["mean"]], [best[tested[label]]["mean"]], s=180, facecolors="none", edgecolors="black",
                       lw=1.5, zorder=3, label=f"best manual LR (by mean {_by(name)})")
        for rule, group in mine[mine["arm"] == "finder"].groupby("finder_rule", sort=False):
            ax.scatter(group["lr"], group["value"], s=120, marker=marker(rule), color=FINDER_COLOUR,
                       edgecolors="black", zorder=4, label=f"finder ({rule})")
        cyclic = mine[mine["arm"] == "cyclic"]
        if len(cyclic):
            low = cyclic["cyclic_min_lr"].fillna(cyclic["lr"]) if "cyclic_min_lr" in cyclic else cyclic["lr"]
            ax.add_collection(LineCollection([[(lo, acc), (hi, acc)] for lo, hi, acc in zip(low, cyclic["lr"], cyclic["value"])],
                                             colors=CYCLIC_COLOUR, linewidths=3, zorder=4))
            ax.plot([], [], color=CYCLIC_COLOUR, lw=3, label="cyclic (min to max LR)")
        for arm, group in mine[~mine["arm"].isin(["manual", "finder", "cyclic"])].groupby("arm", sort=False):
            ax.scatter(group["lr"], group["value"], marker="x", color="grey", label=str(arm))
        ax.autoscale_view()
    one = {tested.get(label) for label in labels}
    title = ("test accuracy" if one == {"test_acc"} else next(iter(one))) if len(one) == 1 else "test metric"
    log_x_panels(axes[0], "learning rate (log scale)", f"{title} vs LR", "test accuracy" if one == {"test_acc"} else title)
    if one != {"test_acc"}:
        _ylabel(axes[0], measures, "test_metric")
    finish(fig, axes[0].values())
    return fig


def _by(metric: str) -> str:
    return "val acc" if metric == "val_acc" else metric


def plot_compute_vs_accuracy(summary: dict) -> Figure | None:
    """One point per strategy (`summary["strategies"]`): mean compute per seed (log x) against its
    setting's mean delivered test metric, with 95 % intervals over seeds both ways, drawn within what
    can be (an accuracy in [0, 1], compute above 0: few seeds give wide t-intervals); a panel per setting."""
    key, xlabel = _compute_axis(summary)
    measures = _measures(summary)
    tested = lambda r: measures.get(r["setting"], {}).get("test_metric", "test_acc")  # noqa: E731
    rows = [r for r in summary["strategies"] if r[key]["mean"] and (r.get(tested(r)) or {}).get("mean") is not None]
    if not rows:
        return None
    labels = present(summary, [r["setting"] for r in rows])
    fig, axes = panels(labels, sharey=len({measures.get(label, {}).get("test_metric") for label in labels}) == 1)
    colour = strategy_colours(summary)
    for label, ax in axes[0].items():
        for r in (r for r in rows if r["setting"] == label):
            x, y = r[key], r[tested(r)]
            low, high = (0.0, 1.0) if is_accuracy(tested(r)) else (-np.inf, np.inf)
            (x_lo, x_hi), (y_lo, y_hi) = x["ci95"] or [x["mean"]] * 2, y["ci95"] or [y["mean"]] * 2
            err = [[[x["mean"] - max(x_lo, x["min"] / 10)], [x_hi - x["mean"]]],
                   [[y["mean"] - max(y_lo, low)], [min(y_hi, high) - y["mean"]]]]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=err[0], yerr=err[1], fmt="s" if r["kind"] == "search" else "o",
                        ms=8, capsize=3, color=colour[r["strategy"]], label=f"{r['strategy']} (n={x['n']})")
    one = {measures.get(label, {}).get("test_metric") for label in labels}
    name = "test accuracy" if one == {"test_acc"} else "test metric" if len(one) > 1 else next(iter(one))
    log_x_panels(axes[0], f"{xlabel} per seed, log scale", f"compute vs {name}", f"delivered {name}")
    if one != {"test_acc"}:
        _ylabel(axes[0], measures, "test_metric", "delivered ")
    finish(fig, axes[0].values())
    return fig


def _compute_axis(summary: dict) -> tuple[str, str]:
    """What compute is drawn as: the work counted (FLOPs), or seconds for an experiment from before
    work was counted."""
    counted = any(r.get("compute_flops", {}).get("mean") for r in summary["strategies"])
    return ("compute_flops", "work (FLOPs)") if counted else ("compute_s", "compute (s)")


def _steps(x, y) -> tuple[np.ndarray, np.ndarray]:
    """A 'post' step curve through (x, y) as plain line points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]


def plot_search_progress(summary: dict) -> Figure | None:
    """The manual search of each seed: the best of its setting's validation metric so far (in the
    metric's direction) against the compute its trials had spent (log x), every seed's run one
    faint step line of the search's colour (one artist), with the target where the setting has one;
    each arm's mean compute to target as a marker. A run of one point is a marker."""
    labels = [s for s, setting in summary["settings"].items()
              if any(run["compute_s"] for run in setting["search_progress"].values())]
    if not labels:
        return None
    measures = _measures(summary)
    fig, axes = panels(labels, sharey=len({measures[label]["metric"] for label in labels}) == 1)
    colour = strategy_colours(summary)
    search = f"{summary['config']['search']} search"
    key, xlabel = _compute_axis(summary)
    for label, ax in axes[0].items():
        setting, target = summary["settings"][label], measures[label]["target"]
        best = f"best_{measures[label]['metric']}"
        runs = [_steps(run[key], run[best]) for run in setting["search_progress"].values() if run["compute_s"]]
        x, y = joined(runs)
        ax.plot(x, y, lw=1.3, color=colour.get(search, "tab:blue"), alpha=max(0.2, faint(len(runs))),
                marker="o" if any(len(rx) == 1 for rx, _ in runs) else None, ms=4,
                label=f"{search}, {'each of ' + str(len(runs)) + ' seeds' if len(runs) > 1 else 'one seed'}")
        for r in setting["strategies"]:
            t = r[key.replace("compute_", "compute_to_target_")]
            if r["kind"] == "arm" and t["mean"] is not None and target is not None:
                ax.plot([t["mean"]], [target], ls="none", marker="v", ms=9, color=colour[r["strategy"]], alpha=0.8,
                        label=f"{r['strategy']}: compute to target")
        if target is not None:
            ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
    one = {measures[label]["metric"] for label in labels}
    name = "validation accuracy" if one == {"val_acc"} else next(iter(one)) if len(one) == 1 else "validation metric"
    log_x_panels(axes[0], f"{xlabel} spent, log scale", f"best {name} so far", f"best {name} so far")
    if len(one) > 1:
        _ylabel(axes[0], measures, "metric", "best ")
    finish(fig, axes[0].values())
    return fig
