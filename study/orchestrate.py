"""Orchestration: run every point of the search space in one `ray.tune.Tuner` (or restore it) on
the Ray that study/cluster.py connected to, and leave a Ray Tune experiment directory on disk.

Nothing here prints: errors a user can fix are `ConfigError`s, whose message is one line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pyarrow.fs
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.result import EXPR_RESULT_FILE
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from study import search, storage
from study.cluster import trial_resources, trial_slots
from study.config import StudyConfig
from study.progress import Progress
from study.space import Plan, param_space, trial_dirname
from trainables import tasks, train_trial  # imports torch and Lightning in the trial's worker, not here
from trainables.data import Dataset
from trainables.files import write_atomic
from trainables.work import cpu_model

# What ASHA, the Bayesian search and the Tuner maximise: each trial's `objective`, its setting's
# metric, negated where the metric is minimised (study.config.objective).
METRIC, MODE = "objective", "max"
# Settings Ray Tune reads only from the environment. TensorBoard events come from Lightning inside
# each trial; Ray's own TBX logger, added unless the first is set, would write a second copy of
# every scalar (the CSV and JSON loggers are passed explicitly). Checkpointing every epoch is
# intended: don't warn about it. Ray Tune's default console ("new output engine") prints its
# "Configuration for experiment" box even at verbose=0; its legacy engine, which Ray documents
# RAY_AIR_NEW_OUTPUT=0 to select, prints nothing at verbose=0 (errors still come as log records).
TUNE_SETTINGS = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
                 "RAY_AIR_NEW_OUTPUT": "0"}


class ResultLog(JsonLoggerCallback):
    """Ray Tune's result.json, appended straight to the trial's folder of a local experiment.

    Ray Tune's own logger writes it in a staging folder and copies that folder over the
    experiment's at each sync, not atomically: a driver killed mid-copy left a finished trial's
    result.json empty (tests/test_reliability.py, on a loaded machine), every epoch lost. Here a
    kill tears at most the last line. A URI's experiment (no appending there) keeps Ray Tune's way."""

    def log_trial_start(self, trial) -> None:
        if not isinstance(trial.storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return super().log_trial_start(trial)
        if trial in self._trial_files:
            self._trial_files[trial].close()
        self.update_config(trial, trial.config)  # params.json, params.pkl (Ray Tune's way)
        path = Path(trial.path) / EXPR_RESULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        keep_rows(path, (trial.last_result or {}).get("training_iteration", 0))
        self._trial_files[trial] = path.open("at")


def keep_rows(path: Path, last_iteration: int) -> None:
    """Make a trial's result.json what the state Ray Tune restored says it reported: its rows up to
    `last_iteration`, whole lines only. A driver killed after saving that state may have appended
    more, which the restored trial reports again; a kill mid-write leaves half a line."""
    if not path.is_file() or not path.stat().st_size:
        return
    text, kept = path.read_text(), ""
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("training_iteration", 0) <= last_iteration:
            kept += line + "\n"
    if kept != text:
        write_atomic(path, kept)


class ManualOnlyASHA(ASHAScheduler):
    """ASHA over the manual trials only (--search asha's, or the Bayesian search's with --scheduler
    asha): the other arms (finder, cyclic, learning-rate-free) are the subject of the study, never
    pruned, and not in the rungs the manual trials compete in."""

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config.get("arm") != "manual":
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if trial.config.get("arm") == "manual":
            super().on_trial_complete(tune_controller, trial, result)


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "torchvision", "pytorch-lightning", "ray", "numpy", "pandas", "optuna", "prodigyopt",
                "dadaptation"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_study_record(path: str, config: StudyConfig, plan: Plan, data: dict[str, Dataset], resources: dict,
                       argv: list[str]) -> None:
    """What produced the results, next to them: config, command line, versions, data, resources,
    and what the seconds were measured on: the driver's CPU, each trial's torch threads and the
    cluster's GPU types as Ray names them (every trial reports its own node's CPU and GPU too:
    node_cpu, node_gpu)."""
    cluster = ray.cluster_resources()
    shown = {spec: {"source": d.source, **d.sizes()} if d is not None else {"source": "its LightningDataModule, live"}
             for spec, d in data.items()}
    record = {"config": config.to_dict(), "argv": argv, "versions": _versions(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              # the first task's data, then every task's by its --task spec
              "data": {**next(iter(shown.values())), "tasks": shown},
              "resources_per_trial": resources,
              "cluster": {k: v for k, v in cluster.items() if k in ("CPU", "GPU", "memory")},
              "hardware": {"driver_cpu": cpu_model(), "torch_threads_per_trial": config.cpus_per_trial,
                           "gpu_types": sorted(k.split(":", 1)[1] for k in cluster if k.startswith("accelerator_type:"))},
              "settings": plan.settings, "trials": plan.points}
    if config.search == "bayes":  # its manual trials are drawn as it runs: how many, from what, in which batches
        record["bayes"] = search.record(config, plan.searches, trial_slots(resources))
    storage.write_text(path, storage.STUDY_FILE, json.dumps(record, indent=2))


def trainable(data: dict[str, Dataset], resources: dict):
    """The trial as Ray Tune runs it, for a fresh start and a --resume alike: `train_trial` with
    every task's data (by --task spec) and the study's task objects (study.run_study's) through
    the object store, on `resources` per trial; every report carries `objective`, which Ray Tune
    maximises (METRIC)."""
    objects = tasks.registered(data)
    return tune.with_resources(tune.with_parameters(train_trial, data=data, objects=objects), resources)


def build_tuner(config: StudyConfig, plan: Plan, data: dict[str, Dataset], resources: dict) -> tune.Tuner:
    points, searches = plan.points, plan.searches
    if config.pruned:
        scheduler = ManualOnlyASHA(time_attr="training_iteration", max_t=plan.max_epochs, grace_period=1, reduction_factor=3)
    else:
        scheduler = FIFOScheduler()
    if config.search == "bayes":  # the points first, then each search's LRs in batches of the trials run at once
        search_alg = search.BayesSearch(points, searches, config.num_samples, config.lr_range, trial_slots(resources),
                                        METRIC, MODE)
    else:
        search_alg = BasicVariantGenerator(points_to_evaluate=points)
    return tune.Tuner(
        trainable(data, resources),
        param_space=param_space(points + searches),  # every trial is one of `points` or a search's, its whole config
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, scheduler=scheduler, num_samples=plan.trials,
            search_alg=search_alg,
            trial_dirname_creator=functools.partial(trial_dirname, tasks=config.task),
            trial_name_creator=functools.partial(trial_dirname, tasks=config.task),
            reuse_actors=True,  # a worker keeps torch and Lightning imported from one trial to the next
        ),
        run_config=_run_config(config, plan),
    )


def _run_config(config: StudyConfig, plan: Plan) -> tune.RunConfig:
    return tune.RunConfig(
        name=config.name,
        storage_path=storage.storage_path(config.results_dir),  # a URI goes to Ray unchanged
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # Trials write TensorBoard events into their working dir; copy them into the trial folder
        # (every 15 s at most while running, and when the trial ends), on any node.
        sync_config=tune.SyncConfig(sync_artifacts=True, sync_period=15),
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        # progress.csv, result.json; and, on the console, a status line on a terminal and one line
        # per ended trial (study/progress.py), which go to trials.log, instead of Ray Tune's boxes
        # and tables (verbose=0, and RAY_AIR_NEW_OUTPUT=0 in TUNE_SETTINGS)
        callbacks=[CSVLoggerCallback(), ResultLog(),
                   Progress(storage.experiment_dir(config.results_dir, config.name), plan.trials, config.epochs,
                            epochs_planned=plan.epochs, tasks=config.task)],
        verbose=0,
    )


def _unfinished_trials(path: str) -> int:
    """Trials that the saved experiment state has neither finished nor failed.

    Ray Tune ends on Ctrl-C (SIGINT) by saving that state and returning as if done, with every
    trial in memory marked TERMINATED: only the saved state tells an interrupted study.
    """
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)  # its warning about trials without results was shown once
    try:
        trials = tune.ExperimentAnalysis(path).trials
    finally:
        analysis_log.setLevel(level)
    return sum(t.status not in ("TERMINATED", "ERROR") for t in trials)


def tune_settings(config: StudyConfig, resources: dict) -> dict[str, str]:
    """TUNE_SETTINGS, and for the Bayesian search the pending trials Ray Tune allows: it gives a
    searcher other than its BasicVariantGenerator one pending trial at a time (its
    `_get_max_pending_trials`), so a batch of BayesSearch's, all suggested at once, would start one
    trial after the other; as many as the batch lets them start together."""
    if config.search != "bayes":
        return dict(TUNE_SETTINGS)
    return {**TUNE_SETTINGS, "TUNE_MAX_PENDING_TRIALS_PG": str(trial_slots(resources))}


@contextlib.contextmanager
def _tune_settings(settings: dict[str, str] = TUNE_SETTINGS):
    """`settings` in the environment while the study runs (a user's own values win), and the
    environment as it was afterwards. Ray Tune reads them when `Tuner.fit` builds its controller."""
    added = {k: v for k, v in settings.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def run_study(config: StudyConfig, plan: Plan, data: dict[str, Dataset], argv: list[str]) -> tuple[str, float]:
    """Run (or resume) the whole study; return the experiment's location and the Tuner's wall seconds."""
    resources = trial_resources(config)
    path = storage.prepare_experiment_dir(config)  # only now: remove (--overwrite) or create the folder
    with _tune_settings(tune_settings(config, resources)):
        if config.resume:
            tuner = tune.Tuner.restore(path, trainable=trainable(data, resources), resume_unfinished=True,
                                       resume_errored=True)
        else:
            write_study_record(path, config, plan, data, resources, argv)
            tuner = build_tuner(config, plan, data, resources)
        start = time.perf_counter()
        tuner.fit()
    if _unfinished_trials(path):
        raise KeyboardInterrupt  # Ctrl-C: run.py says how to resume
    return path, time.perf_counter() - start

