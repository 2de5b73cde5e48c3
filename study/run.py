"""Run the LR study: Lightning's LR finder against a manual LR search, side by side on Ray Tune.

    python -m study.run                     # default: grid over 5 LRs + the finder, 10 epochs
    python -m study.run --smoke             # a real but tiny run, well under a minute
    python -m study.run --search asha --num-samples 12
    python -m study.run --address auto      # on a running Ray cluster (see docs/CLUSTER.md)
    python -m study.run --resume            # continue an interrupted study of the same --name
    python -m study.run --help              # every flag and its default

Results: <results-dir>/<name>/ is the Ray Tune experiment (one folder per trial with
progress.csv, result.json, TensorBoard events), plus summary.json, comparison.csv, report.md
and figures. `tensorboard --logdir <results-dir>/<name>` shows every trial's curves.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields

from study import analysis, report
from study.config import ConfigError, StudyConfig, build_parser, config_from_args
from study.orchestrate import STUDY_FILE, connect, experiment_dir, prepare_experiment_dir, run_study
from trainables.data import DataError, load_dataset

PROG = "study.run"
# Flags that may differ when resuming; everything else comes from the stored study.json.
RESUME_FLAGS = ("results_dir", "name", "address", "resume", "max_failures")


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _stored_config(config: StudyConfig) -> StudyConfig:
    """On --resume, the study continues with the settings it started with."""
    path = experiment_dir(config) / STUDY_FILE
    try:
        stored = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"--resume: {path} is missing or unreadable") from None
    known = {f.name for f in fields(StudyConfig)}
    merged = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    merged.update({k: getattr(config, k) for k in RESUME_FLAGS})
    return StudyConfig(**merged).validate()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(PROG, __doc__.split("\n")[0]).parse_args(argv)
    started = time.perf_counter()
    try:
        config = config_from_args(args)
        if config.resume:
            config = _stored_config(config)
        prepare_experiment_dir(config, create=False)  # a taken --name: refuse before anything starts
        data = load_dataset(config.data_dir, val_size=config.val_size, split_seed=config.split_seed,
                            normalize=config.normalize, subset=config.subset)
        connect(config)
        path, tune_wall_s = run_study(config, data, [PROG, *argv])
    except (ConfigError, DataError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print(f"\nInterrupted. Continue with: python -m {PROG} --resume --name {config.name} "
              f"--results-dir {config.results_dir}", file=sys.stderr)
        return 130

    summary = analysis.summarize(path, target_acc=config.target_acc)
    written = report.write_report(path, summary)
    print()
    print(report.format_table(summary))
    print()
    for setting in summary["settings"].values():  # the verdict, one line per optimiser
        print(setting["verdict"])
    print(f"\nStudy wall time {time.perf_counter() - started:.1f} s (Ray Tune {tune_wall_s:.1f} s).")
    print(f"Report:      {written['report']}")
    print(f"Experiment:  {path}")
    print(f"TensorBoard: tensorboard --logdir {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
