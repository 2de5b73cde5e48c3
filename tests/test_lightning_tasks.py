"""A user's own LightningModule and LightningDataModule, as they are (tests/user_tasks/): each trains
with its own steps, loss, logging, metric and optimiser; the study sets the LR where Lightning's
Tuner does; a DataModule is used live, its augmentation seeded. Real Lightning, no Ray: the
trials run in this process, as Ray runs them (`run_trial`). Bad input is one line, before Ray."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from ray import tune

from study.config import ConfigError, StudyConfig, with_task_defaults
from study.engine import _prepare
from tests.conftest import REPO
from trainables import framework, tasks
from trainables.callbacks import CHECKPOINT_FILE
from trainables.checks import load_data
from trainables.data import DataError
from trainables.files import FINDER_FILE
from trainables.trainable import run_trial

USER = REPO / "tests" / "user_tasks"
# (task, metric, mode, its optimiser: the module's own, or the study's sgd for the short form)
TASKS = {"regression": ("val_mae", "min", "module"), "smoothing": ("val_acc", "max", "module"),
         "augmented": ("val_acc", "max", "sgd"), "language": ("val_ppl", "min", "module")}
TRIAL = {"cpus_per_trial": 1, "epochs": 2, "momentum": 0.9, "finder_min_lr": 1e-6, "finder_max_lr": 1.0,
         "finder_num_training": 20, "finder_mode": "exponential", "val_size": 100, "split_seed": 0, "normalize": True,
         "subset": None, "seed": 0}


def spec(name: str) -> str:
    return f"{USER / name}.py:TASK"


def trial_config(name: str, arm: str, live: bool, **more) -> dict:
    metric, mode, optimizer = TASKS[name]
    return {**TRIAL, "task": spec(name), "arm": arm, "lr": 0.01 if arm == "manual" else None,
            "finder_rule": "valley" if arm == "finder" else None, "optimizer": optimizer,
            "lr_schedule": "module" if optimizer == "module" else "constant", "batch_size": None if live else 50,
            "metric": metric, "mode": mode, **more}


def run(config: dict, data, trial_dir: Path) -> tuple[list[dict], dict]:
    """`run_trial` as Ray runs it fresh: its rows, and its last checkpoint, loaded."""
    rows, saved = [], {}

    def report(metrics, checkpoint=None):
        rows.append(dict(metrics))
        if checkpoint is not None:
            saved.update(torch.load(Path(checkpoint.path) / CHECKPOINT_FILE, map_location="cpu", weights_only=False))

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune, "report", report)
        try:
            run_trial(config, data, trial_dir, None, {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
        finally:
            torch.set_num_threads(threads)
    return rows, saved


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> dict:
    """Each user task's finder (valley) and manual (0.01) trial, 2 epochs; the augmented one's
    manual trial twice: (task, arm) -> (config, rows, checkpoint, trial dir)."""
    out = {}
    for name, (metric, _, _) in TASKS.items():
        loaded = {spec(name): tasks.load(spec(name), driver=True)}
        data, _ = load_data(loaded, {spec(name): {"metric": metric, "batch_size": None, "val_size": 100, "split_seed": 0,
                                                  "normalize": True, "subset": None}})
        data = data[spec(name)]
        for arm in ("finder", "manual", "manual again") if name == "augmented" else ("finder", "manual"):
            config = trial_config(name, arm.split()[0], live=data is None)
            trial_dir = tmp_path_factory.mktemp(f"{name}-{arm.replace(' ', '-')}")
            out[name, arm] = (config, *run(config, data, trial_dir), trial_dir)
    return out


def test_a_regression_module_reports_its_own_metrics_minimised(trials):
    for arm in ("finder", "manual"):
        config, rows, saved, _ = trials["regression", arm]
        assert [r["epoch"] for r in rows] == [0, 1]
        assert {"train_loss", "train_mae", "val_loss", "val_mae"} <= set(rows[0]) and "val_acc" not in rows[0]
        assert {"test_loss", "test_mae"} <= set(rows[-1])  # its own test_step, on the last row
        assert all(r["objective"] == -r["val_mae"] for r in rows)  # minimised: Ray Tune maximises its negative
        assert saved["hyper_parameters"]["lr"] == rows[-1]["lr"]  # the arm's LR, in its hparams
        assert set(saved["state_dict"]) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}  # its own keys
    assert trials["regression", "manual"][1][-1]["lr"] == 0.01


def test_a_module_with_its_own_optimiser_trains_with_it_at_the_arms_lr(trials):
    """Label smoothing and AdamW with weight decay, written against `lightning` (import lightning as L)."""
    for arm in ("finder", "manual"):
        config, rows, saved, trial_dir = trials["smoothing", arm]
        [group] = saved["optimizer_states"][0]["param_groups"]
        assert group["weight_decay"] == 0.05 and group["lr"] == rows[-1]["lr"]  # AdamW's, at the arm's LR
        assert set(saved["optimizer_states"][0]["state"][0]) >= {"exp_avg", "exp_avg_sq"}
        assert "hyper_parameters" not in saved  # its LR is an attribute, set there
    finder = trials["smoothing", "finder"]
    assert (finder[3] / FINDER_FILE).is_file() and finder[1][-1]["finder_steps"] > 10  # Lightning's lr_find, on the module
    assert finder[1][-1]["lr"] == pytest.approx(__import__("json").loads((finder[3] / FINDER_FILE).read_text())["suggestion"])
    from tests.user_tasks.smoothing import Smoothed

    assert framework.package(Smoothed()).__name__ == "lightning.pytorch"  # its trials' Trainer was lightning's


def test_a_small_language_model_reports_perplexity(trials):
    for arm in ("finder", "manual"):
        rows = trials["language", arm][1]
        assert {"val_ppl", "test_ppl", "test_loss"} <= set(rows[-1]) and rows[-1]["objective"] == -rows[-1]["val_ppl"]
        assert rows[-1]["flops_per_train_step"] > 0  # attention counted too
    assert trials["language", "manual"][1][-1]["val_ppl"] < 16  # learns the chain (uniform: 16)


def test_a_datamodule_with_random_augmentation_gives_every_arm_the_same_batches_and_runs_the_same_twice(trials):
    rows = {arm: trials["augmented", arm][1] for arm in ("finder", "manual", "manual again")}
    prints = {(r["init_fingerprint"], r["batch_fingerprint"]) for rs in rows.values() for r in rs}
    assert len(prints) == 1, prints  # the finder's, after its range test, too
    keep = ("train_loss", "val_loss", "val_acc", "test_acc", "steps", "flops")
    assert [{k: r[k] for k in keep if k in r} for r in rows["manual"]] == \
        [{k: r[k] for k in keep if k in r} for r in rows["manual again"]]
    assert rows["manual"][-1]["steps"] == 2 * 20  # its own split (800) and batch size (40)


def test_augmentation_differs_from_epoch_to_epoch(tmp_path):
    """The DataModule is used live: epoch 1 does not see epoch 0's augmented samples again."""
    from tests.user_tasks.augmented import Blobs

    framework.seed(0)
    dm = Blobs()
    dm.setup("fit")
    loader = dm.train_dataloader()
    first, second = (torch.cat([x for x, _ in loader]) for _ in range(2))
    assert first.shape == second.shape and not torch.equal(first.sort(0).values, second.sort(0).values)


# -- bad input: one line, before any trial ----------------------------------------------------------------

LM = """
import pytorch_lightning as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from types import SimpleNamespace

class Net(pl.LightningModule):
    def __init__(self{init}):
        super().__init__()
        {lr}
        self.net = nn.Linear(4, 2)
    def training_step(self, batch, i):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])
    def validation_step(self, batch, i):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

class Data(pl.LightningDataModule):
    {dm_init}
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones({n}, 4), torch.zeros({n}, dtype=torch.long)), batch_size=10)
    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(10, 4), torch.zeros(10, dtype=torch.long)), batch_size=10)
    def test_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(10, 4), torch.zeros(10, dtype=torch.long)), batch_size=10)

def arrays():
    return np.ones((40, 4), np.float32), np.arange(40) % 2, np.ones((10, 4), np.float32), np.arange(10) % 2

TASK = SimpleNamespace({task})
"""


def lm_task(tmp_path: Path, name: str, init=", lr=0.1", lr="self.lr = lr", dm_init="batch_size = 10", n=20,
            task="model=Net, data=Data") -> str:
    path = tmp_path / f"{name}_task.py"
    path.write_text(textwrap.dedent(LM.format(init=init, lr=lr, dm_init=dm_init, n=n, task=task)))
    return f"{path}:TASK"


@pytest.fixture
def fresh():
    tasks._loaded.clear()
    yield
    tasks._loaded.clear()


@pytest.mark.parametrize("kw, config, message", [
    ({"task": "model=Net(), data=Data"}, {}, r"TASK.model is an instance of Net; give its class or a function"),
    ({"init": "", "lr": "pass"}, {}, r"Net has no lr or learning_rate \(an attribute, or in its hparams\)"),
    ({}, {"metric": "val_acc"}, r"its Net never logs val_acc in validation \(one batch logged: val_loss\)"),
    ({"n": 0}, {"metric": "val_loss"}, r"its Data's train_dataloader yields no batch$"),
    ({"dm_init": "pass"}, {"metric": "val_loss", "batch_size": 32},
     r"--batch-size 32: its Data has no batch_size \(attribute or hparam\) to set"),
    ({"task": "model=lambda: nn.Linear(4, 1), data=lambda: (np.ones((40, 4), np.float32), np.linspace(0, 1, 40), "
              "np.ones((10, 4), np.float32), np.linspace(0, 1, 10))"}, {},
     r"train_y must hold class indices .* for regression or any other loss, make model a LightningModule$"),
    ({"task": "model=lambda: nn.Linear(4, 1), data=arrays"}, {},
     r"shape \(2, 1\), expected \(2, classes\): one logit per class \(.*make model a LightningModule\)$"),
])
def test_a_module_or_datamodule_that_does_not_fit_is_one_line(tmp_path, fresh, kw, config, message):
    task = lm_task(tmp_path, "bad", **kw)
    settings = {"metric": "val_loss", "batch_size": None, **config}
    with pytest.raises((ValueError, DataError)) as e:
        load_data({task: tasks.load(task, driver=True)},
                  {task: {"val_size": 5, "split_seed": 0, "normalize": True, "subset": None, **settings}})
    assert "\n" not in str(e.value) and str(e.value).startswith(f"--task {task}: "), str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_a_datamodule_class_or_factory_and_a_module_class_or_factory_are_tasks(tmp_path, fresh):
    for i, form in enumerate(("model=Net, data=Data", "model=lambda: Net(lr=0.2), data=lambda: Data()",
                              "model=Net, data=Data()", "model=Net, data=arrays")):
        task = lm_task(tmp_path, f"form{i}", task=form)
        got, _ = load_data({task: tasks.load(task, driver=True)},
                        {task: {"metric": "val_loss", "batch_size": None, "val_size": 5, "split_seed": 0,
                                "normalize": True, "subset": None}})
        assert (got[task] is None) == ("arrays" not in form), form  # a DataModule is live; arrays are read


def test_the_driver_refuses_a_bad_module_before_ray(tmp_path, fresh):
    task = lm_task(tmp_path, "nolr", init="", lr="pass")
    with pytest.raises(ConfigError, match="has no lr or learning_rate"):
        _prepare(StudyConfig(task=(task,)))
    shutil.rmtree(tmp_path)


# -- a real study of the four user tasks (real Ray, Lightning, TensorBoard), shared ------------------------

STUDY_ARGS = ("--task", ",".join(spec(name) for name in TASKS), "--arms", "finder,manual", "--finder-rules", "valley",
              "--lrs", "0.003,0.03", "--epochs", "2", "--name", "users")


@pytest.fixture(scope="module")
def user_study(tmp_path_factory) -> Path:
    """The four user tasks in one study, as a user runs it: each a setting of its own, compared on
    its own metric (their tasks' defaults)."""
    from tests.conftest import run_module

    results = tmp_path_factory.mktemp("users")
    proc = run_module("study.run", *STUDY_ARGS, "--results-dir", str(results), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "users"


@pytest.mark.slow
def test_each_user_task_is_a_setting_compared_on_its_own_metric(user_study):
    import json

    summary = json.loads((user_study / "summary.json").read_text())
    measured = {Path(s["task"].split(":")[0]).stem: (s["metric"], s["mode"], s["optimizer"])
                for s in summary["settings"].values()}
    assert measured == {"regression": ("val_mae", "min", "module"), "smoothing": ("val_acc", "max", "module"),
                        "augmented": ("val_acc", "max", "sgd"), "language": ("val_ppl", "min", "module")}
    report = (user_study / "report.md").read_text()
    assert "val_mae" in report and "val_ppl" in report
    for params in user_study.glob("*/params.json"):
        config = json.loads(params.read_text())
        rows = [json.loads(line) for line in (params.parent / "result.json").read_text().splitlines()]
        name = Path(config["task"].split(":")[0]).stem
        metric = TASKS[name][0]
        assert rows[-1]["objective"] == pytest.approx(rows[-1][metric] * (-1 if TASKS[name][1] == "min" else 1))
        assert "test" + metric[3:] in rows[-1], name  # the module's own test_step
        live = name in ("augmented", "language")
        assert (config["batch_size"] is None) == live, name  # a live DataModule keeps its own batch size


@pytest.mark.slow
def test_a_user_modules_metrics_are_in_tensorboard(user_study):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [trial] = [p.parent for p in user_study.glob("manual_lr=0.03*regression*/params.json")]
    acc = EventAccumulator(str(trial))
    acc.Reload()
    assert {"val_mae", "val_loss", "train_mae", "test_mae", "lr"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("val_mae")) == 2  # once per epoch


def test_flags_that_cannot_apply_to_a_users_module_or_datamodule_are_one_line(fresh):
    from study.config import config_from_args, build_parser

    for args, message in ((["--task", spec("smoothing"), "--optimizer", "adam", "--lr-schedule", "cosine"],
                           r"--optimizer, --lr-schedule cannot apply: its Smoothed builds its own optimiser"),
                          (["--task", spec("smoothing"), "--arms", "finder,manual,cyclic"],
                           r"--arms cyclic cannot apply: its Smoothed builds its own optimiser"),
                          (["--task", spec("language"), "--val-size", "50"],
                           r"--val-size cannot apply: its data is a LightningDataModule, which splits its own data")):
        tasks._loaded.clear()
        parsed = build_parser("study.run", "").parse_args(args)
        config = config_from_args(parsed)
        loaded = {s: tasks.load(s, driver=True) for s in config.task}
        own = {s: with_task_defaults(config, t.defaults, set(vars(parsed)), s) for s, t in loaded.items()}
        with pytest.raises(ConfigError) as e:
            _prepare(config, loaded, own, frozenset(vars(parsed)))
        assert "\n" not in str(e.value) and re.search(message, str(e.value)), str(e.value)
    # defaults that cannot apply do not: the study's sgd and constant schedule, its cyclic arm not run
    config = StudyConfig(task=(spec("smoothing"),), arms=("finder", "manual", "cyclic"), val_size=200)
    _, fitted, _ = _prepare(config, {config.task[0]: tasks.load(config.task[0], driver=True)}, None, frozenset({"task"}))
    [own] = fitted.values()
    assert (own.optimizer, own.lr_schedule, own.arms) == (("module",), ("module",), ("finder", "manual"))


def test_a_module_without_configure_optimizers_trains_with_the_studys_optimiser(tmp_path, fresh):
    """No configure_optimizers of its own: --optimizer and --lr-schedule apply (here Adam, cosine)."""
    task = lm_task(tmp_path, "noopt", task="model=NoOpt, data=Data")
    source = Path(task.split(":")[0])
    source.write_text(source.read_text().replace("TASK = ", textwrap.dedent('''
        class NoOpt(Net):
            configure_optimizers = pl.LightningModule.configure_optimizers

        TASK = ''')))
    data, facts = load_data({task: tasks.load(task, driver=True)},
                            {task: {"metric": "val_loss", "batch_size": None, "val_size": 5, "split_seed": 0,
                                    "normalize": True, "subset": None}})
    assert facts[task] == {"live": True, "own_optimizer": False, "module": "NoOpt"}
    config = {**TRIAL, "task": task, "arm": "manual", "lr": 0.02, "finder_rule": None, "optimizer": "adam",
              "lr_schedule": "cosine", "batch_size": None, "metric": "val_loss", "mode": "min", "epochs": 1}
    rows, saved = run(config, data[task], tmp_path / "trial")
    [group] = saved["optimizer_states"][0]["param_groups"]
    assert set(saved["optimizer_states"][0]["state"][0]) >= {"exp_avg", "exp_avg_sq"} and group["initial_lr"] == 0.02
    assert saved["lr_schedulers"] and rows[-1]["lr"] < 0.02  # cosine decays from the arm's LR


def test_a_datamodule_that_opts_in_is_read_into_memory_once(tmp_path, fresh):
    task = lm_task(tmp_path, "inmemory", task="model=Net, data=Data, in_memory=True")
    data, facts = load_data({task: tasks.load(task, driver=True)},
                            {task: {"metric": "val_loss", "batch_size": None, "val_size": 5, "split_seed": 0,
                                    "normalize": False, "subset": None}})
    assert facts[task]["live"] is False and data[task].sizes() == {"train": 15, "val": 5, "test": 10}
