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
* `weights` (optional, on arrays' `data`): a function of no arguments returning a state dict that
  each trial loads into its freshly built model (the short form's, strict=False: keys it lacks keep
  their fresh draw), read once in the driver with the data and shipped with it (the pretrained
  ViT of fashion-vit-finetune, trainables/pretrain.py);
* `defaults` (optional): study settings by their StudyConfig field names (`{"epochs": 5}`), for
  the ones the command line does not set (`TASK_DEFAULTS` lists which may be).

`--task` names a built-in task (`BUILTIN`, written to the same contract), `path/to/file.py:NAME`
(made absolute: `canonical`) or `package.module:NAME`. The spec is the task's identity: a trial's
config carries it, `load` turns it into the task in the driver and in every worker, and `names`
gives each task of a study a short name that tells it from the others. A file is imported under a
name of its own path (`module_name`), its folder on `sys.path` after everything else, so that it may
import its sibling modules (`from nets import MLP`). Ray ships the file's folder (or a package of
the user's) to every node with the job (`ship`: runtime_env's py_modules), where a worker that
cannot see the folder imports the copy. torch is imported only inside the models' functions: the
driver's CLI reads `BUILTIN` without paying for it.
Parameters and FLOPs per image of the built-in models: docs/TRIALS.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

NUM_CLASSES = 10  # Fashion-MNIST's
# The study settings a task's `defaults` may set: how its trials train and search, its validation
# split, its optimisers and LR schedules (the settings it runs: study/config.py's `settings`), and
# what its trials are compared on (the metric's fields, once StudyConfig has them).
TASK_DEFAULTS = ("epochs", "batch_size", "momentum", "weight_decay", "lrs", "lr_range", "num_samples", "finder_min_lr",
                 "finder_max_lr", "finder_num_training", "val_size", "optimizer", "lr_schedule",
                 "metric", "mode", "target")
# Shipping a task's folder to every node (`ship`): what is never shipped (Ray's runtime_env
# `excludes`, gitignore-style), and the most it may hold besides (Ray refuses packages over 100 MiB
# on some clusters; a task file in a home folder would ship all of it).
SHIP_EXCLUDES = (".git", ".venv", "venv", "__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache",
                 "node_modules", "*.egg-info", "/results", "/lightning_logs")
MAX_SHIP_BYTES = 100 * 2**20
SHIPPED_ENV = "LRSTUDY_SHIPPED"  # a worker's environment: the shipped folders, in py_modules' order


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


def vit() -> "torch.nn.Module":  # noqa: F821
    """A small Vision Transformer (trainables/model.py ViT): 7x7 patches (16 tokens and a class
    token), width 64, 4 pre-LayerNorm blocks of 4 heads, MLP 128; 139,018 parameters."""
    from trainables.model import ViT

    return ViT(NUM_CLASSES)


FINETUNE_CLASSES = (5, 6, 7, 8, 9)  # what fashion-vit-finetune fine-tunes on, labelled 0-4
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)  # what its ViT was pretrained on (trainables/pretrain.py)


def vit_finetune() -> "torch.nn.Module":  # noqa: F821
    """fashion-vit's ViT with a 5-class head; the trial loads the pretrained weights into all but
    the head (the data's `weights`)."""
    from trainables.model import ViT

    return ViT(len(FINETUNE_CLASSES))


@dataclass(frozen=True)
class FineTune(FashionMNIST):
    """fashion-vit-finetune's `data`: Fashion-MNIST's classes 5-9, labelled 0-4 (train and test),
    and `weights()`, the ViT pretrained on classes 0-4 by `recipe` (trainables/pretrain.py: once,
    then from its cache), which the driver reads with the data and ships with it to the trials."""

    recipe: Any = None  # a trainables.pretrain.Recipe; None: its defaults

    def __call__(self):
        from trainables.pretrain import restrict

        train_x, train_y, test_x, test_y = super().__call__()
        return (*restrict(train_x, train_y, FINETUNE_CLASSES), *restrict(test_x, test_y, FINETUNE_CLASSES))

    def weights(self) -> dict:
        from trainables.pretrain import Recipe, pretrained

        train_x, train_y, test_x, test_y = super().__call__()
        return pretrained(self.recipe or Recipe(classes=PRETRAIN_CLASSES), (train_x, train_y), (test_x, test_y))


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
    # fashion-vit trains 5 epochs (~20 s each on one core): its 27-trial study (3 seeds, one
    # optimiser and schedule) about an hour here. docs/TRIALS.md: the sizing, and the fine-tuning.
    "fashion-vit": Task(vit, FashionMNIST(), {"epochs": 5, "target": 0.85}),
    "fashion-vit-finetune": Task(vit_finetune, FineTune(), {"epochs": 5, "target": 0.9,
                                                           "lrs": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)}),
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


def canonical(spec: str) -> str:
    """The spec as the study keeps it: a task file's path made absolute (the trials run elsewhere),
    a built-in or package spec unchanged. `a/task.py:TASK` and `./a/task.py:TASK` are one task."""
    if is_builtin(spec):
        return spec
    where, attr = parse_spec(spec)
    return f"{os.path.abspath(os.path.expanduser(where))}:{attr}" if where.endswith(".py") else spec


def names(specs) -> dict[str, str]:
    """Each task's short name for folders, tables and figures, told apart from the others in
    `specs`: the built-in's; 'file.NAME' (a file's stem) or 'package.module.NAME'; where two files
    share a stem and NAME, as many of their parent folders as tell them apart ('a.task.TASK',
    'b.task.TASK'). No ':' or '/' (folder names). TaskError where two specs are one task."""
    parts = {}  # spec -> the name's parts, last first, and the parent folders that may be added
    for spec in dict.fromkeys(specs):
        if is_builtin(spec):
            parts[spec] = ([spec], [])
            continue
        where, attr = parse_spec(spec)
        if is_object(spec):
            parts[spec] = ([attr], [])
        elif where.endswith(".py"):
            path = Path(canonical(spec).rpartition(":")[0])
            parts[spec] = ([attr, path.stem], [p for p in reversed(path.parent.parts) if p != path.anchor])
        else:
            parts[spec] = ([attr, where], [])
    while True:
        shown = {spec: ".".join(reversed(p[0])) for spec, p in parts.items()}
        by_name = {}
        for spec, text in shown.items():
            by_name.setdefault(text, []).append(spec)
        clashes = [group for group in by_name.values() if len(group) > 1]
        if not clashes:
            return shown
        for group in clashes:
            if not any(parts[spec][1] for spec in group):
                raise TaskError(f"--task {group[0]} and {group[1]} are one task: name it once")
            for spec in group:
                shown_parts, folders = parts[spec]
                if folders:
                    shown_parts.append(folders.pop(0))


def name(spec: str, among=()) -> str:
    """`spec`'s short name among the study's tasks `among` (`names`); alone: 'file.NAME'."""
    return names((*among, spec))[spec]


def module_name(path: str) -> str:
    """The name a task file (its absolute path) is imported under, in the driver and on every node
    alike: its stem and a digest of its path, so that `a/task.py` and `b/task.py` never meet in
    `sys.modules` (dataclasses and pickling look a module up there by name)."""
    return f"lrstudy_task_{Path(path).stem}_{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def _shipped(folder: str) -> Path | None:
    """Where Ray unpacked the task folder `folder` (the driver's path) on this node, or None: the
    job's py_modules (`ship`) are in the order of the folders listed in SHIPPED_ENV, and each is
    unpacked into a folder on `sys.path` named by its package, `_ray_pkg_<hash>`, as `<that>/<folder's name>`."""
    folders = json.loads(os.environ.get(SHIPPED_ENV) or "[]")
    if folder not in folders:
        return None
    import ray

    packages = (ray.get_runtime_context().runtime_env or {}).get("py_modules") or []
    if len(packages) != len(folders):
        return None
    package = Path(packages[folders.index(folder)]).stem  # gcs://_ray_pkg_<hash>.zip
    return next((Path(entry) / Path(folder).name for entry in sys.path if Path(entry).name == package), None)


def _check_siblings(path: Path) -> None:
    """A task file's sibling modules are imported by their names, once per process: where the file
    imports a sibling that another folder's module of the same name already is (two task folders
    with a `nets.py` each), ImportError with one line, not the other task's code."""
    source = path.read_text(errors="replace")
    for name in sorted(set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", source, re.MULTILINE))):
        if not ((path.parent / f"{name}.py").is_file() or (path.parent / name / "__init__.py").is_file()):
            continue
        loaded = getattr(sys.modules.get(name), "__file__", None)
        if loaded and Path(loaded).resolve().parent not in (path.parent.resolve(), (path.parent / name).resolve()):
            raise ImportError(f"its sibling module {name} is already imported from {loaded}: "
                              f"give one of the two a name of its own")


def _import(where: str, driver: bool):
    if not where.endswith(".py"):
        return importlib.import_module(where)
    where = os.path.abspath(os.path.expanduser(where))
    module = module_name(where)
    if module in sys.modules:
        return sys.modules[module]
    path = Path(where)
    if not path.is_file():
        copy = None if driver else _shipped(str(path.parent))  # a worker node that cannot see the folder
        if copy is None or not (copy / path.name).is_file():
            raise FileNotFoundError(f"no such file: {path}" if driver else f"no such file on this node, nor shipped to it: {path}")
        path = copy / path.name
    _check_siblings(path)
    if str(path.parent) not in sys.path:  # its sibling modules (`from nets import MLP`), after everything else
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
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


# A task given as a Python object (study.run_study: a class defined in a notebook, say) has the
# spec "object:<label>"; the object itself reaches every trial through Ray's serialisation
# (cloudpickle: by value where it was defined in __main__), and is registered in each process.
OBJECT = "object"
_objects: dict[str, Any] = {}


def is_object(spec: str) -> bool:
    return spec.startswith(OBJECT + ":")


def register(objects: dict[str, Any]) -> None:
    """Make each task object loadable by its spec ("object:<label>") in this process."""
    for spec, obj in objects.items():
        _objects[spec] = obj
        for key in [k for k in _loaded if k[0] == spec]:
            del _loaded[key]


def registered(specs) -> dict[str, Any]:
    """The task objects of `specs` (what a study sends its trials)."""
    return {spec: _objects[spec] for spec in specs if spec in _objects}


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
        task = Task(task.model, replace(task.data, data_dir=data_dir), task.defaults)
    else:
        where, attr = parse_spec(spec)
        if is_object(spec):
            if spec not in _objects:
                raise TaskError(f"--task {spec}: a task given as a Python object exists only in the process that "
                                "gave it; call study.run_study with it again")
            module = SimpleNamespace(**{attr: _objects[spec]})
        else:
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
    from trainables.framework import is_lightning_module, is_lightning_module_class

    model = load(spec).model
    if isinstance(model, type):
        return not is_lightning_module_class(model)
    return not is_lightning_module(build_model(spec))


def _excluded(relative: Path) -> bool:
    """Whether Ray leaves `relative` (a path inside a shipped folder) out: SHIP_EXCLUDES, a '/...'
    pattern at the folder's top only."""
    from fnmatch import fnmatch

    return any(fnmatch(relative.name, pattern.lstrip("/")) for pattern in SHIP_EXCLUDES
               if not pattern.startswith("/") or len(relative.parts) == 1)


def _shipped_bytes(folder: Path, limit: int) -> int:
    """The bytes Ray would ship of `folder` (SHIP_EXCLUDES left out), counted until past `limit`."""
    total = 0
    for root, dirs, files in os.walk(folder):
        here = Path(root).relative_to(folder)
        dirs[:] = [d for d in dirs if not _excluded(here / d)]
        for f in files:
            if not _excluded(here / f):
                try:
                    total += os.path.getsize(Path(root) / f)
                except OSError:
                    continue
                if total > limit:
                    return total
    return total


def ship(specs: tuple[str, ...]) -> list[str]:
    """What Ray must ship to every node for these tasks (runtime_env's py_modules, with
    SHIP_EXCLUDES as its `excludes`): each task file's folder, so that its sibling modules go with
    it, and each task package that is not installed in site-packages (the user's own source).
    TaskError with one line for a folder over MAX_SHIP_BYTES (a task file in a home folder)."""
    out = {}
    for spec in specs:
        if is_builtin(spec) or is_object(spec):  # an object travels by Ray's serialisation
            continue
        where, _ = parse_spec(spec)
        if where.endswith(".py"):
            out.setdefault(str(Path(canonical(spec).rpartition(":")[0]).parent), spec)
            continue
        found = importlib.util.find_spec(where.split(".")[0])
        origin = next(iter(found.submodule_search_locations), None) if found and found.submodule_search_locations \
            else (found.origin if found else None)  # a package's folder (a namespace package's too), or a module's file
        if origin and "site-packages" not in origin and "dist-packages" not in origin:
            out.setdefault(str(Path(origin).resolve()), spec)
    for folder, spec in out.items():
        if Path(folder).is_dir() and _shipped_bytes(Path(folder), MAX_SHIP_BYTES) > MAX_SHIP_BYTES:
            raise TaskError(f"--task {spec}: its folder {folder} holds more than {MAX_SHIP_BYTES // 2**20} MiB to ship to "
                            "every node (MAX_SHIP_BYTES in trainables/tasks.py): put the task's files in a folder of their own")
    return list(out)
