"""The study's one engine, behind its two doors (`python -m study.run`, study/run.py, and
`study.run_study`, study/api.py): the config checked, every task loaded and checked, Ray started or
attached, the study run on Ray Tune (study/orchestrate.py), analysed and reported.

Nothing here prints but the study's live progress (study/progress.py): `execute` returns what it
made, and raises ConfigError (one line meant for the user) before any trial where the input is
bad, or KeyboardInterrupt when the user stops the study (it can be resumed).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from study.config import ConfigError, StudyConfig, data_settings, fit_to_task, flag, with_task_defaults

# Settings that may differ when resuming; everything else comes from the stored study.json.
RESUME_FLAGS = ("results_dir", "name", "address", "resume", "max_failures")
TIMINGS_FILE = "timings.json"


@dataclass
class Ran:
    """What `execute` made: the experiment (`path`, a folder or a URI; `local`, the folder the
    report was written in), its summary, the files written (`written`, by key), and where the wall
    time went (`seconds`, timings.json)."""

    path: str
    local: Path
    summary: dict
    trials: Any  # the experiment's, one row per trial (a pandas DataFrame)
    written: dict
    seconds: dict


def shown(value) -> str:
    """A setting as it is written on the command line."""
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "not set" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def stored_config(config: StudyConfig, given: set[str]) -> StudyConfig:
    """On --resume, the study continues with the settings it started with. A flag in `given` (those
    on the command line) other than RESUME_FLAGS must agree with them: ConfigError naming it."""
    from study import storage  # pyarrow's file systems, not torch or Ray: the error stays quick

    location = storage.experiment_dir(config.results_dir, config.name)
    try:
        stored = json.loads(storage.read_text(location, storage.STUDY_FILE))["config"]
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"--resume: {storage.join(location, storage.STUDY_FILE)} is missing or unreadable") from None
    known = {f.name: f.default for f in fields(StudyConfig)}
    merged = {k: tuple(v) if isinstance(v, list) else (v,) if isinstance(known[k], tuple) else v  # an older study's one
              for k, v in stored.items() if k in known}                                            # batch size: a tuple
    resumed = StudyConfig(**{**merged, **{k: getattr(config, k) for k in RESUME_FLAGS}})
    for name in known:  # in the order of --help
        if name in given and name not in RESUME_FLAGS and getattr(config, name) != getattr(resumed, name):
            value = getattr(config, name)
            written = flag(name, known[name]) + ("" if isinstance(value, bool) else f" {shown(value)}")
            raise ConfigError(f"--resume: {written} differs from the stored study ({shown(getattr(resumed, name))}); "
                              f"drop the flag or start a new --name")
    return resumed.validate()


def _prepare(config: StudyConfig, loaded: dict | None = None, task_configs: dict | None = None,
             given: frozenset = frozenset()):
    """The driver's imports and every task's data, checked, timed; run in a thread while Ray
    starts. DataError and TaskError are ConfigErrors. Ray Tune's imports, the data (split as each
    task's config says, `task_configs`: tasks that share their `data` and split share one copy) and
    one forward pass of each task's model, then the analysis's
    (pandas, scipy, matplotlib); Lightning is the trials' alone (trainables/__init__.py), unless a
    user's task file imports it."""
    start = time.perf_counter()
    from study import orchestrate  # noqa: F401 (Ray Tune, Optuna: imported here, in the thread)
    from trainables.checks import load_data
    from trainables.data import DataError
    from trainables.tasks import TaskError, load

    if loaded is None:  # the tasks main() loaded, else (a caller of its own) every task of the config
        loaded = {spec: load(spec, config.data_dir, driver=True) for spec in config.task}
    configs = {spec: (task_configs or {}).get(spec, config) for spec in loaded}
    sized = {spec: "batch_size" in given or "batch_size" in task.defaults for spec, task in loaded.items()}
    try:
        data, facts = load_data(loaded, {spec: data_settings(configs[spec], configs[spec].batch_size[0] if sized[spec] else None)
                                         for spec in loaded})
    except (DataError, TaskError) as e:
        raise ConfigError(str(e)) from None
    fitted = {spec: fit_to_task(configs[spec], spec, facts[spec], given, sized[spec]) for spec in loaded}
    from study import analysis, report  # noqa: F401 (for _report, which must read before Ray shuts down)
    return data, {spec: c for spec, c in fitted.items() if c != config}, time.perf_counter() - start


def _report(path: str, read: threading.Event):
    """Analysis and report of the finished experiment, their imports included, timed; run in a
    thread. `read` is set once the experiment is read: reading it (Ray Tune's ExperimentAnalysis)
    may call into Ray's worker, which must still be up; the rest runs while Ray shuts down."""
    start = time.perf_counter()
    try:
        from study import analysis, report, storage

        local = storage.local_copy(path)  # a URI's experiment is analysed in a local mirror
        experiment = analysis.load(local)
    finally:
        read.set()
    summary = analysis.summarize(experiment)
    written = report.write_report(local, experiment, summary)
    return local, summary, experiment.trials, written, time.perf_counter() - start


def execute(config: StudyConfig, given: set[str], argv: list[str], objects: dict | None = None) -> Ran:
    """Run the study `config` says (`given`: the settings the user set, flags or keyword arguments;
    `argv`: how it was asked for, kept in study.json; `objects`: tasks given as Python objects, by
    their "object:<label>" spec). Ray: a running one is used as it is (the user's `ray.init`) and
    left running; else one is started (or --address attached) and stopped at the end."""
    if config.resume:  # the stored study's settings, read through pyarrow alone: still quick
        config = stored_config(config, given)
    if config.data_dir:  # missing files need no Ray to be found (bad contents are found while Ray starts)
        from trainables.data import DataError, locate

        try:
            locate(config.data_dir)
        except DataError as e:
            raise ConfigError(str(e)) from None
    # Every task imported and its contract checked before Ray starts (its data while Ray starts)
    from trainables import tasks

    try:
        tasks.register(objects or {})
        loaded = {spec: tasks.load(spec, config.data_dir, driver=True) for spec in config.task}
        task_configs = {spec: with_task_defaults(config, task.defaults, given=given, task=spec)
                        for spec, task in loaded.items() if task.defaults}
        tasks.names(config.task)  # two specs of one task are refused; two files of one stem are named apart
        tasks.ship(config.task)  # a task's folder too large to ship is refused before Ray starts
    except tasks.TaskError as e:
        raise ConfigError(str(e)) from None

    # The settings are valid: only now what a study needs. Ray's start (mostly waiting for its
    # processes) runs while a thread imports torch, Lightning and Ray Tune and reads the data.
    from study import cluster, storage

    started = time.perf_counter()
    seconds = {}  # where the wall time goes: startup_s + tune_s + finish_s = wall_s; the rest overlap
    with ThreadPoolExecutor(1) as pool:
        storage.prepare_experiment_dir(config, create=False)  # a taken --name: refuse before anything starts
        prepared = pool.submit(_prepare, config, loaded, task_configs, frozenset(given))
        try:
            owned = cluster.connect(config)
        except ConfigError:
            prepared.result()  # bad data files are the error to fix first: it raises them
            raise
        try:
            seconds["ray_start_s"] = time.perf_counter() - started
            data, task_configs, seconds["prepare_s"] = prepared.result()  # each task's config, fitted to it
            seconds["startup_s"] = time.perf_counter() - started
            from study.orchestrate import run_study
            from study.progress import LOG_FILE as PROGRESS_LOG
            from study.space import plan

            the_plan = plan(config, task_configs)  # worked out once, here
            print(f"{the_plan.trials} trials, one line as each ends; their configs and last results go to "
                  f"{PROGRESS_LOG} in the experiment.", flush=True)
            path, seconds["tune_s"] = run_study(config, the_plan, data, argv)
            # The report is written while Ray shuts down, once the experiment is read (see _report).
            mark, read = time.perf_counter(), threading.Event()
            reported = pool.submit(_report, path, read)
            read.wait()  # Ray goes down only once the experiment is read (a race that killed the process)
        except BaseException:
            if owned:
                cluster.disconnect()
            raise
        shutdown = time.perf_counter()
        if owned:
            cluster.disconnect()
        seconds["ray_shutdown_s"] = time.perf_counter() - shutdown
        local, summary, trials, written, seconds["analysis_s"] = reported.result()
        seconds["finish_s"] = time.perf_counter() - mark
    seconds["wall_s"] = time.perf_counter() - started
    from study import report
    from trainables.files import write_atomic

    write_atomic(local / TIMINGS_FILE, json.dumps(seconds, indent=1))
    storage.publish(local, path, (*report.OUTPUTS, TIMINGS_FILE))
    return Ran(path, local, summary, trials, written, seconds)
