"""lrstudy from Python: the same engine as `python -m study.run` (study/engine.py), in a notebook or a script.

    from study import run_study
    result = run_study(task=MyTask, seeds=3, optimizer=["sgd", "adam"], finder_rules=["valley", "minimum"])
    result.arms          # the analysis's tables, as pandas DataFrames
    result               # in Jupyter: the verdicts, the arms and the figures

Keyword arguments are StudyConfig's fields (study/config.py), checked as their flags are: a bad
value raises ConfigError with the command line's one line, never `sys.exit`. `task` also takes
objects, as they are in memory (a class defined in a notebook cell included): a task object (with
`model` and `data`), a LightningModule class or factory with its data in `data=`, a `(model, data)`
pair, a --task spec, or a list of them. They reach every trial through Ray's own serialisation.
`study.load(path)` gives the same result for an experiment already on disk (the command line's too).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.config import FIELDS, ConfigError, config_from_values, typed
from trainables.tasks import OBJECT

DOOR = "study.run_study"  # how a study run from Python is named in its study.json


@dataclass
class StudyResult:
    """A study's results as data: `path` (the experiment: a folder or a URI), `summary` (summary.json's
    dict), `trials` (one row per trial), `arms` (one row per setting and arm: its statistics over
    seeds), `strategies` (one row per setting and strategy: compute against the metric),
    `verdicts` (the verdict sentences) and `figures` (each figure's file, by its key)."""

    path: str
    summary: dict
    trials: pd.DataFrame
    arms: pd.DataFrame
    strategies: pd.DataFrame
    verdicts: list[str]
    figures: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"StudyResult({self.path!r}: {len(self.trials)} trials, {len(self.summary.get('settings', {}))} settings)"

    def _repr_html_(self) -> str:
        """Jupyter's view: the verdicts, the arms' table and every figure, inline."""
        shown = [c for c in self.arms.columns if c in ("setting", "arm", "n", "lr.mean") or c.endswith(".mean")]
        parts = [f"<h4>lrstudy: {html.escape(str(self.path))}</h4>",
                 "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in self.verdicts) + "</ul>",
                 self.arms[shown].to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")]
        for key, path in self.figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%"/>'
                         f"<figcaption>{html.escape(key)}</figcaption></figure>")
        return "\n".join(parts)


def _rows(summary: dict, key: str, name: str) -> pd.DataFrame:
    """summary.json's `key` of every setting (a dict by arm, or a list of strategies), one flat row
    each (`test_acc.mean`, ...), the setting's label first."""
    rows = []
    for label, setting in summary.get("settings", {}).items():
        items = setting.get(key) or {}
        for k, stats in (items.items() if isinstance(items, dict) else ((r.get(name), r) for r in items)):
            rows.append({"setting": label, name: k, **{c: v for c, v in stats.items() if c != name}})
    return pd.json_normalize(rows) if rows else pd.DataFrame(columns=["setting", name])


def result_of(path: str, local: Path, summary: dict, trials: pd.DataFrame) -> StudyResult:
    """The StudyResult of an analysed experiment (`local`: the folder its report is in)."""
    from study import report, verdicts

    figures = {key: local / file for key, (file, _) in report.FIGURES.items() if (local / file).is_file()}
    return StudyResult(path=str(path), summary=summary, trials=trials, arms=_rows(summary, "arms", "arm"),
                       strategies=_rows(summary, "strategies", "strategy"), verdicts=verdicts.verdict_lines(summary),
                       figures=figures)


def load(path: str | Path) -> StudyResult:
    """The results of the experiment at `path` (a folder, or a URI), as `run_study` returns them:
    its summary.json where the study wrote one, else analysed afresh."""
    from study import analysis, report, storage

    local = storage.local_copy(str(path))
    experiment = analysis.load(local)
    written = local / "summary.json"
    summary = json.loads(written.read_text()) if written.is_file() else analysis.summarize(experiment)
    if not written.is_file():
        report.write_report(local, experiment, summary)
    return result_of(str(path), local, summary, experiment.trials)


def _label(obj) -> str:
    name = getattr(obj, "__name__", None) or type(obj).__name__
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "task"


def _by_value(task) -> None:
    """Have Ray's serialisation (cloudpickle) send the user's own code of a task object by value:
    a class of a notebook's `__main__` already goes so; one of a module that a worker may not be
    able to import (a test module, a script beside the notebook, a folder not on the cluster) goes
    so too. Installed packages (site-packages) go by reference, as usual."""
    import sys

    from ray import cloudpickle

    for obj in (task, getattr(task, "model", None), getattr(task, "data", None)):
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        where = getattr(module, "__file__", None) or ""
        if module is not None and where and "-packages" not in where and module.__name__ != "__main__" and \
                not module.__name__.startswith(("study", "trainables")):
            cloudpickle.register_pickle_by_value(module)


def _task_objects(task, data) -> tuple[tuple[str, ...], dict]:
    """`task` as specs, and the objects among them by their "object:<label>" spec."""
    from types import SimpleNamespace

    items = list(task) if isinstance(task, list) else [task]
    if data is not None:
        if len(items) != 1 or isinstance(items[0], (str, tuple)):
            raise ConfigError("data= goes with one task given as its model (a LightningModule class or factory)")
        items = [(items[0], data)]
    specs, objects = [], {}
    for item in items:
        if isinstance(item, str):
            specs.append(typed("task", item)[0])
            continue
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ConfigError("a task given as a pair is (model, data)")
            label, item = _label(item[0]), SimpleNamespace(model=item[0], data=item[1])
        else:
            label = _label(item)
        _by_value(item)
        spec = f"{OBJECT}:{label}"
        n = 2
        while spec in objects:
            spec, n = f"{OBJECT}:{label}_{n}", n + 1
        objects[spec] = item
        specs.append(spec)
    return tuple(specs), objects


def run_study(task="fashion-lenet", data=None, **settings) -> StudyResult:
    """Run a study, as `python -m study.run` would with the same settings, and return its results.
    `task`: a --task spec, a task object, a LightningModule class or factory (its data in `data`),
    a (model, data) pair, or a list of them. `settings`: StudyConfig's fields by name, lists for
    the comma-separated ones (`lrs=[0.01, 0.1]`). ConfigError (one line) for bad input, before any
    trial; a running Ray (`ray.init`) is used and left running, else one is started and stopped."""
    from study.engine import execute

    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}: run_study takes StudyConfig's fields (study/config.py)")
    specs, objects = _task_objects(task, data)
    given = {name: typed(name, value) for name, value in settings.items()}
    config = config_from_values({**given, "task": specs})
    call = ", ".join(f"{k}={v!r}" for k, v in {"task": list(specs), **settings}.items())
    ran = execute(config, {*given, "task"}, [DOOR, call], objects)
    written = json.loads((ran.local / "summary.json").read_text())  # the summary with its verdicts, as written
    return result_of(ran.path, ran.local, written, ran.trials)
