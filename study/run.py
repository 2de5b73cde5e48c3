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

import shlex
import sys

# Only what parsing and validating the flags needs: --help, --version and a bad flag answer at
# once. Ray, torch (for the data's split), pandas and matplotlib (seconds to import) come with the
# engine (study/engine.py), after; Lightning only in the trials' workers.
from study.config import ConfigError, build_parser, config_from_args

PROG = "study.run"


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


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
        from study.engine import execute

        ran = execute(config, set(vars(args)), [PROG, *argv])
    except ConfigError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print(f"\nInterrupted. Continue with: python -m {PROG} --resume --name {config.name} "
              f"--results-dir {shlex.quote(config.results_dir)}", file=sys.stderr)
        return 130
    from study import storage, tables, verdicts

    seconds, summary = ran.seconds, ran.summary
    print()
    print(tables.format_table(summary))
    print()
    for line in verdicts.verdict_lines(summary):  # the verdicts: per setting, one line per arm
        print(line)
    print(f"\nStudy wall time {seconds['wall_s']:.1f} s: start-up {seconds['startup_s']:.1f} s (Ray's "
          f"{seconds['ray_start_s']:.1f} s alongside {seconds['prepare_s']:.1f} s of imports and data), Ray Tune "
          f"{seconds['tune_s']:.1f} s, then {seconds['finish_s']:.1f} s (Ray shutdown {seconds['ray_shutdown_s']:.1f} s "
          f"alongside analysis and report {seconds['analysis_s']:.1f} s).")
    print(f"Report:      {ran.written['report']}")
    print(f"Experiment:  {ran.path}")
    if storage.is_uri(ran.path):
        print(f"Local copy:  {ran.local} (no checkpoints; the report is uploaded to the experiment too)")
    print(f"TensorBoard: tensorboard --logdir {shlex.quote(str(ran.local))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
