"""What the console shows while a study runs, in place of Ray Tune's per-trial boxes and tables.

On a terminal, or in Jupyter (tqdm.auto's widget), one status line redrawn in place from the first step of the study: epochs
done out of the study's total, trials running, ended and left, the best of the trials' metric so
far (each trial's config names it: `metric`, best in its `mode`; val_acc, maximised, by default;
one best per metric where settings differ) and the time left, estimated from the epochs done. Away
from a terminal (CI, a log file), no status line. Either way, one line per trial that ends (above
the status line on a terminal): how many of the study's trials are done, this trial's result, the
best of the finished trials on its metric and an estimate of the time left. Each ended trial's config and last result go,
as one JSON line, to `trials.log` in the experiment (Ray Tune's own record of every epoch stays
in each trial's result.json).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable, TextIO

import warnings

from ray import tune

with warnings.catch_warnings():  # tqdm.auto: a notebook's widget in Jupyter (it warns that it chose it), else the terminal's
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

from study import storage
from study.config import DIMENSIONS, StudyConfig, dimension_value, metric_settings
from trainables import LR_FREE

LOG_FILE = "trials.log"
_DONE = ("TERMINATED", "ERROR")
BAR_FORMAT = "{n_fmt}/{total_fmt} epochs |{bar}| {desc}"  # desc: Progress.status
REDRAW_S = 1.0  # the status line is redrawn at least this often (elapsed time moves), and at every result


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm.auto draws a widget)."""
    return "ipykernel" in sys.modules and "IPython" in sys.modules and \
        type(sys.modules["IPython"].get_ipython()).__name__ == "ZMQInteractiveShell"


def _label(config: dict, tasks: tuple[str, ...] = ()) -> str:
    """'finder (valley), sgd, seed 0', 'manual lr=0.01, fashion-mlp, adam, cosine, seed 1' or
    'prodigy, sgd, seed 0' (a learning-rate-free arm, whose LR is adapted); a task by its short name
    among the study's `tasks`."""
    what = config.get("arm") if config.get("arm") in LR_FREE else \
        f"{config['arm']} lr={config['lr']:g}" if config.get("lr") is not None else \
        f"{config.get('arm')} ({config.get('finder_rule')})"
    # the optimiser, and the other dimensions where they are not the default (a task, a schedule)
    dims = [dimension_value(d, config[d], tasks) for d in DIMENSIONS if d in config and (d == "optimizer" or config[d] != getattr(StudyConfig, d)[0])]
    return ", ".join([what, *dims, f"seed {config.get('seed')}"])


def _measured(config: dict | None) -> tuple[str, str]:
    """The metric a trial is judged on and its direction, from its config."""
    m = metric_settings(config or {})
    return m["metric"], m["mode"]


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _epochs_run(trial) -> int:
    """Epochs a trial has reported (a diverged trial's last, partial epoch counts)."""
    return int((trial.last_result or {}).get("training_iteration", 0))


class Progress(tune.Callback):
    """A Ray Tune callback: one line per ended trial, to `print_line` (default: print), or above
    the status line drawn on `terminal` (default: stdout, when it is a terminal and `print_line`
    is not given); `experiment` (a local folder or a URI) gets trials.log. Trials that ended
    before a --resume count as done, with their epochs."""

    tasks: tuple[str, ...] = ()  # a study's pickled before its tasks were named apart has none

    def __init__(self, experiment: str, total: int, epochs: int, print_line: Callable[[str], None] | None = None,
                 terminal: TextIO | None = None, epochs_planned: int | None = None, tasks: tuple[str, ...] = ()):
        """`epochs`: a trial's, where its config does not say (tasks may differ); `epochs_planned`:
        all trials' together (default: `total` x `epochs`); `tasks`: the study's, to name them apart."""
        self.experiment, self.total, self.epochs, self.print_line = experiment, total, epochs, print_line
        self.tasks = tuple(tasks)
        self.terminal, self.epochs_planned = terminal, epochs_planned if epochs_planned is not None else total * epochs
        self.done_before: int | None = None  # set at the first step of each process

    def __getstate__(self) -> dict:
        """Tuner.restore brings this object back as it was pickled with the Tuner: its settings
        only. What a run tracks (and the status line, a tqdm on an open stream) starts afresh at
        the first step of each process."""
        return {"experiment": self.experiment, "total": self.total, "epochs": self.epochs,
                "epochs_planned": self.epochs_planned, "tasks": self.tasks, "print_line": self.print_line, "terminal": None, "done_before": None}

    def _start(self, trials: list) -> None:
        self.done_before = sum(t.status in _DONE for t in trials)  # > 0 after a --resume
        self.started, self.ended_here, self.best = time.monotonic(), 0, {}  # metric -> (value, label)
        self.running = {}  # trial id -> (metric, mode, its latest value) of each running trial (not a diverged one's)
        self.modes = {}  # metric -> mode
        self.ended = {t.trial_id: self._planned(t) for t in trials if t.status in _DONE}  # -> its epochs
        self.epochs_run = {t.trial_id: _epochs_run(t) for t in trials}  # epochs reported, by trial
        self.epochs_at_start = sum(self.epochs_run.values())
        auto = sys.stdout if self.print_line is None and (sys.stdout.isatty() or in_notebook()) else None
        self.stream = self.terminal or auto  # where the status line goes, if anywhere
        self.bar, self.drawn = None, float("-inf")  # the tqdm, made at the first draw
        try:  # a resumed study keeps the lines, and the best, of the trials that ended before
            self.lines = storage.read_text(self.experiment, LOG_FILE).splitlines()
        except (OSError, ValueError):
            self.lines = []
        for line in self.lines:  # the log only informs: a torn line is passed over, never fatal
            try:
                entry = json.loads(line)
                metric, mode = _measured(entry["config"])
                self._track_best(entry["last_result"].get(metric), entry["status"], _label(entry["config"], self.tasks),
                                 metric, mode)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue

    def _track_best(self, value, status: str, label: str, metric: str = "val_acc", mode: str = "max") -> None:
        self.modes[metric] = mode
        best = self.best.get(metric)
        if isinstance(value, (int, float)) and status == "done" and (best is None or _better(value, best[0], mode)):
            self.best[metric] = (float(value), label)

    # -- the status line ----------------------------------------------------------------------------

    def epochs_total(self) -> int:
        """The planned epochs, less those an ended trial will never run (pruned, diverged, errored)."""
        unrun = sum(max(0, planned - self.epochs_run.get(t, 0)) for t, planned in self.ended.items())
        return self.epochs_planned - unrun

    def _planned(self, trial) -> int:
        return int((trial.config or {}).get("epochs", self.epochs))

    def status(self, trials: list) -> str:
        """The status line after its epochs and bar: the time elapsed and left (as tqdm writes them;
        '?' until an epoch is done here), the trials, and the best validation accuracy so far: of a
        finished trial (as on the lines) or where a running trial is now."""
        done = sum(self.epochs_run.values())
        elapsed, here = time.monotonic() - self.started, done - self.epochs_at_start
        left = tqdm.format_interval(elapsed / here * (self.epochs_total() - done)) if here > 0 else "?"
        running, ended = sum(t.status == "RUNNING" for t in trials), len(self.ended)
        line = (f"{tqdm.format_interval(elapsed)}<{left} | "
                f"{running} running, {ended} ended, {max(0, self.total - running - ended)} left")
        for metric in dict.fromkeys([*self.best, *(m for m, _, _ in self.running.values())]):
            mode = self.modes.get(metric, "max")
            values = [v for m, _, v in self.running.values() if m == metric] + ([self.best[metric][0]] if metric in self.best else [])
            line += f" | best {metric} {(max if mode == 'max' else min)(values):.4f}"
        return line

    def _draw(self, trials: list, force: bool = True) -> None:
        if self.stream is None or (not force and time.monotonic() - self.drawn < REDRAW_S):
            return
        if self.bar is None:
            self.bar = tqdm(total=self.epochs_total(), desc=self.status(trials), file=self.stream,
                            bar_format=BAR_FORMAT, dynamic_ncols=True, leave=True)
        self.bar.total, self.bar.n = self.epochs_total(), sum(self.epochs_run.values())
        self.bar.set_description_str(self.status(trials), refresh=False)
        self.bar.refresh()
        self.drawn = time.monotonic()

    # -- Ray Tune's hooks ---------------------------------------------------------------------------

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.done_before is None:
            self._start(trials)
        self._draw(trials, force=False)  # every loop step, at most once a second: the time moves

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._draw(trials)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.epochs_run[trial.trial_id] = int(result.get("training_iteration", self.epochs_run.get(trial.trial_id, 0)))
        metric, mode = _measured(trial.config)
        value = result.get(metric)
        if isinstance(value, (int, float)) and not result.get("diverged"):
            self.modes[metric] = mode
            self.running[trial.trial_id] = (metric, mode, float(value))
        self._draw(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, None)
        self._draw(trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, "error")
        self._draw(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.done_before is not None and self.bar is not None:
            self._draw(trials)
            self.bar.close()  # the last status line stays, on a line of its own
            self.bar = None

    def _ended(self, trial, status: str | None) -> None:
        self.ended_here += 1
        self.ended[trial.trial_id] = self._planned(trial)
        self.running.pop(trial.trial_id, None)  # done: it counts in self.best; else never
        self.epochs_run[trial.trial_id] = _epochs_run(trial)
        result = trial.last_result or {}
        label = _label(trial.config, self.tasks)
        metric, mode = _measured(trial.config)
        acc = result.get(metric)
        if status is None:  # ASHA stops a trial early: pruned
            status = ("diverged" if result.get("diverged") else
                      "pruned" if result.get("training_iteration", self._planned(trial)) < self._planned(trial) else "done")
        self._track_best(acc, status, label, metric, mode)
        done = (self.done_before or 0) + self.ended_here
        line = f"[{done}/{self.total}] {label}: {status}"
        if isinstance(acc, (int, float)) and status != "error":
            line += f", {metric} {acc:.4f}"
        if metric in self.best:
            line += f" | best {self.best[metric][0]:.4f} ({self.best[metric][1]})"
        left = self.total - done
        if left > 0:
            line += f" | about {_minutes((time.monotonic() - self.started) / self.ended_here * left)} left"
        if self.stream is not None:
            tqdm.write(line, file=self.stream)  # above the status line, which is drawn again below it
        else:
            (self.print_line or print)(line)  # print as it is now: Ray's start replaces builtins.print
        scalars = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
        self.lines.append(json.dumps({"trial": trial.trial_id, "status": status, "config": trial.config,
                                      "last_result": scalars}, default=str))
        storage.write_text(self.experiment, LOG_FILE, "\n".join(self.lines) + "\n")
