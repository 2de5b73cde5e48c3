"""The verdicts: the sentences that judge each setting, from the summary's numbers alone.

Per setting (`summary["settings"]`, by label): which strategy is the cheapest way to the manual
search's accuracy (`strategy_verdict`), then one sentence per arm against the best manual LR
(`setting_verdict`), each on the setting's own metric in its direction (`setting["metric"]`,
`mode`). A verdict claims no more than its seeds show: with one seed it gives the difference and
says one seed cannot separate two strategies; with more, a winner only where the 95 % interval
of the paired difference excludes zero. The console prints them, report.md and summary.json carry them.
"""

from __future__ import annotations

from study.analysis import SEARCH_PICKS, sign
from study.config import is_accuracy, test_metric
from study.tables import flops, metric_ci, metric_value

ONE_SEED = "one seed cannot separate two strategies"
WORDS = {"test_acc": "test accuracy", "val_acc": "validation accuracy"}  # else a metric is named as logged


def words(metric: str) -> str:
    return WORDS.get(metric, metric)


def _spread(d: dict, metric: str) -> str:
    """' ± 0.60' (half the 95 % interval, in the difference's units), '' without one."""
    if d["ci95"] is None:
        return ""
    half = (d["ci95"][1] - d["ci95"][0]) / 2
    return f" ± {100 * half:.2f}" if is_accuracy(metric) else f" ± {half:.4g}"


def _separates(d: dict, mode: str) -> str:
    """What the paired interval shows: which is better, or that the seeds do not separate them."""
    if d["ci95"] is None:
        return ONE_SEED if d["n"] == 1 else ""
    lo, hi = d["ci95"]
    if lo <= 0 <= hi:
        return "the interval contains 0: the seeds do not separate the two"
    return "better than best manual" if sign(mode) * d["mean"] > 0 else "worse than best manual"


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
    name, arms, best = setting["label"], setting["arms"], setting["best_manual"]
    if not setting["n_trials"]:
        return f"{name}: no trials."
    finder = arms.get(key)
    label = _arm_label(key, finder)
    trials = [t for t in summary["trials"] if t["setting"] == name]
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
        return f"{name}: " + "; ".join(problems) + f", so {label} and best manual cannot be compared."
    pair, manual = setting["vs_best_manual"][key], arms["manual"]
    picks = ", ".join(f"{p['lr']:.3g}" for p in manual.get("picks", []) if p["lr"])
    head = f"{name}: {label} vs " + (f"each seed's best manual trial (lr {picks})" if best == SEARCH_PICKS
                                    else f"best manual (lr={manual['lr']['mean']:.3g})")
    if pair["n"] == 0:
        return (f"{head}: they finished on no common seed ({label}: {_seeds(finder['seeds'])}; "
                f"manual: {_seeds(manual['seeds'])}), so they cannot be compared seed by seed.")
    tested = pair.get("metric", "test_acc")
    d = pair[f"{tested}_diff"]
    if is_accuracy(tested):
        s = f"{head}: {100 * d['mean']:+.2f}{_spread(d, tested)} points of {words(tested)}"
    else:
        s = f"{head}: {d['mean']:+.4g}{_spread(d, tested)} {words(tested)} ({setting.get('mode', 'max')}imised)"
    s += f" over {pair['n']} seed{'s' if pair['n'] != 1 else ''}"
    if pair["p_value"] is not None:
        s += f" (paired t-test p = {pair['p_value']:.2g})"
    elif pair["n"] >= 2 and d["std"] == 0:
        s += " (the same difference on every seed)"
    c = setting["compute"]
    work, whole = finder["flops"]["mean"], c.get("manual_search_flops")
    secs, whole_secs = finder["time_s"]["mean"], c["manual_search_time_s"]
    seconds = f"{secs:.1f} s vs {whole_secs:.1f} s" if secs and whole_secs else None
    if work and whole:  # the ratio is of work, counted; the seconds say what it took on this host
        s += _ratio(whole / work) + f" ({flops(work)} vs {flops(whole)} FLOPs for the whole manual search, per seed" + (
            f"; {seconds})" if seconds else ")")
    elif seconds:  # an experiment from before work was counted
        s += _ratio(whole_secs / secs) + f" ({seconds} for the whole manual search, per seed)"
    if finder["n"] < finder["n_trials"]:
        s += (f"; {finder['n_trials'] - finder['n']} of {finder['n_trials']} {label} trials did not finish "
              f"({_status_counts(finder)})")
    shown = _separates(d, setting.get("mode", "max"))  # what the seeds show, and no more
    return s + (f": {shown}." if shown else ".")


def _ratio(r: float) -> str:
    return f", {r:.1f}x less compute" if r >= 1 else f", {1 / r:.1f}x more compute"


def _reaches(row: dict, bar: float, tested: str, mode: str) -> bool:
    """A strategy's test metric reaches `bar` within its 95 % interval, in the metric's direction
    (never from one seed: without an interval nothing is shown)."""
    d = row.get(tested) or {}
    if d.get("mean") is None or not d.get("ci95"):
        return False
    return (d["ci95"][1] >= bar) if mode == "max" else (d["ci95"][0] <= bar)


AS_CHEAP = 1.10  # strategies within 10 % of the least compute count as equally cheap


def _cheapest(rows: list[dict], key: str, tested: str, mode: str) -> dict:
    """The cheapest row; among those as cheap (within `AS_CHEAP`: finder rules share one range test
    and one training length, so they cost the same), the one with the best mean test metric, not the
    first listed."""
    least = min(r[key]["mean"] for r in rows)
    cheap = [r for r in rows if r[key]["mean"] <= AS_CHEAP * least]
    return max(cheap, key=lambda r: sign(mode) * r[tested]["mean"])


def strategy_verdict(setting: dict) -> str:
    """'sgd: the cheapest strategy that reaches the grid search's test accuracy (89.60 %) within its
    interval: finder:valley, 89.20 % [86.40, 92.00], 1.31e12 FLOPs of compute per seed against 6.48e12
    (4.9x less; ...)', on the setting's test metric in its direction. With one seed, no interval: the
    cheapest strategy, its difference from the search, and that one seed cannot separate them.
    Among strategies as cheap as the cheapest (within 10 %: every finder rule costs the same), the
    most accurate is named, with one seed or more: a wide interval alone does not win, nor the
    rule listed first.
    Compute is counted work; seconds only for an experiment without it."""
    name, rows = setting["label"], setting["strategies"]
    tested, mode = test_metric(setting.get("metric", "val_acc")), setting.get("mode", "max")
    search = next((r for r in rows if r["kind"] == "search"), None)
    if search is None or (search.get(tested) or {}).get("mean") is None:
        return f"{name}: no manual search delivered a tested model, so no strategy can be measured against one."
    bar = search[tested]["mean"]
    counted = search.get("compute_flops", {}).get("mean") is not None  # else: from before work was counted
    key, show = ("compute_flops", lambda x: f"{flops(x)} FLOPs") if counted else ("compute_s", lambda x: f"{x:.1f} s")
    measured = [r for r in rows if (r.get(tested) or {}).get("mean") is not None and r[key]["mean"] is not None]
    if search[tested]["ci95"] is None:  # one seed: no interval, so no strategy can be said to reach another
        others = [r for r in measured if r is not search]
        if not others:
            return f"{name}: the {search['strategy']} delivered {words(tested)} {metric_value(bar, tested)}, on one seed; no other strategy to compare."
        cheapest = _cheapest(others, key, tested, mode)
        own, whole = cheapest[key]["mean"], search[key]["mean"]
        ratio = _ratio(whole / own) if whole and own else ""
        return (f"{name}: on one seed, the cheapest strategy besides the search, {cheapest['strategy']} ({show(own)} per seed), delivered "
                f"{words(tested)} {metric_value(cheapest[tested]['mean'], tested)} against the {search['strategy']}'s "
                f"{metric_value(bar, tested)} ({metric_value(cheapest[tested]['mean'] - bar, tested, signed=True)}"
                f"{ratio}): {ONE_SEED}.")
    head = f"{name}: the cheapest strategy that reaches the {search['strategy']}'s {words(tested)} ({metric_value(bar, tested)})"
    cheapest = _cheapest([r for r in measured if _reaches(r, bar, tested, mode)], key, tested, mode)
    own, whole = cheapest[key]["mean"], search[key]["mean"]
    secs = f"; {cheapest['compute_s']['mean']:.1f} s against {search['compute_s']['mean']:.1f} s on this host" if (
        counted and cheapest["compute_s"]["mean"] and search["compute_s"]["mean"]) else ""
    if cheapest is search:
        return (f"{head} within its interval is the search itself ({show(whole)} of compute per seed): no cheaper "
                "strategy's interval reaches it.")
    unit = " %" if is_accuracy(tested) else ""
    return (f"{head} within its interval: {cheapest['strategy']}, {metric_ci(cheapest[tested], tested)}{unit}, "
            f"{show(own)} of compute per seed against {show(whole)} ({whole / own:.1f}x less{secs}), "
            f"over {cheapest[tested]['n']} seed{'s' if cheapest[tested]['n'] != 1 else ''}.")


def verdicts(summary: dict) -> dict[str, list[str]]:
    """Per setting: which strategy is the cheapest way to the manual search's accuracy, then one
    sentence per arm against the best manual LR (the finder rules, cyclic, learning-rate-free arms)."""
    out = {}
    for name, setting in summary["settings"].items():
        keys = [k for k in setting["arms"] if not k.startswith("manual")] or ["finder"]
        out[name] = [strategy_verdict(setting)] + [setting_verdict(summary, setting, k) for k in keys]
    return out


def verdict_lines(summary: dict) -> list[str]:
    return [line for lines in verdicts(summary).values() for line in lines]
