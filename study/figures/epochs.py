"""Per-epoch curves of every trial (val_acc.png: each setting's metric, val_loss.png, train_curves.png)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from study.experiment import Experiment
from study.figures.layout import STYLE, faint, finish, floats, joined, lone_points, panels, present, strategy_colours

METRIC = "metric"  # in plot_epochs' `metrics`: each setting's own metric (summary["settings"][label]["metric"])


def _curves(experiment: Experiment, col: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """trial id -> (epochs from 1, values) for every trial with some finite `col`."""
    e = experiment.epochs
    values = floats(e[col]) if col in e else np.full(len(e), np.nan)
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
    every other curve; the LR on a log axis when every value is positive."""
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    if metric.endswith("loss") and v.size and (v > 0).all():
        ax.set_yscale("log")
        sane = v[v <= 10 * np.median(v)]  # above: a blow-up (chance-level cross-entropy is 2.3)
        if sane.size < v.size:
            ax.set_ylim(bottom=v.min() / 1.3, top=1.5 * sane.max())
    elif metric == "lr" and v.size and (v > 0).all():  # the rate each epoch ended at: decades apart
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")


def plot_epochs(experiment: Experiment, summary: dict, metrics: tuple[str, ...]) -> Figure | None:
    """Per-epoch curves of every trial: a row per metric (`METRIC`: each setting's own, with its
    target where it has one), a panel per setting. Each arm in its strategy's colour (as in
    compute_vs_accuracy.png), all its seeds of one status one line artist (diverged: dotted); the
    manual trials one collection, thin, in greys by LR with a colour bar. A curve of one point
    (one epoch) is a marker. None without data."""
    settings = summary.get("settings") or {}
    own = {label: s.get("metric", "val_acc") for label, s in settings.items()}
    named = set(own.values()) if METRIC in metrics else set()
    curves = {m: _curves(experiment, m) for m in (*[m for m in metrics if m != METRIC], *named)}
    trials = experiment.trials
    drawn = trials[trials["trial_id"].isin(set().union(*curves.values()))]
    if drawn.empty:
        return None
    labels = present(summary, drawn["setting"].tolist())
    fig, axes = panels(labels, rows=len(metrics), sharey=False, size=(5.0, 3.6))
    colour, (shade, mappable) = strategy_colours(summary), _manual_shades(trials)
    for row, wanted in zip(axes, metrics):
        for label, ax in row.items():
            metric = own.get(label, "val_acc") if wanted == METRIC else wanted
            mine = drawn[drawn["setting"] == label]
            values = [curves[metric][t][1] for t in mine["trial_id"] if t in curves[metric]]
            kind = mine["arm_key"].where(mine["arm"] != "manual", "manual")  # every manual LR: one kind
            for (key, status), group in mine.groupby([kind, mine["status"]], sort=False):
                found = [curves[metric][t] for t in group["trial_id"] if t in curves[metric]]
                if not found:
                    continue
                lx, ly, which = lone_points(found)  # one-epoch curves: no segment, so a marker
                if group["arm"].iloc[0] == "manual":
                    segments = [np.column_stack([x, y]) for x, y in found]
                    lrs = [lr for t, lr in zip(group["trial_id"], group["lr"]) if t in curves[metric]]
                    alpha = max(0.3, faint(len(found)))
                    ax.add_collection(LineCollection(segments, colors=[shade(lr) for lr in lrs], linewidths=1,
                                                     linestyles=STYLE.get(status, "-"), alpha=alpha,
                                                     zorder=2, gid=f"manual {status}"))
                    if len(lx):
                        ax.scatter(lx, ly, s=9, c=[shade(lrs[i]) for i in which], alpha=alpha, zorder=2,
                                   gid=f"points: manual {status}")
                else:
                    x, y = joined(found)
                    ax.plot(x, y, marker="o" if len(found) <= 20 else None, ms=3, lw=2, ls=STYLE.get(status, "-"),
                            color=colour.get(key, "black"), alpha=max(0.25, faint(len(found))), zorder=3,
                            gid=f"{key} {status}")
                    if len(lx) and len(found) > 20:  # up to 20 curves carry markers already
                        ax.plot(lx, ly, ls="none", marker="o", ms=3, color=colour.get(key, "black"),
                                alpha=max(0.25, faint(len(found))), zorder=3, gid=f"{key} {status} points")
                ax.plot([], [], lw=1 if key.startswith("manual") else 2, color="grey" if key.startswith("manual") else
                        colour.get(key, "black"), label="manual trial (grey: its LR)" if key.startswith("manual") else key)
            ax.autoscale_view()
            _epoch_axes(ax, metric, values)
            target = settings.get(label, {}).get("target")
            if wanted == METRIC and target is not None:
                ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
            ax.set_title(f"{metric} per epoch, {label}", fontsize=9)
        first = next(iter(row))
        next(iter(row.values())).set_ylabel(own.get(first, "val_acc") if wanted == METRIC else wanted)
    for ax in axes[-1].values():
        ax.set_xlabel("epoch")
    every = [ax for row in axes for ax in row.values()]
    for status in sorted(set(drawn["status"]) - {"finished"}):  # line styles of the trials that did not finish
        every[0].plot([], [], color="black", lw=1, ls=STYLE.get(status, "-"), label=status)
    if mappable is not None:
        fig.colorbar(mappable, ax=every, location="bottom", shrink=0.4, aspect=40, label="manual trial's LR")
    finish(fig, every)
    return fig
