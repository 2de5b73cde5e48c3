"""Tasks (trainables/tasks.py): the built-in ones and the user's, to one contract, checked at the
door; each task's trials share their seed's weights and batches; a user's task file runs a real
study (real Ray, Lightning) from a folder outside the repository, as the README shows it."""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ray import tune

from study.config import ConfigError, StudyConfig, data_settings, with_task_defaults
from study.engine import _prepare
from study.run import main
from study.space import plan, trial_dirname
from tests.conftest import REPO, make_idx_dir, real_data_dir, run_module
from trainables import tasks
from trainables.checks import check_model, load_data
from trainables.data import DataError, from_task
from trainables.trainable import run_trial

# A user's task file, as a user writes one: a LightningDataModule over generated 8x8 images of 4
# classes (the class is the bright row), and a small conv net. {extra} lets a test break it.
DATAMODULE_TASK = '''
import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def images(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = rng.normal(scale=0.3, size=(n, 1, 8, 8)).astype(np.float32)
    x[np.arange(n), 0, 2 * y, :] += 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


class Blocks(pl.LightningDataModule):
    def __init__(self, batch_size=50):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage):
        self.train, self.test = TensorDataset(*images(500, 0)), TensorDataset(*images(100, 1))
        self.val = TensorDataset(*images(100, 2))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=50)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=50)


class TASK:
    data = Blocks()
    defaults = {{"epochs": 1}}

    @staticmethod
    def model():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, {classes}))
{extra}
'''


def write_task(folder: Path, name: str = "blocks_task", classes: int = 4, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(DATAMODULE_TASK.format(classes=classes, extra=textwrap.dedent(extra)))
    return path


@pytest.fixture
def fresh_tasks():
    """Each test loads its task files afresh (tasks are loaded once per process)."""
    before, path = set(sys.modules), list(sys.path)
    tasks._loaded.clear()
    yield
    tasks._loaded.clear()
    for name in set(sys.modules) - before:
        if name.endswith("_task") or name.startswith(("usertasks", "lrstudy_task_")) or name in SIBLINGS:
            del sys.modules[name]
    sys.path[:] = path


# A task file that imports its model from a sibling module (`from {sibling} import model`), as a
# user splits a task into files; its data has `classes` classes, its model as many outputs.
SIBLING_TASK = """
import numpy as np
from types import SimpleNamespace
from {sibling} import model

def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = np.digitize(x[:, 0], np.linspace(-1, 1, {classes} - 1)).astype(np.int64)
    return x[:80], y[:80], x[80:], y[80:]

TASK = SimpleNamespace(model=model, data=data, defaults={defaults})
"""
SIBLING = "from torch import nn\n\ndef model():\n    return nn.Linear(3, {classes})\n"
SIBLINGS = ("nets", "layers")


def sibling_task(folder: Path, sibling: str = "nets", classes: int = 2, defaults: str = "{}") -> str:
    """folder/task.py importing folder/{sibling}.py; its spec."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sibling}.py").write_text(SIBLING.format(classes=classes))
    (folder / "task.py").write_text(SIBLING_TASK.format(sibling=sibling, classes=classes, defaults=defaults))
    return f"{folder / 'task.py'}:TASK"


# The built-in tasks' sizes, as docs/TRIALS.md states them
BUILTIN_PARAMETERS = {"fashion-lenet": 61_706, "fashion-mlp": 235_146, "fashion-resnet": 19_706, "fashion-vit": 139_018,
                      "fashion-vit-finetune": 138_693}
BUILTIN_CLASSES = {"fashion-vit-finetune": 5}  # its classes 5-9, labelled 0-4; the others all ten


@pytest.mark.parametrize("name", list(tasks.BUILTIN))
def test_each_built_in_task_gives_logits_over_fashion_mnists_classes_at_its_documented_size(name):
    torch.manual_seed(0)
    model = tasks.build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, BUILTIN_CLASSES.get(name, tasks.NUM_CLASSES))
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == BUILTIN_PARAMETERS[name]
    row = next(line for line in (REPO / "docs" / "TRIALS.md").read_text().splitlines() if line.startswith(f"  | `{name}` |"))
    assert f"| {parameters:,} |" in row, row
    assert tasks.name(name) == name and tasks.ship((name,)) == []


# -- the contract, checked at the door ---------------------------------------------------------------

def bad(tmp_path: Path, source: str, name: str = "broken_task") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return f"{path}:TASK"


def arrays_task(train_x="np.zeros((40, 3), np.float32)", train_y="np.zeros(40, np.int64)",
                out: int = 2, more: str = "") -> str:
    return f"""
        import numpy as np
        from torch import nn
        from types import SimpleNamespace
        TASK = SimpleNamespace(model=lambda: nn.Linear(3, {out}),
                               data=lambda: ({train_x}, {train_y}, np.zeros((10, 3), np.float32), np.zeros(10, np.int64)){more})
    """


@pytest.mark.parametrize("source, message", [
    ("import numpy as np\n1 +\n", r"broken_task.py does not import \(SyntaxError: .*\)$"),
    ("raise RuntimeError('no GPU here\\nsecond line')\n", r"does not import \(RuntimeError: second line\)$"),
    ("OTHER = 1\n", r"broken_task.py has no TASK$"),
    ("from types import SimpleNamespace\nTASK = SimpleNamespace(model=lambda: None)\n", r"TASK has no data \(a task needs model and data\)$"),
    ("TASK = object()\n", r"TASK has no model or data"),
    ("from types import SimpleNamespace\nTASK = SimpleNamespace(model=1, data=list)\n", r"TASK.model must be a class or a function"),
    (arrays_task(more=", defaults={'data_dir': 'x'}"), r"TASK.defaults may set only .*; not data_dir$"),
])
def test_a_task_that_breaks_the_contract_is_one_line_and_exit_2_before_ray(tmp_path, capsys, fresh_tasks, source, message):
    assert main(["--task", bad(tmp_path, source), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("study.run: error: --task "), err
    assert re.search(message, err.strip()), err
    assert not (tmp_path / "r").exists()  # nothing started


def test_a_missing_task_file_or_module_is_one_line(tmp_path, capsys, fresh_tasks):
    assert main(["--task", f"{tmp_path}/nowhere.py:TASK"]) == 2
    assert capsys.readouterr().err == f"study.run: error: --task {tmp_path}/nowhere.py:TASK: no such file: {tmp_path}/nowhere.py\n"
    assert main(["--task", "no_such_package.tasks:TASK"]) == 2
    assert "no_such_package.tasks does not import (ModuleNotFoundError: No module named 'no_such_package')" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # argparse's own exit
        main(["--task", "nothing-like-a-task"])
    assert "choose from fashion-lenet, fashion-mlp, fashion-resnet, fashion-vit, fashion-vit-finetune, or name your own" in capsys.readouterr().err


@pytest.mark.parametrize("source, message", [
    (arrays_task(train_y="np.zeros(39, np.int64)"), r"train_x has 40 examples but train_y has 39 labels"),
    (arrays_task(train_y="np.full(40, 2)"), r"its data has label 2, but its model outputs 2 classes \(0..1\)$"),
    (arrays_task(train_y="np.full(40, -1)"), r"train_y must hold class indices 0, 1, ..."),
    (arrays_task(train_y="np.full(40, 0.5)"), r"train_y must hold class indices"),
    (arrays_task(out=1), r"output for a batch of 2 has shape \(2, 1\), expected \(2, classes\)"),
    (arrays_task(train_x="np.zeros((40, 5), np.float32)"), r"its model fails on a batch of its data \(RuntimeError: .*\)$"),
    (arrays_task(train_x="1/0"), r"its data\(\) failed \(ZeroDivisionError: division by zero\)$"),
])
def test_data_and_model_that_do_not_fit_are_one_line(tmp_path, fresh_tasks, source, message):
    """What the driver checks while Ray starts, before any trial (run.py's `_prepare`)."""
    spec = bad(tmp_path, source)
    with pytest.raises(ConfigError) as e:
        _prepare(StudyConfig(task=(spec,), val_size=5))
    assert "\n" not in str(e.value) and str(e.value).startswith(f"--task {spec}: "), str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_a_bad_task_found_while_ray_starts_still_exits_2_with_one_line(tmp_path, fresh_tasks):
    spec = bad(tmp_path, arrays_task(out=1))
    proc = run_module("study.run", "--task", spec, "--val-size", "5", "--results-dir", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "expected (2, classes)" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "r").glob("*/*/params.json"))  # no trial ran


def test_data_over_the_memory_limit_is_refused_naming_the_limit(tmp_path, fresh_tasks, monkeypatch):
    spec = bad(tmp_path, arrays_task())  # 1,000 bytes of arrays
    from_task(tasks.load(spec, driver=True), spec, val_size=5)
    monkeypatch.setattr("trainables.data.MAX_DATA_BYTES", 999)
    with pytest.raises(DataError, match=r"^--task .*: its data is 1000 bytes, more than the 999 bytes limit \(MAX_DATA_BYTES in trainables/data.py\)"):
        from_task(tasks.load(spec, driver=True), spec, val_size=5)


# -- the forms a task may take -------------------------------------------------------------------------

FORMS = {
    "module": "from torch import nn\nimport numpy as np\nmodel = lambda: nn.Linear(3, 2)\n"
              "def data():\n    return np.ones((20, 3), np.float32), np.arange(20) % 2, np.ones((4, 3), np.float32), np.arange(4) % 2\n",
    "function": "from types import SimpleNamespace\nfrom usertasks.forms import model, data\n"
                "def make():\n    return SimpleNamespace(model=model, data=data)\n",
    "dataclass": "from dataclasses import dataclass\nfrom usertasks.forms import model, data\n"
                 "@dataclass\nclass Task:\n    defaults = None\n    def __post_init__(self):\n        self.model, self.data = model, data\n",
}


def test_a_task_may_be_a_module_a_function_or_a_class_in_a_package(tmp_path, fresh_tasks, monkeypatch):
    package = tmp_path / "usertasks"
    package.mkdir()
    (package / "__init__.py").write_text("from usertasks import forms\n")
    for name, source in FORMS.items():
        (package / ("forms.py" if name == "module" else f"{name}.py")).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("usertasks:forms", "usertasks.function:make", "usertasks.dataclass:Task"):
        task = tasks.load(spec, driver=True)
        data = from_task(task, spec, val_size=4)
        assert len(data.train_y) == 16 and check_model(spec, data) == 2, spec
    assert tasks.name("usertasks.function:make") == "usertasks.function.make"
    assert tasks.name(f"{tmp_path}/sub/my_task.py:TASK") == "my_task.TASK"
    # Ray ships the user's own package and task files' folders, not what is installed
    assert tasks.ship(("fashion-lenet", "usertasks.function:make", f"{tmp_path}/x.py:T", "numpy.random:x")) == \
        [str(package.resolve()), str(tmp_path)]


def test_a_tasks_defaults_fill_only_what_the_command_line_leaves_unset():
    config = StudyConfig(task=("fashion-lenet", "fashion-resnet"), optimizer=("sgd",), arms=("manual",), lrs=(0.1,))
    resnet = with_task_defaults(config, tasks.BUILTIN["fashion-resnet"].defaults, given=set())
    assert resnet.epochs == 5 and config.epochs == 10
    assert with_task_defaults(config, {"epochs": 5}, given={"epochs"}).epochs == 10  # the flag wins
    smoke = replace(config, smoke=True, epochs=2)
    assert with_task_defaults(smoke, {"epochs": 5}, given=set()).epochs == 2  # --smoke's too
    the_plan = plan(config, {"fashion-resnet": resnet})
    assert [(p["task"], p["epochs"]) for p in the_plan.points] == [("fashion-lenet", 10), ("fashion-resnet", 5)]
    assert the_plan.epochs == 15 and the_plan.max_epochs == 10
    with pytest.raises(ConfigError, match=r"^--task t.py:T: with its defaults \{'epochs': 0\}: --epochs must be at least 1"):
        with_task_defaults(config, {"epochs": 0}, given=set(), task="t.py:T")


# -- identity and shipping: a task is its whole spec, its folder goes with it --------------------------

def test_two_task_files_of_one_stem_are_two_tasks_named_apart_and_imported_apart(tmp_path, fresh_tasks):
    """a/task.py:TASK and b/task.py:TASK: two names, two modules (each with its own sibling import,
    its folder not on PYTHONPATH), two settings, each split and trained as its own config says."""
    a = sibling_task(tmp_path / "a", "nets", classes=2)
    b = sibling_task(tmp_path / "b", "layers", classes=3, defaults="{'optimizer': 'adam', 'lr_schedule': ['cosine'], 'val_size': 10}")
    assert tasks.names((a, b, "fashion-lenet")) == {a: "a.task.TASK", b: "b.task.TASK", "fashion-lenet": "fashion-lenet"}
    assert tasks.name(a) == "task.TASK"  # alone, its stem is enough
    assert tasks.names((f"{tmp_path}/x/a/t.py:T", f"{tmp_path}/y/a/t.py:T", f"{tmp_path}/y/b/t.py:T")) == {
        f"{tmp_path}/x/a/t.py:T": "x.a.t.T", f"{tmp_path}/y/a/t.py:T": "y.a.t.T", f"{tmp_path}/y/b/t.py:T": "b.t.T"}
    with pytest.raises(tasks.TaskError, match=r"^--task .*/a/task.py:TASK and .*/a/./task.py:TASK are one task: name it once$"):
        tasks.names((a, a.replace("/a/", "/a/./")))
    loaded = {spec: tasks.load(spec, driver=True) for spec in (a, b)}
    assert [tasks.build_model(spec).out_features for spec in (a, b)] == [2, 3]
    assert len({tasks.module_name(spec.rpartition(":")[0]) for spec in (a, b)} & set(sys.modules)) == 2

    config = StudyConfig(task=(a, b), arms=("manual",), lrs=(0.1,), val_size=20)
    task_configs = {spec: with_task_defaults(config, t.defaults, given={"arms", "lrs"}, task=spec) for spec, t in loaded.items()}
    assert config.settings(task_configs) == [{"task": a, "optimizer": "sgd", "lr_schedule": "constant", "batch_size": 64},
                                             {"task": b, "optimizer": "adam", "lr_schedule": "cosine", "batch_size": 64}]
    the_plan = plan(config, task_configs)
    assert [(p["task"], p["optimizer"], p["lr_schedule"], p["val_size"]) for p in the_plan.points] == \
        [(a, "sgd", "constant", 20), (b, "adam", "cosine", 10)]
    from study.experiment import settings_of

    assert list(settings_of(config.to_dict(), the_plan.settings)) == ["a.task.TASK/sgd/constant", "b.task.TASK/adam/cosine"]

    class Trial:
        config, trial_id = the_plan.points[1], "abc"

    assert trial_dirname(Trial, tasks=(a, b)) == "manual_lr=0.1_b.task.TASK_adam_cosine_b64_s0_abc"
    data, _, _ = _prepare(config, loaded, task_configs)  # each task's data split by its own val_size
    assert [data[spec].sizes() for spec in (a, b)] == [{"train": 60, "val": 20, "test": 20}, {"train": 70, "val": 10, "test": 20}]
    shared, _ = load_data({a: loaded[a], b: replace(loaded[b], data=loaded[a].data)},  # one data, two splits
                          {spec: data_settings(task_configs[spec], None) for spec in (a, b)})
    assert [shared[spec].sizes()["val"] for spec in (a, b)] == [20, 10]


def test_a_task_that_imports_a_sibling_another_task_folder_already_named_is_refused(tmp_path, capsys, fresh_tasks):
    """Two folders with a nets.py each: Python imports one module `nets` per process, so the second
    task would silently train the first one's model. One line, exit 2."""
    a, c = sibling_task(tmp_path / "a", "nets"), sibling_task(tmp_path / "c", "nets", classes=3)
    assert main(["--task", f"{a},{c}", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == (f"study.run: error: --task {c}: {tmp_path}/c/task.py does not import (ImportError: its sibling module nets "
                   f"is already imported from {tmp_path}/a/nets.py: give one of the two a name of its own)\n"), err


def test_a_task_folder_too_large_to_ship_is_refused_and_what_never_ships_is_not_counted(tmp_path, capsys, fresh_tasks, monkeypatch):
    spec = sibling_task(tmp_path / "home", "nets")
    (tmp_path / "home" / ".venv").mkdir()
    (tmp_path / "home" / ".venv" / "big.bin").write_bytes(b"0" * 4000)  # never shipped (SHIP_EXCLUDES)
    (tmp_path / "home" / "results").mkdir()
    (tmp_path / "home" / "results" / "big.bin").write_bytes(b"0" * 4000)
    monkeypatch.setattr(tasks, "MAX_SHIP_BYTES", 2000)
    assert tasks.ship((spec,)) == [str(tmp_path / "home")]
    (tmp_path / "home" / "photos").mkdir()
    (tmp_path / "home" / "photos" / "big.jpg").write_bytes(b"0" * 4000)
    assert main(["--task", spec, "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == (f"study.run: error: --task {spec}: its folder {tmp_path}/home holds more than 0 MiB to ship to every node "
                   "(MAX_SHIP_BYTES in trainables/tasks.py): put the task's files in a folder of their own\n"), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("defaults, message", [
    ("{'optimizer': 'rmsprop'}", r"its defaults set optimizer to 'rmsprop': unknown 'rmsprop'; choose from sgd, adam, adamw$"),
    ("{'epochs': 2.5}", r"its defaults set epochs to 2.5: takes a whole number, not 2.5$"),
    ("{'val_size': 100}", r"--val-size 100 must be between 1 and 79 \(the training examples less one\)$"),  # found while Ray starts
])
def test_a_default_that_cannot_be_set_is_one_line_and_exit_2(tmp_path, defaults, message):
    spec = sibling_task(tmp_path / "t", "nets", defaults=defaults)
    proc = run_module("study.run", "--task", spec, "--results-dir", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"study.run: error: --task {spec}: ") and re.search(message, proc.stderr.strip()), proc.stderr
    assert not list((tmp_path / "r").glob("*/*/params.json"))


@pytest.mark.slow
def test_two_task_files_of_one_stem_with_sibling_imports_run_a_real_study_as_two_settings(tmp_path):
    """As a user runs them, from their folders (not on PYTHONPATH): the driver and Ray's workers
    import each file and its sibling; the report has two settings, each with its own trials."""
    a = sibling_task(tmp_path / "a", "nets", classes=2)
    b = sibling_task(tmp_path / "b", "layers", classes=3, defaults="{'optimizer': 'adam', 'val_size': 10}")
    proc = run_module("study.run", "--task", f"{a},{b}", "--arms", "manual", "--lrs", "0.1", "--epochs", "1", "--val-size", "20",
                      "--batch-size", "10", "--results-dir", str(tmp_path / "r"), "--name", "two", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    summary = json.loads((tmp_path / "r" / "two" / "summary.json").read_text())
    assert list(summary["settings"]) == ["a.task.TASK/sgd", "b.task.TASK/adam"], list(summary["settings"])
    assert [(s["task"], s["n_trials"]) for s in summary["settings"].values()] == [(a, 1), (b, 1)]
    assert sorted((t["task"], t["status"], t["val_size"]) for t in summary["trials"]) == [(a, "finished", 20), (b, "finished", 20)]
    folders = sorted(p.parent.name for p in (tmp_path / "r" / "two").glob("*/params.json"))
    assert [f.split("_s0_")[0] for f in folders] == ["manual_lr=0.1_a.task.TASK_sgd_constant_b10",
                                                     "manual_lr=0.1_b.task.TASK_adam_constant_b10"]


# -- the premise, for every task ---------------------------------------------------------------------

def test_each_tasks_trials_of_one_seed_start_from_the_same_weights_and_see_the_same_batches(tmp_path, fresh_tasks):
    """The paired design's premise for the other built-in models (LeNet's: tests/test_trial.py) and
    for a user's task given as a LightningDataModule: every arm of a task and seed, whatever the
    optimiser, starts from one set of weights (BatchNorm's buffers included) and sees one batch order."""
    user = f"{write_task(tmp_path / 'outside')}:TASK"
    idx = str(make_idx_dir(tmp_path / "idx", n_train=300))
    from trainables.data import load_dataset

    data = {"fashion-mlp": load_dataset(idx, val_size=60, strict_counts=False),
            "fashion-resnet": load_dataset(idx, val_size=60, strict_counts=False),
            user: None}  # its LightningDataModule, live in every trial
    assert from_task(tasks.load(user, driver=True), user) is tasks.load(user).data  # used as it is, not read
    study = StudyConfig(task=tuple(data), arms=("finder", "manual"), optimizer=("sgd", "adam"), seeds=2, lrs=(0.01,),
                        finder_rules=("valley",), epochs=1, batch_size=50, finder_max_lr=0.1, finder_num_training=8)
    threads, prints = torch.get_num_threads(), {}
    rows = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            for i, config in enumerate(plan(study).points):
                run_trial(config, data[config["task"]], tmp_path / f"t{i}", None,
                          {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
                assert rows and rows[-1]["task"] == config["task"], config
                prints.setdefault((config["task"], config["seed"]), set()).update(
                    (r["init_fingerprint"], r["batch_fingerprint"]) for r in rows)
                rows.clear()
        finally:
            torch.set_num_threads(threads)
    assert sorted(prints) == sorted((t, s) for t in data for s in (0, 1))
    assert all(len(p) == 1 for p in prints.values()), prints  # every arm and optimiser of a task and seed
    assert len({p for ps in prints.values() for p in ps}) == len(prints)  # tasks and seeds differ


def test_a_trial_folder_and_label_name_a_users_task_by_its_short_name():
    class Trial:
        config = {"arm": "manual", "lr": 0.1, "task": "/somewhere/deep/my_task.py:TASK", "optimizer": "sgd",
                  "lr_schedule": "constant", "seed": 0}
        trial_id = "abc"

    assert trial_dirname(Trial) == "manual_lr=0.1_my_task.TASK_sgd_constant_s0_abc"


# -- a user's task, run as the README shows it -----------------------------------------------------------

def test_the_readme_shows_the_lightning_example_whole_in_at_most_40_lines():
    example = (REPO / "examples" / "lightning_task.py").read_text()
    assert len(example.splitlines()) <= 40
    assert example.strip() in (REPO / "README.md").read_text()
    assert len((REPO / "examples" / "my_task.py").read_text().splitlines()) <= 25


@pytest.mark.slow
def test_the_example_task_runs_a_real_study_from_a_folder_outside_the_repository(tmp_path):
    """examples/my_task.py copied to a temporary folder and run from there, as a user would: Ray
    ships the file to the trials (the folder is not the repository, nor on Ray's path)."""
    outside = tmp_path / "mine"
    outside.mkdir()
    (outside / "my_task.py").write_text((REPO / "examples" / "my_task.py").read_text())
    proc = run_module("study.run", "--task", f"{outside / 'my_task.py'}:TASK,fashion-lenet", "--smoke", "--arms", "finder,manual",
                      "--finder-rules", "valley", "--lrs", "0.01", "--results-dir", str(tmp_path / "r"), "--name", "mine",
                      "--data-dir", str(real_data_dir()), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    folders = sorted(p.parent.name for p in (tmp_path / "r" / "mine").glob("*/params.json"))
    assert len(folders) == 4 and sum("_my_task.TASK_sgd_" in f for f in folders) == 2, folders
    summary = json.loads((tmp_path / "r" / "mine" / "summary.json").read_text())
    # its own batch size (its defaults' 128) tells its setting apart from LeNet's 64 too
    assert list(summary["settings"]) == ["my_task.TASK/sgd/b128", "fashion-lenet/sgd/b64"], list(summary["settings"])
    for params in (tmp_path / "r" / "mine").glob("*my_task*/params.json"):
        config = json.loads(params.read_text())
        assert config["task"] == f"{outside / 'my_task.py'}:TASK" and config["epochs"] == 2  # --smoke over its defaults
        assert config["batch_size"] == 128  # its own default
    assert "my_task.TASK/sgd/b128" in (tmp_path / "r" / "mine" / "report.md").read_text()


@pytest.mark.slow
def test_a_task_whose_model_fails_in_every_trial_still_gets_its_report(tmp_path):
    """A model that builds in the driver but not in the trials (here: it refuses Ray's workers, as
    one that needs a file or a device only the driver has would): every trial errors, and the
    study still reads them, says why and writes its report (no traceback from the analysis)."""
    task = tmp_path / "driver_only_task.py"
    task.write_text(textwrap.dedent("""
        import numpy as np
        import ray
        from torch import nn
        from types import SimpleNamespace

        def model():
            if ray._private.worker.global_worker.mode == ray.WORKER_MODE:
                raise RuntimeError("this model builds only in the driver")
            return nn.Linear(4, 2)

        def data():
            return np.ones((80, 4), np.float32), np.arange(80) % 2, np.ones((20, 4), np.float32), np.arange(20) % 2

        TASK = SimpleNamespace(model=model, data=data)
    """))
    proc = run_module("study.run", "--task", f"{task}:TASK", "--arms", "finder,manual", "--finder-rules", "valley",
                      "--lrs", "0.1", "--epochs", "1", "--val-size", "20", "--max-failures", "0",
                      "--results-dir", str(tmp_path / "r"), "--name", "fails", timeout=600)
    assert "Traceback" not in proc.stderr.split("(pid=")[0] or proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "r" / "fails" / "report.md").read_text()
    assert "this model builds only in the driver" in report, report[:2000]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
