"""The range tests: loss against learning rate, every rule's pick marked (lr_finder.png)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from study.experiment import RANGE_TEST_ARMS, Experiment
from study.figures.layout import CYCLIC_COLOUR, finish, floats, marker, panels, present

MAX_FINDER_CURVES = 6  # more range-test curves than this in one panel: only the first seed's are drawn


def _usable(curve: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(lr, loss, ok) of a range-test curve, or None when nothing can be drawn."""
    if not curve:
        return None
    lr, loss = floats(curve.get("lr") or []), floats(curve.get("loss") or [])
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
        other = floats(curve.get(key) or [])
        if len(other) == len(lr):
            ax.plot(lr[ok], other[ok], color=colour, **style)
            drawn.append(other[ok])
    for rule, pick in (curve.get("suggestions") or {}).items():
        if not (isinstance(pick, (int, float)) and pick > 0):
            continue
        ys = floats(curve.get("loss_lightning") or []) if rule == "lightning" else loss
        ys = ys if len(ys) == len(lr) else loss
        ax.plot([pick], [_at(lr, ys, ok, pick)], ls="none", marker=marker(rule), ms=11 if rule in trained else 8,
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
        ax.plot([], [], ls="none", marker=marker(rule), ms=9, color="lightgrey", mec="black", label=f"pick: {rule}")
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
    finish(fig, [ax])
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
    labels = present(summary, [t.setting for t, _ in cands])
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
            seeds = list(dict.fromkeys(t.seed for t, _ in group))  # the seeds that share this test
            named = ", ".join(map(str, seeds)) if len(seeds) <= 3 else f"{seeds[0]} to {seeds[-1]} ({len(seeds)} seeds)"
            curve = group[0][1]
            drawn.append(_draw_range_test(ax, curve, cmap(i % 10), f"range test, seed {named}", set(trained)))
            rules.update(dict.fromkeys(curve["suggestions"]))
            lr, loss, ok = _usable(curve)
            bars = {(t.cyclic_min_lr, t.lr): t for t, _ in group if t.arm == "cyclic"}  # seeds that share a test share its bar
            for t in bars.values():
                if not pd.isna(t.lr) and t.lr > 0:
                    y = _at(lr, loss, ok, t.lr)
                    ax.plot([t.cyclic_min_lr, t.lr], [y, y], color=CYCLIC_COLOUR, lw=4, marker="|", ms=14, zorder=4,
                            label="cyclic: min to max LR")
        _range_test_axes(ax, np.concatenate(drawn) if drawn else np.array([]), f"LR finder, {label}{note}", list(rules))
    finish(fig, axes[0].values())
    return fig
