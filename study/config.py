"""The study's settings: one frozen dataclass, one CLI flag per field (`lr_range` <-> `--lr-range`).

A bool field has the one flag that changes it: `--smoke` for a field that defaults to False,
`--no-normalize` for one that defaults to True (the default a tool gives it, see `build_parser`).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace

from trainables import LR_FREE, LR_SCHEDULES, OPTIMIZERS, OWN_OPTIMIZER
from trainables.finder_rules import RULES as FINDER_RULES
from trainables import tasks

SEARCHES = ("grid", "asha", "bayes")
SCHEDULERS = ("fifo", "asha")
FINDER_MODES = ("exponential", "linear")
MODES = ("max", "min")
ARMS = ("finder", "manual", "cyclic", *LR_FREE)
PRESETS = ("writeup",)
# The study's dimensions besides the seed. Each is a StudyConfig field listing values and the key of
# every trial's config that holds one of them; a *setting* is one value of each (`settings`), and
# the analysis, tables, verdicts and figures iterate over settings. A new dimension is added here.
DIMENSIONS = ("task", "optimizer", "lr_schedule", "batch_size")


class ConfigError(ValueError):
    """A setting is invalid; the message is one line meant for the user."""


def _numbers(kind: type, what: str):
    """A parser for a comma-separated list of `kind` (float, int), `what` naming them in its error."""

    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {what}") from None

    parse.__name__ = "list"
    return parse


_floats, _ints = _numbers(float, "numbers"), _numbers(int, "whole numbers")


def _names(allowed: tuple[str, ...]):
    """A parser for a comma-separated list of names from `allowed`."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        unknown = [t for t in items if t not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}")
        return items

    parse.__name__ = "list"
    return parse


def _tasks(text: str) -> tuple[str, ...]:
    """--task: built-in task names, or a user's tasks as path/to/file.py:NAME or package.module:NAME."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in items if not tasks.is_builtin(t) and ":" not in t]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(tasks.BUILTIN)}, "
                                         "or name your own as path/to/file.py:NAME or package.module:NAME")
    return tuple(_canonical(t) for t in items)


def _canonical(spec: str) -> str:
    """A task file's path made absolute (a malformed spec stays as given: loading it says why)."""
    try:
        return tasks.canonical(spec)
    except tasks.TaskError:
        return spec


def _opt(default, help: str, parse=None, choices=None):
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices})


@dataclass(frozen=True)
class StudyConfig:
    # -- what is searched ---------------------------------------------------------------------
    search: str = _opt("grid", "manual-LR search: 'grid' over --lrs; 'asha', LRs drawn at random from --lr-range, pruned by ASHA; or 'bayes', Optuna's TPE over --lr-range, one search per optimiser and seed, suggesting in batches of as many trials as run at once (each batch waits for the last)", choices=SEARCHES)
    lrs: tuple[float, ...] = _opt((1e-5, 1e-4, 1e-3, 1e-2, 1e-1), "grid: the manual learning rates, comma-separated", _floats)
    num_samples: int = _opt(8, "asha, bayes: how many manual LRs to draw from --lr-range, per optimiser and seed", int)
    lr_range: tuple[float, ...] = _opt((1e-5, 1e-1), "asha, bayes: LOW,HIGH bounds of the manual LRs (log scale)", _floats)
    scheduler: str | None = _opt(None, "what stops manual trials early (never another arm): 'asha' or 'fifo' (nothing); --search bayes --scheduler asha lets ASHA prune the Bayesian search; not set: the search's own, asha for --search asha, fifo otherwise", choices=SCHEDULERS)
    arms: tuple[str, ...] = _opt(("finder", "manual"), "which arms run: finder, manual, cyclic (Smith's cyclical LR over the finder's range), and the learning-rate-free prodigy (Prodigy, Adam-based, for any optimiser) and dadapt (D-Adaptation: DAdaptSGD with --momentum for sgd, DAdaptAdam for adam and adamw; both with --weight-decay under adamw), at lr 1.0, one trial per optimiser and seed", _names(ARMS))
    seeds: int = _opt(1, "run every arm with this many seeds: --seed, --seed+1, ...", int)
    preset: str | None = _opt(None, "'writeup': the write-up's setting (Adam, 5 epochs, 48k/12k split, no normalisation, LRs 1e-5,1e-4,1e-1,2e-3,0.0363)", choices=PRESETS)
    # -- training -----------------------------------------------------------------------------
    task: tuple[str, ...] = _opt(("fashion-lenet",), f"task(s), comma-separated: a model and its data; the study runs once per task. Built in, on Fashion-MNIST (docs/TRIALS.md): {', '.join(tasks.BUILTIN)}. Your own: path/to/file.py:NAME or package.module:NAME, an object with model and data (README: Your model, your data)", _tasks)
    epochs: int = _opt(10, "epochs per trial", int)
    batch_size: tuple[int | None, ...] = _opt((64,), "mini-batch size(s), comma-separated: the study runs once per batch size, each with its own range test at that size", _ints)
    optimizer: tuple[str, ...] = _opt(("sgd",), "optimiser(s), comma-separated: the study runs once per optimiser (sgd, adam, adamw: Adam with decoupled weight decay, --weight-decay)", _names(OPTIMIZERS))
    momentum: float = _opt(0.9, "SGD momentum", float)
    weight_decay: float = _opt(0.01, "adamw: decoupled weight decay, torch's AdamW default (also the learning-rate-free arms' under adamw; sgd and adam have none)", float)
    lr_schedule: tuple[str, ...] = _opt(("constant",), "LR schedule(s), comma-separated: the study runs once per schedule, with the arm's LR (manual, the finder's pick, a Bayesian suggestion, the learning-rate-free arms' 1.0) as its peak: constant; onecycle (torch's OneCycleLR, per step, which also cycles the momentum, SGD's or Adam's beta1, 0.95-0.85-0.95 in place of --momentum); cosine (linear warm-up over 5 %% of the steps from 1 %% of the peak, then cosine decay to zero, per step). The cyclic arm keeps its own cycle", _names(LR_SCHEDULES))
    seed: int = _opt(0, "first seed of the trials (seed_everything) and seed of ASHA's LR draws (each bayes search's TPE sampler is seeded with its trials' seed)", int)
    # -- data ---------------------------------------------------------------------------------
    data_dir: str | None = _opt(None, "folder with the four Fashion-MNIST IDX files (default: $FASHION_MNIST_DIR, Debian's package, then torchvision's download)")
    val_size: int = _opt(5000, "images held out of the 60,000 for validation", int)
    split_seed: int = _opt(0, "seed of the train/validation split", int)
    normalize: bool = _opt(True, "standardise pixels with the training split's mean and std")
    subset: int | None = _opt(None, "train on only this many images (validation and test shrink alike)", int)
    # -- the LR finder (Lightning's Tuner.lr_find) --------------------------------------------
    finder_min_lr: float = _opt(1e-8, "range test: lowest LR", float)
    finder_max_lr: float = _opt(1.0, "range test: highest LR", float)
    finder_num_training: int = _opt(100, "range test: number of steps (LRs tried)", int)
    finder_mode: str = _opt("exponential", "range test: how the LR grows per step", choices=FINDER_MODES)
    finder_rules: tuple[str, ...] = _opt(("lightning", "valley"), "how the range test's curve becomes one LR, one finder trial per rule, the first is the 'finder' arm: lightning (Lightning's own suggestion, installed version), steepest (Lightning < 2.5.3), fastai's valley, minimum, steep, slide", _names(FINDER_RULES))
    # -- resources and cluster ----------------------------------------------------------------
    cpus_per_trial: int = _opt(1, "CPUs (and torch threads) per trial", int)
    gpus_per_trial: float | None = _opt(None, "GPUs per trial, fractions allowed (default: 0 without GPUs, 0.25 with)", float)
    address: str | None = _opt(None, "attach to a running Ray cluster (e.g. 'auto' or HOST:PORT) instead of starting one")
    max_failures: int = _opt(2, "retries of a trial whose worker died, from its last checkpoint", int)
    # -- outputs ------------------------------------------------------------------------------
    results_dir: str = _opt("./results", "where experiments go: a folder (a shared mount on clusters) or a URI for Ray's storage_path, e.g. s3://bucket/prefix")
    name: str = _opt("lr-study", "experiment name: the folder under --results-dir")
    metric: str = _opt("val_acc", "the validation metric the verdict compares on, as the task's module logs it (val_...); its test-set counterpart is the same name with test for val (val_mae: test_mae)")
    mode: str = _opt("max", "whether --metric is better higher (max) or lower (min)", choices=MODES)
    target: float | None = _opt(None, "time-to-target threshold on --metric, reached in its direction (not set: no time-to-target; the built-in tasks set 0.88)", float)
    resume: bool = _opt(False, "continue the experiment --name: finished trials are kept, unfinished ones resume from their checkpoints")
    overwrite: bool = _opt(False, "replace an existing experiment --name instead of refusing")
    smoke: bool = _opt(False, "a real but tiny run (4,000 images, 2 epochs) for tests and a first look")

    def __post_init__(self):
        if self.batch_size is None or isinstance(self.batch_size, int):  # one batch size, as before it was a dimension
            object.__setattr__(self, "batch_size", (self.batch_size,))

    def validate(self) -> "StudyConfig":
        """Raise ConfigError with one line for the first invalid setting; return self."""
        lrs_to_check = {"--lrs": self.lrs} if self.search == "grid" else {"--lr-range": self.lr_range}
        for flag, values in lrs_to_check.items():
            if not values:
                raise ConfigError(f"{flag} is empty")
            for lr in values:
                if not (math.isfinite(lr) and lr > 0):
                    raise ConfigError(f"{flag}: learning rate {lr} must be a positive finite number")
        if self.search in ("asha", "bayes"):
            if len(self.lr_range) != 2 or not self.lr_range[0] < self.lr_range[1]:
                raise ConfigError(f"--lr-range must be LOW,HIGH with LOW < HIGH, got {','.join(map(str, self.lr_range))}")
            if self.num_samples < 1:
                raise ConfigError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.search == "bayes" and "manual" not in self.arms:
            raise ConfigError("--search bayes searches manual LRs: add manual to --arms")
        if self.scheduler == "asha" and self.search == "grid":
            raise ConfigError("--scheduler asha needs a search that can use it (--search asha or bayes): the grid runs every LR to the end")
        if self.scheduler == "fifo" and self.search == "asha":
            raise ConfigError("--search asha always prunes with ASHA: drop --scheduler fifo")
        for flag, items in (("--arms", self.arms), ("--task", self.task), ("--optimizer", self.optimizer), ("--lr-schedule", self.lr_schedule),
                            ("--finder-rules", self.finder_rules), ("--batch-size", self.batch_size)):
            if not items or len(set(items)) != len(items):
                raise ConfigError(f"{flag} must list at least one value, each once")
        sizes = [b for b in self.batch_size if b is not None]  # None: a live DataModule's own (`fit_to_task`)
        for flag, value in (("--epochs", self.epochs), ("--seeds", self.seeds), ("--batch-size", min(sizes, default=1)), ("--cpus-per-trial", self.cpus_per_trial),
                            ("--val-size", self.val_size), ("--finder-num-training", self.finder_num_training)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.subset is not None and self.subset < max(sizes, default=1):
            raise ConfigError(f"--subset must be at least --batch-size ({max(sizes)}), got {self.subset}")
        if self.gpus_per_trial is not None and not (math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0):
            raise ConfigError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial}")
        if not 0 < self.finder_min_lr < self.finder_max_lr:
            raise ConfigError("--finder-min-lr must be positive and below --finder-max-lr")
        if not self.metric.startswith("val"):
            raise ConfigError(f"--metric must name a validation metric the module logs (val_...), got {self.metric}")
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be max or min, got {self.mode}")
        if self.target is not None and not math.isfinite(self.target):
            raise ConfigError(f"--target must be a finite number, got {self.target}")
        if self.momentum < 0 or self.max_failures < 0 or not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("--momentum, --weight-decay and --max-failures must be >= 0")
        if "dadapt" in self.arms and "sgd" in self.optimizer and not self.momentum < 1:
            raise ConfigError(f"--momentum must be below 1 for --arms dadapt with sgd (DAdaptSGD), got {self.momentum}")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"--name must be a plain folder name, got {self.name!r}")
        return self

    def settings(self, task_configs: dict[str, "StudyConfig"] | None = None) -> list[dict]:
        """Every setting of the study, one value per dimension, in the order of the flags' values:
        [{"task": "fashion-lenet", "optimizer": "sgd", "lr_schedule": "constant", "batch_size": 64}, ...]. Per task,
        the other dimensions' values are its own config's in `task_configs` where it has one (a
        task's defaults may set its optimisers and schedules: `with_task_defaults`)."""
        out = []
        for task in self.task:
            own = (task_configs or {}).get(task, self)
            values = ((task,) if d == "task" else getattr(own, d) for d in DIMENSIONS)
            out += [dict(zip(DIMENSIONS, v)) for v in itertools.product(*values)]
        return out

    @property
    def pruned(self) -> bool:
        """Whether ASHA prunes the manual trials: --search asha, or --scheduler asha."""
        return self.search == "asha" or self.scheduler == "asha"

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = {f.name: f for f in fields(StudyConfig)}
# What --smoke shrinks, unless the flag is given explicitly.
SMOKE = {"epochs": 2, "subset": 4000}
# The write-up's setting, as closely as the data allows. Its notebook wrote the finder's LR to
# `hparams` while the optimiser read another attribute set to 2e-3: hence the manual 2e-3, and the
# finder's published pick 0.0363 as a manual LR too, so both readings are trained over seeds.
PRESET = {"writeup": {"optimizer": ("adam",), "batch_size": (64,), "epochs": 5, "val_size": 12_000, "split_seed": 7,
                      "normalize": False, "search": "grid", "lrs": (1e-5, 1e-4, 1e-1, 2e-3, 0.0363),
                      "finder_min_lr": 1e-8, "finder_max_lr": 1.0, "finder_num_training": 100}}


def test_metric(name: str) -> str:
    """The test-set counterpart of a validation metric, the one mapping: its leading "val" replaced by
    "test" (val_acc -> test_acc, val_mae -> test_mae, val/acc -> test/acc)."""
    return "test" + name[len("val"):] if name.startswith("val") else name


def is_accuracy(name: str) -> bool:
    """An accuracy-like metric (its name ends in acc or accuracy): shown in percent, differences in points."""
    return name.lower().endswith(("acc", "accuracy"))


def objective(value, mode: str) -> float:
    """What Ray Tune maximises for a trial (its `objective`): the setting's metric, negated when
    `mode` is min; NaN for a missing or non-numeric value (a diverged trial)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if mode == "max" else -x


def metric_settings(config: dict) -> dict:
    """`metric`, `mode` and `target` of a study's or a trial's config (a dict): an older study's
    (study.json with `target_acc` and no `metric`) compared val_acc, maximised, to target_acc."""
    if "metric" not in config:
        return {"metric": "val_acc", "mode": "max", "target": config.get("target_acc")}
    return {"metric": config["metric"], "mode": config.get("mode") or "max", "target": config.get("target")}


def dimension_value(dimension: str, value, tasks_of_study=()) -> str:
    """A dimension's value as tables, figures and folder names show it: a user's task by its short
    name, told apart from the study's other tasks (`tasks_of_study`: trainables/tasks.py `names`)."""
    if dimension == "batch_size":
        return f"b{value}" if value is not None else "b-own"  # a live DataModule's own batch size
    return tasks.name(value, tasks_of_study) if dimension == "task" else str(value)


def setting_label(setting: dict, settings: list[dict]) -> str:
    """A setting's name in tables, verdicts and figure panels, among the study's `settings`: its
    optimiser, and each other dimension's value where the settings take several ("sgd",
    "fashion-mlp/sgd"). Settings differ in some dimension, so their labels differ."""
    study_tasks = tuple(dict.fromkeys(s["task"] for s in settings))
    return "/".join(dimension_value(d, setting.get(d), study_tasks) for d in DIMENSIONS
                    if d == "optimizer" or len({s.get(d) for s in settings}) > 1)


# What splits a task's data (trainables/data.py: `split`); a task's defaults may set val_size.
SPLIT = ("val_size", "split_seed", "normalize", "subset")


def split_of(config: StudyConfig) -> dict:
    return {name: getattr(config, name) for name in SPLIT}


def typed(name: str, value):
    """`value` for the field `name` as its flag would give it: a string is parsed by the flag's
    parser, a list or tuple for a tuple field is joined and parsed likewise (so each value is
    checked as on the command line), a number is checked against the field's type. ConfigError
    with the command line's one line otherwise (`argument --optimizer: unknown 'rmsprop'; ...`)."""
    f = FIELDS[name]
    parse, default, given = f.metadata["parse"], f.default, value
    if value is None and default is None:  # a setting that may be unset, unset
        return None
    try:
        if isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        elif isinstance(default, tuple) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # one value of a list: `batch_size=128`
        if isinstance(value, str) and parse is not None:
            value = parse(value)
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise ConfigError(f"argument {flag(name, default)}: {e}") from None
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise ConfigError(f"argument {flag(name, default)}: invalid choice: {value!r} (choose from {', '.join(map(repr, choices))})")
    kind = tuple if isinstance(default, tuple) else float if isinstance(default, float) or parse is float else \
        int if parse is int else str if default is None else type(default)
    if not (isinstance(value, kind) or kind is float and isinstance(value, int)) or isinstance(value, bool) != isinstance(default, bool):
        takes = {tuple: "a list", float: "a number", int: "a whole number", bool: "True or False"}.get(kind, "a name")
        raise ConfigError(f"argument {flag(name, default)}: takes {takes}, not {given!r}")
    return float(value) if kind is float else value


def _task_default(name: str, value, task: str):
    """A task's default for the field `name`, in the field's type (`typed`); ConfigError with one
    line naming the task otherwise."""
    try:
        return typed(name, value)
    except ConfigError as e:
        raise ConfigError(f"--task {task}: its defaults set {name} to {value!r}: {str(e).split(': ', 1)[1]}") from None


def with_task_defaults(config: StudyConfig, defaults: dict, given: set[str], task: str = "") -> StudyConfig:
    """One task's config: the task's `defaults` (trainables/tasks.py) for the fields that neither
    the command line (`given`), --smoke nor --preset set. A default that is not a StudyConfig field
    here (the metric's, until StudyConfig has them) is left out. ConfigError with one line that
    names the task where a default is not a valid setting."""
    fixed = set(given) | (set(SMOKE) if config.smoke else set()) | (set(PRESET[config.preset]) if config.preset else set())
    own = {k: _task_default(k, v, task) for k, v in defaults.items() if k not in fixed and k in FIELDS}
    try:
        return replace(config, **own).validate()
    except ConfigError as e:
        raise ConfigError(f"--task {task}: with its defaults {own}: {e}") from None


def flag(name: str, default=None) -> str:
    """The command-line flag of the field `name`: `--lr-range`; `--no-normalize` for a bool whose default is True."""
    return ("--no-" if default is True else "--") + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser(prog: str, description: str, only: tuple[str, ...] | None = None,
                 defaults: dict | None = None) -> argparse.ArgumentParser:
    """One flag per StudyConfig field (or per field in `only`); `defaults`: a tool's own defaults.

    `field` <-> `--field`, except a bool that defaults to True: `normalize` <-> `--no-normalize`.
    Only the flags given on the command line are in the parsed namespace (argument_default=SUPPRESS).
    """
    # allow_abbrev=False: a flag is only ever its whole name (`--schedule` is not `--scheduler`)
    parser = _Parser(prog=prog, description=description, argument_default=argparse.SUPPRESS, allow_abbrev=False)
    for f in fields(StudyConfig):
        if only is not None and f.name not in only:
            continue
        meta, default = f.metadata, (defaults or {}).get(f.name, f.default)
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) if isinstance(default, tuple) else default
        if default is True:  # the flag that means something is the one that turns it off
            parser.add_argument(flag(f.name, default), dest=f.name, action="store_false",
                                help=f"don't {meta['help']} (default: on)")
        elif isinstance(default, bool):
            parser.add_argument(flag(f.name), action="store_true", help=f"{meta['help']} (default: off)")
        else:
            parser.add_argument(flag(f.name), type=meta["parse"] or str, choices=meta["choices"],
                                metavar=f.name.upper() if not meta["choices"] else None, help=f"{meta['help']} (default: {shown})")
    return parser


def config_from_args(args: argparse.Namespace, defaults: dict | None = None) -> StudyConfig:
    """Only the flags given on the command line override the defaults (a tool's own `defaults`,
    then StudyConfig's), the preset and --smoke's shrinking."""
    return config_from_values({k: v for k, v in vars(args).items() if k in FIELDS}, defaults)


def config_from_values(given: dict, defaults: dict | None = None) -> StudyConfig:
    """The config of `given` settings, already typed (`typed`: a flag's, or a keyword argument's),
    over the defaults (a tool's own `defaults`, then StudyConfig's), the preset and --smoke's
    shrinking; validated."""
    config = StudyConfig(**{**(defaults or {}), **given})
    if config.preset:
        config = replace(config, **{k: v for k, v in PRESET[config.preset].items() if k not in given})
    if config.smoke:
        config = replace(config, **{k: v for k, v in SMOKE.items() if k not in given})
    return config.validate()


def data_settings(config: StudyConfig, batch_size: int | None) -> dict:
    """What trainables.checks.load_data needs of a task's config: its split, the metric its module
    must log, and `batch_size` (one of the study's, checked; None: a live DataModule keeps its own)."""
    return {**split_of(config), "metric": config.metric, "batch_size": batch_size}


# A task whose module builds its own optimiser trains with it: its settings' optimizer and
# lr_schedule are OWN_OPTIMIZER ("module"), and these flags cannot apply to it, nor the arms that need the study's
# optimiser. A task whose data is a live LightningDataModule splits and batches its data itself.
OPTIMISER_FLAGS = ("optimizer", "lr_schedule", "momentum", "weight_decay")
DATA_FLAGS = ("val_size", "split_seed", "normalize", "subset")
STUDY_OPTIMISER_ARMS = ("cyclic", *LR_FREE)


def fit_to_task(config: StudyConfig, task: str, facts: dict, given: set[str], batch_size_set: bool) -> StudyConfig:
    """One task's config fitted to what the task is (`facts`: trainables.checks.load_data's): a module
    with its own optimiser gets optimizer and lr_schedule OWN_OPTIMIZER and no arm that needs the study's
    optimiser; a live DataModule keeps its own batch size unless one was set (`batch_size_set`: by
    a flag or the task's defaults). A flag in `given` (the command line's) that cannot apply is
    ConfigError with one line; a default that cannot apply does not apply."""
    wrong = []
    if facts["own_optimizer"]:
        wrong += [flag(f, FIELDS[f].default) for f in OPTIMISER_FLAGS if f in given]
        if "arms" in given:
            wrong += [f"--arms {a}" for a in config.arms if a in STUDY_OPTIMISER_ARMS]
        config = replace(config, optimizer=(OWN_OPTIMIZER,), lr_schedule=(OWN_OPTIMIZER,),
                         arms=tuple(a for a in config.arms if a not in STUDY_OPTIMISER_ARMS))
        why = f"its {facts['module']} builds its own optimiser (configure_optimizers)"
    if facts["live"]:
        data_wrong = [flag(f, FIELDS[f].default) for f in DATA_FLAGS if f in given]
        wrong += data_wrong
        if not batch_size_set:
            config = replace(config, batch_size=(None,))  # its own
        if data_wrong:
            why = "its data is a LightningDataModule, which splits its own data"
    if wrong:
        raise ConfigError(f"--task {task}: {', '.join(wrong)} cannot apply: {why}")
    if not config.arms:
        raise ConfigError(f"--task {task}: no arm left to run: its {facts['module']} builds its own optimiser")
    return config
