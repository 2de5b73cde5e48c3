"""Run the LR study: Lightning's LR finder against a manual LR search, side by side on Ray Tune.

    python -m study.run                     # default: grid over 5 LRs + the finder, 10 epochs
    python -m study.run --smoke             # a real but tiny run, well under a minute
    python -m study.run --search asha --num-samples 12
    python -m study.run --address auto      # on a running Ray cluster (see docs/CLUSTER.md)
    python -m study.run --resume            # continue an interrupted study of the same --name
    python -m study.run --help              # every flag and its default
    python -m study.run --version           # the installed lrstudy's version

Results: <results-dir>/<name>/ is the Ray Tune experiment (one folder per trial with
progress.csv, result.json, TensorBoard events), plus summary.json, comparison.csv, report.md
and figures, and timings.json: where this invocation's wall time went (data, Ray start-up, Ray
Tune, Ray shutdown, analysis and report; the last --resume's, after one).
`tensorboard --logdir <results-dir>/<name>` shows every trial's curves.
--results-dir may be a URI (s3://bucket/prefix): the report is then written in a local mirror
of the experiment, ~/.cache/lrstudy/results/s3/bucket/prefix/<name>, and uploaded next to it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import fields

# Only what parsing and validating the flags needs: --help, --version and a bad flag answer at
# once. torch, Lightning, Ray, pandas and matplotlib (seconds to import) come in main(), after.
from study.config import ConfigError, StudyConfig, build_parser, config_from_args, flag

PROG = "study.run"
# Flags that may differ when resuming; everything else comes from the stored study.json.
RESUME_FLAGS = ("results_dir", "name", "address", "resume", "max_failures")
TIMINGS_FILE = "timings.json"


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _shown(value) -> str:
    """A setting as it is written on the command line."""
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "not set" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _stored_config(config: StudyConfig, given: set[str]) -> StudyConfig:
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
    merged = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    resumed = StudyConfig(**{**merged, **{k: getattr(config, k) for k in RESUME_FLAGS}})
    for name in known:  # in the order of --help
        if name in given and name not in RESUME_FLAGS and getattr(config, name) != getattr(resumed, name):
            value = getattr(config, name)
            written = flag(name, known[name]) + ("" if isinstance(value, bool) else f" {_shown(value)}")
            raise ConfigError(f"--resume: {written} differs from the stored study ({_shown(getattr(resumed, name))}); "
                              f"drop the flag or start a new --name")
    return resumed.validate()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{PROG} {version('lrstudy')}"
    except PackageNotFoundError:
        return f"{PROG} (not installed: pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(PROG, __doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=_version(), help="print lrstudy's version and exit")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if config.resume:  # the stored study's flags, read through pyarrow alone: still quick
            config = _stored_config(config, given=set(vars(args)))
    except ConfigError as e:
        return _fail(str(e))

    # The flags are valid: only now what a study needs (seconds of imports).
    from study import analysis, report, storage
    from study.orchestrate import connect, disconnect, prepare_experiment_dir, run_study
    from study.progress import LOG_FILE as PROGRESS_LOG
    from study.space import trial_points
    from trainables.data import DataError, load_dataset
    from trainables.files import write_atomic

    started = time.perf_counter()  # Python imports not counted
    seconds = {}  # where the wall time goes, in order
    try:
        prepare_experiment_dir(config, create=False)  # a taken --name: refuse before anything starts
        data = load_dataset(config.data_dir, val_size=config.val_size, split_seed=config.split_seed,
                            normalize=config.normalize, subset=config.subset)
        seconds["data_s"] = time.perf_counter() - started
        mark = time.perf_counter()
        connect(config)
        seconds["ray_start_s"] = time.perf_counter() - mark
        print(f"{len(trial_points(config))} trials, one line as each ends; their configs and last results go to "
              f"{PROGRESS_LOG} in the experiment.", flush=True)
        path, seconds["tune_s"] = run_study(config, data, [PROG, *argv])
    except (ConfigError, DataError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print(f"\nInterrupted. Continue with: python -m {PROG} --resume --name {config.name} "
              f"--results-dir {shlex.quote(config.results_dir)}", file=sys.stderr)
        return 130

    mark = time.perf_counter()
    disconnect()
    seconds["ray_shutdown_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    local = storage.local_copy(path)  # a URI's experiment is analysed in a local mirror
    experiment = analysis.load(local)
    summary = analysis.summarize(experiment)
    written = report.write_report(local, experiment, summary)
    seconds["analysis_s"] = time.perf_counter() - mark
    seconds["wall_s"] = time.perf_counter() - started
    write_atomic(local / TIMINGS_FILE, json.dumps(seconds, indent=1))
    storage.publish(local, path, (*report.OUTPUTS, TIMINGS_FILE))
    print()
    print(report.format_table(summary))
    print()
    for line in report.verdict_lines(summary):  # the verdicts: per optimiser, one line per finder rule
        print(line)
    print(f"\nStudy wall time {seconds['wall_s']:.1f} s: data {seconds['data_s']:.1f} s, Ray start-up "
          f"{seconds['ray_start_s']:.1f} s, Ray Tune {seconds['tune_s']:.1f} s, Ray shutdown {seconds['ray_shutdown_s']:.1f} s, "
          f"analysis and report {seconds['analysis_s']:.1f} s (Python imports not counted).")
    print(f"Report:      {written['report']}")
    print(f"Experiment:  {path}")
    if storage.is_uri(path):
        print(f"Local copy:  {local} (no checkpoints; the report is uploaded to the experiment too)")
    print(f"TensorBoard: tensorboard --logdir {shlex.quote(str(local))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
