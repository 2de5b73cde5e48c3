"""Orchestration: connect to Ray, size the trials, run every point of the search space in one
`ray.tune.Tuner` (or restore it), and leave a Ray Tune experiment directory on disk.

Nothing here prints: errors a user can fix are `ConfigError`s, whose message is one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import ray
import yaml
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from study import storage
from study.config import ConfigError, StudyConfig
from study.progress import Progress
from study.space import param_space, trial_dirname, trial_points
from trainables.data import Dataset
from trainables.trainable import train_trial

METRIC, MODE = "val_acc", "max"
DEFAULT_GPU_FRACTION = 0.25  # four trials share one GPU: LeNet uses a sliver of one
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # written by `ray up` on the head node
# Settings Ray Tune reads only from the environment. TensorBoard events come from Lightning inside
# each trial; Ray's own TBX logger, added unless the first is set, would write a second copy of
# every scalar (the CSV and JSON loggers are passed explicitly). Checkpointing every epoch is
# intended: don't warn about it.
TUNE_SETTINGS = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


class ManualOnlyASHA(ASHAScheduler):
    """ASHA over the manual trials only: finder (and cyclic) trials are the subject of the study,
    never pruned, and not in the rungs the manual trials compete in."""

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config.get("arm") != "manual":
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if trial.config.get("arm") == "manual":
            super().on_trial_complete(tune_controller, trial, result)


def prepare_experiment_dir(config: StudyConfig, create: bool = True) -> str:
    """The experiment folder, refusing to clobber an earlier study unless asked to.

    `create=False` only checks: run.py refuses a taken --name before anything starts, and removes
    (--overwrite) or creates the folder only once Ray is reached and the resources fit, so a
    study that cannot start leaves the old one in place.
    """
    path = storage.experiment_dir(config.results_dir, config.name)
    exists = storage.is_nonempty_dir(path)
    if config.resume:
        if not exists or not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no experiment to resume at {path}")
        return path
    if exists and not config.overwrite:
        raise ConfigError(f"experiment {path} already exists: pass --resume to continue it or --overwrite to replace it")
    if not create:
        storage.check_writable(path)
        return path
    try:
        if exists:
            storage.remove(path)
        storage.make_dir(path)
    except OSError as e:
        raise ConfigError(f"cannot create results folder {path}: {str(e).splitlines()[0]}") from None
    return path


def _drop_token_auth_notice(record: logging.LogRecord) -> bool:
    """Ray announces, on every local start, that token auth is on by default: the secure default
    needs no line of its own on stderr (where errors must stay one line). Warnings that auth is
    *disabled* still show."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def connect(config: StudyConfig) -> None:
    """Start a local Ray instance, or attach to the cluster at --address."""
    if ray.is_initialized():
        return
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_drop_token_auth_notice)
    unreachable = _unreachable(config.address) if config.address else None
    if unreachable:  # Ray itself retries an unreachable HOST:PORT for about 14 minutes
        raise ConfigError(f"cannot reach --address {config.address}: {unreachable}")
    try:
        ray.init(address=config.address, include_dashboard=False if config.address is None else None,
                 log_to_driver=True, configure_logging=True, logging_level="WARNING",
                 # lr_find draws a progress bar per step into every trial's log; tqdm reads this at import
                 runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {config.address}" if config.address else "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def disconnect() -> None:
    """Stop the local Ray instance (or detach from the cluster): timed on its own by run.py."""
    ray.shutdown()


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a HOST:PORT address takes no TCP connection, or None (also for 'auto' and ray:// URIs)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()  # [::1]:6379 too
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


def trial_resources(config: StudyConfig, bootstrap_config: Path = BOOTSTRAP_CONFIG) -> dict[str, float]:
    """CPUs and GPUs per trial, checked against the nodes Ray sees and, on a cluster started by
    `ray up`, the node types its autoscaler may still start (GPU workers at min_workers 0)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    max_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    max_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = config.gpus_per_trial
    if gpus is None:  # a GPU study is explicit where no GPU node is up yet
        gpus = DEFAULT_GPU_FRACTION if max_gpus else 0.0
    need = {"CPU": config.cpus_per_trial, "GPU": gpus}
    launchable = _launchable_node_types(bootstrap_config)
    if any(_fits(n, need) for n in nodes + list(launchable.values())):
        return {"cpu": config.cpus_per_trial, "gpu": gpus}
    also = f"; nor can the autoscaler start one ({_describe(launchable)})" if launchable else ""
    if config.cpus_per_trial > max_cpus:
        raise ConfigError(f"--cpus-per-trial {config.cpus_per_trial} is more than any node has (largest: {max_cpus:g} CPUs){also}")
    if gpus > max_gpus:
        raise ConfigError(f"--gpus-per-trial {gpus:g} is more than any node has (largest: {max_gpus:g} GPUs){also}")
    raise ConfigError(f"no node has both {config.cpus_per_trial} CPUs and {gpus:g} GPUs for a trial{also}")


def _fits(resources: dict, need: dict) -> bool:
    return all(resources.get(k, 0) >= v for k, v in need.items())


def _launchable_node_types(bootstrap_config: Path) -> dict[str, dict]:
    """Resources of each worker node type the autoscaler may start, from the cluster launcher's
    config on the head node (Ray Tune reads the same file to tell an autoscaling cluster)."""
    try:
        cluster = yaml.safe_load(bootstrap_config.expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    types = cluster.get("available_node_types") if isinstance(cluster, dict) else None
    return {name: t.get("resources") or {} for name, t in (types or {}).items()
            if isinstance(t, dict) and (t.get("max_workers") or 0) > 0}


def _describe(node_types: dict[str, dict]) -> str:
    return ", ".join(f"{name}: {r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for name, r in node_types.items())


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "torchvision", "pytorch-lightning", "ray", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_study_record(path: str, config: StudyConfig, data: Dataset, resources: dict, argv: list[str]) -> None:
    """What produced the results, next to them: config, command line, versions, data, resources."""
    record = {"config": config.to_dict(), "argv": argv, "versions": _versions(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": {"source": data.source, **data.sizes()}, "resources_per_trial": resources,
              "cluster": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
              "trials": trial_points(config)}
    storage.write_text(path, storage.STUDY_FILE, json.dumps(record, indent=2))


def trainable(data: Dataset, resources: dict):
    """The trial as Ray Tune runs it, for a fresh start and a --resume alike: `train_trial` with
    the data through the object store, on `resources` per trial."""
    return tune.with_resources(tune.with_parameters(train_trial, data=data), resources)


def build_tuner(config: StudyConfig, data: Dataset, resources: dict) -> tune.Tuner:
    points = trial_points(config)
    if config.search == "asha":
        scheduler = ManualOnlyASHA(time_attr="training_iteration", max_t=config.epochs, grace_period=1, reduction_factor=3)
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable(data, resources),
        param_space=param_space(points),  # every trial is one of `points`, its whole config
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, scheduler=scheduler, num_samples=len(points),
            search_alg=BasicVariantGenerator(points_to_evaluate=points),
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
            reuse_actors=True,  # a worker keeps torch and Lightning imported from one trial to the next
        ),
        run_config=_run_config(config),
    )


def _run_config(config: StudyConfig) -> tune.RunConfig:
    return tune.RunConfig(
        name=config.name,
        storage_path=storage.storage_path(config.results_dir),  # a URI goes to Ray unchanged
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # Trials write TensorBoard events into their working dir; copy them into the trial folder
        # (every 15 s at most while running, and when the trial ends), on any node.
        sync_config=tune.SyncConfig(sync_artifacts=True, sync_period=15),
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        # progress.csv, result.json; and, on the console, one line per ended trial (study/progress.py)
        # instead of Ray Tune's boxes and tables (verbose=0), which go to trials.log
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback(),
                   Progress(storage.experiment_dir(config.results_dir, config.name), len(trial_points(config)),
                            config.epochs)],
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


@contextlib.contextmanager
def _tune_settings():
    """TUNE_SETTINGS in the environment while the study runs (a user's own values win), and the
    environment as it was afterwards."""
    added = {k: v for k, v in TUNE_SETTINGS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def run_study(config: StudyConfig, data: Dataset, argv: list[str]) -> tuple[str, float]:
    """Run (or resume) the whole study; return the experiment's location and the Tuner's wall seconds."""
    resources = trial_resources(config)
    path = prepare_experiment_dir(config)  # only now: remove (--overwrite) or create the folder
    with _tune_settings():
        if config.resume:
            tuner = tune.Tuner.restore(path, trainable=trainable(data, resources), resume_unfinished=True,
                                       resume_errored=True)
        else:
            write_study_record(path, config, data, resources, argv)
            tuner = build_tuner(config, data, resources)
        start = time.perf_counter()
        tuner.fit()
    if _unfinished_trials(path):
        raise KeyboardInterrupt  # Ctrl-C: run.py says how to resume
    return path, time.perf_counter() - start

