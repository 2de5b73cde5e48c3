"""The experiment on disk, read once into tidy tables: its one reader.

`load(exp_dir)` reads a Ray Tune experiment: Ray's own `ExperimentAnalysis` reads the
experiment's state (each trial's config, status, failures and folder), every trial's result.json
is read once into one table, and so are what only this project writes: each range test's curve
(`lr_finder.json`) and the study's record (`study.json`). It returns an `Experiment`:

- `trials`: one row per trial (`TRIAL_COLUMNS`, then the trial's other config keys and every other
  validation and test metric it logged): how it ended, its last metrics, its compute in seconds and
  its work counted (`WORK`), and the metric its setting compares on (`metric`, `mode`, `target`:
  `study.config.metric_settings`);
- `epochs`: one row per trial and epoch (`EPOCH_COLUMNS`, then every other metric reported: the
  metrics, the timings, the work, and `objective`, derived from the trial's metric for a trial
  that did not report it);
- `curves`: each range-test trial's `lr_finder.json`, by trial id;
- `study`: `study.json`.

Every statistic, verdict and figure is computed from these tables (study/analysis.py and after).
Arm keys: `finder` (the study's first finder rule), `finder:<rule>` (another rule), `cyclic`
(`cyclic:<rule>`), `manual:<lr>`, and the learning-rate-free arms by name.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.config import ARMS, DIMENSIONS, StudyConfig, metric_settings, objective, setting_label
from study.storage import STUDY_FILE
from trainables.files import FINDER_FILE

RESULT_FILE = "result.json"  # Ray Tune's JsonLoggerCallback: one JSON line per reported epoch
STATUSES = ("finished", "pruned", "diverged", "error", "unfinished")
RANGE_TEST_ARMS = ("finder", "cyclic")  # arms whose LR comes from the trial's own range test
ARM_ORDER = (*(a for a in ARMS if a != "manual"), "manual")  # the manual trials last
WORK = ("steps", "finder_steps", "samples", "eval_samples", "flops")  # a trial's work, counted (trainables/work.py)
EPOCH_COLUMNS = ("trial_id", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_time_s", *WORK,
                 "report_ts", "test_loss", "test_acc", "objective")
METRIC_PREFIXES = ("train", "val", "test")  # a reported key that starts so is a metric the module logged
TRIAL_COLUMNS = ("trial_id", "setting", "arm", "arm_key", "optimizer", "finder_rule", "lr", "seed", "status", "epochs",
                 "time_s", "flops", "val_acc", "val_loss", "test_acc", "test_loss", "time_to_target_s", "flops_to_target",
                 "best_val_acc", "metric", "mode", "target", "objective", "steps", "finder_steps", "samples", "eval_samples",
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
        analysis = _TrialsOnly(str(exp_dir.resolve()))  # Ray Tune reads a relative path as a URI's
    except ValueError:
        raise NotAnExperiment(f"{exp_dir}: no Ray Tune experiment state (experiment_state-*.json)") from None
    finally:
        log.setLevel(level)

    config, curves = study["config"], {}
    settings = list(settings_of(config, study.get("settings")).values())
    measured = {t.trial_id: metric_settings(t.config if "metric" in t.config else config) for t in analysis.trials}
    rows = _with_objective(_result_rows(analysis.trials), measured)
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
        table.append({**_trial_row(trial, last.get(tid, {}), count.get(tid, 0), best.get(tid), status, curves.get(tid), config,
                                   settings), **measured[tid]})
    trials = _sort(pd.DataFrame(table, columns=None if table else TRIAL_COLUMNS), config, settings)
    trials = trials[list(TRIAL_COLUMNS) + [c for c in trials if c not in TRIAL_COLUMNS]]
    logged = [c for c in rows if c not in EPOCH_COLUMNS and str(c).startswith(METRIC_PREFIXES)]
    epochs = rows.reindex(columns=[*EPOCH_COLUMNS, *logged]).reset_index(drop=True)
    return Experiment(exp_dir.name, study, trials, epochs, curves)


def _result_rows(trials) -> pd.DataFrame:
    """Every trial's reported rows (its result.json, read once) as one table, in the trials' order
    then by epoch, validation and test metrics numeric. A worker restarted from an earlier checkpoint repeats an epoch:
    the last row of an epoch counts. (Ray Tune's `trial_dataframes` holds the same rows, a
    DataFrame per trial built with `json_normalize`: most of the time of a 1,000-trial analysis.)"""
    records = []
    for order, trial in enumerate(trials):
        try:
            lines = (Path(trial.path) / RESULT_FILE).read_text().splitlines()
        except FileNotFoundError:  # a trial that never reported
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:  # blank, or torn by a driver killed mid-write: the epoch is not there
                continue
            row.pop("config", None)  # the trial's config is its own (trial.config)
            records.append({**row, "trial_id": trial.trial_id, "order": order})
    if not records:
        return pd.DataFrame(columns=["trial_id", *EPOCH_COLUMNS[1:], "training_iteration"])
    rows = pd.DataFrame.from_records(records).drop_duplicates(["trial_id", "training_iteration"], keep="last")
    rows = rows.sort_values(["order", "training_iteration"], kind="stable").drop(columns="order")
    for column in [c for c in rows if str(c).startswith(("val", "test"))]:  # numeric, whatever a trial wrote
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return rows.reset_index(drop=True)


def _with_objective(rows: pd.DataFrame, measured: dict[str, dict]) -> pd.DataFrame:
    """Each row's `objective` where the trial did not report one (a trial from before trials
    reported it): its setting's metric in its direction (`study.config.objective`), NaN once diverged."""
    if rows.empty:
        return rows.assign(objective=pd.Series(dtype=float))
    given = pd.to_numeric(rows["objective"], errors="coerce") if "objective" in rows else pd.Series(math.nan, index=rows.index)
    derived = [objective(row.get(measured[row["trial_id"]]["metric"]), measured[row["trial_id"]]["mode"])
               if row.get("diverged") is not True else math.nan for row in rows.to_dict("records")]
    return rows.assign(objective=given.fillna(pd.Series(derived, index=rows.index, dtype=float)))


def _trial_row(trial, last: dict, epochs: int, best_val_acc, status: str, curve: dict | None, study_config: dict,
               settings: list[dict]) -> dict:
    """One trial's row: what it is (its config), how it ended, its last metrics (`last`, its last
    reported row) and its compute."""
    config = trial.config
    arm, rule = config["arm"], config.get("finder_rule")
    finder_time = num(last.get("finder_time_s")) if arm in RANGE_TEST_ARMS else None
    if finder_time is None and curve and arm in RANGE_TEST_ARMS:
        finder_time = num(curve.get("finder_time_s"))
    train_time = num(last.get("train_time_s"))
    if arm == "cyclic":
        lr = num(last.get("cyclic_max_lr"))
    elif arm == "manual":
        lr = num(config["lr"])
    elif arm == "finder" and curve:  # its pick: under an LR schedule the peak, not where the schedule ended
        lr = num(curve.get("suggestion"))
    else:
        lr = num(last.get("lr"))
    if lr is None and curve:
        lr = num(curve.get("suggestion"))
    error = None
    if trial.status == "ERROR":
        lines = [ln.strip() for ln in str(trial.get_error() or "").splitlines() if ln.strip()]
        error = next((ln for ln in reversed(lines) if not ln.startswith("Failure #")), "no error message")
    row = {
        "trial_id": trial.trial_id, "setting": setting_label(config, settings), "arm": arm,
        "arm_key": arm_key(arm, lr, rule, study_config["finder_rules"][0]),
        "optimizer": config["optimizer"], "finder_rule": rule if arm in RANGE_TEST_ARMS else None,
        "lr": lr, "seed": config["seed"], "status": status, "epochs": epochs,
        "time_s": None if train_time is None and finder_time is None else (train_time or 0.0) + (finder_time or 0.0),
        "val_acc": num(last.get("val_acc")), "val_loss": num(last.get("val_loss")),
        "test_acc": num(last.get("test_acc")), "test_loss": num(last.get("test_loss")),
        "time_to_target_s": None, "flops_to_target": None,  # for the target of the summary (see summarize)
        "best_val_acc": num(best_val_acc), "objective": num(last.get("objective")), **{k: num(last.get(k)) for k in WORK},
        "train_time_s": train_time, "finder_time_s": finder_time,
        "cyclic_min_lr": num(last.get("cyclic_min_lr")), "cyclic_max_lr": num(last.get("cyclic_max_lr")),
        "node_id": _text(last.get("node_id")), "node_ip": _text(last.get("node_ip")),
        "failures": trial.num_failures, "error": error, "dir": Path(trial.path).name,
    }
    for k, v in config.items():  # the rest of the trial's config: epochs, batch size, finder settings ...
        if k not in ("arm", "lr", "seed", "optimizer", "finder_rule", "metric", "mode", "target"):
            row[k if k not in row else f"param_{k}"] = v
    for k, v in last.items():  # every other validation and test metric it logged (val_mae, test_mae ...)
        if k not in row and str(k).startswith(("val", "test")):
            row[k] = num(v)
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


def settings_of(config: dict, settings: list[dict] | None = None) -> dict[str, dict]:
    """The study's settings by label, in order: study.json's `settings` (each task's own
    optimisers and schedules), else `StudyConfig.settings` of its config as a dict (a dimension an
    older study lacks has its default). One setting per label: a task by its whole spec."""
    if settings is None:
        values = {d: config.get(d) or getattr(StudyConfig, d) for d in DIMENSIONS}  # an older study's batch size: one int
        settings = StudyConfig(**{d: tuple(v) if isinstance(v, (list, tuple)) else (v,) for d, v in values.items()}).settings()
    return {setting_label(s, settings): s for s in settings}


def _sort(trials: pd.DataFrame, config: dict, settings: list[dict]) -> pd.DataFrame:
    """The study's settings in order; finder, cyclic, manual; range-test arms by rule then seed,
    manual trials by LR then seed."""
    if trials.empty:
        return trials
    rank = {
        "o": trials["setting"].map({label: i for i, label in enumerate(settings_of(config, settings))}),
        "a": trials["arm"].map({a: i for i, a in enumerate(ARM_ORDER)}),
        "r": trials["finder_rule"].map({r: i for i, r in enumerate(config["finder_rules"])}).fillna(-1),
        "l": trials["lr"].where(trials["arm"] == "manual", 0.0),
        "s": trials["seed"], "t": trials["trial_id"],
    }
    order = pd.DataFrame(rank).sort_values(list(rank), kind="stable").index
    return trials.loc[order].reset_index(drop=True)


def num(x) -> float | None:
    """A plain finite float, or None (for None, NaN, inf, non-numbers)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
