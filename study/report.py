"""The report of an analysed experiment: summary.json, comparison.csv, report.md and figures.

`write_report(exp_dir, experiment, summary)` renders what `study.analysis` computed, the verdict
sentences included, and reads nothing from disk: the per-epoch curves and the range tests come
in `experiment`'s tables. report.md has one section per setting (optimiser): its verdicts, its
arms with means and 95 % intervals over seeds, the finder rules compared when there are several,
every rule's pick on each range test, and its trials. Every file is written whole or not at all
(`trainables.files.write_atomic`). Figures use matplotlib's Agg canvas (no screen, no pyplot).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from study.analysis import RANGE_TEST_ARMS, SEARCH_PICKS, TRIAL_COLUMNS, Experiment
from trainables.files import write_atomic
from trainables.finder_rules import RULES

FIGURES = {  # key: (file, title in report.md), in the report's order
    "test_acc_vs_lr": ("test_acc_vs_lr.png", "Test accuracy against learning rate, every trial (finder choices marked)"),
    "lr_finder": ("lr_finder.png", "LR finder, loss vs learning rate"),
    "val_acc": ("val_acc.png", "validation accuracy per epoch"),
    "val_loss": ("val_loss.png", "validation loss per epoch"),
    "train_curves": ("train_curves.png", "training loss and accuracy per epoch"),
    "compute_vs_accuracy": ("compute_vs_accuracy.png", "Every strategy: compute per seed against delivered test accuracy"),
    "search_progress": ("search_progress.png", "The manual search as it ran: best validation accuracy against compute"),
}
OUTPUTS = ("summary.json", "comparison.csv", "report.md", *(f for f, _ in FIGURES.values()))  # every file written
_STYLE = {"finished": "-", "pruned": "--", "diverged": ":", "error": "-.", "unfinished": "-."}
_FINDER_COLOUR = "tab:red"
_CYCLIC_COLOUR = "tab:green"
_RULE_MARKERS = dict(zip(RULES, "o*D^vs"))
MAX_FINDER_CURVES = 6  # more range-test curves than this in one panel: only the first seed's are drawn


def _save_figure(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_atomic(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- tables


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _node(t: dict) -> str:
    return t.get("node_ip") or (t.get("node_id") or "-")[:8]


def _shown_arm(t: dict) -> str:
    """finder, finder:<rule>, cyclic ... as keyed; manual trials just 'manual' (the LR has its column)."""
    return "manual" if t.get("arm") == "manual" else (t.get("arm_key") or t.get("arm") or "?")


def table_frame(summary: dict, markdown: bool = False, trials: list[dict] | None = None) -> pd.DataFrame:
    """The comparison table as strings, one row per trial (`trials`: a subset, default all).

    An `optimizer` column appears when the study has several optimisers, a `seed` column in the
    terminal table when it has several seeds (the markdown table always has it).
    """
    every = summary.get("trials", [])
    trials = every if trials is None else trials
    cols = ["arm", "lr", "status", "epochs", "val_acc", "test_acc", "time_s", "time_to_target_s", "node"]
    if markdown:
        cols = cols[:3] + ["seed"] + cols[3:5] + ["val_loss"] + cols[5:6] + ["test_loss"] + cols[6:] + ["trial_id", "error"]
    elif len({t.get("seed") for t in every}) > 1:
        cols.insert(2, "seed")
    if len({t.get("optimizer") for t in every}) > 1 and len({t.get("optimizer") for t in trials}) > 1:
        cols.insert(0, "optimizer")
    spec = {"lr": ".3g", "val_acc": ".4f", "val_loss": ".4f", "test_acc": ".4f", "test_loss": ".4f",
            "time_s": ".1f", "time_to_target_s": ".1f", "epochs": "d"}
    special = {"node": _node, "arm": _shown_arm}
    rows = []
    for t in trials:
        rows.append({c: special[c](t) if c in special else _fmt(t.get(c), spec.get(c, "")) for c in cols})
    return pd.DataFrame(rows, columns=cols)


def format_table(summary: dict) -> str:
    """Plain-text table for the terminal, one line per trial."""
    df = table_frame(summary)
    if df.empty:
        return "(no trials)"
    return df.to_string(index=False)


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def comparison_frame(summary: dict) -> pd.DataFrame:
    trials = summary.get("trials", [])
    extra = [k for t in trials for k in t if k not in TRIAL_COLUMNS]
    return pd.DataFrame(trials, columns=list(TRIAL_COLUMNS) + list(dict.fromkeys(extra)))


# ---------------------------------------------------------------- figures


def _floats(values) -> np.ndarray:
    """A writable float array; anything non-numeric or non-finite becomes NaN."""
    y = np.array(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    y[~np.isfinite(y)] = np.nan
    return y


def _curves(experiment: Experiment, col: str) -> list[tuple]:
    """(trial row, epochs, values) of every trial with some finite `col`, in the trials' order."""
    by_trial = dict(tuple(experiment.epochs.groupby("trial_id", sort=False)))
    out = []
    for t in experiment.trials.itertuples():
        epochs = by_trial.get(t.trial_id)
        if epochs is not None and not np.isnan(y := _floats(epochs[col])).all():
            out.append((t, epochs["epoch"].to_numpy(dtype=float) + 1, y))
    return out


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
    """Per-epoch curves of every trial: a row per metric, a panel per optimiser. Each arm in its
    strategy's colour (as in compute_vs_accuracy.png), its seeds as lines of that colour; manual
    trials thin, in greys by LR with a colour bar; a trial that did not finish in its status's line
    style (diverged: dotted). None without data."""
    curves = {m: _curves(experiment, m) for m in metrics}
    present = [t.optimizer for found in curves.values() for t, _, _ in found]
    if not present:
        return None
    opts = _panels(summary["optimizers"], present)
    fig = Figure(figsize=(5.5 * len(opts) + 3, 4.2 * len(metrics)))
    axes = fig.subplots(len(metrics), len(opts), squeeze=False, sharex=True)
    colour, (shade, mappable) = _strategy_colours(summary), _manual_shades(experiment.trials)
    for row, metric in zip(axes, metrics):
        for ax, opt in zip(row, opts):
            mine = [c for c in curves[metric] if c[0].optimizer == opt]
            for t, x, y in mine:
                manual = t.arm == "manual"
                ax.plot(x, y, marker="o", ms=2 if manual else 3, ls=_STYLE.get(t.status, "-"), lw=1 if manual else 2,
                        color=shade(t.lr) if manual else colour.get(t.arm_key, "black"), alpha=0.8 if manual else 0.9,
                        zorder=2 if manual else 3, gid=f"{t.arm_key} seed {t.seed}")
                # the legend's sample: a solid line (a dotted one means diverged)
                ax.plot([], [], marker="o", ms=2 if manual else 3, lw=1 if manual else 2,
                        color="grey" if manual else colour.get(t.arm_key, "black"),
                        label="manual trial (grey: its LR)" if manual else t.arm_key)
            _epoch_axes(ax, metric, [y for _, _, y in mine])
            if target_acc is not None and metric.endswith("acc"):
                ax.axhline(target_acc, color="grey", ls="--", lw=1, label=f"target {target_acc:g}")
            ax.set_title(f"{metric} per epoch, {opt}")
        row[0].set_ylabel(metric)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    statuses = {t.status for found in curves.values() for t, _, _ in found} - {"finished"}
    for status in sorted(statuses):  # line styles of the trials that did not finish, in the legend
        axes[0][-1].plot([], [], color="black", lw=1, ls=_STYLE.get(status, "-"), label=status)
    handles = {}
    for ax in axes.ravel():
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    axes[0][-1].legend(handles.values(), handles.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), location="bottom", shrink=0.4, aspect=40, pad=0.16 / len(metrics),
                     label="manual trial's LR")
    return fig


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
        fin = ok & np.isfinite(ys)
        order = np.argsort(lr[fin])
        y = float(np.interp(np.log10(pick), np.log10(lr[fin][order]), ys[fin][order])) if fin.any() else np.nan
        ax.plot([pick], [y], ls="none", marker=_marker(rule), ms=11 if rule in trained else 8, color=colour,
                mec="black" if rule in trained else colour, mew=1.5 if rule in trained else 0.5, zorder=5)
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
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=7)


def plot_lr_finder(curve: dict | None, trained: tuple[str, ...] = ()) -> Figure | None:
    """One range test, loss vs LR (log x), every rule's pick marked; None without a usable curve."""
    if _usable(curve) is None:
        return None
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    losses = _draw_range_test(ax, curve, "tab:blue", "debiased EMA of the raw loss (what the rules read)", set(trained))
    _range_test_axes(ax, losses, f"LR finder: loss vs learning rate (Lightning {curve.get('lightning_version', '?')})",
                     list(curve.get("suggestions") or {}))
    return fig


def _usable(curve: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(lr, loss, ok) of a range-test curve, or None when nothing can be drawn."""
    if not curve:
        return None
    lr, loss = _floats(curve.get("lr") or []), _floats(curve.get("loss") or [])
    if len(lr) == 0 or len(lr) != len(loss):
        return None
    ok = np.isfinite(lr) & (lr > 0)
    return (lr, loss, ok) if (ok & np.isfinite(loss)).any() else None


def _marker(rule: str) -> str:
    return _RULE_MARKERS[rule]


def _panels(optimizers: list[str] | None, present: list[str]) -> list[str]:
    """The optimisers that have something to draw, in the study's order."""
    order = list(dict.fromkeys([*(optimizers or []), *present]))
    return [o for o in order if o in present]


def _legend(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), **kw)


def plot_lr_finders(experiment: Experiment, optimizers: list[str] | None = None) -> Figure | None:
    """Every range test's loss vs LR (log x), every rule's pick marked on its curve.

    One curve: the single-test figure (`plot_lr_finder`). Several: one panel per optimiser, one
    curve per distinct range test (colour = seed; finder trials sharing one test share its curve),
    a cyclic trial as a green bar from its min to its max LR. A panel with more than
    MAX_FINDER_CURVES curves shows its first seed only.
    """
    cands = [(t, experiment.curves[t.trial_id]) for t in experiment.trials.itertuples()
             if t.arm in RANGE_TEST_ARMS and _usable(experiment.curves.get(t.trial_id))]
    if not cands:
        return None
    trained = tuple(dict.fromkeys(t.finder_rule for t, _ in cands if t.arm == "finder"))
    if len(_distinct_curves(cands)) == 1:
        return plot_lr_finder(cands[0][1], trained)
    opts = _panels(optimizers, [t.optimizer for t, _ in cands])
    fig = Figure(figsize=(6.5 * len(opts) + 2.5, 4.8))
    axes = fig.subplots(1, len(opts), squeeze=False)[0]
    cmap = matplotlib.colormaps["tab10"]
    for ax, opt in zip(axes, opts):
        mine = [(t, c) for t, c in cands if t.optimizer == opt]
        curves = _distinct_curves(mine)
        note = ""
        if len(curves) > MAX_FINDER_CURVES:
            seed0 = min(t.seed for t, _ in mine)
            curves, note = _distinct_curves([(t, c) for t, c in mine if t.seed == seed0]), f", seed {seed0} only"
        drawn, rules = [], {}
        for i, group in enumerate(curves):
            colour = cmap(i % 10)
            seeds = ", ".join(dict.fromkeys(str(t.seed) for t, _ in group))
            curve = group[0][1]
            drawn.append(_draw_range_test(ax, curve, colour, f"range test, seed {seeds}", set(trained)))
            rules.update(dict.fromkeys(curve["suggestions"]))
            lr, loss, ok = _usable(curve)
            fin = ok & np.isfinite(loss)
            order = np.argsort(lr[fin])
            for t, _ in group:
                if t.arm == "cyclic" and not pd.isna(t.lr) and t.lr > 0:
                    y = float(np.interp(np.log10(t.lr), np.log10(lr[fin][order]), loss[fin][order]))
                    ax.plot([t.cyclic_min_lr, t.lr], [y, y], color=_CYCLIC_COLOUR, lw=4, marker="|", ms=14, zorder=4,
                            label="cyclic: min to max LR")
        _range_test_axes(ax, np.concatenate(drawn) if drawn else np.array([]), f"LR finder, {opt}{note}", list(rules))
    return fig


def _distinct_curves(cands: list[tuple]) -> list[list[tuple]]:
    """(trial, curve) pairs grouped by identical (lr, loss) curves, in order: a shared range test is drawn once."""
    groups: dict[tuple, list[tuple]] = {}
    for t, curve in cands:
        groups.setdefault((tuple(curve["lr"]), tuple(map(str, curve["loss"]))), []).append((t, curve))
    return list(groups.values())


def _panel_figure(n: int) -> tuple[Figure, list]:
    """A figure of `n` panels side by side (one per optimiser) sharing the y axis, room for a legend."""
    fig = Figure(figsize=(5.5 * n + 2.5, 4.8))
    return fig, fig.subplots(1, n, squeeze=False, sharey=True)[0]


def _finish_panels(fig: Figure, axes, opts: list[str], xlabel: str, title: str, ylabel: str) -> Figure:
    """Log x axes with their labels and titles (one optimiser each), then one legend for all panels,
    right of the last, each label once."""
    for ax, opt in zip(axes, opts):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}, {opt}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    axes[-1].legend(handles.values(), handles.keys(), fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_test_acc_vs_lr(summary: dict) -> Figure | None:
    """Every trial's test accuracy against its LR (log x), one panel per optimiser.

    Manual trials are blue points (their mean per LR a thin line, the best manual LR circled; for a
    Bayesian search, each seed's best manual trial circled),
    finder trials red markers shaped by rule, cyclic trials green bars from min to max LR.
    Trials without a test accuracy (pruned, diverged, failed) are not drawn.
    """
    trials = [t for t in summary.get("trials", [])
              if isinstance(t.get("lr"), (int, float)) and t["lr"] > 0 and t.get("test_acc") is not None]
    if not trials:
        return None
    opts = _panels(summary.get("optimizers"), [t.get("optimizer") for t in trials])
    fig, axes = _panel_figure(len(opts))
    for ax, opt in zip(axes, opts):
        mine = [t for t in trials if t.get("optimizer") == opt]
        manual = [t for t in mine if t["arm"] == "manual"]
        setting = (summary.get("settings") or {}).get(opt) or {}
        best = (setting.get("arms") or {}).get("manual")
        per_seed = bool(best) and best["chosen"] == SEARCH_PICKS  # a Bayesian search: LRs differ by seed
        if manual:
            ax.scatter([t["lr"] for t in manual], [t["test_acc"] for t in manual], s=22, color="tab:blue",
                       alpha=0.65, label="manual trial", zorder=2)
            means = pd.DataFrame(manual).groupby("lr")["test_acc"].mean()
            if len(means) > 1 and not per_seed:
                ax.plot(means.index, means.values, color="tab:blue", lw=1, alpha=0.6, label="manual, mean over seeds")
        if per_seed:  # each seed's own pick, at its own LR
            picks = [p for p in best["picks"] if p["lr"] and p["test_acc"] is not None]
            ax.scatter([p["lr"] for p in picks], [p["test_acc"] for p in picks], s=180, facecolors="none",
                       edgecolors="black", lw=1.5, zorder=3, label="each seed's best manual trial (val acc)")
        elif best and best["test_acc"]["mean"] is not None:
            ax.scatter([best["lr"]["mean"]], [best["test_acc"]["mean"]], s=180, facecolors="none", edgecolors="black",
                       lw=1.5, zorder=3, label="best manual LR (by mean val acc)")
        for t in mine:
            if t["arm"] == "finder":
                ax.scatter([t["lr"]], [t["test_acc"]], s=120, marker=_marker(t.get("finder_rule")),
                           color=_FINDER_COLOUR, edgecolors="black", zorder=4,
                           label=f"finder ({t.get('finder_rule') or '?'})")
            elif t["arm"] == "cyclic":
                low = t.get("cyclic_min_lr") or t["lr"]
                ax.plot([low, t["lr"]], [t["test_acc"]] * 2, color=_CYCLIC_COLOUR, lw=3, marker="|", ms=12,
                        zorder=4, label="cyclic (min to max LR)")
            elif t["arm"] != "manual":
                ax.scatter([t["lr"]], [t["test_acc"]], marker="x", color="grey", label=str(t["arm"]))
    return _finish_panels(fig, axes, opts, "learning rate (log scale)", "test accuracy vs LR", "test accuracy")


def plot_compute_vs_accuracy(summary: dict) -> Figure | None:
    """One point per strategy (`summary["strategies"]`): mean compute per seed (log x) against mean
    delivered test accuracy, with 95 % intervals over seeds both ways, drawn within what can be
    (accuracy in [0, 1], compute above 0: few seeds give wide t-intervals); a panel per optimiser."""
    rows = [r for r in summary["strategies"] if r["compute_s"]["mean"] and r["test_acc"]["mean"] is not None]
    if not rows:
        return None
    opts = _panels(summary["optimizers"], [r["optimizer"] for r in rows])
    fig, axes = _panel_figure(len(opts))
    colour = _strategy_colours(summary)
    for ax, opt in zip(axes, opts):
        for r in (r for r in rows if r["optimizer"] == opt):
            x, y = r["compute_s"], r["test_acc"]
            (x_lo, x_hi), (y_lo, y_hi) = x["ci95"] or [x["mean"]] * 2, y["ci95"] or [y["mean"]] * 2
            err = [[[x["mean"] - max(x_lo, x["min"] / 10)], [x_hi - x["mean"]]],
                   [[y["mean"] - max(y_lo, 0.0)], [min(y_hi, 1.0) - y["mean"]]]]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=err[0], yerr=err[1], fmt="s" if r["kind"] == "search" else "o",
                        ms=8, capsize=3, color=colour[r["strategy"]], label=f"{r['strategy']} (n={x['n']})")
    return _finish_panels(fig, axes, opts, "compute per seed, s (log scale)", "compute vs test accuracy", "delivered test accuracy")


def _strategy_colours(summary: dict) -> dict:
    """One colour per strategy, the same in every panel and figure."""
    names = list(dict.fromkeys(r["strategy"] for r in summary["strategies"]))
    return {name: matplotlib.colormaps["tab10"](i % 10) for i, name in enumerate(names)}


def plot_search_progress(summary: dict) -> Figure | None:
    """The manual search of each seed: best validation accuracy so far against the compute its trials
    had spent (log x), with the target; each finder arm's mean compute to target as a marker."""
    opts = [o for o in summary["optimizers"]
            if any(run["compute_s"] for run in summary["settings"][o]["search_progress"].values())]
    if not opts:
        return None
    fig, axes = _panel_figure(len(opts))
    colour = _strategy_colours(summary)
    for ax, opt in zip(axes, opts):
        setting = summary["settings"][opt]
        search = f"{summary['config']['search']} search"
        for i, (seed, run) in enumerate(setting["search_progress"].items()):
            ax.step(run["compute_s"], run["best_val_acc"], where="post", lw=1.3, color=colour[search],
                    ls=("-", "--", ":", "-.")[i % 4], label=f"{search}, seed {seed}")
        for r in setting["strategies"]:
            t = r["compute_to_target_s"]
            if r["kind"] == "arm" and t["mean"] is not None:
                ax.plot([t["mean"]], [summary["target_acc"]], ls="none", marker="v", ms=9, color=colour[r["strategy"]], alpha=0.8,
                        label=f"{r['strategy']}: compute to target ({r['reached_target']}/{len(r['seeds'])} seeds)")
        ax.axhline(summary["target_acc"], color="grey", ls="--", lw=1, label=f"target {summary['target_acc']:g}")
    return _finish_panels(fig, axes, opts, "compute spent, s (log scale)", "best validation accuracy so far", "best validation accuracy so far")


# ---------------------------------------------------------------- report


def _mean_ci(d: dict | None, scale: float = 1.0, spec: str = ".2f") -> str:
    """'88.50 [87.90, 89.10]': the mean and its 95 % interval (none with one value)."""
    if not d or d.get("mean") is None:
        return "-"
    text = format(d["mean"] * scale, spec)
    if d.get("ci95"):
        lo, hi = d["ci95"]
        text += f" [{lo * scale:{spec}}, {hi * scale:{spec}}]"
    return text


def _lr_cell(lr: dict) -> str:
    if not lr or lr.get("mean") is None:
        return "-"
    if lr["min"] == lr["max"]:
        return f"{lr['mean']:.3g}"
    return f"{lr['mean']:.3g} ({lr['min']:.3g} to {lr['max']:.3g})"


def _pair_cell(pair: dict | None) -> str:
    """'+0.40 [-0.20, 1.00] points, p=0.21, n=3' for a paired comparison, '-' without pairs."""
    if not pair or not pair.get("n"):
        return "-"
    text = _mean_ci(pair["test_acc_diff"], 100, "+.2f") + " points"
    if pair.get("p_value") is not None:
        text += f", p={pair['p_value']:.2g}"
    return text + f", n={pair['n']}"


def arms_frame(setting: dict) -> pd.DataFrame:
    """One row per arm of a setting: n, LR, means with 95 % intervals, and the paired difference."""
    cols = ["arm", "n", "lr", "test_acc % [95% CI]", "val_acc % [95% CI]", "test_loss", "time_s",
            "test_acc vs best manual"]
    rows = []
    for key, a in (setting.get("arms") or {}).items():
        picks = ", ".join(f"{p['lr']:.3g}" for p in a.get("picks", []) if p["lr"])  # a Bayesian search's, by seed
        rows.append([f"manual (= {a['chosen']})" if key == "manual" else key, f"{a['n']}/{a['n_trials']}",
                     picks or _lr_cell(a["lr"]), _mean_ci(a["test_acc"], 100), _mean_ci(a["val_acc"], 100),
                     _mean_ci(a["test_loss"], 1, ".4f"), _mean_ci(a["time_s"], 1, ".1f"),
                     _pair_cell((setting.get("vs_best_manual") or {}).get(key))])
    return pd.DataFrame(rows, columns=cols)


def _section(title: str, text: str, table: pd.DataFrame) -> list[str]:
    return [f"### {title}", "", text, "", markdown_table(table), ""]


def _strategy_lines(setting: dict) -> list[str]:
    """Every strategy's compute against its accuracy, means with 95 % intervals over seeds."""
    cols = ["strategy", "seeds", "compute s per seed [95% CI]", "test_acc % [95% CI]", "compute to target s", "reached target"]
    rows = [[r["strategy"], len(r["seeds"]), _mean_ci(r["compute_s"], 1, ".1f"), _mean_ci(r["test_acc"], 100),
             _mean_ci(r["compute_to_target_s"], 1, ".1f"), f"{r['reached_target']}/{len(r['seeds'])}"]
            for r in setting["strategies"]]
    return _section("Strategies: compute against accuracy",
                    "A strategy is one way to a trained model: a finder rule or cyclic (range test plus one training), a "
                    "learning-rate-free optimiser (one training), or the manual search as a whole (every trial it ran; it "
                    "delivers its trial with the best validation accuracy). Compute is training seconds per seed; compute "
                    "to target counts, in the order things ran, until a model first reached the target validation accuracy.",
                    pd.DataFrame(rows, columns=cols))


def _rules_lines(setting: dict) -> list[str]:
    """The finder rules compared, when a setting has several."""
    arms = setting.get("arms") or {}
    keys = [k for k in arms if k.split(":")[0] == "finder"]
    if len(keys) < 2:
        return []
    cols = ["rule", "arm", "LR per seed", "test_acc % [95% CI]", "vs best manual", "vs `finder`"]
    rows = []
    for k in keys:
        a = arms[k]
        lrs = ", ".join(f"{s}: {v:.3g}" for s, v in zip(a["lr"]["seeds"], a["lr"]["values"])) or "-"
        rows.append([a.get("rule") or "?", k, lrs, _mean_ci(a["test_acc"], 100),
                     _pair_cell((setting.get("vs_best_manual") or {}).get(k)),
                     "(reference)" if k == "finder" else _pair_cell((setting.get("vs_finder") or {}).get(k))])
    lines = _section("Finder rules", "One finder arm per rule; `finder` is the primary (first) rule. LR per seed is "
                     "`seed: lr`. Differences are paired by seed, in points of test accuracy; an interval that contains "
                     "0 means the seeds do not separate the two.", pd.DataFrame(rows, columns=cols))
    top = max((k for k in keys if arms[k]["test_acc"]["mean"] is not None),
              key=lambda k: arms[k]["test_acc"]["mean"], default=None)
    if top is not None:
        lines += [f"Highest mean test accuracy: `{top}` ({100 * arms[top]['test_acc']['mean']:.2f} %).", ""]
    return lines


def _range_test_lines(setting: dict) -> list[str]:
    """Every rule's pick, seed by seed, on the range test's true curve and on Lightning's recorded one."""
    tests = setting.get("range_tests") or []
    if not tests:
        return []
    rules = list(tests[0]["suggestions"])
    seeds = [t["seed"] for t in tests]
    rows = []
    for rule in rules:
        rows.append([rule] + [" / ".join(_fmt(t[key].get(rule), ".3g") for t in tests)
                              for key in ("suggestions", "suggestions_lightning_curve")])
    cols = ["rule", f"true curve (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})", "Lightning's recorded curve"]
    return _section("Range tests: every rule's pick",
                    "Each seed's range test, read by every rule: on the true curve (the raw losses, correctly debiased "
                    "EMA), which the finder arms train with, and on the curve Lightning 2.6 records (debiased one step "
                    "late). `lightning` is Lightning's own `suggestion()` and always reads Lightning's curve; `steepest` "
                    "on Lightning's curve is what Lightning < 2.5.3 suggested.", pd.DataFrame(rows, columns=cols))


# ---------------------------------------------------------------- verdicts


def _status_counts(a: dict) -> str:
    return ", ".join(f"{n} {st}" for st, n in a["n_by_status"].items() if n and st != "finished")


def _arm_label(key: str, arm: dict | None) -> str:
    """'finder (valley)', 'cyclic (lightning)': an arm named with the rule that chose its LR."""
    base = key.split(":")[0]
    rule = (arm or {}).get("rule") or (key.split(":")[1] if ":" in key else None)
    return f"{base} ({rule})" if rule else base


def _seeds(seeds: list) -> str:
    return "seed " + ", ".join(map(str, seeds)) if seeds else "none"


def setting_verdict(summary: dict, setting: dict, key: str = "finder") -> str:
    """'sgd: finder (valley) vs best manual (lr=0.01): +0.40 ± 0.60 points of test accuracy over 3 seeds ...'.

    `key`: the range-test arm compared with the best manual LR (default: the primary finder arm)."""
    opt, arms, best = setting["optimizer"], setting["arms"], setting["best_manual"]
    if not setting["n_trials"]:
        return f"{opt}: no trials."
    finder = arms.get(key)
    label = _arm_label(key, finder)
    trials = [t for t in summary["trials"] if t["optimizer"] == opt]
    problems = []
    if finder is None:
        problems.append(f"there is no {label} trial")
    elif finder["n"] == 0:
        error = next((t["error"] for t in trials if t["arm_key"] == key and t["error"]), None)
        problems.append(f"no {label} trial finished (of {finder['n_trials']}: {_status_counts(finder)}"
                        + (f", first error: {error}" if error else "") + ")")
    if best is None:
        manual = sum(t["arm"] == "manual" for t in trials)
        problems.append(f"no manual trial finished (of {manual})" if manual else "there is no manual trial")
    if problems:
        return f"{opt}: " + "; ".join(problems) + f", so {label} and best manual cannot be compared."
    pair, manual = setting["vs_best_manual"][key], arms["manual"]
    picks = ", ".join(f"{p['lr']:.3g}" for p in manual.get("picks", []) if p["lr"])
    head = f"{opt}: {label} vs " + (f"each seed's best manual trial (lr {picks})" if best == SEARCH_PICKS
                                    else f"best manual (lr={manual['lr']['mean']:.3g})")
    if pair["n"] == 0:
        return (f"{head}: they finished on no common seed ({label}: {_seeds(finder['seeds'])}; "
                f"manual: {_seeds(manual['seeds'])}), so they cannot be compared seed by seed.")
    d = pair["test_acc_diff"]
    s = f"{head}: {100 * d['mean']:+.2f}"
    if d["ci95"] is not None:
        s += f" ± {100 * (d['ci95'][1] - d['ci95'][0]) / 2:.2f}"
    s += f" points of test accuracy over {pair['n']} seed{'s' if pair['n'] != 1 else ''}"
    if pair["p_value"] is not None:
        s += f" (paired t-test p = {pair['p_value']:.2g})"
    elif pair["n"] >= 2 and d["std"] == 0:
        s += " (the same difference on every seed)"
    own, search = finder["time_s"]["mean"], setting["compute"]["manual_search_time_s"]
    if own and search:
        r = search / own
        s += (f", {r:.1f}x less compute" if r >= 1 else f", {1 / r:.1f}x more compute") + (
            f" ({own:.1f} s vs {search:.1f} s for the whole manual search, per seed)")
    if finder["n"] < finder["n_trials"]:
        s += (f"; {finder['n_trials'] - finder['n']} of {finder['n_trials']} {label} trials did not finish "
              f"({_status_counts(finder)})")
    return s + "."


def _reaches(row: dict, bar: float) -> bool:
    """A strategy's test accuracy reaches `bar` within its 95 % interval (its mean, from one seed)."""
    acc = row["test_acc"]
    return acc["mean"] is not None and (acc["ci95"][1] if acc["ci95"] else acc["mean"]) >= bar


def strategy_verdict(setting: dict) -> str:
    """'sgd: the cheapest strategy that reaches the grid search's test accuracy (89.60 %) within its
    interval: finder:valley, 89.20 % [86.40, 92.00], 103.0 s of compute per seed against 448.0 s ...'."""
    opt, rows = setting["optimizer"], setting["strategies"]
    search = next((r for r in rows if r["kind"] == "search"), None)
    if search is None or search["test_acc"]["mean"] is None:
        return f"{opt}: no manual search delivered a tested model, so no strategy can be measured against one."
    bar = search["test_acc"]["mean"]
    head = f"{opt}: the cheapest strategy that reaches the {search['strategy']}'s test accuracy ({100 * bar:.2f} %)"
    cheapest = min((r for r in rows if _reaches(r, bar) and r["compute_s"]["mean"] is not None),
                   key=lambda r: r["compute_s"]["mean"])
    own, whole = cheapest["compute_s"]["mean"], search["compute_s"]["mean"]
    if cheapest is search:
        return f"{head} within its interval is the search itself ({whole:.1f} s of compute per seed): nothing cheaper reaches it."
    return (f"{head} within its interval: {cheapest['strategy']}, {_mean_ci(cheapest['test_acc'], 100)} %, "
            f"{own:.1f} s of compute per seed against {whole:.1f} s ({whole / own:.1f}x less), "
            f"over {cheapest['test_acc']['n']} seed{'s' if cheapest['test_acc']['n'] != 1 else ''}.")


def verdicts(summary: dict) -> dict[str, list[str]]:
    """Per optimiser: which strategy is the cheapest way to the manual search's accuracy, then one
    sentence per arm against the best manual LR (the finder rules, cyclic, learning-rate-free arms)."""
    out = {}
    for opt, setting in summary["settings"].items():
        keys = [k for k in setting["arms"] if not k.startswith("manual")] or ["finder"]
        out[opt] = [strategy_verdict(setting)] + [setting_verdict(summary, setting, k) for k in keys]
    return out


def verdict_lines(summary: dict) -> list[str]:
    return [line for lines in verdicts(summary).values() for line in lines]


def _setting_lines(summary: dict, opt: str, setting: dict, sentences: list[str]) -> list[str]:
    trials = [t for t in summary["trials"] if t["optimizer"] == opt]
    c = setting["compute"]
    lines = [f"## Optimizer: {opt}", "", "**Verdict.** " + sentences[0], ""]
    lines += [f"- {v}" for v in sentences[1:]] + ([""] if sentences[1:] else [])
    if not trials:
        return lines
    lines += ["### Arms", "", markdown_table(arms_frame(setting)), "",
              f"Compute per seed: finder arm {_fmt(c['finder_time_s'], '.1f')} s (mean `time_s`, range test "
              f"included), whole manual search {_fmt(c['manual_search_time_s'], '.1f')} s (all manual trials "
              "of a seed, every status).", ""]
    lines += _strategy_lines(setting)
    lines += _rules_lines(setting)
    lines += _range_test_lines(setting)
    lines += ["### Trials", "", markdown_table(table_frame(summary, markdown=True, trials=trials)), ""]
    return lines


def render_markdown(summary: dict, figures: dict[str, str]) -> str:
    """report.md; `figures` maps a figure key to its file name, or to the reason it was skipped."""
    cfg = summary["config"]
    said = verdicts(summary)
    lines = [f"# LR finder vs manual LR search: {summary['experiment']}", "",
             "**Verdict.** " + " ".join(s[0] for s in said.values()), "",
             "How to read it: every arm ran once per seed. `finder` is the LR finder with the primary rule, "
             "`finder:<rule>` with another rule, `cyclic` a cyclical LR between the range the finder found "
             "(its LR in tables and figures is the top of the cycle), `manual:<lr>` one manual LR, and `manual` "
             "the manual LR with the best mean last-epoch validation accuracy over the seeds (finished trials "
             "only; never chosen by test accuracy; for a Bayesian search, whose seeds try different LRs, each "
             "seed's best manual trial by the same rule). Means come with 95 % Student-t intervals over seeds; "
             "differences are paired by seed, with a paired t-test (scipy's ttest_1samp and ttest_rel). `n` "
             "counts finished trials of all trials in the arm. Compute compares the finder arm's mean `time_s` "
             "(range test + training) with the compute seconds of the whole manual search of one seed. Time to "
             f"target: seconds of training until `val_acc` first reached {summary['target_acc']} (the range "
             "test's time included for the finder and cyclic arms).", ""]
    keys = ("preset", "search", "optimizer", "seeds", "seed", "arms", "finder_rules", "epochs", "batch_size", "target_acc")
    lines += ["Setup: " + ", ".join(f"{k}={cfg[k]}" for k in keys if cfg.get(k) is not None)]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()), ""]
    for opt, setting in summary["settings"].items():
        lines += _setting_lines(summary, opt, setting, said[opt])
    if not summary["trials"]:
        lines += ["_No trials found._", ""]
    lines += ["## Figures", ""]
    for i, (key, (_, title)) in enumerate(FIGURES.items(), start=1):
        title, fig = f"Figure {i}: {title}", figures[key]
        lines += [f"### {title}", "", f"![{title}]({fig})" if fig.endswith(".png") else f"_Skipped: {fig}._", ""]
    errors = [t for t in summary["trials"] if t["error"]]
    if errors:
        lines += ["## Errors", ""] + [f"- {t['optimizer']} {_shown_arm(t)} lr={_fmt(t['lr'], '.3g')} "
                                      f"seed={t['seed']} ({t['trial_id']}): {t['error']}" for t in errors] + [""]
    return "\n".join(lines)


def write_report(exp_dir: Path, experiment: Experiment, summary: dict) -> dict[str, Path]:
    """Write summary.json (with the verdicts), comparison.csv, the figures and report.md into the
    local folder `exp_dir`; return their paths by key. A figure without data is removed, not kept stale."""
    exp_dir = Path(exp_dir)
    said = verdicts(summary)
    files = {
        "summary": ("summary.json", json.dumps({**summary, "verdict": " ".join(s[0] for s in said.values()),
                                                "verdicts": said}, indent=2, allow_nan=False) + "\n"),
        "comparison": ("comparison.csv", comparison_frame(summary).to_csv(index=False)),
    }
    written = {}
    for key, (name, text) in files.items():
        write_atomic(exp_dir / name, text)
        written[key] = exp_dir / name
    figs = {
        "test_acc_vs_lr": (plot_test_acc_vs_lr(summary), "no trial has both an LR and a test accuracy"),
        "lr_finder": (plot_lr_finders(experiment, summary["optimizers"]), "no usable range-test curve"),
        "val_acc": (plot_epochs(experiment, summary, ("val_acc",), summary["target_acc"]), "no trial reported val_acc"),
        "val_loss": (plot_epochs(experiment, summary, ("val_loss",)), "no trial reported val_loss"),
        "train_curves": (plot_epochs(experiment, summary, ("train_loss", "train_acc")),
                         "no trial reported train_loss or train_acc"),
        "compute_vs_accuracy": (plot_compute_vs_accuracy(summary), "no strategy delivered a tested model"),
        "search_progress": (plot_search_progress(summary), "no manual search"),
    }
    names = {}
    for key, (fig, reason) in figs.items():
        path = exp_dir / FIGURES[key][0]
        if fig is None:
            path.unlink(missing_ok=True)
            names[key] = reason
        else:
            written[key] = _save_figure(fig, path)
            names[key] = path.name
    write_atomic(exp_dir / "report.md", render_markdown(summary, names))
    written["report"] = exp_dir / "report.md"
    return written
