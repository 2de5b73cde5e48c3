"""Tasks (trainables/tasks.py): the built-in ones and the user's, to one contract, checked at the
door; each task's trials share their seed's weights and batches; a user's task file runs a real
study (real Ray, Lightning) from a folder outside the repository, as the README shows it."""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune

from study.config import ConfigError, StudyConfig, with_task_defaults
from study.run import _prepare, main
from study.space import plan, trial_dirname
from tests.conftest import REPO, make_idx_dir, real_data_dir, run_module
from trainables import tasks
from trainables.checks import check_model
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
    before = set(sys.modules)
    tasks._loaded.clear()
    yield
    tasks._loaded.clear()
    for name in set(sys.modules) - before:
        if name.endswith("_task") or name.startswith("usertasks"):
            del sys.modules[name]


# The built-in tasks' sizes, as docs/TRIALS.md states them
BUILTIN_PARAMETERS = {"fashion-lenet": 61_706, "fashion-mlp": 235_146, "fashion-resnet": 19_706}


@pytest.mark.parametrize("name", list(tasks.BUILTIN))
def test_each_built_in_task_gives_logits_over_fashion_mnists_classes_at_its_documented_size(name):
    torch.manual_seed(0)
    model = tasks.build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, tasks.NUM_CLASSES)
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
    (arrays_task(more=", defaults={'val_size': 3}"), r"TASK.defaults may set only .*; not val_size$"),
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
    assert "choose from fashion-lenet, fashion-mlp, fashion-resnet, or name your own" in capsys.readouterr().err


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
    # Ray ships the user's own package and task files, not what is installed
    assert tasks.ship(("fashion-lenet", "usertasks.function:make", f"{tmp_path}/x.py:T", "numpy.random:x")) == \
        [str(package.resolve()), str((tmp_path / "x.py").resolve())]


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
    with pytest.raises(ConfigError, match=r"^with its task's defaults \{'epochs': 0\}: --epochs must be at least 1"):
        with_task_defaults(config, {"epochs": 0}, given=set())


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

def test_the_readme_shows_the_example_task_whole_in_at_most_25_lines():
    example = (REPO / "examples" / "my_task.py").read_text()
    assert len(example.splitlines()) <= 25
    assert example.strip() in (REPO / "README.md").read_text()


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
    assert list(summary["settings"]) == ["my_task.TASK/sgd", "fashion-lenet/sgd"], list(summary["settings"])
    for params in (tmp_path / "r" / "mine").glob("*my_task*/params.json"):
        config = json.loads(params.read_text())
        assert config["task"] == f"{outside / 'my_task.py'}:TASK" and config["epochs"] == 2  # --smoke over its defaults
        assert config["batch_size"] == 128  # its own default
    assert "my_task.TASK/sgd" in (tmp_path / "r" / "mine" / "report.md").read_text()


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
