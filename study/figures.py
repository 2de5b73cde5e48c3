"""The report's figures: matplotlib on its Agg canvas (no screen, no pyplot), from the analysis alone.

Every figure with several settings (`summary["settings"]`: an optimiser, ...) has a panel per
setting, laid out by the one panel helper, `panels`: at most `COLUMNS` panels a line, one
legend for the whole figure, and a size that never exceeds `MAX_INCHES` (2,000 pixels) a side,
however many trials, seeds or settings the study has. Many curves are drawn as one artist per arm
and status (NaN-separated lines, or a `LineCollection` where each trial has its own colour), and
legends have one entry per arm or strategy, never one per seed or trial. `write_figures` renders
them all into the experiment folder.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from study.analysis import RANGE_TEST_ARMS, SEARCH_PICKS, Experiment
from trainables.files import write_atomic
from trainables.finder_rules import RULES

FIGURES = {  # key: (file, title in report.md), in the report's order
    "test_acc_vs_lr": ("test_acc_vs_lr.png", "Test accuracy against learning rate, every trial (finder choices marked)"),
    "lr_finder": ("lr_finder.png", "LR finder, loss vs learning rate"),
    "val_acc": ("val_acc.png", "validation accuracy per epoch"),
    "val_loss": ("val_loss.png", "validation loss per epoch"),
    "train_curves": ("train_curves.png", "training loss and accuracy per epoch"),
    "compute_vs_accuracy": ("compute_vs_accuracy.png", "Every strategy: work per seed against delivered test accuracy"),
    "search_progress": ("search_progress.png", "The manual search as it ran: best validation accuracy against work"),
}
DPI = 110
MAX_INCHES = 18.0  # 1,980 pixels at DPI, whatever the study's size
COLUMNS = 3  # panels (settings) per line of a figure
LEGEND_INCHES = 2.6  # room right of the panels for the figure's legend
MAX_FINDER_CURVES = 6  # more range-test curves than this in one panel: only the first seed's are drawn
_STYLE = {"finished": "-", "pruned": "--", "diverged": ":", "error": "-.", "unfinished": "-."}
_FINDER_COLOUR = "tab:red"
_CYCLIC_COLOUR = "tab:green"
_RULE_MARKERS = dict(zip(RULES, "o*D^vs"))


# ---------------------------------------------------------------- the one layout


def panels(labels: list[str], rows: int = 1, sharey: bool = False, size: tuple[float, float] = (5.0, 4.0)):
    """A figure with a panel per setting in `labels` for each of `rows` rows (metrics): settings
    wrap after COLUMNS panels; the figure fits in MAX_INCHES a side with room for its legend.
    Returns the figure and axes[row][label]."""
    ncols = min(len(labels), COLUMNS)
    lines = math.ceil(len(labels) / ncols)
    fig = Figure(figsize=(min(size[0] * ncols + LEGEND_INCHES, MAX_INCHES), min(size[1] * rows * lines, MAX_INCHES)),
                 dpi=DPI, layout="constrained")
    grid = fig.subplots(rows * lines, ncols, squeeze=False, sharey=sharey)
    used = set()
    axes = []
    for r in range(rows):
        axes.append({})
        for i, label in enumerate(labels):
            ax = grid[r * lines + i // ncols][i % ncols]
            axes[r][label] = ax
            used.add(id(ax))
    for ax in grid.ravel():
        if id(ax) not in used:
            ax.set_visible(False)
    return fig, axes


def figure_legend(fig: Figure, axes) -> None:
    """One legend for the whole figure, right of its panels, each label once (first handle wins)."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=7)


def _log_x_panels(axes: dict, xlabel: str, title: str, ylabel: str) -> None:
    for label, ax in axes.items():
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}, {label}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    next(iter(axes.values())).set_ylabel(ylabel)


def _present(summary: dict, found: list[str]) -> list[str]:
    """The settings that have something to draw, in the study's order."""
    order = list(dict.fromkeys([*summary.get("settings", {}), *found]))
    return [s for s in order if s in set(found)]


def _faint(n: int) -> float:
    """Line opacity for n overlaid curves of one kind: solid for a few, faint for hundreds."""
    return float(np.clip(3.0 / max(n, 1), 0.08, 0.9))


def _joined(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Many (x, y) curves as one NaN-separated pair of arrays: one artist draws them all."""
    if not curves:
        return np.array([]), np.array([])
    xs = [np.append(x, np.nan) for x, _ in curves]
    ys = [np.append(y, np.nan) for _, y in curves]
    return np.concatenate(xs), np.concatenate(ys)


def _floats(values) -> np.ndarray:
    """A writable float array; anything non-numeric or non-finite becomes NaN."""
    y = np.array(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    y[~np.isfinite(y)] = np.nan
    return y


def strategy_colours(summary: dict) -> dict:
    """One colour per strategy (an arm key, or '<search> search'), the same in every panel and figure."""
    names = list(dict.fromkeys(r["strategy"] for r in summary["strategies"]))
    return {name: matplotlib.colormaps["tab10"](i % 10) for i, name in enumerate(names)}


def _marker(rule: str | None) -> str:
    return _RULE_MARKERS.get(rule, "o")


# ---------------------------------------------------------------- per-epoch curves


def _curves(experiment: Experiment, col: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """trial id -> (epochs from 1, values) for every trial with some finite `col`."""
    e = experiment.epochs
    values = _floats(e[col]) if col in e else np.full(len(e), np.nan)
    frame = pd.DataFrame({"trial_id": e["trial_id"].to_numpy(), "x": e["epoch"].to_numpy(dtype=float) + 1, "y": values})
    return {tid: (g["x"].to_numpy(), g["y"].to_numpy()) for tid, g in frame.groupby("trial_id", sort=False)
            if not np.isnan(g["y"].to_numpy()).all()}


def _manual_shades(trials: pd.DataFrame):
    """The manual trials' colours: greys by LR on a log scale (darker: higher), and the colour bar's
    mappable (None without a positive manual LR: then every manual trial is grey)."""
    lrs = trials.loc[trials["arm"] == "manual", "lr"].astype(float)
    lrs = lrs[lrs > 0]
    if lrs.empty:
        return (lambda lr: "grey"), None
    cmap = LinearSegmentedColormap.from_list("manual", [matplotlib.colormaps["Greys"](v) for v in (0.3, 0.95)])
    mappable = ScalarMappable(LogNorm(lrs.min(), lrs.max() * (1.0001 if lrs.min() == lrs.max() else 1)), cmap)
    return (lambda lr: mappable.to_rgba(lr) if lr and lr > 0 else "grey"), mappable


def _epoch_axes(ax, metric: str, values: list[np.ndarray]) -> None:
    """A loss on a log axis when every value is positive, clipped above so that a diverged trial's
    blow-up (1e24 and more; any value over 10x the median) leaves the plot instead of flattening
    every other curve."""
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    if metric.endswith("loss") and v.size and (v > 0).all():
        ax.set_yscale("log")
        sane = v[v <= 10 * np.median(v)]  # above: a blow-up (chance-level cross-entropy is 2.3)
        if sane.size < v.size:
            ax.set_ylim(bottom=v.min() / 1.3, top=1.5 * sane.max())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")


def plot_epochs(experiment: Experiment, summary: dict, metrics: tuple[str, ...], target_acc: float | None = None) -> Figure | None:
    """Per-epoch curves of every trial: a row per metric, a panel per setting. Each arm in its
    strategy's colour (as in compute_vs_accuracy.png), all its seeds of one status one line artist
    (diverged: dotted); the manual trials one collection, thin, in greys by LR with a colour bar.
    None without data."""
    curves = {m: _curves(experiment, m) for m in metrics}
    trials = experiment.trials
    drawn = trials[trials["trial_id"].isin(set().union(*curves.values()))]
    if drawn.empty:
        return None
    labels = _present(summary, drawn["setting"].tolist())
    fig, axes = panels(labels, rows=len(metrics), sharey=False, size=(5.0, 3.6))
    colour, (shade, mappable) = strategy_colours(summary), _manual_shades(trials)
    for row, metric in zip(axes, metrics):
        for label, ax in row.items():
            mine = drawn[drawn["setting"] == label]
            values = [curves[metric][t][1] for t in mine["trial_id"] if t in curves[metric]]
            kind = mine["arm_key"].where(mine["arm"] != "manual", "manual")  # every manual LR: one kind
            for (key, status), group in mine.groupby([kind, mine["status"]], sort=False):
                found = [curves[metric][t] for t in group["trial_id"] if t in curves[metric]]
                if not found:
                    continue
                if group["arm"].iloc[0] == "manual":
                    segments = [np.column_stack([x, y]) for x, y in found]
                    lrs = [lr for t, lr in zip(group["trial_id"], group["lr"]) if t in curves[metric]]
                    ax.add_collection(LineCollection(segments, colors=[shade(lr) for lr in lrs], linewidths=1,
                                                     linestyles=_STYLE.get(status, "-"), alpha=max(0.3, _faint(len(found))),
                                                     zorder=2, gid=f"manual {status}"))
                else:
                    x, y = _joined(found)
                    ax.plot(x, y, marker="o" if len(found) <= 20 else None, ms=3, lw=2, ls=_STYLE.get(status, "-"),
                            color=colour.get(key, "black"), alpha=max(0.25, _faint(len(found))), zorder=3,
                            gid=f"{key} {status}")
                ax.plot([], [], lw=1 if key.startswith("manual") else 2, color="grey" if key.startswith("manual") else
                        colour.get(key, "black"), label="manual trial (grey: its LR)" if key.startswith("manual") else key)
            ax.autoscale_view()
            _epoch_axes(ax, metric, values)
            if target_acc is not None and metric.endswith("acc"):
                ax.axhline(target_acc, color="grey", ls="--", lw=1, label=f"target {target_acc:g}")
            ax.set_title(f"{metric} per epoch, {label}", fontsize=9)
        next(iter(row.values())).set_ylabel(metric)
    for ax in axes[-1].values():
        ax.set_xlabel("epoch")
    every = [ax for row in axes for ax in row.values()]
    for status in sorted(set(drawn["status"]) - {"finished"}):  # line styles of the trials that did not finish
        every[0].plot([], [], color="black", lw=1, ls=_STYLE.get(status, "-"), label=status)
    figure_legend(fig, every)
    if mappable is not None:
        fig.colorbar(mappable, ax=every, location="bottom", shrink=0.4, aspect=40, label="manual trial's LR")
    return fig


# ---------------------------------------------------------------- range tests


def _usable(curve: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(lr, loss, ok) of a range-test curve, or None when nothing can be drawn."""
    if not curve:
        return None
    lr, loss = _floats(curve.get("lr") or []), _floats(curve.get("loss") or [])
    if len(lr) == 0 or len(lr) != len(loss):
        return None
    ok = np.isfinite(lr) & (lr > 0)
    return (lr, loss, ok) if (ok & np.isfinite(loss)).any() else None


def _at(lr: np.ndarray, loss: np.ndarray, ok: np.ndarray, x: float) -> float:
    """The curve's loss at LR x (interpolated on log LR)."""
    fin = ok & np.isfinite(loss)
    order = np.argsort(lr[fin])
    return float(np.interp(np.log10(x), np.log10(lr[fin][order]), loss[fin][order])) if fin.any() else np.nan


def _draw_range_test(ax, curve: dict, colour, label: str, trained: set[str]) -> np.ndarray:
    """One range test on `ax`: its raw per-step losses (faint), the debiased curve the rules read,
    Lightning's own recorded curve (dotted) and every rule's pick as a marker shaped by the rule
    (on Lightning's curve for `lightning`, which reads it; black edge: a rule this study trained).
    Returns the finite losses drawn."""
    lr, loss, ok = _usable(curve)
    ax.plot(lr[ok], loss[ok], color=colour, lw=1.5, label=label)
    drawn = [loss[ok]]
    for key, style in (("loss_raw", {"lw": 0.8, "alpha": 0.3}), ("loss_lightning", {"lw": 1, "ls": ":"})):
        other = _floats(curve.get(key) or [])
        if len(other) == len(lr):
            ax.plot(lr[ok], other[ok], color=colour, **style)
            drawn.append(other[ok])
    for rule, pick in (curve.get("suggestions") or {}).items():
        if not (isinstance(pick, (int, float)) and pick > 0):
            continue
        ys = _floats(curve.get("loss_lightning") or []) if rule == "lightning" else loss
        ys = ys if len(ys) == len(lr) else loss
        ax.plot([pick], [_at(lr, ys, ok, pick)], ls="none", marker=_marker(rule), ms=11 if rule in trained else 8,
                color=colour, mec="black" if rule in trained else colour, mew=1.5 if rule in trained else 0.5, zorder=5)
    finite = np.concatenate(drawn)
    return finite[np.isfinite(finite)]


def _range_test_axes(ax, losses: np.ndarray, title: str, rules: list[str]) -> None:
    if losses.size:
        hi = np.percentile(losses, 90)
        if hi > 0 and losses.max() > 2 * hi:  # keep the blow-up at high LR from flattening the curve,
            lo = losses.min()                  # and its huge values from pushing the bottom below 0
            ax.set_ylim(bottom=max(0.0, lo - 0.05 * (1.5 * hi - lo)), top=1.5 * hi)
    for rule in rules:
        ax.plot([], [], ls="none", marker=_marker(rule), ms=9, color="lightgrey", mec="black", label=f"pick: {rule}")
    ax.plot([], [], color="grey", lw=0.8, alpha=0.3, label="raw loss per step")
    ax.plot([], [], color="grey", lw=1, ls=":", label="Lightning's recorded curve")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")


def plot_lr_finder(curve: dict | None, trained: tuple[str, ...] = ()) -> Figure | None:
    """One range test, loss vs LR (log x), every rule's pick marked; None without a usable curve."""
    if _usable(curve) is None:
        return None
    fig, axes = panels(["one"], size=(5.5, 4.6))
    ax = axes[0]["one"]
    losses = _draw_range_test(ax, curve, "tab:blue", "debiased EMA of the raw loss (what the rules read)", set(trained))
    _range_test_axes(ax, losses, f"LR finder: loss vs learning rate (Lightning {curve.get('lightning_version', '?')})",
                     list(curve.get("suggestions") or {}))
    figure_legend(fig, [ax])
    return fig


def _distinct_curves(cands: list[tuple]) -> list[list[tuple]]:
    """(trial, curve) pairs grouped by identical (lr, loss) curves, in order: a shared range test is drawn once."""
    groups: dict[tuple, list[tuple]] = {}
    for t, curve in cands:
        groups.setdefault((tuple(curve["lr"]), tuple(map(str, curve["loss"]))), []).append((t, curve))
    return list(groups.values())


def plot_lr_finders(experiment: Experiment, summary: dict) -> Figure | None:
    """Every range test's loss vs LR (log x), every rule's pick marked on its curve.

    One curve: the single-test figure (`plot_lr_finder`). Several: a panel per setting, a curve per
    distinct range test (colour = its order in the panel; finder trials sharing one test share its
    curve), a cyclic trial as a green bar from its min to its max LR. A panel with more than
    MAX_FINDER_CURVES curves shows its first seed only.
    """
    cands = [(t, experiment.curves[t.trial_id]) for t in experiment.trials.itertuples()
             if t.arm in RANGE_TEST_ARMS and _usable(experiment.curves.get(t.trial_id))]
    if not cands:
        return None
    trained = tuple(dict.fromkeys(t.finder_rule for t, _ in cands if t.arm == "finder"))
    if len(_distinct_curves(cands)) == 1:
        return plot_lr_finder(cands[0][1], trained)
    labels = _present(summary, [t.setting for t, _ in cands])
    fig, axes = panels(labels, size=(5.5, 4.4))
    cmap = matplotlib.colormaps["tab10"]
    for label, ax in axes[0].items():
        mine = [(t, c) for t, c in cands if t.setting == label]
        curves, note = _distinct_curves(mine), ""
        if len(curves) > MAX_FINDER_CURVES:
            seed0 = min(t.seed for t, _ in mine)
            curves, note = _distinct_curves([(t, c) for t, c in mine if t.seed == seed0]), f", seed {seed0} only"
        drawn, rules = [], {}
        for i, group in enumerate(curves):
            seeds = ", ".join(dict.fromkeys(str(t.seed) for t, _ in group))
            curve = group[0][1]
            drawn.append(_draw_range_test(ax, curve, cmap(i % 10), f"range test, seed {seeds}", set(trained)))
            rules.update(dict.fromkeys(curve["suggestions"]))
            lr, loss, ok = _usable(curve)
            for t, _ in group:
                if t.arm == "cyclic" and not pd.isna(t.lr) and t.lr > 0:
                    y = _at(lr, loss, ok, t.lr)
                    ax.plot([t.cyclic_min_lr, t.lr], [y, y], color=_CYCLIC_COLOUR, lw=4, marker="|", ms=14, zorder=4,
                            label="cyclic: min to max LR")
        _range_test_axes(ax, np.concatenate(drawn) if drawn else np.array([]), f"LR finder, {label}{note}", list(rules))
    figure_legend(fig, axes[0].values())
    return fig


# ---------------------------------------------------------------- accuracy, compute, search


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
    labels = _present(summary, trials["setting"].tolist())
    fig, axes = panels(labels, sharey=True)
    for label, ax in axes[0].items():
        mine = trials[trials["setting"] == label]
        manual = mine[mine["arm"] == "manual"]
        best = ((summary.get("settings") or {}).get(label, {}).get("arms") or {}).get("manual")
        per_seed = bool(best) and best["chosen"] == SEARCH_PICKS  # a Bayesian search: LRs differ by seed
        if len(manual):
            ax.scatter(manual["lr"], manual["test_acc"], s=22, color="tab:blue", alpha=max(0.2, _faint(len(manual) / 5)),
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
            ax.scatter(group["lr"], group["test_acc"], s=120, marker=_marker(rule), color=_FINDER_COLOUR,
                       edgecolors="black", zorder=4, label=f"finder ({rule})")
        cyclic = mine[mine["arm"] == "cyclic"]
        if len(cyclic):
            low = cyclic["cyclic_min_lr"].fillna(cyclic["lr"]) if "cyclic_min_lr" in cyclic else cyclic["lr"]
            ax.add_collection(LineCollection([[(lo, acc), (hi, acc)] for lo, hi, acc in zip(low, cyclic["lr"], cyclic["test_acc"])],
                                             colors=_CYCLIC_COLOUR, linewidths=3, zorder=4))
            ax.plot([], [], color=_CYCLIC_COLOUR, lw=3, label="cyclic (min to max LR)")
        for arm, group in mine[~mine["arm"].isin(["manual", "finder", "cyclic"])].groupby("arm", sort=False):
            ax.scatter(group["lr"], group["test_acc"], marker="x", color="grey", label=str(arm))
        ax.autoscale_view()
    _log_x_panels(axes[0], "learning rate (log scale)", "test accuracy vs LR", "test accuracy")
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
    fig, axes = panels(_present(summary, [r["setting"] for r in rows]), sharey=True)
    colour = strategy_colours(summary)
    for label, ax in axes[0].items():
        for r in (r for r in rows if r["setting"] == label):
            x, y = r[key], r["test_acc"]
            (x_lo, x_hi), (y_lo, y_hi) = x["ci95"] or [x["mean"]] * 2, y["ci95"] or [y["mean"]] * 2
            err = [[[x["mean"] - max(x_lo, x["min"] / 10)], [x_hi - x["mean"]]],
                   [[y["mean"] - max(y_lo, 0.0)], [min(y_hi, 1.0) - y["mean"]]]]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=err[0], yerr=err[1], fmt="s" if r["kind"] == "search" else "o",
                        ms=8, capsize=3, color=colour[r["strategy"]], label=f"{r['strategy']} (n={x['n']})")
    _log_x_panels(axes[0], f"{xlabel} per seed (log scale)", "compute vs test accuracy", "delivered test accuracy")
    figure_legend(fig, axes[0].values())
    return fig


def _compute_axis(summary: dict) -> tuple[str, str]:
    """What compute is drawn as: the work counted (FLOPs), or seconds for an experiment from before
    work was counted."""
    counted = any(r.get("compute_flops", {}).get("mean") for r in summary["strategies"])
    return ("compute_flops", "work, FLOPs") if counted else ("compute_s", "compute, s")


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
        x, y = _joined(runs)
        ax.plot(x, y, lw=1.3, color=colour.get(search, "tab:blue"), alpha=max(0.2, _faint(len(runs))),
                label=f"{search}, {'each of ' + str(len(runs)) + ' seeds' if len(runs) > 1 else 'one seed'}")
        for r in setting["strategies"]:
            t = r[key.replace("compute_", "compute_to_target_")]
            if r["kind"] == "arm" and t["mean"] is not None:
                ax.plot([t["mean"]], [target], ls="none", marker="v", ms=9, color=colour[r["strategy"]], alpha=0.8,
                        label=f"{r['strategy']}: compute to target")
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
    _log_x_panels(axes[0], f"{xlabel} spent (log scale)", "best validation accuracy so far", "best validation accuracy so far")
    figure_legend(fig, axes[0].values())
    return fig


# ---------------------------------------------------------------- files


def save_figure(fig: Figure, path: Path) -> Path:
    """The figure as a PNG at DPI, its size as laid out (no tight bounding box: it stays within MAX_INCHES)."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI)
    write_atomic(path, buf.getvalue())
    return path


def write_figures(exp_dir: Path, experiment: Experiment, summary: dict) -> dict[str, str]:
    """Every figure into `exp_dir`: key -> its file name, or the reason it was skipped (a figure
    without data is removed, not kept stale)."""
    target = summary["target_acc"]
    figs = {
        "test_acc_vs_lr": (lambda: plot_test_acc_vs_lr(summary), "no trial has both an LR and a test accuracy"),
        "lr_finder": (lambda: plot_lr_finders(experiment, summary), "no usable range-test curve"),
        "val_acc": (lambda: plot_epochs(experiment, summary, ("val_acc",), target), "no trial reported val_acc"),
        "val_loss": (lambda: plot_epochs(experiment, summary, ("val_loss",)), "no trial reported val_loss"),
        "train_curves": (lambda: plot_epochs(experiment, summary, ("train_loss", "train_acc")),
                         "no trial reported train_loss or train_acc"),
        "compute_vs_accuracy": (lambda: plot_compute_vs_accuracy(summary), "no strategy delivered a tested model"),
        "search_progress": (lambda: plot_search_progress(summary), "no manual search"),
    }
    names = {}
    for key, (draw, reason) in figs.items():
        path = Path(exp_dir) / FIGURES[key][0]
        fig = draw()
        if fig is None:
            path.unlink(missing_ok=True)
            names[key] = reason
        else:
            save_figure(fig, path)
            names[key] = path.name
    return names
