"""What the console shows while a study runs, in place of Ray Tune's per-trial boxes and tables.

One line per trial that ends: how many of the study's trials are done, this trial's result, the
best validation accuracy so far and an estimate of the time left. Each ended trial's config and
last result go, as one JSON line, to `trials.log` in the experiment (Ray Tune's own record of every
epoch stays in each trial's result.json).
"""

from __future__ import annotations

import json
import time
from typing import Callable

from ray import tune

from study import storage
from trainables import LR_FREE

LOG_FILE = "trials.log"
_DONE = ("TERMINATED", "ERROR")


def _label(config: dict) -> str:
    """'finder (valley), sgd, seed 0', 'manual lr=0.01, adam, seed 1' or 'prodigy, sgd, seed 0'
    (a learning-rate-free arm, whose LR is adapted)."""
    what = config.get("arm") if config.get("arm") in LR_FREE else \
        f"{config['arm']} lr={config['lr']:g}" if config.get("lr") is not None else \
        f"{config.get('arm')} ({config.get('finder_rule')})"
    return f"{what}, {config.get('optimizer')}, seed {config.get('seed')}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class Progress(tune.Callback):
    """A Ray Tune callback: `print_line` gets one line per ended trial; `experiment` (a local
    folder or a URI) gets trials.log. Trials that ended before a --resume count as done."""

    def __init__(self, experiment: str, total: int, epochs: int, print_line: Callable[[str], None] | None = None):
        self.experiment, self.total, self.epochs, self.print_line = experiment, total, epochs, print_line
        self.done_before: int | None = None  # set at the first step of each process (Tuner.restore
        # brings back this object as it was pickled at the study's start)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.done_before is not None:
            return
        self.done_before = sum(t.status in _DONE for t in trials)  # > 0 after a --resume
        self.started, self.ended_here, self.best = time.monotonic(), 0, None
        try:  # a resumed study keeps the lines, and the best, of the trials that ended before
            self.lines = storage.read_text(self.experiment, LOG_FILE).splitlines()
        except (OSError, ValueError):
            self.lines = []
        for line in self.lines:  # the log only informs: a torn line is passed over, never fatal
            try:
                entry = json.loads(line)
                self._track_best(entry["last_result"].get("val_acc"), entry["status"], _label(entry["config"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue

    def _track_best(self, acc, status: str, label: str) -> None:
        if isinstance(acc, (int, float)) and status == "done" and (self.best is None or acc > self.best[0]):
            self.best = (float(acc), label)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, "error")

    def _ended(self, trial, status: str | None) -> None:
        self.ended_here += 1
        result = trial.last_result or {}
        label = _label(trial.config)
        acc = result.get("val_acc")
        if status is None:  # ASHA stops a trial early: pruned
            status = ("diverged" if result.get("diverged") else
                      "pruned" if result.get("training_iteration", self.epochs) < self.epochs else "done")
        self._track_best(acc, status, label)
        done = (self.done_before or 0) + self.ended_here
        line = f"[{done}/{self.total}] {label}: {status}"
        if isinstance(acc, (int, float)) and status != "error":
            line += f", val_acc {acc:.4f}"
        if self.best:
            line += f" | best {self.best[0]:.4f} ({self.best[1]})"
        left = self.total - done
        if left > 0:
            line += f" | about {_minutes((time.monotonic() - self.started) / self.ended_here * left)} left"
        (self.print_line or print)(line)  # print as it is now: Ray's start replaces builtins.print
        scalars = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
        self.lines.append(json.dumps({"trial": trial.trial_id, "status": status, "config": trial.config,
                                      "last_result": scalars}, default=str))
        storage.write_text(self.experiment, LOG_FILE, "\n".join(self.lines) + "\n")
