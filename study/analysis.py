"""One analysis of an experiment: read it once into tidy tables, then compare on top of them.

`load(exp_dir)` reads a Ray Tune experiment with Ray's own `ExperimentAnalysis` (each trial's
config, status, failures and result rows), plus what only this project writes: each range test's
curve (`lr_finder.json`) and the study's record (`study.json`). It returns an `Experiment`:

- `trials`: one row per trial (`TRIAL_COLUMNS`, then the trial's other config keys);
- `epochs`: one row per trial and epoch (`trial_id`, `epoch`, the metrics, the timings);
- `curves`: each range-test trial's `lr_finder.json`, by trial id;
- `study`: `study.json`.

`summarize(experiment)` turns those tables into summary.json's numbers with pandas and scipy. Per
setting (one value of each of the study's dimensions, `study.config.DIMENSIONS`: an optimiser,
...): each arm's mean and 95 % t-interval over seeds, the best manual LR (the one rule: the
best mean validation accuracy, ties to the lower mean validation loss, then the lower LR; for a
Bayesian search, whose seeds try different LRs, each seed's best manual trial by the same
rule), every other arm minus it paired by seed, and compute. The sentences are the report's.

Arm keys: `finder` (the study's first finder rule), `finder:<rule>` (another rule), `cyclic`
(`cyclic:<rule>`), `manual:<lr>`, and in the summary `manual`, the best manual LR (or, when no
manual LR ran on two seeds, as in a Bayesian search, each seed's best manual trial: `picks`).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from study.config import ARMS, DIMENSIONS, StudyConfig, setting_label
from study.storage import STUDY_FILE

RESULT_FILE = "result.json"  # Ray Tune's JsonLoggerCallback: one JSON line per reported epoch
from trainables.files import FINDER_FILE

STATUSES = ("finished", "pruned", "diverged", "error", "unfinished")
RANGE_TEST_ARMS = ("finder", "cyclic")  # arms whose LR comes from the trial's own range test
SEARCH_PICKS = "each seed's best manual trial"  # the best manual, when the seeds tried different LRs
ARM_ORDER = (*(a for a in ARMS if a != "manual"), "manual")  # the manual trials last
CONFIDENCE = 0.95
ARM_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", "time_s", "train_time_s", "time_to_target_s", "flops",
               "flops_to_target")
WORK = ("steps", "finder_steps", "samples", "eval_samples", "flops")  # a trial's work, counted (trainables/work.py)
EPOCH_COLUMNS = ("trial_id", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_time_s", *WORK,
                 "report_ts", "test_loss", "test_acc")
TRIAL_COLUMNS = ("trial_id", "setting", "arm", "arm_key", "optimizer", "finder_rule", "lr", "seed", "status", "epochs",
                 "time_s", "flops", "val_acc", "val_loss", "test_acc", "test_loss", "time_to_target_s", "flops_to_target",
                 "best_val_acc", "steps", "finder_steps", "samples", "eval_samples",
                 "train_time_s", "finder_time_s", "cyclic_min_lr", "cyclic_max_lr", "node_id", "node_ip",
                 "failures", "error", "dir")


class NotAnExperiment(Exception):
    """The path is missing, not a folder, or holds no Ray Tune experiment."""


@dataclass
class Experiment:
    name: str
    study: dict                 # study.json: config, versions, data, ...
    trials: pd.DataFrame        # one row per trial, TRIAL_COLUMNS first, sorted (see _sort)
    epochs: pd.DataFrame        # one row per trial and epoch, EPOCH_COLUMNS
    curves: dict[str, dict]     # trial_id -> lr_finder.json (finder and cyclic trials)

    @property
    def config(self) -> dict:
        return self.study["config"]


# ---------------------------------------------------------------- reading


def load(exp_dir: Path) -> Experiment:
    """Read the experiment folder once: Ray's ExperimentAnalysis, study.json, lr_finder.json."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise NotAnExperiment(f"{exp_dir}: no such directory" if not exp_dir.exists() else f"{exp_dir}: not a directory")
    try:
        study = json.loads((exp_dir / STUDY_FILE).read_text())
    except FileNotFoundError:
        raise NotAnExperiment(f"{exp_dir}: not an lrstudy experiment (no {STUDY_FILE})") from None
    except (OSError, ValueError) as e:
        raise NotAnExperiment(f"{exp_dir / STUDY_FILE}: unreadable ({e})") from None
    from ray import tune  # ~2 s of imports: only once there is an experiment to read

    class _TrialsOnly(tune.ExperimentAnalysis):
        """Ray Tune's reader of the experiment's state (each trial's config, status, errors, folder);
        the result rows are read once, into one table, by `_result_rows`."""

        def _fetch_trial_dataframes(self) -> dict:
            return {}


    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)  # "no results for trial ..." is a status here, not a warning
    try:
        analysis = _TrialsOnly(str(exp_dir))
    except ValueError:
        raise NotAnExperiment(f"{exp_dir}: no Ray Tune experiment state (experiment_state-*.json)") from None
    finally:
        log.setLevel(level)

    config, curves = study["config"], {}
    rows = _result_rows(analysis.trials)
    last = rows.groupby("trial_id", sort=False).tail(1).set_index("trial_id") if len(rows) else rows
    last = last.to_dict("index")
    by_trial = rows.groupby("trial_id", sort=False)
    count = by_trial.size().to_dict() if len(rows) else {}
    best = by_trial["val_acc"].max().to_dict() if "val_acc" in rows else {}
    diverged = set(rows.loc[rows["diverged"] == True, "trial_id"]) if "diverged" in rows else set()  # noqa: E712
    table = []
    for trial in analysis.trials:
        curve_file = Path(trial.path) / FINDER_FILE
        if trial.config.get("arm") in RANGE_TEST_ARMS and curve_file.is_file():
            curves[trial.trial_id] = json.loads(curve_file.read_text())
        tid = trial.trial_id
        status = _status(trial.status, count.get(tid, 0), tid in diverged, trial.config["epochs"])
        table.append(_trial_row(trial, last.get(tid, {}), count.get(tid, 0), best.get(tid), status, curves.get(tid), config))
    trials = _sort(pd.DataFrame(table), config)
    trials = trials[list(TRIAL_COLUMNS) + [c for c in trials if c not in TRIAL_COLUMNS]]
    epochs = rows.reindex(columns=EPOCH_COLUMNS).reset_index(drop=True)
    return Experiment(exp_dir.name, study, trials, epochs, curves)


def _result_rows(trials) -> pd.DataFrame:
    """Every trial's reported rows (its result.json, read once) as one table, in the trials' order
    then by epoch, `val_acc` numeric. A worker restarted from an earlier checkpoint repeats an epoch:
    the last row of an epoch counts. (Ray Tune's `trial_dataframes` holds the same rows, a
    DataFrame per trial built with `json_normalize`: most of the time of a 1,000-trial analysis.)"""
    records = []
    for order, trial in enumerate(trials):
        try:
            lines = (Path(trial.path) / RESULT_FILE).read_text().splitlines()
        except FileNotFoundError:  # a trial that never reported
            continue
        for line in lines:
            if line.strip():
                row = json.loads(line)
                row.pop("config", None)  # the trial's config is its own (trial.config)
                records.append({**row, "trial_id": trial.trial_id, "order": order})
    if not records:
        return pd.DataFrame(columns=["trial_id", *EPOCH_COLUMNS[1:], "training_iteration"])
    rows = pd.DataFrame.from_records(records).drop_duplicates(["trial_id", "training_iteration"], keep="last")
    rows = rows.sort_values(["order", "training_iteration"], kind="stable").drop(columns="order")
    if "val_acc" in rows:
        rows["val_acc"] = pd.to_numeric(rows["val_acc"], errors="coerce")
    return rows.reset_index(drop=True)


def _trial_row(trial, last: dict, epochs: int, best_val_acc, status: str, curve: dict | None, study_config: dict) -> dict:
    """One trial's row: what it is (its config), how it ended, its last metrics (`last`, its last
    reported row) and its compute."""
    config = trial.config
    arm, rule = config["arm"], config.get("finder_rule")
    finder_time = _num(last.get("finder_time_s")) if arm in RANGE_TEST_ARMS else None
    if finder_time is None and curve and arm in RANGE_TEST_ARMS:
        finder_time = _num(curve.get("finder_time_s"))
    train_time = _num(last.get("train_time_s"))
    if arm == "cyclic":
        lr = _num(last.get("cyclic_max_lr"))
    elif arm == "manual":
        lr = _num(config["lr"])
    else:
        lr = _num(last.get("lr"))
    if lr is None and curve:
        lr = _num(curve.get("suggestion"))
    error = None
    if trial.status == "ERROR":
        lines = [ln.strip() for ln in str(trial.get_error() or "").splitlines() if ln.strip()]
        error = next((ln for ln in reversed(lines) if not ln.startswith("Failure #")), "no error message")
    row = {
        "trial_id": trial.trial_id, "setting": setting_label(config, study_config), "arm": arm,
        "arm_key": arm_key(arm, lr, rule, study_config["finder_rules"][0]),
        "optimizer": config["optimizer"], "finder_rule": rule if arm in RANGE_TEST_ARMS else None,
        "lr": lr, "seed": config["seed"], "status": status, "epochs": epochs,
        "time_s": None if train_time is None and finder_time is None else (train_time or 0.0) + (finder_time or 0.0),
        "val_acc": _num(last.get("val_acc")), "val_loss": _num(last.get("val_loss")),
        "test_acc": _num(last.get("test_acc")), "test_loss": _num(last.get("test_loss")),
        "time_to_target_s": None, "flops_to_target": None,  # for the target of the summary (see summarize)
        "best_val_acc": _num(best_val_acc), **{k: _num(last.get(k)) for k in WORK},
        "train_time_s": train_time, "finder_time_s": finder_time,
        "cyclic_min_lr": _num(last.get("cyclic_min_lr")), "cyclic_max_lr": _num(last.get("cyclic_max_lr")),
        "node_id": _text(last.get("node_id")), "node_ip": _text(last.get("node_ip")),
        "failures": trial.num_failures, "error": error, "dir": Path(trial.path).name,
    }
    for k, v in config.items():  # the rest of the trial's config: epochs, batch size, finder settings ...
        if k not in ("arm", "lr", "seed", "optimizer", "finder_rule"):
            row[k if k not in row else f"param_{k}"] = v
    return row


def _status(ray_status: str, epochs: int, diverged: bool, planned: int) -> str:
    """finished | diverged | pruned | error | unfinished (an interrupted study's pending or running
    trial), from Ray's status, the epochs reported, whether one said it diverged, and those planned."""
    if diverged:
        return "diverged"
    if ray_status == "ERROR":
        return "error"
    if epochs >= planned:
        return "finished"
    return "pruned" if ray_status == "TERMINATED" else "unfinished"


def _text(x) -> str | None:
    return x if isinstance(x, str) else None


def arm_key(arm: str, lr: float | None, rule: str | None, primary_rule: str) -> str:
    """finder | finder:<rule> | cyclic | cyclic:<rule> | manual:<lr> (lr with :g) | the arm
    itself for the others (one trial per seed, whatever step size it adapts to)."""
    if arm in RANGE_TEST_ARMS:
        return arm if rule == primary_rule else f"{arm}:{rule}"
    return f"{arm}:{lr:g}" if arm == "manual" else arm


def settings_of(config: dict) -> dict[str, dict]:
    """The study's settings (`StudyConfig.settings`) by label, in order, from its config as a dict
    (study.json's: a dimension an older study lacks has its default)."""
    study = StudyConfig(**{d: tuple(config.get(d) or getattr(StudyConfig, d)) for d in DIMENSIONS})
    return {setting_label(s, config): s for s in study.settings()}


def _sort(trials: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The study's settings in order; finder, cyclic, manual; range-test arms by rule then seed,
    manual trials by LR then seed."""
    if trials.empty:
        return trials
    rank = {
        "o": trials["setting"].map({label: i for i, label in enumerate(settings_of(config))}),
        "a": trials["arm"].map({a: i for i, a in enumerate(ARM_ORDER)}),
        "r": trials["finder_rule"].map({r: i for i, r in enumerate(config["finder_rules"])}).fillna(-1),
        "l": trials["lr"].where(trials["arm"] == "manual", 0.0),
        "s": trials["seed"], "t": trials["trial_id"],
    }
    order = pd.DataFrame(rank).sort_values(list(rank), kind="stable").index
    return trials.loc[order].reset_index(drop=True)


def _num(x) -> float | None:
    """A plain finite float, or None (for None, NaN, inf, non-numbers)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- statistics


def describe(values) -> dict:
    """n, mean, sample std, 95 % t-interval of the mean (`ttest_1samp(...).confidence_interval`),
    min, max and the values; None and non-finite values dropped. No interval below n = 2; with
    zero spread it is [mean, mean]."""
    v = [x for x in map(_num, values) if x is not None]
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


def arm_stats(group: pd.DataFrame) -> dict:
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
           "seeds": done["seed"].tolist(), "lr": lr, **{m: describe(done[m]) for m in ARM_METRICS}}
    if group["arm"].iloc[0] in RANGE_TEST_ARMS:
        out["rule"] = group["finder_rule"].iloc[0]
        out["finder_time_s"] = describe(done["finder_time_s"])
    return out


def best_manual_key(trials: pd.DataFrame) -> str | None:
    """THE rule for the best manual LR: the highest mean validation accuracy over seeds (finished
    trials), ties to the lower mean validation loss, then to the lower LR. Never test accuracy."""
    done = trials[(trials["arm"] == "manual") & (trials["status"] == "finished") & trials["val_acc"].notna()]
    if done.empty:
        return None
    means = done.groupby("arm_key")[["val_acc", "val_loss", "lr"]].mean()
    means["val_loss"] = means["val_loss"].fillna(math.inf)
    return means.sort_values(["val_acc", "val_loss", "lr"], ascending=[False, True, True]).index[0]


def search_picks(trials: pd.DataFrame) -> pd.DataFrame:
    """The trial each seed's manual search delivers: the same rule within one seed, its finished
    trial with the best validation accuracy, ties to the lower validation loss, then the lower LR."""
    done = trials[(trials["arm"] == "manual") & (trials["status"] == "finished") & trials["val_acc"].notna()]
    return done.sort_values(["seed", "val_acc", "val_loss", "lr"], ascending=[True, False, True, True],
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
        done = x[(x["status"] == "finished") & x[metric].notna()]
        return done.drop_duplicates("seed").set_index("seed")[metric].astype(float)

    both = pd.concat({"a": by_seed(a), "b": by_seed(b)}, axis=1, join="inner").sort_index()
    diff = describe(both["a"] - both["b"])
    p_value = None
    if len(both) >= 2:
        with warnings.catch_warnings():  # zero spread: scipy warns and gives NaN
            warnings.simplefilter("ignore")
            test = stats.ttest_rel(both["a"], both["b"])
        p_value = _num(test.pvalue)
        diff["ci95"] = _interval(test, diff["mean"], diff["std"])
    return {f"{metric}_diff": diff, "p_value": p_value, "n": len(both), "seeds": both.index.tolist(), "against": against}


def setting_summary(label: str, setting: dict, trials: pd.DataFrame) -> dict:
    """Arms, best manual LR, paired comparisons and compute of one setting's trials."""
    groups = {k: g for k, g in trials.groupby("arm_key", sort=False)}
    best = best_manual_key(trials)
    reference = groups.get(best)
    if best is not None and not seeds_share_lrs(trials):  # no LR has a mean over seeds: each seed's pick
        best, reference = SEARCH_PICKS, search_picks(trials)
    arms = {}
    for key, group in groups.items():  # trials are sorted: finder*, cyclic*, manual by LR
        if key.startswith("manual:") and best is not None and "manual" not in arms:
            arms["manual"] = {**arm_stats(reference), "chosen": best}
            if best == SEARCH_PICKS:  # out of the seeds that searched; each seed's pick, by seed
                arms["manual"]["n_trials"] = int(trials.loc[trials["arm"] == "manual", "seed"].nunique())
                arms["manual"]["picks"] = reference[["seed", "lr", "test_acc"]].to_dict("records")
        arms[key] = arm_stats(group)
    others = [k for k in groups if not k.startswith("manual:")]  # finder rules, cyclic, learning-rate-free arms
    vs_best = {k: paired(groups[k], reference, best) for k in others} if best else {}
    vs_finder = {k: paired(groups[k], groups["finder"], "finder") for k in others
                 if k != "finder" and "finder" in groups}
    # The whole manual search of a seed costs every manual trial's compute, whatever its status.
    compute = {}
    for unit, column in (("time_s", "time_s"), ("flops", "flops")):
        search = trials[trials["arm"] == "manual"].groupby("seed")[column].sum(min_count=1).dropna()
        finder, whole = arms["finder"][column]["mean"] if "finder" in arms else None, float(search.mean()) if len(search) else None
        compute.update({f"finder_{unit}": finder, f"manual_search_{unit}": whole,
                        f"manual_search_{unit}_by_seed": [[s, float(t)] for s, t in search.items()],
                        f"manual_over_finder{'_flops' if unit == 'flops' else ''}": whole / finder if finder and whole else None})
    return {"label": label, **setting, "n_trials": len(trials), "seeds": sorted(trials["seed"].unique().tolist()),
            "best_manual": best, "arms": arms, "paired": vs_best.get("finder"),
            "vs_best_manual": vs_best, "vs_finder": vs_finder,
            "compute": compute}


def search_progress(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Each seed's manual search as it ran, one row per reported epoch in time order: the seed, the
    compute all its trials had spent by then (each trial's training seconds so far, summed, and its
    FLOPs) and the best validation accuracy seen so far."""
    seed = trials.set_index("trial_id")["seed"]
    rows = epochs[epochs["trial_id"].isin(seed.index)].sort_values("report_ts", kind="stable")
    spent = rows.groupby("trial_id")[["train_time_s", "flops"]].diff().fillna(rows[["train_time_s", "flops"]])
    out = pd.DataFrame({"seed": rows["trial_id"].map(seed).to_numpy(), "s": spent["train_time_s"].to_numpy(),
                        "flops": spent["flops"].astype(float).to_numpy(), "val_acc": rows["val_acc"].astype(float).to_numpy()})
    by_seed = out.groupby("seed", sort=True)
    return out.assign(compute_s=by_seed["s"].cumsum(), compute_flops=by_seed["flops"].cumsum(),
                      best_val_acc=by_seed["val_acc"].cummax())[["seed", "compute_s", "compute_flops", "best_val_acc"]]


def strategies(trials: pd.DataFrame, epochs: pd.DataFrame, search: str, target: float) -> tuple[list[dict], dict]:
    """Every way to a trained model, compared per seed, as compute against accuracy.

    Each arm other than manual is one strategy, one trial per seed (a finder rule or cyclic: range
    test plus training; a learning-rate-free optimiser: one training). The manual search is one
    strategy as a whole: every trial it ran, whatever its status, delivering its trial with the
    best validation accuracy (ties to the lower validation loss, then the lower LR). Per seed: the
    compute seconds spent, the delivered model's test accuracy, and the compute spent until a model
    first reached `target` validation accuracy. Returns the table (means and 95 % intervals over
    seeds) and, per seed, the manual search's progress (`search_progress`)."""
    arms = trials[trials["arm"] != "manual"]
    per_seed = [pd.DataFrame({"strategy": arms["arm_key"], "seed": arms["seed"], "compute_s": arms["time_s"],
                              "to_target_s": arms["time_to_target_s"], "compute_flops": arms["flops"],
                              "to_target_flops": arms["flops_to_target"],
                              "test_acc": arms["test_acc"].where(arms["status"] == "finished")})]
    name, progress = f"{search} search", {}
    manual = trials[trials["arm"] == "manual"]
    if len(manual):
        run = search_progress(manual, epochs)
        reached = run[run["best_val_acc"] >= target].groupby("seed")[["compute_s", "compute_flops"]].first()
        chosen = search_picks(manual).set_index("seed")["test_acc"]
        spent = manual.groupby("seed")[["time_s", "flops"]].sum(min_count=1)
        per_seed.append(pd.DataFrame({"strategy": name, "seed": spent.index, "compute_s": spent["time_s"].to_numpy(),
                                      "to_target_s": spent.index.map(reached["compute_s"]),
                                      "compute_flops": spent["flops"].to_numpy(),
                                      "to_target_flops": spent.index.map(reached["compute_flops"]),
                                      "test_acc": spent.index.map(chosen)}))
        progress = {seed: g[["compute_s", "compute_flops", "best_val_acc"]].to_dict("list")
                    for seed, g in run.groupby("seed", sort=True)}
    table = []
    for key, rows in pd.concat(per_seed, ignore_index=True).groupby("strategy", sort=False):
        table.append({"strategy": key, "kind": "search" if key == name else "arm", "seeds": rows["seed"].tolist(),
                      "compute_s": describe(rows["compute_s"]), "test_acc": describe(rows["test_acc"]),
                      "compute_to_target_s": describe(rows["to_target_s"]),
                      "compute_flops": describe(rows["compute_flops"]),
                      "compute_to_target_flops": describe(rows["to_target_flops"]),
                      "reached_target": int(rows["to_target_s"].notna().sum())})
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
    keys = ("lr", *ARM_METRICS, "finder_time_s")
    out = {k: arm[k]["mean"] for k in keys if k in arm}
    return {**out, "n": arm["n"], "seeds": arm["seeds"], **({"chosen": arm["chosen"]} if "chosen" in arm else {})}


def summarize(experiment: Experiment, target_acc: float | None = None) -> dict:
    """summary.json's numbers. `settings` has one entry per setting (`settings_of`: an optimiser,
    ...), by label; the top-level `arms`, `paired`, `finder` (the primary finder arm's means) and
    `best_manual` (the best manual LR's means) are the first setting's. `target_acc`: the study's
    unless given."""
    config, epochs = experiment.config, experiment.epochs
    target = config["target_acc"] if target_acc is None else target_acc
    # Compute to target: training seconds until val_acc first reached it, the range test included;
    # and the FLOPs counted by then (cumulative, the range test and evaluation included).
    hit = epochs[pd.to_numeric(epochs["val_acc"], errors="coerce") >= target].groupby("trial_id")[["train_time_s", "flops"]].first()
    ids = experiment.trials["trial_id"]
    trials = experiment.trials.assign(time_to_target_s=ids.map(hit["train_time_s"]) + experiment.trials["finder_time_s"].fillna(0.0),
                                      flops_to_target=ids.map(hit["flops"]).astype(float))
    by_setting = dict(tuple(trials.groupby("setting", sort=False))) if not trials.empty else {}
    settings = {}
    for label, setting in settings_of(config).items():
        mine = by_setting.get(label, trials.iloc[:0])
        table, progress = strategies(mine, epochs, config["search"], target)
        settings[label] = {**setting_summary(label, setting, mine), "range_tests": range_tests(experiment, mine),
                           "strategies": table, "search_progress": progress}
    first = next(iter(settings.values()))
    summary = {
        "experiment": experiment.name, "target_acc": target, "dimensions": list(DIMENSIONS),
        "optimizers": list(config["optimizer"]),
        "finder_rules": list(config["finder_rules"]), "seeds": sorted(trials["seed"].unique().tolist()),
        "arms": first["arms"], "paired": first["paired"], "settings": settings,
        "finder": _flat(first["arms"].get("finder")), "best_manual": _flat(first["arms"].get("manual")),
        "strategies": [{"setting": label, **{d: s[d] for d in DIMENSIONS}, **row}
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
