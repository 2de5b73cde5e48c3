"""Tasks: what a study trains, a model and its data, to one small contract.

A task is any object (a module, a class, a dataclass, a `SimpleNamespace`), or a function of no
arguments that returns one, with these attributes:

* `model`: a callable of no arguments (a class, a function) returning, in each trial after seeding
  (so trials of one task and seed start from the same weights), either
  - a `LightningModule` (of `lightning` or `pytorch_lightning`) with an `lr` or `learning_rate`,
    attribute or hparam, as Lightning's Tuner wants: the trial trains it as it is, its own steps,
    loss, logging, metrics and, where it has one, `configure_optimizers`; or
  - the short form, a plain `torch.nn.Module` whose output is the logits over the classes: it
    trains inside the study's `LitClassifier` (cross-entropy, accuracy; trainables/module.py);
* `data`: a `LightningDataModule` (an instance, a class or a function returning one), used live in
  every trial (trainables/loaders.py); or a callable of no arguments returning `(train_x, train_y,
  test_x, test_y)` (arrays or tensors; the study splits validation off the training set), read once
  in the driver (trainables/data.py: `from_task`);
* `in_memory` (optional, False): read a DataModule's loaders once into memory instead, the arrays'
  fast path: exact only where its batches do not change from epoch to epoch (no augmentation);
* `defaults` (optional): study settings by their StudyConfig field names (`{"epochs": 5}`), for
  the ones the command line does not set (`TASK_DEFAULTS` lists which may be).

`--task` names a built-in task (`BUILTIN`, written to the same contract), `path/to/file.py:NAME`
or `package.module:NAME`. A trial's config carries the spec; `load` turns it into the task in the
driver and in every worker. A file is imported under its stem's name: on a cluster Ray ships it to
every node (`ship`, for the runtime_env's py_modules), where it is imported by that name. torch is
imported only inside the models' functions: the driver's CLI reads `BUILTIN` without paying for it.
Parameters and FLOPs per image of the built-in models: docs/TRIALS.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

NUM_CLASSES = 10  # Fashion-MNIST's
# The study settings a task's `defaults` may set: how its trials train and search, not its data's split.
TASK_DEFAULTS = ("epochs", "batch_size", "momentum", "lrs", "lr_range", "num_samples", "finder_min_lr",
                 "finder_max_lr", "finder_num_training", "metric", "mode", "target")


class TaskError(ValueError):
    """A task cannot be loaded or breaks the contract; the message is one line meant for the user."""


@dataclass(frozen=True)
class FashionMNIST:
    """The built-in tasks' `data`: Fashion-MNIST's 60,000 training and 10,000 test images as float
    arrays in [0, 1], (N, 1, 28, 28), from `data_dir` or where trainables/data.py finds them."""

    data_dir: str | None = None

    @property
    def source(self) -> str:
        from trainables.data import locate

        return str(locate(self.data_dir))

    def __call__(self):
        from trainables.data import read_fashion_mnist

        return read_fashion_mnist(self.data_dir)


def lenet() -> "torch.nn.Module":  # noqa: F821
    """LeNet-5 (trainables/model.py), the write-up's model; 61,706 parameters."""
    from trainables.model import lenet5

    return lenet5(NUM_CLASSES)


def mlp() -> "torch.nn.Module":  # noqa: F821
    """No convolutions: 784 -> 256 -> 128 -> 10 with ReLU; 235,146 parameters."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, NUM_CLASSES))


def resnet() -> "torch.nn.Module":  # noqa: F821
    """A small residual network with BatchNorm: a 3x3 stem of 16 channels and max-pool to 14x14,
    a residual block of 16 channels, one of 32 at stride 2 (7x7), global average pool, linear;
    19,706 parameters."""
    from torch import nn

    from trainables.model import ResidualBlock

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         ResidualBlock(16, 16), ResidualBlock(16, 32, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, NUM_CLASSES))


@dataclass(frozen=True)
class Task:
    """A task as the study uses it: the contract's attributes, checked (`load`)."""

    model: Callable[[], Any]
    data: Any  # a callable returning the four arrays, or a LightningDataModule (instance, class, factory)
    defaults: dict = field(default_factory=dict)
    in_memory: bool = False  # a DataModule's loaders read once into memory


# The built-in tasks, the first the study's default; a new one is one entry here (and its test).
# fashion-resnet trains 5 epochs: at ~4x LeNet's FLOPs per image, its study fits about an hour here.
BUILTIN = {
    "fashion-lenet": Task(lenet, FashionMNIST(), {"target": 0.88}),
    "fashion-mlp": Task(mlp, FashionMNIST(), {"target": 0.88}),
    "fashion-resnet": Task(resnet, FashionMNIST(), {"epochs": 5, "target": 0.88}),
}


def is_builtin(spec: str) -> bool:
    return spec in BUILTIN


def parse_spec(spec: str) -> tuple[str, str]:
    """'path/to/file.py:NAME' or 'package.module:NAME' -> (the file or module, NAME)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise TaskError(f"--task {spec!r}: expected a built-in task ({', '.join(BUILTIN)}), "
                        "path/to/file.py:NAME or package.module:NAME")
    return where, name


def name(spec: str) -> str:
    """A task's short name for folders, tables and figures: the built-in's, or 'file.NAME' /
    'package.module.NAME' (a file's stem, without its folders; no ':', which Ray Tune's folder
    names replace)."""
    if is_builtin(spec):
        return spec
    where, attr = parse_spec(spec)
    return f"{Path(where).stem if where.endswith('.py') else where}.{attr}"


def _import(where: str, driver: bool):
    if not where.endswith(".py"):
        return importlib.import_module(where)
    path, module = Path(where).expanduser(), Path(where).stem
    if not path.is_file():
        if driver:
            raise FileNotFoundError(f"no such file: {path}")
        return importlib.import_module(module)  # a worker node: Ray shipped the file (`ship`) by its stem
    loaded = sys.modules.get(module)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        sys.modules.pop(module, None)
        raise
    return loaded


def _last_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1]}" if text else type(e).__name__


_loaded: dict[tuple[str, str | None], Task] = {}


def load(spec: str, data_dir: str | None = None, driver: bool = False) -> Task:
    """The task `spec` names, its contract checked (not its data: trainables/data.py's `from_task`
    checks that); TaskError with one line otherwise. Loaded once per process. `data_dir`: where
    the built-in tasks read Fashion-MNIST (--data-dir). `driver`: a task file must exist here (a
    worker imports a file Ray shipped by its name)."""
    key = (spec, data_dir)
    if key in _loaded:
        return _loaded[key]
    if is_builtin(spec):
        task = BUILTIN[spec]
        task = Task(task.model, FashionMNIST(data_dir), task.defaults)
    else:
        where, attr = parse_spec(spec)
        try:
            module = _import(where, driver)
        except FileNotFoundError as e:
            raise TaskError(f"--task {spec}: {e}") from None
        except Exception as e:
            raise TaskError(f"--task {spec}: {where} does not import ({_last_line(e)})") from None
        if not hasattr(module, attr):
            raise TaskError(f"--task {spec}: {where} has no {attr}")
        obj = getattr(module, attr)
        if callable(obj) and not (hasattr(obj, "model") and hasattr(obj, "data")):
            try:
                obj = obj()  # a function that returns the task
            except Exception as e:
                raise TaskError(f"--task {spec}: calling {attr}() failed ({_last_line(e)})") from None
        missing = [a for a in ("model", "data") if not hasattr(obj, a)]
        if missing:
            raise TaskError(f"--task {spec}: {attr} has no {' or '.join(missing)} (a task needs model and data)")
        torch = sys.modules.get("torch")  # imported by a task file that made a module: never here for it
        if torch is not None and isinstance(obj.model, torch.nn.Module):
            raise TaskError(f"--task {spec}: {attr}.model is an instance of {type(obj.model).__name__}; give its class "
                            "or a function that returns a new one (each trial builds its own, after seeding)")
        if not callable(obj.model):
            raise TaskError(f"--task {spec}: {attr}.model must be a class or a function of no arguments that returns "
                            "a LightningModule or a torch.nn.Module")
        defaults = dict(getattr(obj, "defaults", None) or {})
        unknown = sorted(set(defaults) - set(TASK_DEFAULTS))
        if unknown:
            raise TaskError(f"--task {spec}: {attr}.defaults may set only {', '.join(TASK_DEFAULTS)}; not {', '.join(unknown)}")
        task = Task(obj.model, obj.data, defaults, bool(getattr(obj, "in_memory", False)))
    _loaded[key] = task
    return task


def build_model(spec: str):
    """A fresh model of the task `spec`, as its `model()` returns it (inside a trial, after seeding)."""
    import torch

    from trainables.framework import is_lightning_module

    try:
        model = load(spec).model()
    except TypeError as e:
        raise TaskError(f"--task {spec}: calling its model() failed ({_last_line(e)}); model must take no arguments") from None
    if not isinstance(model, torch.nn.Module) and not is_lightning_module(model):
        raise TaskError(f"--task {spec}: model() returned {type(model).__name__}, not a LightningModule or torch.nn.Module")
    return model


def build_module(spec: str):
    """A fresh LightningModule of the task `spec` (inside a trial, after seeding): its own, or its
    plain model (the short form) inside the study's LitClassifier, with the same one draw of weights."""
    from trainables.framework import is_lightning_module

    model = build_model(spec)
    if is_lightning_module(model):
        return model
    from trainables.module import LitClassifier

    return LitClassifier(task=spec, net=model)


def is_short_form(spec: str) -> bool:
    """Whether the task's model is a plain torch.nn.Module (the study's LitClassifier trains it):
    known without building one where `model` is a class."""
    from trainables.framework import is_lightning_module

    model = load(spec).model
    if isinstance(model, type):
        return not any(c.__name__ == "LightningModule" for c in model.__mro__)
    return not is_lightning_module(build_model(spec))


def ship(specs: tuple[str, ...]) -> list[str]:
    """What Ray must ship to every node for these tasks (runtime_env's py_modules): each task
    file, and each task package that is not installed in site-packages (the user's own source)."""
    out = []
    for spec in specs:
        if is_builtin(spec):
            continue
        where, _ = parse_spec(spec)
        if where.endswith(".py"):
            out.append(str(Path(where).expanduser().resolve()))
            continue
        found = importlib.util.find_spec(where.split(".")[0])
        origin = next(iter(found.submodule_search_locations), None) if found and found.submodule_search_locations \
            else (found.origin if found else None)  # a package's folder (a namespace package's too), or a module's file
        if origin and "site-packages" not in origin and "dist-packages" not in origin:
            out.append(str(Path(origin).resolve()))
    return list(dict.fromkeys(out))
