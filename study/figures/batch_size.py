"""The learning rate against the batch size (lr_vs_batch_size.png): does the best LR, and the
finder's pick, scale with the batch?

A panel per task, optimiser and schedule that the study ran at several batch sizes (the
`batch_size` dimension): the best manual LR (the analysis's, `arms.manual`: by mean validation
metric; its median over seeds' picks for a Bayesian search) and each finder rule's pick, the
median over seeds, against the batch size, both axes logarithmic; beside them the two scaling
rules drawn from the smallest batch's best LR (b0, lr0): linear, lr0 x b / b0 (Goyal et al. 2017),
and square root, lr0 x sqrt(b / b0) (Krizhevsky 2014; Hoffer et al. 2017).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from study.config import dimension_value
from study.figures.layout import FINDER_COLOUR, finish, marker, panels

GROUP = ("task", "optimizer", "lr_schedule")  # a panel: everything but the batch size


def scaling(b0: float, lr0: float, sizes) -> tuple[np.ndarray, np.ndarray]:
    """The linear and square-root scaling rules' LRs at `sizes`, from the LR lr0 at batch size b0."""
    ratio = np.asarray(sizes, dtype=float) / b0
    return lr0 * ratio, lr0 * np.sqrt(ratio)


def _best_manual_lr(setting: dict) -> float | None:
    manual = (setting.get("arms") or {}).get("manual") or {}
    values = [v for v in (manual.get("lr") or {}).get("values") or [] if v]
    return float(np.median(values)) if values else None


def lr_by_batch_size(summary: dict) -> dict[tuple, dict]:
    """Per panel (task, optimiser, schedule) with several batch sizes, in the study's order: by batch
    size, "best" (the best manual LR) and "rules" ({rule: the median of its seeds' picks})."""
    out: dict[tuple, dict] = {}
    trials = summary.get("trials") or []
    for label, setting in (summary.get("settings") or {}).items():
        if setting.get("batch_size") is None:
            continue
        picks: dict[str, list[float]] = {}
        for t in trials:
            if t.get("setting") == label and t.get("arm") == "finder" and isinstance(t.get("lr"), (int, float)) and t["lr"] > 0:
                picks.setdefault(t["finder_rule"], []).append(t["lr"])
        out.setdefault(tuple(setting.get(d) for d in GROUP), {})[setting["batch_size"]] = {
            "best": _best_manual_lr(setting), "rules": {r: float(np.median(v)) for r, v in picks.items()}}
    return {group: dict(sorted(by_size.items())) for group, by_size in out.items() if len(by_size) > 1}


def plot_lr_vs_batch_size(summary: dict) -> Figure | None:
    """The best manual LR and each rule's pick against the batch size, with the linear and
    square-root scaling lines from the smallest batch's best LR; None without a setting that ran
    at several batch sizes."""
    groups = lr_by_batch_size(summary)
    if not groups:
        return None
    study_tasks = tuple(dict.fromkeys(g[0] for g in groups))
    labels = {g: "/".join(dimension_value(d, v, study_tasks) for d, v in zip(GROUP, g)) for g in groups}
    fig, axes = panels(list(labels.values()))
    for group, by_size in groups.items():
        ax = axes[0][labels[group]]
        sizes = np.array(list(by_size), dtype=float)
        best = np.array([np.nan if v["best"] is None else v["best"] for v in by_size.values()])
        ax.plot(sizes, best, "o-", color="black", lw=1.5, label="best manual LR", zorder=3)
        rules = list(dict.fromkeys(r for v in by_size.values() for r in v["rules"]))
        for rule in rules:
            ax.plot(sizes, [v["rules"].get(rule, np.nan) for v in by_size.values()], marker=marker(rule), ls="-", lw=1,
                    color=FINDER_COLOUR, alpha=0.8, ms=8, markeredgecolor="black", label=f"finder ({rule}), median over seeds")
        if np.isfinite(best[0]):  # the scaling rules from the smallest batch's best LR
            linear, root = scaling(sizes[0], best[0], sizes)
            ax.plot(sizes, linear, "--", color="grey", lw=1, label="linear scaling from the smallest batch", gid="linear")
            ax.plot(sizes, root, ":", color="grey", lw=1.5, label="square-root scaling from the smallest batch", gid="sqrt")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(f"LR against batch size, {labels[group]}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    next(iter(axes[0].values())).set_ylabel("learning rate")
    finish(fig, axes[0].values())
    for group, by_size in groups.items():  # the batch sizes themselves as the x ticks (after `finish`'s decades)
        axes[0][labels[group]].set_xticks(list(by_size), [f"{s:g}" for s in by_size], minor=False)
        axes[0][labels[group]].set_xticks([], minor=True)
    return fig
