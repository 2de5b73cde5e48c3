"""The report of an analysed experiment: summary.json, comparison.csv, report.md and the figures.

`write_report(exp_dir, experiment, summary)` writes what `study.analysis` computed and reads
nothing from disk: the tables come from study/tables.py, the verdict sentences from
study/verdicts.py, the figures from study/figures/; this module adds report.md's prose, one
section per setting (an optimiser, ...): its verdicts, its arms with means and 95 % intervals over
seeds, its strategies, the finder rules compared when there are several, every rule's pick on
each range test, and its trials. Every file is written whole or not at all
(`trainables.files.write_atomic`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from study.experiment import Experiment
from study.figures import FIGURES, write_figures
from study.tables import (arms_frame, comparison_frame, flops, fmt, markdown_table, metric_value, range_tests_frame,
                          rules_frame, shown_arm, strategies_frame, table_frame)
from study.config import is_accuracy, test_metric
from study.verdicts import verdicts, words
from trainables.files import write_atomic

OUTPUTS = ("summary.json", "comparison.csv", "report.md", *(f for f, _ in FIGURES.values()))  # every file written


def _section(title: str, text: str, table: pd.DataFrame) -> list[str]:
    """The one way report.md shows a table: a heading, what the table says, the table."""
    if table.empty:
        return []
    return [f"### {title}", "", text, "", markdown_table(table), ""]


def _rules_lines(setting: dict) -> list[str]:
    table = rules_frame(setting)
    tested, mode = test_metric(setting.get("metric", "val_acc")), setting.get("mode", "max")
    unit = "in points of test accuracy" if tested == "test_acc" else f"in {'points of ' if is_accuracy(tested) else ''}{tested}"
    lines = _section("Finder rules", "One finder arm per rule; `finder` is the primary (first) rule. LR per seed is "
                     f"`seed: lr`. Differences are paired by seed, {unit}; an interval that contains "
                     "0 means the seeds do not separate the two.", table)
    arms = setting.get("arms") or {}
    means = {k: arms[k][tested]["mean"] for k in table.get("arm", []) if (arms[k].get(tested) or {}).get("mean") is not None}
    top = (max if mode == "max" else min)(means, key=means.get, default=None)
    if top is not None:
        lines += [f"{'Highest' if mode == 'max' else 'Lowest'} mean {words(tested)}: `{top}` ({metric_value(means[top], tested)}).", ""]
    return lines


def _setting_lines(summary: dict, label: str, setting: dict, sentences: list[str]) -> list[str]:
    trials = [t for t in summary["trials"] if t["setting"] == label]
    c = setting["compute"]
    named = ", ".join(f"{d} {setting[d]}" for d in summary.get("dimensions", ["optimizer"]))
    lines = [f"## Setting: {label} ({named})", "", "**Verdict.** " + sentences[0], ""]
    lines += [f"- {v}" for v in sentences[1:]] + ([""] if sentences[1:] else [])
    if not trials:
        return lines
    lines += _section("Arms", f"Compute per seed: finder arm {flops(c.get('finder_flops'))} FLOPs in "
                      f"{fmt(c['finder_time_s'], '.1f')} s (range test included), whole manual search "
                      f"{flops(c.get('manual_search_flops'))} FLOPs in {fmt(c['manual_search_time_s'], '.1f')} s (all "
                      "manual trials of a seed, every status).", arms_frame(setting))
    lines += _section("Strategies: compute against accuracy",
                      "A strategy is one way to a trained model: a finder rule or cyclic (range test plus one training), a "
                      "learning-rate-free optimiser (one training), or the manual search as a whole (every trial it ran; it "
                      f"delivers its trial with the best {words(setting['metric'])}). Compute is the work counted per seed, "
                      "in FLOPs (training, range test and evaluation; torch's FlopCounterMode per step, times the steps "
                      "taken), and the seconds it took on this host; compute to target counts, in the order things ran, "
                      + (f"until a model first reached the target {words(setting['metric'])}." if setting["target"] is not None
                         else "until a model first reached the target: not applicable, this setting has no target."),
                      strategies_frame(setting))
    lines += _rules_lines(setting)
    lines += _section("Range tests: every rule's pick",
                      "Each seed's range test, read by every rule: on the true curve (the raw losses, correctly debiased "
                      "EMA), which the finder arms train with, and on the curve Lightning 2.6 records (debiased one step "
                      "late). `lightning` is Lightning's own `suggestion()` and always reads Lightning's curve; `steepest` "
                      "on Lightning's curve is what Lightning < 2.5.3 suggested.", range_tests_frame(setting))
    lines += ["### Trials", "", markdown_table(table_frame(summary, markdown=True, trials=trials)), ""]
    return lines


def render_markdown(summary: dict, figures: dict[str, str]) -> str:
    """report.md; `figures` maps a figure key to its file name, or to the reason it was skipped."""
    cfg = summary["config"]
    said = verdicts(summary)
    measures = {(s["metric"], s["mode"], s["target"]) for s in summary["settings"].values()}
    if len(measures) > 1:
        compared = "value of its setting's validation metric, in that metric's direction (each setting's section names it),"
        to_target = "until the setting's metric first reached its target, where it has one"
    else:
        [(metric, mode, target)] = measures
        compared = words(metric) + ("" if mode == "max" else " (lowest)")
        to_target = (f"until `{metric}` first reached {target}" if target is not None
                     else "not applicable (no target set)")
    lines = [f"# LR finder vs manual LR search: {summary['experiment']}", "",
             "**Verdict.** " + " ".join(s[0] for s in said.values()), "",
             "How to read it: every arm ran once per seed. `finder` is the LR finder with the primary rule, "
             "`finder:<rule>` with another rule, `cyclic` a cyclical LR between the range the finder found "
             "(its LR in tables and figures is the top of the cycle), `manual:<lr>` one manual LR, and `manual` "
             f"the manual LR with the best mean last-epoch {compared} over the seeds (finished trials "
             "only; never chosen by test accuracy; for a Bayesian search, whose seeds try different LRs, each "
             "seed's best manual trial by the same rule). Means come with 95 % Student-t intervals over seeds; "
             "differences are paired by seed, with a paired t-test (scipy's ttest_1samp and ttest_rel). `n` "
             "counts finished trials of all trials in the arm. Compute is work, counted: the FLOPs a trial computed "
             "(training, range test and evaluation), which do not depend on the host; seconds (`time_s`: range "
             "test + training) are shown beside them. The finder arm is compared with the whole manual search of "
             f"one seed. Compute to target: {to_target} (the range test "
             "included for the finder and cyclic arms).", ""]
    keys = ("preset", "search", "optimizer", "lr_schedule", "seeds", "seed", "arms", "finder_rules", "epochs", "batch_size")
    shown = {**{k: cfg[k] for k in keys if cfg.get(k) is not None},
             **({k: summary[k] for k in ("metric", "mode", "target")} if len(measures) == 1 else {})}
    for key, field in (("epochs", "param_epochs"), ("batch_size", "batch_size")):  # as the trials ran (task defaults)
        ran = sorted({t[field] for t in summary["trials"] if t.get(field) is not None})
        if ran:
            shown[key] = ran[0] if len(ran) == 1 else ran
    lines += ["Setup: " + ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()), ""]
    for label, setting in summary["settings"].items():
        lines += _setting_lines(summary, label, setting, said[label])
    if not summary["trials"]:
        lines += ["_No trials found._", ""]
    lines += ["## Figures", ""]
    drawn = [(key, title) for key, (_, title) in FIGURES.items() if key in figures]  # an OPTIONAL one only with data
    for i, (key, title) in enumerate(drawn, start=1):
        if len(measures) == 1 and metric != "val_acc":  # the figures' titles name the study's metric
            title = (title.replace("Test accuracy", test_metric(metric)).replace("test accuracy", test_metric(metric))
                     .replace("validation accuracy", metric))
        elif len(measures) > 1:
            title = title.replace("accuracy", "metric")
        title, fig = f"Figure {i}: {title}", figures[key]
        lines += [f"### {title}", "", f"![{title}]({fig})" if fig.endswith(".png") else f"_Skipped: {fig}._", ""]
    errors = [t for t in summary["trials"] if t["error"]]
    if errors:
        lines += ["## Errors", ""] + [f"- {t['setting']} {shown_arm(t)} lr={fmt(t['lr'], '.3g')} "
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
    names = write_figures(exp_dir, experiment, summary)
    written.update({key: exp_dir / name for key, name in names.items() if name.endswith(".png")})
    write_atomic(exp_dir / "report.md", render_markdown(summary, names))
    written["report"] = exp_dir / "report.md"
    return written
