"""The one layout of every figure, and what the figures share (colours, markers, many curves as one artist).

A figure has a panel per setting (`summary["settings"]`: an optimiser, ...), laid out by
`panels`: at most `COLUMNS` panels a line, one legend for the whole figure (`figure_legend`), and a
size that never exceeds `MAX_INCHES` (2,000 pixels at `DPI`) a side, however many trials, seeds or
settings the study has. Legends have one entry per arm or strategy, never one per seed or trial.
Every figure ends with `finish`: its legend, and numbers on every axis whatever its range
(`readable_ticks`). A curve of one point is drawn as a marker (`lone_points`).
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, MaxNLocator, NullFormatter

from trainables.finder_rules import RULES

DPI = 110
MAX_INCHES = 18.0  # 1,980 pixels at DPI, whatever the study's size
COLUMNS = 3  # panels (settings) per line of a figure
LEGEND_INCHES = 2.6  # room right of the panels for the figure's legend
STYLE = {"finished": "-", "pruned": "--", "diverged": ":", "error": "-.", "unfinished": "-."}  # a trial's line, by status
FINDER_COLOUR = "tab:red"
CYCLIC_COLOUR = "tab:green"
RULE_MARKERS = dict(zip(RULES, "o*D^vs"))


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


def _short(x, _pos=None) -> str:
    return f"{x:.3g}".replace("e+", "e").replace("e-0", "e-")


def readable_ticks(axes) -> None:
    """Numbers on every axis of `axes`, whatever its range: a log axis spanning less than a decade
    (1.3e12 to 6.5e12: no power of ten, so no major tick) gets plain ticks within its range,
    labelled with 3 significant digits; one spanning more keeps its decades."""
    for ax in axes:
        if not ax.get_visible():
            continue
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log" or not (lo > 0 and hi > 0):
                continue
            lo, hi = sorted((lo, hi))
            if np.floor(np.log10(hi)) - np.ceil(np.log10(lo)) >= 1:  # two powers of ten in view: decades
                axis.set_major_formatter(LogFormatterSciNotation())
                continue
            axis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
            axis.set_major_formatter(FuncFormatter(_short))
            axis.set_minor_formatter(NullFormatter())


def finish(fig: Figure, axes) -> None:
    """What every figure ends with: its one legend (`figure_legend`) and readable ticks on every axis."""
    axes = list(axes)
    figure_legend(fig, axes)
    readable_ticks(fig.axes)


def lone_points(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The points of `curves` that no line segment draws (a one-epoch curve, a finite value between
    missing ones): their x, y and the index of their curve. Draw them as markers."""
    xs, ys, which = [], [], []
    for i, (x, y) in enumerate(curves):
        ok = np.isfinite(np.asarray(y, dtype=float)) & np.isfinite(np.asarray(x, dtype=float))
        before, after = np.r_[False, ok[:-1]], np.r_[ok[1:], False]
        lone = ok & ~before & ~after
        xs += list(np.asarray(x, dtype=float)[lone])
        ys += list(np.asarray(y, dtype=float)[lone])
        which += [i] * int(lone.sum())
    return np.array(xs), np.array(ys), which


def log_x_panels(axes: dict, xlabel: str, title: str, ylabel: str) -> None:
    for label, ax in axes.items():
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels collide on a short range
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}, {label}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    next(iter(axes.values())).set_ylabel(ylabel)


def present(summary: dict, found: list[str]) -> list[str]:
    """The settings that have something to draw, in the study's order."""
    order = list(dict.fromkeys([*summary.get("settings", {}), *found]))
    return [s for s in order if s in set(found)]


def faint(n: int) -> float:
    """Line opacity for n overlaid curves of one kind: solid for a few, faint for hundreds."""
    return float(np.clip(3.0 / max(n, 1), 0.08, 0.9))


def joined(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Many (x, y) curves as one NaN-separated pair of arrays: one artist draws them all."""
    if not curves:
        return np.array([]), np.array([])
    xs = [np.append(x, np.nan) for x, _ in curves]
    ys = [np.append(y, np.nan) for _, y in curves]
    return np.concatenate(xs), np.concatenate(ys)


def floats(values) -> np.ndarray:
    """A writable float array; anything non-numeric or non-finite becomes NaN."""
    y = np.array(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    y[~np.isfinite(y)] = np.nan
    return y


def strategy_colours(summary: dict) -> dict:
    """One colour per strategy (an arm key, or '<search> search'), the same in every panel and figure."""
    names = list(dict.fromkeys(r["strategy"] for r in summary["strategies"]))
    return {name: matplotlib.colormaps["tab10"](i % 10) for i, name in enumerate(names)}


def marker(rule: str | None) -> str:
    return RULE_MARKERS.get(rule, "o")
