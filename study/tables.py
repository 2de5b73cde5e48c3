"""The report's tables: the summary's numbers as pandas DataFrames of strings, and their text.

Each function takes what `study.analysis.summarize` computed (a setting, or the whole summary)
and returns one table; `markdown_table` and `format_table` are the two ways a table is written
(report.md, the terminal). The prose around the tables is study/report.py's; the sentences
that judge, study/verdicts.py's.
"""

from __future__ import annotations

import math

import pandas as pd

from study.config import is_accuracy, test_metric
from study.experiment import TRIAL_COLUMNS


def fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _node(t: dict) -> str:
    return t.get("node_ip") or (t.get("node_id") or "-")[:8]


def shown_arm(t: dict) -> str:
    """finder, finder:<rule>, cyclic ... as keyed; manual trials just 'manual' (the LR has its column)."""
    return "manual" if t.get("arm") == "manual" else (t.get("arm_key") or t.get("arm") or "?")


def table_frame(summary: dict, markdown: bool = False, trials: list[dict] | None = None) -> pd.DataFrame:
    """The comparison table as strings, one row per trial (`trials`: a subset, default all).

    A `setting` column appears when the study has several settings (optimisers, ...), a `seed` column in the
    terminal table when it has several seeds (the markdown table always has it).
    """
    every = summary.get("trials", [])
    trials = every if trials is None else trials
    metrics = list(dict.fromkeys(t.get("metric") or "val_acc" for t in trials)) or ["val_acc"]
    vals, tests = [m for m in metrics if m != "val_loss"], [test_metric(m) for m in metrics if m != "val_loss"]
    cols = ["arm", "lr", "status", "epochs", *vals, *tests, "time_s", "time_to_target_s", "node"]
    if markdown:
        cols = (cols[:3] + ["seed", "epochs", *vals, "val_loss", *tests, "test_loss", "flops"]
                + ["time_s", "time_to_target_s", "node", "trial_id", "error"])
    elif len({t.get("seed") for t in every}) > 1:
        cols.insert(2, "seed")
    if len({t.get("setting") for t in every}) > 1 and len({t.get("setting") for t in trials}) > 1:
        cols.insert(0, "setting")
    spec = {"lr": ".3g", "flops": ".3g", "val_loss": ".4f", "test_loss": ".4f", "time_s": ".1f", "time_to_target_s": ".1f",
            "epochs": "d", **{m: value_spec(m) for m in (*vals, *tests)}}
    special = {"node": _node, "arm": shown_arm}
    rows = []
    for t in trials:
        rows.append({c: special[c](t) if c in special else fmt(t.get(c), spec.get(c, "")) for c in cols})
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


def value_spec(metric: str) -> str:
    """A metric's format in the trial tables: an accuracy as a fraction, .4f; anything else, 4 significant digits."""
    return ".4f" if is_accuracy(metric) else ".4g"


def metric_header(metric: str) -> str:
    """A metric's column, named as logged: 'test_acc % [95% CI]' (an accuracy, in percent), 'test_mae [95% CI]'."""
    return f"{metric}{' %' if is_accuracy(metric) else ''} [95% CI]"


def metric_ci(d: dict | None, metric: str, signed: bool = False) -> str:
    """A metric's mean and 95 % interval: an accuracy in percent ('89.60 [88.90, 90.30]'), anything
    else as a plain number, 4 significant digits; `signed`: a difference ('+0.40', '-0.01234')."""
    if is_accuracy(metric):
        return mean_ci(d, 100, "+.2f" if signed else ".2f")
    return mean_ci(d, 1, "+.4g" if signed else ".4g")


def metric_value(x: float, metric: str, signed: bool = False) -> str:
    """One value of a metric: '89.60 %' for an accuracy, '0.1234' otherwise; `signed`: a difference,
    '+0.40 points' for an accuracy."""
    if is_accuracy(metric):
        return f"{100 * x:{'+' if signed else ''}.2f}" + (" points" if signed else " %")
    return f"{x:{'+' if signed else ''}.4g}".replace("e+", "e")


def flops(x) -> str:
    """A count of FLOPs, short: '1.31e12' ('-' for none)."""
    return "-" if x is None else f"{x:.3g}".replace("e+", "e")


def mean_ci(d: dict | None, scale: float = 1.0, spec: str = ".2f") -> str:
    """'88.50 [87.90, 89.10]': the mean and its 95 % interval (none with one value)."""
    if not d or d.get("mean") is None:
        return "-"
    text = format(d["mean"] * scale, spec)
    if d.get("ci95"):
        lo, hi = d["ci95"]
        text += f" [{lo * scale:{spec}}, {hi * scale:{spec}}]"
    return text.replace("e+", "e")


def lr_cell(lr: dict) -> str:
    if not lr or lr.get("mean") is None:
        return "-"
    if lr["min"] == lr["max"]:
        return f"{lr['mean']:.3g}"
    return f"{lr['mean']:.3g} ({lr['min']:.3g} to {lr['max']:.3g})"


def pair_cell(pair: dict | None) -> str:
    """'+0.40 [-0.20, 1.00] points, p=0.21, n=3' for a paired comparison of accuracies ('+0.01234
    [...]' for another metric), '-' without pairs."""
    if not pair or not pair.get("n"):
        return "-"
    metric = pair.get("metric", "test_acc")
    text = metric_ci(pair[f"{metric}_diff"], metric, signed=True) + (" points" if is_accuracy(metric) else "")
    if pair.get("p_value") is not None:
        text += f", p={pair['p_value']:.2g}"
    return text + f", n={pair['n']}"


def arms_frame(setting: dict) -> pd.DataFrame:
    """One row per arm of a setting: n, LR, means with 95 % intervals of its test and validation
    metric (`setting["metric"]`, val_acc by default), and the paired difference."""
    metric = setting.get("metric", "val_acc")
    tested = test_metric(metric)
    loss = tested != "test_loss"  # the test loss has its own column, unless it is the metric
    cols = ["arm", "n", "lr", metric_header(tested), metric_header(metric), *(["test_loss"] if loss else []), "FLOPs",
            "time_s", f"{tested} vs best manual"]
    rows = []
    for key, a in (setting.get("arms") or {}).items():
        picks = ", ".join(f"{p['lr']:.3g}" for p in a.get("picks", []) if p["lr"])  # a Bayesian search's, by seed
        rows.append([f"manual (= {a['chosen']})" if key == "manual" else key, f"{a['n']}/{a['n_trials']}",
                     picks or lr_cell(a["lr"]), metric_ci(a.get(tested), tested), metric_ci(a.get(metric), metric),
                     *([mean_ci(a.get("test_loss"), 1, ".4f")] if loss else []), mean_ci(a.get("flops"), 1, ".3g"),
                     mean_ci(a["time_s"], 1, ".1f"), pair_cell((setting.get("vs_best_manual") or {}).get(key))])
    return pd.DataFrame(rows, columns=cols)


def strategies_frame(setting: dict) -> pd.DataFrame:
    """Every strategy's compute against its test metric, means with 95 % intervals over seeds; the
    compute to target 'n/a' where the setting has no target."""
    tested = test_metric(setting.get("metric", "val_acc"))
    cols = ["strategy", "seeds", "FLOPs per seed [95% CI]", "s per seed [95% CI]", metric_header(tested),
            "FLOPs to target", "s to target", "reached target"]
    aimed = setting.get("target", 0) is not None  # an older summary: its study's target_acc
    rows = [[r["strategy"], len(r["seeds"]), mean_ci(r.get("compute_flops"), 1, ".3g"), mean_ci(r["compute_s"], 1, ".1f"),
             metric_ci(r.get(tested), tested), *([mean_ci(r.get("compute_to_target_flops"), 1, ".3g"),
             mean_ci(r["compute_to_target_s"], 1, ".1f"), f"{r['reached_target']}/{len(r['seeds'])}"] if aimed else ["n/a"] * 3)]
            for r in setting["strategies"]]
    return pd.DataFrame(rows, columns=cols)


def rules_frame(setting: dict) -> pd.DataFrame:
    """The finder rules compared, one row per finder arm (empty below two)."""
    arms = setting.get("arms") or {}
    keys = [k for k in arms if k.split(":")[0] == "finder"]
    tested = test_metric(setting.get("metric", "val_acc"))
    cols = ["rule", "arm", "LR per seed", metric_header(tested), "vs best manual", "vs `finder`"]
    rows = []
    for k in keys if len(keys) >= 2 else []:
        a = arms[k]
        lrs = ", ".join(f"{s}: {v:.3g}" for s, v in zip(a["lr"]["seeds"], a["lr"]["values"])) or "-"
        rows.append([a.get("rule") or "?", k, lrs, metric_ci(a.get(tested), tested),
                     pair_cell((setting.get("vs_best_manual") or {}).get(k)),
                     "(reference)" if k == "finder" else pair_cell((setting.get("vs_finder") or {}).get(k))])
    return pd.DataFrame(rows, columns=cols)


def range_tests_frame(setting: dict) -> pd.DataFrame:
    """Every rule's pick, seed by seed, on the range test's true curve and on Lightning's recorded one
    (empty without range tests)."""
    tests = setting.get("range_tests") or []
    if not tests:
        return pd.DataFrame()
    rules = list(tests[0]["suggestions"])
    seeds = [t["seed"] for t in tests]
    rows = [[rule] + [" / ".join(fmt(t[key].get(rule), ".3g") for t in tests)
                      for key in ("suggestions", "suggestions_lightning_curve")] for rule in rules]
    cols = ["rule", f"true curve (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})", "Lightning's recorded curve"]
    return pd.DataFrame(rows, columns=cols)
