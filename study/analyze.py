"""Re-create the analysis of an lrstudy experiment from its directory alone.

    python -m study.analyze results/<name>                   # metric and target: each setting's (its trials' configs)
    python -m study.analyze results/<name> --target 0.9      # time to reach 0.9 on each setting's metric
    python -m study.analyze results/<name> --metric val_loss --mode min   # compare on another logged metric
    python -m study.analyze s3://bucket/prefix/<name>        # a --results-dir URI: analysed in a local mirror

Reads the experiment with Ray Tune's ExperimentAnalysis, plus study.json and each range
test's lr_finder.json, and writes, atomically, into the experiment directory: summary.json, comparison.csv,
report.md and the figures (study/report.py's FIGURES: test accuracy against LR, the range tests,
the per-epoch curves, compute against accuracy, the search's progress). A study with several
seeds, finder rules, other arms or several optimisers gets, per optimiser, each arm's mean with a
95 % interval over seeds, its difference from the best manual LR paired by seed, and every
strategy's compute against its accuracy. Prints the comparison table, the verdict
(one sentence per optimiser) and the path of report.md. Works on partial experiments
(failed, diverged, pruned trials). A missing directory, one that is not an experiment, or
a bad flag: one line on stderr and exit code 2.

An experiment at a URI (anything Ray's storage_path accepts) is downloaded, checkpoints left out,
into ~/.cache/lrstudy/results/<scheme>/<bucket>/<path> (see study/storage.py), analysed there,
and the written files are uploaded back next to the trials.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

# Only what parsing the flags needs: --help and a bad flag answer at once; pyarrow, pandas,
# scipy and matplotlib come in main(), after.
from study.config import MODES, ConfigError, StudyConfig

MEASURE = ("metric", "mode", "target")  # the StudyConfig fields this tool takes, validated as the study's are

PROG = "study.analyze"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        _fail(message)


def _fail(message: str):
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Summarize an lrstudy experiment: finder LR vs best manual LR.",
                allow_abbrev=False)  # a flag is only ever its whole name
    p.add_argument("exp_dir", help="experiment directory or URI, <results-dir>/<name>")
    helps = {f.name: f.metadata["help"] for f in fields(StudyConfig)}
    p.add_argument("--metric", default=None, help=helps["metric"] + " (default: each setting's, from its trials)")
    p.add_argument("--mode", default=None, choices=MODES, help=helps["mode"] + " (default: each setting's)")
    p.add_argument("--target", type=float, default=None, help=helps["target"] + " (default: each setting's, from its trials)")
    return p


def measure(args: argparse.Namespace) -> dict:
    """The flags given, validated by the study's own config (`StudyConfig.validate`): ConfigError."""
    given = {k: getattr(args, k) for k in MEASURE if getattr(args, k) is not None}
    replace(StudyConfig(), **given).validate()
    return given


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        given = measure(args)
    except ConfigError as e:
        _fail(str(e))
    from study import storage
    from study import analysis

    try:
        local = storage.local_copy(args.exp_dir)  # a URI: its local mirror
        experiment = analysis.load(local)
        summary = analysis.summarize(experiment, **given)
    except (analysis.NotAnExperiment, ConfigError) as e:
        _fail(str(e))
    from study import report, tables, verdicts  # matplotlib: only when there is a report to write

    try:
        paths = report.write_report(local, experiment, summary)
        storage.publish(local, args.exp_dir, report.OUTPUTS)
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: cannot write the report: {e}\n")
        return 1
    print(tables.format_table(summary))
    print()
    for line in verdicts.verdict_lines(summary):  # the verdicts: per setting, one line per arm
        print(line)
    print(f"report: {paths['report']}")
    if storage.is_uri(args.exp_dir):
        print(f"uploaded to: {args.exp_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
