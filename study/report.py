"""Write the report of an experiment: summary.json, comparison.csv, report.md and figures.

`write_report(exp_dir, summary)` takes the dict from `study.analysis.summarize` and
re-reads the per-epoch curves from disk for the figures. Every file is written
atomically (a temporary file in the same directory, then os.replace), so a reader
never sees half a file. Figures use matplotlib's Agg canvas (no screen, no pyplot).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from study.analysis import _TRIAL_KEYS, TrialRecord, load_trials

FIGURES = {
    "lr_finder": "lr_finder.png",
    "val_acc": "val_acc.png",
    "val_loss": "val_loss.png",
    "train_curves": "train_curves.png",
}
_STYLE = {"finished": "-", "pruned": "--", "diverged": ":", "error": "-."}
_FINDER_COLOUR = "tab:red"


# ---------------------------------------------------------------- atomic files


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write data to path via a temporary file in the same directory and os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _save_figure(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- tables


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _node(t: dict) -> str:
    return t.get("node_ip") or (t.get("node_id") or "-")[:8]


def table_frame(summary: dict, markdown: bool = False) -> pd.DataFrame:
    """The comparison table as strings, one row per trial."""
    cols = ["arm", "lr", "status", "epochs", "val_acc", "test_acc", "time_s", "time_to_target_s", "node"]
    if markdown:
        cols = cols[:3] + ["seed"] + cols[3:5] + ["val_loss"] + cols[5:6] + ["test_loss"] + cols[6:] + ["trial_id", "error"]
    spec = {"lr": ".3g", "val_acc": ".4f", "val_loss": ".4f", "test_acc": ".4f", "test_loss": ".4f",
            "time_s": ".1f", "time_to_target_s": ".1f", "epochs": "d"}
    rows = []
    for t in summary.get("trials", []):
        rows.append({c: _node(t) if c == "node" else _fmt(t.get(c), spec.get(c, "")) for c in cols})
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
    extra = [k for t in trials for k in t if k not in _TRIAL_KEYS]
    cols = list(_TRIAL_KEYS) + list(dict.fromkeys(extra))
    return pd.DataFrame(trials, columns=cols)


# ---------------------------------------------------------------- figures


def _label(row: dict | None, t: TrialRecord) -> str:
    lr = (row or {}).get("lr")
    status = (row or {}).get("status", t.status)
    text = f"{t.arm or '?'} lr={'?' if lr is None else format(lr, '.3g')}"
    return text if status == "finished" else f"{text} ({status})"


def _floats(values) -> np.ndarray:
    """A writable float array; anything non-numeric or non-finite becomes NaN."""
    y = np.array(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    y[~np.isfinite(y)] = np.nan
    return y


def _series(t: TrialRecord, col: str) -> tuple[np.ndarray, np.ndarray] | None:
    if t.df.empty or col not in t.df:
        return None
    y = _floats(t.df[col])
    if np.isnan(y).all():
        return None
    return t.df["training_iteration"].to_numpy(dtype=float), y


def _plot_curves(ax, trials: list[TrialRecord], rows: dict, col: str) -> int:
    manual = [t for t in trials if t.arm != "finder"]
    cmap = matplotlib.colormaps["viridis"]
    n = 0
    for t in trials:
        xy = _series(t, col)
        if xy is None:
            continue
        status = rows.get(t.name, {}).get("status", t.status)
        if t.arm == "finder":
            style = {"color": _FINDER_COLOUR, "lw": 3.0, "zorder": 3}
        else:
            i = manual.index(t)
            style = {"color": cmap(i / max(1, len(manual) - 1) * 0.9), "lw": 1.3, "alpha": 0.85}
        ax.plot(*xy, marker="o", ms=3, ls=_STYLE.get(status, "-"), label=_label(rows.get(t.name), t), **style)
        n += 1
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(col)
    ax.grid(alpha=0.3)
    if col.endswith("loss") and n and all((np.nanmin(s[1]) > 0) for t in trials if (s := _series(t, col))):
        ax.set_yscale("log")
    return n


def plot_metric(trials: list[TrialRecord], rows: dict, col: str, target_acc: float | None = None) -> Figure | None:
    """One curve per trial of a per-epoch metric, the finder highlighted; None if no data."""
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    if not _plot_curves(ax, trials, rows, col):
        return None
    if target_acc is not None and col.endswith("acc"):
        ax.axhline(target_acc, color="grey", ls="--", lw=1, label=f"target {target_acc:g}")
    ax.set_title(f"{col} per epoch (finder in red, thick)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_train_curves(trials: list[TrialRecord], rows: dict) -> Figure | None:
    fig = Figure(figsize=(13, 5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    n = _plot_curves(ax_loss, trials, rows, "train_loss") + _plot_curves(ax_acc, trials, rows, "train_acc")
    if not n:
        return None
    ax_loss.set_title("train_loss per epoch")
    ax_acc.set_title("train_acc per epoch")
    ax_acc.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_lr_finder(curve: dict | None, chosen_lr: float | None) -> Figure | None:
    """Loss vs LR (log x), the chosen LR marked; None without a usable curve."""
    if not curve:
        return None
    lr, loss = _floats(curve.get("lr") or []), _floats(curve.get("loss") or [])
    if len(lr) == 0 or len(lr) != len(loss):
        return None
    ok = np.isfinite(lr) & (lr > 0)
    if not (ok & np.isfinite(loss)).any():
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(lr[ok], loss[ok], color="tab:blue", lw=1.5, label="training loss")
    ax.set_xscale("log")
    hi = np.percentile(loss[ok & np.isfinite(loss)], 90)
    if hi > 0 and np.nanmax(loss[ok]) > 2 * hi:  # keep the blow-up at high LR from flattening the curve
        ax.set_ylim(top=1.5 * hi)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    rule = curve.get("rule") or "suggestion"
    if chosen_lr is not None and chosen_lr > 0:
        light = curve.get("lightning_suggestion")
        same = " = Lightning's suggestion" if isinstance(light, (int, float)) and light == chosen_lr else ""
        ax.axvline(chosen_lr, color=_FINDER_COLOUR, lw=2, label=f"chosen lr={chosen_lr:.3g} ({rule}{same})")
    light = curve.get("lightning_suggestion")
    if isinstance(light, (int, float)) and light > 0 and light != chosen_lr:
        ax.axvline(light, color="grey", ls="--", lw=1,
                   label=f"Lightning {curve.get('lightning_version', '')} suggestion {light:.3g}".replace("  ", " "))
    ax.set_title("LR finder: loss vs learning rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- report


def _arm_lines(name: str, arm: dict | None, keys: list[str]) -> list[str]:
    if arm is None:
        return [f"- **{name}**: none (see the verdict)."]
    return [f"- **{name}**: " + ", ".join(f"{k}={_fmt(arm.get(k), '.4g')}" for k in keys if k in arm)]


def render_markdown(summary: dict, figures: dict[str, str | None]) -> str:
    """report.md; `figures` maps a figure key to its file name, or to None with the reason it was skipped."""
    cfg = summary.get("config") or {}
    lines = [f"# LR finder vs manual LR search: {summary.get('experiment', '')}", "",
             f"**Verdict.** {summary.get('verdict', '')}", "",
             "Time cost ratio = finder `total_time_s` (LR finder + training of the finder trial) / "
             "`search_time_s` (compute seconds of all manual trials together, including pruned, diverged and "
             "failed ones). `search_wall_s` is the wall-clock span of the manual search (first manual trial "
             "start to last manual report); trials run in parallel, so it can be shorter than `search_time_s`. "
             "The best manual trial is chosen by last-epoch validation accuracy (ties: lower validation loss), "
             "never by test accuracy. Time to target: seconds of training until `val_acc` first reached "
             f"{summary.get('target_acc')} (the finder's own time included for the finder arm).", ""]
    if cfg:
        lines += ["Setup: " + ", ".join(f"{k}={cfg[k]}" for k in
                                       ("search", "optimizer", "epochs", "batch_size", "seed", "target_acc") if k in cfg)]
    if summary.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items())]
    lines += [""]
    lines += _arm_lines("Finder", summary.get("finder"),
                        ["lr", "finder_time_s", "train_time_s", "total_time_s", "val_acc", "test_acc", "time_to_target_s"])
    lines += _arm_lines("Best manual", summary.get("best_manual"),
                        ["lr", "train_time_s", "search_time_s", "search_wall_s", "val_acc", "test_acc", "time_to_target_s"])
    lines += ["", "## Trials", "", markdown_table(table_frame(summary, markdown=True)) if summary.get("trials")
              else "_No trials found._", "", "## Figures", ""]
    titles = {"lr_finder": "Figure 1: LR finder, loss vs learning rate",
              "val_acc": "Figure 2: validation accuracy per epoch", "val_loss": "Figure 3: validation loss per epoch",
              "train_curves": "Figure 4: training loss and accuracy per epoch"}
    for key, title in titles.items():
        fig = figures.get(key)
        if fig and fig.endswith(".png"):
            lines += [f"### {title}", "", f"![{title}]({fig})", ""]
        else:
            lines += [f"### {title}", "", f"_Skipped: {fig or 'no data'}._", ""]
    errors = [t for t in summary.get("trials", []) if t.get("error")]
    if errors:
        lines += ["## Errors", ""] + [f"- {t['arm']} lr={_fmt(t.get('lr'), '.3g')} ({t['trial_id']}): {t['error']}"
                                      for t in errors] + [""]
    return "\n".join(lines)


def write_report(exp_dir: Path, summary: dict) -> dict[str, Path]:
    """Write summary.json, comparison.csv, the figures and report.md; return their paths by name."""
    exp_dir = Path(exp_dir)
    trials = load_trials(exp_dir, epochs=(summary.get("config") or {}).get("epochs"))
    rows = {t.get("dir"): t for t in summary.get("trials", [])}
    written: dict[str, Path] = {}

    written["summary"] = atomic_write_text(
        exp_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    written["comparison"] = atomic_write_text(
        exp_dir / "comparison.csv", comparison_frame(summary).to_csv(index=False))

    finder = next((t for t in trials if t.arm == "finder" and t.lr_finder), None)
    chosen = None
    if finder is not None:
        chosen = finder.lr_finder.get("suggestion")
        if not isinstance(chosen, (int, float)):
            chosen = (rows.get(finder.name) or {}).get("lr")
    figs = {
        "lr_finder": (plot_lr_finder(finder.lr_finder if finder else None, chosen),
                      "no LR-finder curve (no lr_finder.json with a usable lr/loss curve)"),
        "val_acc": (plot_metric(trials, rows, "val_acc", summary.get("target_acc")), "no trial reported val_acc"),
        "val_loss": (plot_metric(trials, rows, "val_loss"), "no trial reported val_loss"),
        "train_curves": (plot_train_curves(trials, rows), "no trial reported train_loss or train_acc"),
    }
    names: dict[str, str | None] = {}
    for key, (fig, reason) in figs.items():
        path = exp_dir / FIGURES[key]
        if fig is None:
            path.unlink(missing_ok=True)  # a stale figure from an earlier report would mislead
            names[key] = reason
        else:
            written[key] = _save_figure(fig, path)
            names[key] = path.name
    written["report"] = atomic_write_text(exp_dir / "report.md", render_markdown(summary, names))
    return written
