"""Accuracy against the LR, and every strategy's compute against its accuracy and as it ran
(test_acc_vs_lr.png, compute_vs_accuracy.png, search_progress.png)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from study.analysis import SEARCH_PICKS
from study.figures.layout import (CYCLIC_COLOUR, FINDER_COLOUR, faint, figure_legend, joined, log_x_panels, marker,
                                  panels, present, strategy_colours)


def plot_test_acc_vs_lr(summary: dict) -> Figure | None:
    """Every trial's test accuracy against its LR (log x), a panel per setting.

    Manual trials are blue points (their mean per LR a thin line, the best manual LR circled; for a
    Bayesian search, each seed's best manual trial circled), finder trials red markers shaped by
    rule, cyclic trials green bars from min to max LR, learning-rate-free arms grey crosses at the
    step size they adapted to. Trials without a test accuracy (pruned, diverged, failed) are not drawn.
    """
    trials = pd.DataFrame([t for t in summary.get("trials", [])
                           if isinstance(t.get("lr"), (int, float)) and t["lr"] > 0 and t.get("test_acc") is not None])
    if trials.empty:
        return None
    labels = present(summary, trials["setting"].tolist())
    fig, axes = panels(labels, sharey=True)
    for label, ax in axes[0].items():
        mine = trials[trials["setting"] == label]
        manual = mine[mine["arm"] == "manual"]
        best = ((summary.get("settings") or {}).get(label, {}).get("arms") or {}).get("manual")
        per_seed = bool(best) and best["chosen"] == SEARCH_PICKS  # a Bayesian search: LRs differ by seed
        if len(manual):
            ax.scatter(manual["lr"], manual["test_acc"], s=22, color="tab:blue", alpha=max(0.2, faint(len(manual) / 5)),
                       label="manual trial", zorder=2)
            means = manual.groupby("lr")["test_acc"].mean()
            if len(means) > 1 and not per_seed:
                ax.plot(means.index, means.values, color="tab:blue", lw=1, alpha=0.6, label="manual, mean over seeds")
        if per_seed:  # each seed's own pick, at its own LR
            picks = [p for p in best["picks"] if p["lr"] and p["test_acc"] is not None]
            ax.scatter([p["lr"] for p in picks], [p["test_acc"] for p in picks], s=180, facecolors="none",
                       edgecolors="black", lw=1.5, zorder=3, label="each seed's best manual trial (val acc)")
        elif best and best["test_acc"]["mean"] is not None:
            ax.scatter([best["lr"]["mean"]], [best["test_acc"]["mean"]], s=180, facecolors="none", edgecolors="black",
                       lw=1.5, zorder=3, label="best manual LR (by mean val acc)")
        for rule, group in mine[mine["arm"] == "finder"].groupby("finder_rule", sort=False):
            ax.scatter(group["lr"], group["test_acc"], s=120, marker=marker(rule), color=FINDER_COLOUR,
                       edgecolors="black", zorder=4, label=f"finder ({rule})")
        cyclic = mine[mine["arm"] == "cyclic"]
        if len(cyclic):
            low = cyclic["cyclic_min_lr"].fillna(cyclic["lr"]) if "cyclic_min_lr" in cyclic else cyclic["lr"]
            ax.add_collection(LineCollection([[(lo, acc), (hi, acc)] for lo, hi, acc in zip(low, cyclic["lr"], cyclic["test_acc"])],
                                             colors=CYCLIC_COLOUR, linewidths=3, zorder=4))
            ax.plot([], [], color=CYCLIC_COLOUR, lw=3, label="cyclic (min to max LR)")
        for arm, group in mine[~mine["arm"].isin(["manual", "finder", "cyclic"])].groupby("arm", sort=False):
            ax.scatter(group["lr"], group["test_acc"], marker="x", color="grey", label=str(arm))
        ax.autoscale_view()
    log_x_panels(axes[0], "learning rate (log scale)", "test accuracy vs LR", "test accuracy")
    figure_legend(fig, axes[0].values())
    return fig


def plot_compute_vs_accuracy(summary: dict) -> Figure | None:
    """One point per strategy (`summary["strategies"]`): mean compute per seed (log x) against mean
    delivered test accuracy, with 95 % intervals over seeds both ways, drawn within what can be
    (accuracy in [0, 1], compute above 0: few seeds give wide t-intervals); a panel per setting."""
    key, xlabel = _compute_axis(summary)
    rows = [r for r in summary["strategies"] if r[key]["mean"] and r["test_acc"]["mean"] is not None]
    if not rows:
        return None
    fig, axes = panels(present(summary, [r["setting"] for r in rows]), sharey=True)
    colour = strategy_colours(summary)
    for label, ax in axes[0].items():
        for r in (r for r in rows if r["setting"] == label):
            x, y = r[key], r["test_acc"]
            (x_lo, x_hi), (y_lo, y_hi) = x["ci95"] or [x["mean"]] * 2, y["ci95"] or [y["mean"]] * 2
            err = [[[x["mean"] - max(x_lo, x["min"] / 10)], [x_hi - x["mean"]]],
                   [[y["mean"] - max(y_lo, 0.0)], [min(y_hi, 1.0) - y["mean"]]]]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=err[0], yerr=err[1], fmt="s" if r["kind"] == "search" else "o",
                        ms=8, capsize=3, color=colour[r["strategy"]], label=f"{r['strategy']} (n={x['n']})")
    log_x_panels(axes[0], f"{xlabel} per seed, log scale", "compute vs test accuracy", "delivered test accuracy")
    figure_legend(fig, axes[0].values())
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
    """The manual search of each seed: best validation accuracy so far against the compute its
    trials had spent (log x), every seed's run one faint step line of the search's colour (one
    artist), with the target; each arm's mean compute to target as a marker."""
    labels = [s for s, setting in summary["settings"].items()
              if any(run["compute_s"] for run in setting["search_progress"].values())]
    if not labels:
        return None
    fig, axes = panels(labels, sharey=True)
    colour, target = strategy_colours(summary), summary["target_acc"]
    search = f"{summary['config']['search']} search"
    key, xlabel = _compute_axis(summary)
    for label, ax in axes[0].items():
        setting = summary["settings"][label]
        runs = [_steps(run[key], run["best_val_acc"]) for run in setting["search_progress"].values() if run["compute_s"]]
        x, y = joined(runs)
        ax.plot(x, y, lw=1.3, color=colour.get(search, "tab:blue"), alpha=max(0.2, faint(len(runs))),
                label=f"{search}, {'each of ' + str(len(runs)) + ' seeds' if len(runs) > 1 else 'one seed'}")
        for r in setting["strategies"]:
            t = r[key.replace("compute_", "compute_to_target_")]
            if r["kind"] == "arm" and t["mean"] is not None:
                ax.plot([t["mean"]], [target], ls="none", marker="v", ms=9, color=colour[r["strategy"]], alpha=0.8,
                        label=f"{r['strategy']}: compute to target")
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
    log_x_panels(axes[0], f"{xlabel} spent, log scale", "best validation accuracy so far", "best validation accuracy so far")
    figure_legend(fig, axes[0].values())
    return fig
