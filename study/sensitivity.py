"""How the LR finder's pick depends on its own settings: range tests alone, no training.

    python -m study.sensitivity                       # 5 seeds x sgd,adam x 3 settings, ~1-2 minutes
    python -m study.sensitivity --seeds 3 --optimizer adam
    python -m study.sensitivity --preset writeup      # the write-up's data and optimiser
    python -m study.sensitivity --task fashion-mlp,fashion-resnet   # other models' range tests

For every task, optimiser, seed and setting (`SETTINGS`: Lightning's range, fastai's range, 300 steps)
it runs the range test exactly as a finder trial does (`trainables.trainable.trial_range_test`:
same seeding, same data order, same initial weights, so seed s here is seed s of a study), and
applies every rule (`trainables.finder_rules.RULES`) to the curve. Prints a markdown table of
each rule's pick, median and [min, max] over the seeds, and the rules that picked the same LR on
every curve; writes sensitivity.json (every pick) and sensitivity.md to <results-dir>/<name>/.
Runs in this process on --cpus-per-trial threads; no Ray.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from study.config import ConfigError, StudyConfig, build_parser, config_from_args, data_settings
from trainables.files import write_atomic
from trainables.finder_rules import RULES

PROG = "study.sensitivity"
SETTINGS = {  # name -> (min_lr, max_lr, num_training)
    "lightning 1e-8..1, 100 steps": (1e-8, 1.0, 100),
    "fastai 1e-7..10, 100 steps": (1e-7, 10.0, 100),
    "lightning 1e-8..1, 300 steps": (1e-8, 1.0, 300),
}
FLAGS = ("seeds", "seed", "task", "optimizer", "batch_size", "momentum", "preset", "data_dir", "val_size", "split_seed",
         "normalize", "subset", "cpus_per_trial", "results_dir", "name", "smoke")
DEFAULTS = {"seeds": 5, "optimizer": ("sgd", "adam"), "name": "finder-sensitivity"}


def run_range_tests(config: StudyConfig, data) -> list[dict]:
    """One row per (task, optimizer, setting, seed): every rule's pick, on both curves, and the
    test's seconds. `data`: each task's Dataset by --task spec, or one for every task."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # lr_find's progress bar, one per test; tqdm reads this at import
    from study.space import TRIAL_SETTINGS
    from trainables.trainable import trial_range_test

    rows = []
    for task, optimizer, batch_size in itertools.product(config.task, config.optimizer, config.batch_size):
        for setting, (min_lr, max_lr, steps) in SETTINGS.items():
            for seed in range(config.seed, config.seed + config.seeds):
                trial = {**{k: getattr(config, k) for k in TRIAL_SETTINGS}, "task": task, "optimizer": optimizer,
                         "batch_size": batch_size, "seed": seed, "finder_min_lr": min_lr, "finder_max_lr": max_lr,
                         "finder_num_training": steps}
                result = trial_range_test(trial, data[task] if isinstance(data, dict) else data)
                rows.append({"task": task, "optimizer": optimizer, "batch_size": batch_size, "setting": setting, "seed": seed, "min_lr": min_lr,
                             "max_lr": max_lr, "num_training": steps, "points": len(result.lrs),
                             "seconds": result.seconds, "suggestions": result.suggestions,
                             "suggestions_lightning_curve": result.suggestions_lightning_curve})
            print(f"{task}, {optimizer}, {setting}: {config.seeds} range tests", file=sys.stderr)
    return rows


def _cell(picks: list) -> str:
    values = [p for p in picks if p is not None]
    if not values:
        return "none"
    text = f"{np.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"
    return text + (f" ({len(picks) - len(values)} none)" if len(values) < len(picks) else "")


def table(rows: list[dict]) -> str:
    """Markdown: per task, optimiser and setting, each rule's median [min, max] pick over the seeds."""
    lines = ["| task | optimizer | setting | points | " + " | ".join(RULES) + " | steepest on Lightning's curve |",
             "|---" * (len(RULES) + 5) + "|"]
    groups = dict.fromkeys((r["task"], r["optimizer"], r["setting"]) for r in rows)
    for task, optimizer, setting in groups:
        mine = [r for r in rows if (r["task"], r["optimizer"], r["setting"]) == (task, optimizer, setting)]
        cells = [_cell([r["suggestions"][rule] for r in mine]) for rule in RULES]
        cells.append(_cell([r["suggestions_lightning_curve"]["steepest"] for r in mine]))
        points = f"{min(r['points'] for r in mine)}-{max(r['points'] for r in mine)}"  # < steps: stopped early
        lines.append(f"| {task} | {optimizer} | {setting} | {points} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def same_picks(rows: list[dict]) -> list[tuple[str, str]]:
    """Pairs of rules that picked the same LR on every range test."""
    return [(a, b) for i, a in enumerate(RULES) for b in RULES[i + 1:]
            if all(r["suggestions"][a] == r["suggestions"][b] for r in rows)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(PROG, __doc__.split("\n")[0], only=FLAGS, defaults=DEFAULTS).parse_args(argv)
    try:
        config = config_from_args(args, DEFAULTS)
        from trainables import tasks
        from trainables.checks import load_data
        from trainables.data import DataError

        try:
            loaded = {spec: tasks.load(spec, config.data_dir, driver=True) for spec in config.task}
            data, _ = load_data(loaded, {spec: data_settings(config, batch_size=None) for spec in config.task})
        except (DataError, tasks.TaskError) as e:
            raise ConfigError(str(e)) from None
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = run_range_tests(config, data)
    seconds = time.perf_counter() - start
    same = same_picks(rows)
    text = (f"Each rule's pick: median [min, max] over seeds {config.seed}..{config.seed + config.seeds - 1} "
            f"(batch {','.join(map(str, config.batch_size))}, momentum {config.momentum} for sgd).\n\n{table(rows)}\n\n"
            + ("Same pick on every range test: " + ", ".join(f"{a} = {b}" for a, b in same) if same
               else "No two rules picked the same LR on every range test.")
            + f"\n\n{len(rows)} range tests in {seconds:.1f} s.\n")
    out = Path(config.results_dir) / config.name
    write_atomic(out / "sensitivity.json", json.dumps({"config": config.to_dict(), "settings": SETTINGS,
                                                      "rows": rows, "seconds": seconds}, indent=1))
    write_atomic(out / "sensitivity.md", text)
    print(text)
    print(f"Written: {out / 'sensitivity.md'}, {out / 'sensitivity.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
