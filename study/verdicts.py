"""The verdicts: the sentences that judge each setting, from the summary's numbers alone.

Per setting (`summary["settings"]`, by label): which strategy is the cheapest way to the manual
search's accuracy (`strategy_verdict`), then one sentence per arm against the best manual LR
(`setting_verdict`). The console prints them, report.md and summary.json carry them.
"""

from __future__ import annotations

from study.analysis import SEARCH_PICKS
from study.tables import flops, mean_ci


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
    d = pair["test_acc_diff"]
    s = f"{head}: {100 * d['mean']:+.2f}"
    if d["ci95"] is not None:
        s += f" ± {100 * (d['ci95'][1] - d['ci95'][0]) / 2:.2f}"
    s += f" points of test accuracy over {pair['n']} seed{'s' if pair['n'] != 1 else ''}"
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
    return s + "."


def _ratio(r: float) -> str:
    return f", {r:.1f}x less compute" if r >= 1 else f", {1 / r:.1f}x more compute"


def _reaches(row: dict, bar: float) -> bool:
    """A strategy's test accuracy reaches `bar` within its 95 % interval (its mean, from one seed)."""
    acc = row["test_acc"]
    return acc["mean"] is not None and (acc["ci95"][1] if acc["ci95"] else acc["mean"]) >= bar


def strategy_verdict(setting: dict) -> str:
    """'sgd: the cheapest strategy that reaches the grid search's test accuracy (89.60 %) within its
    interval: finder:valley, 89.20 % [86.40, 92.00], 1.31e12 FLOPs of compute per seed against 6.48e12
    (4.9x less; ...)'. Compute is counted work; seconds only for an experiment without it."""
    name, rows = setting["label"], setting["strategies"]
    search = next((r for r in rows if r["kind"] == "search"), None)
    if search is None or search["test_acc"]["mean"] is None:
        return f"{name}: no manual search delivered a tested model, so no strategy can be measured against one."
    bar = search["test_acc"]["mean"]
    head = f"{name}: the cheapest strategy that reaches the {search['strategy']}'s test accuracy ({100 * bar:.2f} %)"
    counted = search.get("compute_flops", {}).get("mean") is not None  # else: from before work was counted
    key, show = ("compute_flops", lambda x: f"{flops(x)} FLOPs") if counted else ("compute_s", lambda x: f"{x:.1f} s")
    cheapest = min((r for r in rows if _reaches(r, bar) and r[key]["mean"] is not None), key=lambda r: r[key]["mean"])
    own, whole = cheapest[key]["mean"], search[key]["mean"]
    secs = f"; {cheapest['compute_s']['mean']:.1f} s against {search['compute_s']['mean']:.1f} s on this host" if (
        counted and cheapest["compute_s"]["mean"] and search["compute_s"]["mean"]) else ""
    if cheapest is search:
        return f"{head} within its interval is the search itself ({show(whole)} of compute per seed): nothing cheaper reaches it."
    return (f"{head} within its interval: {cheapest['strategy']}, {mean_ci(cheapest['test_acc'], 100)} %, "
            f"{show(own)} of compute per seed against {show(whole)} ({whole / own:.1f}x less{secs}), "
            f"over {cheapest['test_acc']['n']} seed{'s' if cheapest['test_acc']['n'] != 1 else ''}.")


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
