"""Write the report of an experiment: summary.json, comparison.csv, report.md and figures.

`write_report(exp_dir, summary)` takes the dict from `study.analysis.summarize` and
re-reads the per-epoch curves from disk for the figures. report.md has one section per
setting (optimiser): its verdict, the arms with their means and 95 % intervals over seeds,
the finder rules compared when there are several, and its trials. Every file is written
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

from study.analysis import _TRIAL_KEYS, RANGE_TEST_ARMS, TrialRecord, load_trials

FIGURES = {
    "lr_finder": "lr_finder.png",
    "val_acc": "val_acc.png",
    "val_loss": "val_loss.png",
    "train_curves": "train_curves.png",
    "test_acc_vs_lr": "test_acc_vs_lr.png",
}
OUTPUTS = ("summary.json", "comparison.csv", "report.md", *FIGURES.values())  # every file write_report may write
_STYLE = {"finished": "-", "pruned": "--", "diverged": ":", "error": "-."}
_FINDER_COLOUR = "tab:red"
_CYCLIC_COLOUR = "tab:green"
_RULE_MARKERS = {"lightning": "o", "steepest": "*", "valley": "D", "minimum": "^", "steep": "v", "slide": "s"}
_MORE_MARKERS = ("P", "X", "v", "h", "<", ">")
MAX_FINDER_CURVES = 6  # more range-test curves than this in one panel: only the first seed's are drawn


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


def _marker(rule: str | None) -> str:
    rule = rule or "?"
    return _RULE_MARKERS.get(rule) or _MORE_MARKERS[sum(map(ord, rule)) % len(_MORE_MARKERS)]


def _panels(optimizers: list[str] | None, present: list[str]) -> list[str]:
    """The optimisers that have something to draw, in the study's order."""
    order = list(dict.fromkeys([*(optimizers or []), *present]))
    return [o for o in order if o in present]


def _legend(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), **kw)


def plot_lr_finders(trials: list[TrialRecord], rows: dict, optimizers: list[str] | None = None) -> Figure | None:
    """Every range test's loss vs LR (log x), every rule's pick marked on its curve.

    One curve: the single-test figure (`plot_lr_finder`). Several: one panel per optimiser, one
    curve per distinct range test (colour = seed; finder trials sharing one test share its curve),
    a cyclic trial as a green bar from its min to its max LR. A panel with more than
    MAX_FINDER_CURVES curves shows its first seed only.
    """
    cands = [t for t in trials if t.arm in RANGE_TEST_ARMS and _usable(t.lr_finder)]
    if not cands:
        return None
    trained = tuple(dict.fromkeys(t.finder_rule for t in cands if t.arm == "finder" and t.finder_rule))
    if len(_distinct_curves(cands)) == 1:
        return plot_lr_finder(cands[0].lr_finder, trained)
    opts = _panels(optimizers, [t.optimizer for t in cands])
    fig = Figure(figsize=(6.5 * len(opts) + 2.5, 4.8))
    axes = fig.subplots(1, len(opts), squeeze=False)[0]
    cmap = matplotlib.colormaps["tab10"]
    for ax, opt in zip(axes, opts):
        mine = [t for t in cands if t.optimizer == opt]
        curves = _distinct_curves(mine)
        note = ""
        if len(curves) > MAX_FINDER_CURVES:
            seed0 = min((t.seed for t in mine), key=lambda s: (s is None, s if isinstance(s, (int, float)) else 0))
            curves, note = _distinct_curves([t for t in mine if t.seed == seed0]), f", seed {seed0} only"
        drawn, rules = [], {}
        for i, group in enumerate(curves):
            colour = cmap(i % 10)
            seeds = ", ".join(dict.fromkeys(str(t.seed) for t in group))
            curve = group[0].lr_finder
            drawn.append(_draw_range_test(ax, curve, colour, f"range test, seed {seeds}", set(trained)))
            rules.update(dict.fromkeys(curve.get("suggestions") or {}))
            lr, loss, ok = _usable(curve)
            fin = ok & np.isfinite(loss)
            order = np.argsort(lr[fin])
            for t in group:
                row = rows.get(t.name) or {}
                chosen = row.get("lr")
                if t.arm == "cyclic" and isinstance(chosen, (int, float)) and chosen > 0:
                    y = float(np.interp(np.log10(chosen), np.log10(lr[fin][order]), loss[fin][order]))
                    low = row.get("cyclic_min_lr") or chosen
                    ax.plot([low, chosen], [y, y], color=_CYCLIC_COLOUR, lw=4, marker="|", ms=14, zorder=4,
                            label="cyclic: min to max LR")
        _range_test_axes(ax, np.concatenate(drawn) if drawn else np.array([]), f"LR finder, {opt}{note}", list(rules))
    return fig


def _distinct_curves(trials: list[TrialRecord]) -> list[list[TrialRecord]]:
    """Trials grouped by identical (lr, loss) curves, in order: a shared range test is drawn once."""
    groups: dict[tuple, list[TrialRecord]] = {}
    for t in trials:
        key = (tuple(t.lr_finder.get("lr") or []), tuple(map(str, t.lr_finder.get("loss") or [])))
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def plot_test_acc_vs_lr(summary: dict) -> Figure | None:
    """Every trial's test accuracy against its LR (log x), one panel per optimiser.

    Manual trials are blue points (their mean per LR a thin line, the best manual LR circled),
    finder trials red markers shaped by rule, cyclic trials green bars from min to max LR.
    Trials without a test accuracy (pruned, diverged, failed) are not drawn.
    """
    trials = [t for t in summary.get("trials", [])
              if isinstance(t.get("lr"), (int, float)) and t["lr"] > 0 and t.get("test_acc") is not None]
    if not trials:
        return None
    opts = _panels(summary.get("optimizers"), [t.get("optimizer") for t in trials])
    fig = Figure(figsize=(5.5 * len(opts) + 2.5, 4.8))
    axes = fig.subplots(1, len(opts), squeeze=False, sharey=True)[0]
    for ax, opt in zip(axes, opts):
        mine = [t for t in trials if t.get("optimizer") == opt]
        manual = [t for t in mine if t["arm"] == "manual"]
        if manual:
            ax.scatter([t["lr"] for t in manual], [t["test_acc"] for t in manual], s=22, color="tab:blue",
                       alpha=0.65, label="manual trial (one per seed)", zorder=2)
            means = pd.DataFrame(manual).groupby("lr")["test_acc"].mean()
            if len(means) > 1:
                ax.plot(means.index, means.values, color="tab:blue", lw=1, alpha=0.6, label="manual, mean over seeds")
        setting = (summary.get("settings") or {}).get(opt) or {}
        best = (setting.get("arms") or {}).get("manual")
        if best and best["test_acc"]["mean"] is not None:
            ax.scatter([best["lr"]["mean"]], [best["test_acc"]["mean"]], s=180, facecolors="none",
                       edgecolors="black", lw=1.5, zorder=3, label="best manual LR (by mean val acc)")
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
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_title(f"test accuracy vs LR, {opt}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test accuracy")
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    axes[-1].legend(handles.values(), handles.keys(), fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# ---------------------------------------------------------------- report


def _arm_lines(name: str, arm: dict | None, keys: list[str]) -> list[str]:
    if arm is None:
        return [f"- **{name}**: none (see the verdict)."]
    return [f"- **{name}**: " + ", ".join(f"{k}={_fmt(arm.get(k), '.4g')}" for k in keys if k in arm)]


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
        rows.append([f"manual (= {a['chosen']})" if key == "manual" else key, f"{a['n']}/{a['n_trials']}",
                     _lr_cell(a["lr"]), _mean_ci(a["test_acc"], 100), _mean_ci(a["val_acc"], 100),
                     _mean_ci(a["test_loss"], 1, ".4f"), _mean_ci(a["time_s"], 1, ".1f"),
                     _pair_cell((setting.get("vs_best_manual") or {}).get(key))])
    return pd.DataFrame(rows, columns=cols)


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
    lines = ["### Finder rules", "",
             "One finder arm per rule; `finder` is the primary (first) rule. LR per seed is `seed: lr`. "
             "Differences are paired by seed, in points of test accuracy; an interval that contains 0 means "
             "the seeds do not separate the two.", "", markdown_table(pd.DataFrame(rows, columns=cols)), ""]
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
    return ["### Range tests: every rule's pick", "",
            "Each seed's range test, read by every rule: on the true curve (the raw losses, correctly debiased "
            "EMA), which the finder arms train with, and on the curve Lightning 2.6 records (debiased one step "
            "late). `lightning` is Lightning's own `suggestion()` and always reads Lightning's curve; `steepest` "
            "on Lightning's curve is what Lightning < 2.5.3 suggested.", "",
            markdown_table(pd.DataFrame(rows, columns=cols)), ""]


def verdict_lines(summary: dict) -> list[str]:
    """One sentence per range-test arm (each finder rule, cyclic) and optimiser, the primary finder first."""
    return [v for st in summary.get("settings", {}).values()
            for v in (st.get("verdicts") or {"finder": st.get("verdict", "")}).values()]


def _setting_lines(summary: dict, opt: str, setting: dict) -> list[str]:
    trials = [t for t in summary.get("trials", []) if t.get("optimizer") == opt]
    c = setting.get("compute") or {}
    verdicts = list((setting.get("verdicts") or {"finder": setting.get("verdict", "")}).values())
    lines = [f"## Optimizer: {opt}", "", "**Verdict.** " + verdicts[0], ""]
    lines += [f"- {v}" for v in verdicts[1:]] + ([""] if verdicts[1:] else [])
    if not trials:
        return lines
    lines += ["### Arms", "", markdown_table(arms_frame(setting)), "",
              f"Compute per seed: finder arm {_fmt(c.get('finder_time_s'), '.1f')} s (mean `time_s`, range test "
              f"included), whole manual search {_fmt(c.get('manual_search_time_s'), '.1f')} s (all manual trials "
              "of a seed, every status).", ""]
    lines += _rules_lines(setting)
    lines += _range_test_lines(setting)
    lines += ["### Trials", "", markdown_table(table_frame(summary, markdown=True, trials=trials)), ""]
    return lines


FIGURE_TITLES = {
    "test_acc_vs_lr": "Test accuracy against learning rate, every trial (finder choices marked)",
    "lr_finder": "LR finder, loss vs learning rate",
    "val_acc": "validation accuracy per epoch",
    "val_loss": "validation loss per epoch",
    "train_curves": "training loss and accuracy per epoch",
}


def render_markdown(summary: dict, figures: dict[str, str | None]) -> str:
    """report.md; `figures` maps a figure key to its file name, or to None with the reason it was skipped."""
    cfg = summary.get("config") or {}
    lines = [f"# LR finder vs manual LR search: {summary.get('experiment', '')}", "",
             f"**Verdict.** {summary.get('verdict', '')}", "",
             "How to read it: every arm ran once per seed. `finder` is the LR finder with the primary rule, "
             "`finder:<rule>` with another rule, `cyclic` a cyclical LR between the range the finder found "
             "(its LR in tables and figures is the top of the cycle), `manual:<lr>` one manual LR, and `manual` "
             "the manual LR with the best mean last-epoch validation accuracy over the seeds (finished trials "
             "only; never chosen by test accuracy). Means come with 95 % Student-t intervals over seeds "
             "(scipy.stats.t.interval); differences are paired by seed, with a paired t-test "
             "(scipy.stats.ttest_rel). `n` counts finished trials of all trials in the arm. Compute compares the "
             "finder arm's mean `time_s` (range test + training) with the compute seconds of the whole manual "
             "search of one seed.", ""]
    if cfg:
        keys = ("preset", "search", "optimizer", "seeds", "seed", "arms", "finder_rules", "epochs", "batch_size",
                "target_acc")
        lines += ["Setup: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg and cfg[k] is not None)]
    if summary.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items())]
    lines += [""]
    for opt, setting in (summary.get("settings") or {}).items():
        lines += _setting_lines(summary, opt, setting)
    run = summary.get("first_run") or {}
    lines += [f"## One run in detail: optimizer {run.get('optimizer', '-')}, seed {run.get('seed', '-')}", "",
              summary.get("first_run_verdict") or "", "",
              "Time cost ratio = finder `total_time_s` (LR finder + training of the finder trial) / "
              "`search_time_s` (compute seconds of this seed's manual trials together, including pruned, diverged "
              "and failed ones). `search_wall_s` is the wall-clock span of that manual search (first manual trial "
              "start to last manual report); trials run in parallel, so it can be shorter than `search_time_s`. "
              "Here the best manual trial is this seed's, chosen by last-epoch validation accuracy (ties: lower "
              "validation loss). Time to target: seconds of training until `val_acc` first reached "
              f"{summary.get('target_acc')} (the range test's time included for the finder and cyclic arms).", ""]
    lines += _arm_lines("Finder", summary.get("finder"), ["lr", "finder_time_s", "train_time_s", "total_time_s",
                                                          "val_acc", "test_acc", "time_to_target_s"])
    lines += _arm_lines("Best manual", summary.get("best_manual"), ["lr", "train_time_s", "search_time_s",
                                                                    "search_wall_s", "val_acc", "test_acc",
                                                                    "time_to_target_s"])
    if not summary.get("trials"):
        lines += ["", "_No trials found._"]
    lines += ["", "## Figures", ""]
    for i, (key, title) in enumerate(FIGURE_TITLES.items(), start=1):
        fig = figures.get(key)
        title = f"Figure {i}: {title}"
        if fig and fig.endswith(".png"):
            lines += [f"### {title}", "", f"![{title}]({fig})", ""]
        else:
            lines += [f"### {title}", "", f"_Skipped: {fig or 'no data'}._", ""]
    errors = [t for t in summary.get("trials", []) if t.get("error")]
    if errors:
        lines += ["## Errors", ""] + [f"- {t.get('optimizer', '')} {_shown_arm(t)} lr={_fmt(t.get('lr'), '.3g')} "
                                      f"seed={t.get('seed')} ({t['trial_id']}): {t['error']}" for t in errors] + [""]
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

    figs = {
        "test_acc_vs_lr": (plot_test_acc_vs_lr(summary), "no trial has both an LR and a test accuracy"),
        "lr_finder": (plot_lr_finders(trials, rows, summary.get("optimizers")),
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
