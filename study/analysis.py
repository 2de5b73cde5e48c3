"""One analysis of an experiment: the statistics, on top of the tables study/experiment.py reads.

`summarize(experiment)` turns an `Experiment` (`load(exp_dir)`) into summary.json's numbers with
pandas and scipy. Per setting (one value of each of the study's dimensions,
`study.config.DIMENSIONS`: an optimiser, ...): each arm's mean and 95 % t-interval over seeds, the
best manual LR (the one rule: the best mean of the setting's validation metric in its direction,
`measure`, val_acc maximised by default; ties to the lower mean validation loss, then the lower LR; for a Bayesian search, whose seeds try different LRs, each
seed's best manual trial by the same rule), every other arm minus it paired by seed, and compute,
as work counted (FLOPs) and as seconds. The sentences are the report's.

In the summary, `manual` is the best manual LR (or, when no manual LR ran on two seeds, as in a
Bayesian search, each seed's best manual trial: `picks`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from study.config import DIMENSIONS, metric_settings, test_metric
from study.experiment import (RANGE_TEST_ARMS, STATUSES, TRIAL_COLUMNS, Experiment, NotAnExperiment, load, num,
                              settings_of)

__all__ = ["Experiment", "NotAnExperiment", "TRIAL_COLUMNS", "load", "summarize"]

SEARCH_PICKS = "each seed's best manual trial"  # the best manual, when the seeds tried different LRs
CONFIDENCE = 0.95
COSTS = ("time_s", "train_time_s", "time_to_target_s", "flops", "flops_to_target")
ARM_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", *COSTS)  # the default setting's (val_acc)


def arm_metrics(metric: str = "val_acc") -> tuple[str, ...]:
    """What an arm's stats hold, keyed under the logged names: the test counterpart of `metric`,
    test_loss, `metric`, val_loss, then the compute."""
    return tuple(dict.fromkeys((test_metric(metric), "test_loss", metric, "val_loss", *COSTS)))


def sign(mode: str) -> int:
    """+1 where higher is better (max), -1 where lower is (min): `sign * value` is better when larger."""
    return 1 if mode == "max" else -1


def measure(trials: pd.DataFrame, config: dict, metric: str | None = None, mode: str | None = None,
            target: float | None = None) -> dict:
    """What a setting compares on: `metric`, `test_metric`, `mode`, `target`. Its trials' own (their
    configs carry them; a setting's task fixes them), else the study's (`metric_settings`: an
    older study's val_acc and target_acc); `metric`, `mode`, `target` given override them."""
    own = metric_settings(config)
    if len(trials) and "metric" in trials and isinstance(trials["metric"].iloc[0], str):
        first = trials.iloc[0]
        own = {"metric": first["metric"], "mode": first["mode"], "target": num(first["target"])}
    if metric is not None:
        own = {**own, "metric": metric}
    if mode is not None:
        own = {**own, "mode": mode}
    if target is not None:
        own = {**own, "target": target}
    return {"metric": own["metric"], "test_metric": test_metric(own["metric"]), "mode": own["mode"], "target": own["target"]}


def _column(trials: pd.DataFrame, metric: str) -> pd.Series:
    return pd.to_numeric(trials[metric], errors="coerce") if metric in trials else pd.Series(np.nan, index=trials.index)


def describe(values) -> dict:
    """n, mean, sample std, 95 % t-interval of the mean (`ttest_1samp(...).confidence_interval`),
    min, max and the values; None and non-finite values dropped. No interval below n = 2; with
    zero spread it is [mean, mean]."""
    v = [x for x in map(num, values) if x is not None]
    out = {"n": len(v), "mean": None, "ci95": None, "std": None, "min": None, "max": None, "values": v}
    if v:
        out.update(mean=float(np.mean(v)), min=min(v), max=max(v))
    if len(v) >= 2:
        out["std"] = float(np.std(v, ddof=1))
        with warnings.catch_warnings():  # nearly equal values: scipy warns of precision loss
            warnings.simplefilter("ignore", RuntimeWarning)
            out["ci95"] = _interval(stats.ttest_1samp(v, 0.0), out["mean"], out["std"])
    return out


def _interval(test, mean: float, std: float) -> list[float]:
    if std == 0:  # scipy's interval is NaN without spread
        return [mean, mean]
    ci = test.confidence_interval(CONFIDENCE)
    return [float(ci.low), float(ci.high)]


def arm_stats(group: pd.DataFrame, metrics: tuple[str, ...] = ARM_METRICS) -> dict:
    """One arm of one setting (one trial per seed): `n` and every metric count finished trials; `lr`
    counts every trial that has one (a finder trial that diverged still shows the LR it picked)."""
    group = group.sort_values("seed", kind="stable")
    done = group[group["status"] == "finished"]
    with_lr = group[group["lr"].notna()]
    lr = describe(with_lr["lr"])
    lr["geomean"] = float(stats.gmean(lr["values"])) if lr["values"] and lr["min"] > 0 else None
    lr["seeds"] = with_lr["seed"].tolist()
    out = {"n": len(done), "n_trials": len(group),
           "n_by_status": {s: int((group["status"] == s).sum()) for s in STATUSES},
           "seeds": done["seed"].tolist(), "lr": lr, **{m: describe(_column(done, m)) for m in metrics}}
    if group["arm"].iloc[0] in RANGE_TEST_ARMS:
        out["rule"] = group["finder_rule"].iloc[0]
        out["finder_time_s"] = describe(done["finder_time_s"])
    return out


def _keys(metric: str, mode: str) -> tuple[list[str], list[bool]]:
    """The best manual's sort: `metric` in its direction, then the lower val_loss, then the lower LR."""
    keys = list(dict.fromkeys([metric, "val_loss", "lr"]))
    return keys, [mode == "min"] + [True] * (len(keys) - 1)


def _manual_done(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    done = trials.assign(**{metric: _column(trials, metric)})
    return done[(done["arm"] == "manual") & (done["status"] == "finished") & done[metric].notna()]


def best_manual_key(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> str | None:
    """THE rule for the best manual LR: the best mean validation `metric` over seeds (finished
    trials) in its direction (`mode`), ties to the lower mean validation loss, then to the lower LR.
    Never a test metric."""
    done = _manual_done(trials, metric)
    if done.empty:
        return None
    keys, ascending = _keys(metric, mode)
    means = done.groupby("arm_key")[keys].mean()
    means["val_loss"] = means["val_loss"].fillna(math.inf)
    return means.sort_values(keys, ascending=ascending).index[0]


def search_picks(trials: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """The trial each seed's manual search delivers: the same rule within one seed, its finished
    trial with the best validation `metric`, ties to the lower validation loss, then the lower LR."""
    keys, ascending = _keys(metric, mode)
    return _manual_done(trials, metric).sort_values(["seed", *keys], ascending=[True, *ascending],
                                                    na_position="last").drop_duplicates("seed")


def seeds_share_lrs(trials: pd.DataFrame) -> bool:
    """Whether the seeds' manual searches tried common LRs (grid, ASHA), so that an LR has a mean over
    seeds; not for a Bayesian search, where each seed's search draws its own."""
    manual = trials[trials["arm"] == "manual"]
    return manual["seed"].nunique() < 2 or manual.groupby("arm_key")["seed"].nunique().max() > 1


def paired(a: pd.DataFrame, b: pd.DataFrame, against: str, metric: str = "test_acc") -> dict:
    """Arm a minus arm b, seed by seed, where both finished: mean difference, 95 % interval
    (`ttest_rel(...).confidence_interval`) and the paired t-test's p-value."""
    def by_seed(x):
        x = x.assign(**{metric: _column(x, metric)})
        done = x[(x["status"] == "finished") & x[metric].notna()]
        return done.drop_duplicates("seed").set_index("seed")[metric].astype(float)

    both = pd.concat({"a": by_seed(a), "b": by_seed(b)}, axis=1, join="inner").sort_index()
    diff = describe(both["a"] - both["b"])
    p_value = None
    if len(both) >= 2:
        with warnings.catch_warnings():  # zero spread: scipy warns and gives NaN
            warnings.simplefilter("ignore")
            test = stats.ttest_rel(both["a"], both["b"])
        p_value = num(test.pvalue)
        diff["ci95"] = _interval(test, diff["mean"], diff["std"])
    return {f"{metric}_diff": diff, "metric": metric, "p_value": p_value, "n": len(both), "seeds": both.index.tolist(),
            "against": against}


def setting_summary(label: str, setting: dict, trials: pd.DataFrame, measured: dict | None = None) -> dict:
    """Arms, best manual LR, paired comparisons and compute of one setting's trials, on its
    `measured` metric (`measure`; default val_acc, maximised)."""
    m = measured or measure(trials.iloc[:0], {})
    metric, mode, tested, metrics = m["metric"], m["mode"], m["test_metric"], arm_metrics(m["metric"])
    groups = {k: g for k, g in trials.groupby("arm_key", sort=False)}
    best = best_manual_key(trials, metric, mode)
    reference = groups.get(best)
    if best is not None and not seeds_share_lrs(trials):  # no LR has a mean over seeds: each seed's pick
        best, reference = SEARCH_PICKS, search_picks(trials, metric, mode)
    arms = {}
    for key, group in groups.items():  # trials are sorted: finder*, cyclic*, manual by LR
        if key.startswith("manual:") and best is not None and "manual" not in arms:
            arms["manual"] = {**arm_stats(reference, metrics), "chosen": best}
            if best == SEARCH_PICKS:  # out of the seeds that searched; each seed's pick, by seed
                arms["manual"]["n_trials"] = int(trials.loc[trials["arm"] == "manual", "seed"].nunique())
                arms["manual"]["picks"] = reference.assign(**{tested: _column(reference, tested)})[
                    ["seed", "lr", tested]].to_dict("records")
        arms[key] = arm_stats(group, metrics)
    others = [k for k in groups if not k.startswith("manual:")]  # finder rules, cyclic, learning-rate-free arms
    vs_best = {k: paired(groups[k], reference, best, tested) for k in others} if best else {}
    vs_finder = {k: paired(groups[k], groups["finder"], "finder", tested) for k in others
                 if k != "finder" and "finder" in groups}
    # The whole manual search of a seed costs every manual trial's compute, whatever its status.
    compute = {}
    for unit, column in (("time_s", "time_s"), ("flops", "flops")):
        search = trials[trials["arm"] == "manual"].groupby("seed")[column].sum(min_count=1).dropna()
        finder, whole = arms["finder"][column]["mean"] if "finder" in arms else None, float(search.mean()) if len(search) else None
        compute.update({f"finder_{unit}": finder, f"manual_search_{unit}": whole,
                        f"manual_search_{unit}_by_seed": [[s, float(t)] for s, t in search.items()],
                        f"manual_over_finder{'_flops' if unit == 'flops' else ''}": whole / finder if finder and whole else None})
    return {"label": label, **setting, **m, "n_trials": len(trials), "seeds": sorted(trials["seed"].unique().tolist()),
            "best_manual": best, "arms": arms, "paired": vs_best.get("finder"),
            "vs_best_manual": vs_best, "vs_finder": vs_finder,
            "compute": compute}


def search_progress(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Each seed's manual search as it ran, one row per reported epoch in time order: the seed, the
    compute all its trials had spent by then (each trial's training seconds so far, summed, and its
    FLOPs) and the best validation `metric` seen so far in its direction (`best_<metric>`)."""
    seed = trials.set_index("trial_id")["seed"]
    rows = epochs[epochs["trial_id"].isin(seed.index)].sort_values("report_ts", kind="stable")
    spent = rows.groupby("trial_id")[["train_time_s", "flops"]].diff().fillna(rows[["train_time_s", "flops"]])
    out = pd.DataFrame({"seed": rows["trial_id"].map(seed).to_numpy(), "s": spent["train_time_s"].astype(float).to_numpy(),
                        "flops": spent["flops"].astype(float).to_numpy(),
                        "value": sign(mode) * _column(rows, metric).astype(float).to_numpy()})
    by_seed = out.groupby("seed", sort=True)
    best = sign(mode) * by_seed["value"].cummax()  # in the metric's direction, back in its own units
    return out.assign(compute_s=by_seed["s"].cumsum(), compute_flops=by_seed["flops"].cumsum(),
                      **{f"best_{metric}": best})[["seed", "compute_s", "compute_flops", f"best_{metric}"]]


def strategies(trials: pd.DataFrame, epochs: pd.DataFrame, search: str, measured: dict) -> tuple[list[dict], dict]:
    """Every way to a trained model, compared per seed, as compute against accuracy.

    Each arm other than manual is one strategy, one trial per seed (a finder rule or cyclic: range
    test plus training; a learning-rate-free optimiser: one training). The manual search is one
    strategy as a whole: every trial it ran, whatever its status, delivering its trial with the
    validation metric (ties to the lower validation loss, then the lower LR). Per seed: the compute
    seconds spent, the delivered model's test metric, and the compute spent until a model first
    reached the target (none where `measured` has no target). `measured`: the setting's metric
    (`measure`). Returns the table (means and 95 % intervals over seeds, the test metric keyed by its
    logged name) and, per seed, the manual search's progress (`search_progress`)."""
    metric, mode, target, tested = measured["metric"], measured["mode"], measured["target"], measured["test_metric"]
    arms = trials[trials["arm"] != "manual"]
    per_seed = [pd.DataFrame({"strategy": arms["arm_key"], "seed": arms["seed"], "compute_s": arms["time_s"],
                              "to_target_s": arms["time_to_target_s"], "compute_flops": arms["flops"],
                              "to_target_flops": arms["flops_to_target"],
                              "tested": _column(arms, tested).where(arms["status"] == "finished")})]
    name, progress, best = f"{search} search", {}, f"best_{metric}"
    manual = trials[trials["arm"] == "manual"]
    if len(manual):
        run = search_progress(manual, epochs, metric, mode)
        hit = sign(mode) * run[best] >= sign(mode) * target if target is not None else pd.Series(False, index=run.index)
        reached = run[hit].groupby("seed")[["compute_s", "compute_flops"]].first()
        picks = search_picks(manual, metric, mode)
        chosen = _column(picks, tested).set_axis(picks["seed"])
        spent = manual.groupby("seed")[["time_s", "flops"]].sum(min_count=1)
        per_seed.append(pd.DataFrame({"strategy": name, "seed": spent.index, "compute_s": spent["time_s"].to_numpy(),
                                      "to_target_s": spent.index.map(reached["compute_s"]),
                                      "compute_flops": spent["flops"].to_numpy(),
                                      "to_target_flops": spent.index.map(reached["compute_flops"]),
                                      "tested": spent.index.map(chosen)}))
        progress = {seed: g[["compute_s", "compute_flops", best]].to_dict("list")
                    for seed, g in run.groupby("seed", sort=True)}
    table = []
    for key, rows in pd.concat(per_seed, ignore_index=True).groupby("strategy", sort=False):
        table.append({"strategy": key, "kind": "search" if key == name else "arm", "seeds": rows["seed"].tolist(),
                      "compute_s": describe(rows["compute_s"]), tested: describe(rows["tested"]),
                      "compute_to_target_s": describe(rows["to_target_s"]),
                      "compute_flops": describe(rows["compute_flops"]),
                      "compute_to_target_flops": describe(rows["to_target_flops"]),
                      "reached_target": int(rows["to_target_s"].notna().sum()) if target is not None else None})
    return table, progress


def range_tests(experiment: Experiment, trials: pd.DataFrame) -> list[dict]:
    """One range test per seed (a seed's finder and cyclic trials read the same curve): every
    rule's pick on the true curve and on the one Lightning records."""
    out = {}
    for t in trials[trials["trial_id"].isin(experiment.curves.keys())].itertuples():
        curve = experiment.curves[t.trial_id]
        out.setdefault(t.seed, {"seed": t.seed, "points": len(curve["lr"]), "finder_time_s": curve["finder_time_s"],
                                "suggestions": curve["suggestions"],
                                "suggestions_lightning_curve": curve["suggestions_lightning_curve"]})
    return [out[s] for s in sorted(out)]


def _flat(arm: dict | None) -> dict | None:
    """An arm's means, flat: summary.json's `finder` and `best_manual`."""
    if arm is None:
        return None
    out = {k: v["mean"] for k, v in arm.items() if isinstance(v, dict) and "mean" in v}
    return {**out, "n": arm["n"], "seeds": arm["seeds"], **({"chosen": arm["chosen"]} if "chosen" in arm else {})}


def time_to_target(trials: pd.DataFrame, epochs: pd.DataFrame, measured: dict) -> pd.DataFrame:
    """`trials` with `time_to_target_s` (training seconds until the metric first reached the target
    in its direction, the range test included) and `flops_to_target` (the FLOPs counted by then,
    cumulative, the range test and evaluation included); none without a target."""
    metric, target = measured["metric"], measured["target"]
    mine = epochs[epochs["trial_id"].isin(trials["trial_id"])]
    if target is None:
        mine = mine.iloc[:0]
    else:
        mine = mine[sign(measured["mode"]) * _column(mine, metric) >= sign(measured["mode"]) * target]
    hit = mine.groupby("trial_id")[["train_time_s", "flops"]].first()
    ids = trials["trial_id"]
    return trials.assign(time_to_target_s=(ids.map(hit["train_time_s"]) + trials["finder_time_s"].fillna(0.0)).astype(float),
                         flops_to_target=ids.map(hit["flops"]).astype(float))


def summarize(experiment: Experiment, target: float | None = None, metric: str | None = None,
              mode: str | None = None) -> dict:
    """summary.json's numbers. `settings` has one entry per setting (`settings_of`: an optimiser,
    ...), by label, each with the metric it compares on (`measure`: `metric`, `test_metric`, `mode`,
    `target`); the top-level `arms`, `paired`, `finder` (the primary finder arm's means),
    `best_manual` (the best manual LR's means), `metric`, `test_metric`, `mode` and `target` are the
    first setting's. `target`, `metric`, `mode`: every setting's, in place of its own."""
    config, epochs = experiment.config, experiment.epochs
    trials = experiment.trials
    by_setting = dict(tuple(trials.groupby("setting", sort=False))) if not trials.empty else {}
    settings, parts = {}, []
    for label, setting in settings_of(config, experiment.study.get("settings")).items():
        mine = by_setting.pop(label, trials.iloc[:0])
        measured = measure(mine, config, metric, mode, target)
        mine = time_to_target(mine, epochs, measured).assign(**{k: measured[k] for k in ("metric", "mode", "target")})
        parts.append(mine)
        table, progress = strategies(mine, epochs, config["search"], measured)
        settings[label] = {**setting_summary(label, setting, mine, measured), "range_tests": range_tests(experiment, mine),
                           "strategies": table, "search_progress": progress}
    trials = pd.concat([*parts, *by_setting.values()]) if len(trials) else trials
    first = next(iter(settings.values()))
    summary = {
        "experiment": experiment.name, **{k: first[k] for k in ("metric", "test_metric", "mode", "target")},
        "dimensions": list(DIMENSIONS), "optimizers": list(config["optimizer"]),
        "finder_rules": list(config["finder_rules"]), "seeds": sorted(trials["seed"].unique().tolist()),
        "arms": first["arms"], "paired": first["paired"], "settings": settings,
        "finder": _flat(first["arms"].get("finder")), "best_manual": _flat(first["arms"].get("manual")),
        "strategies": [{"setting": label, **{d: s.get(d) for d in DIMENSIONS}, **row}
                       for label, s in settings.items() for row in s["strategies"]],
        "trials": trials.to_dict("records"), "config": config,
        "versions": experiment.study.get("versions", {}), "started_at": experiment.study.get("started_at"),
    }
    return clean(summary)


def clean(obj):
    """Plain JSON: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
