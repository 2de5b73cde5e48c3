"""The Ray Tune function trainable: one trial = one Lightning Trainer training its task's
LightningModule (trainables/tasks.py: the user's own, or the short form's LitClassifier), on
in-memory batches or the task's live DataModule (trainables/loaders.py). Every task takes this one
path: range test, arm, work count, report.

`train_trial(config, data)` runs in the trial's worker, called by the entry point the driver
wraps with `tune.with_parameters` (`trainables.train_trial`, in `study.orchestrate.trainable`),
so `data` arrives once per node through the object store.
`config` is everything that shapes the trial, flat, and nothing else (it is the trial's
params.json):

* the trial's point: "arm" ("finder" | "manual" | "cyclic" | "prodigy" | "dadapt"), "lr" (float:
  the manual LR, the base LR 1.0 of the learning-rate-free arms; None for the arms whose LR the
  range test picks), "seed", "task" (a --task spec: trainables/tasks.py), "optimizer" ("sgd" |
  "adam" | "adamw"; "module": the module's own `configure_optimizers`), "finder_rule" (str, None for manual
  and learning-rate-free trials);
* training: "lr_schedule" ("constant" | "onecycle" | "cosine", peaking at the arm's LR; the
  cyclic arm keeps its own cycle; "module" with the module's own optimiser), "epochs",
  "batch_size" (None: a live DataModule's own), "momentum" (SGD), "weight_decay" (adamw's decoupled
  decay), "cpus_per_trial" (torch threads);
  "metric", "mode": what the study compares on (reported as `objective` too, for Ray Tune);
* the range test: "finder_min_lr", "finder_max_lr", "finder_num_training", "finder_mode";
* the data the driver loaded and passed as `data`: "val_size", "split_seed", "normalize",
  "subset" (they describe it; the trial reads the arrays it gets).

The arm's LR goes where Lightning's Tuner puts it (the module's `lr` or `learning_rate`); a module
without its own `configure_optimizers` gets the study's optimiser and schedule (trainables/optim.py).
Every epoch the trial reports to Tune every metric the module logged (Lightning's
`callback_metrics`: `train_loss`, `val_acc`, ... under their logged names; TensorBoard has them
from Lightning's own logger), `lr` (the step size the optimiser applies, d x lr for the
learning-rate-free arms, see `trainables.optim.step_size`, as it stands when the epoch ends: under
a schedule, the rate of the next step), `objective`, plus bookkeeping (arm, timings, node and its
hardware, the fingerprints of its initial weights and first batches) and the work done so far
(`ReportToTune.work`); the last epoch's row comes after the module's own `test_step` ran on the
test set (`Trainer.test`) and adds its metrics (`test_acc`, `test_mae`, ...). A Lightning checkpoint
travels with every report, so Ray can restart a killed trial from its last epoch.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import ray
import torch
from ray import tune

from trainables import LR_FREE, OWN_OPTIMIZER, framework
from trainables.callbacks import CHECKPOINT_FILE, STUDY_KEY, Diverged, for_package
from trainables.data import Dataset, datamodule
from trainables.files import FINDER_FILE, write_atomic
from trainables.finder import FinderResult, range_test
from trainables.loaders import Loaders, in_memory, live
from trainables.optim import Optim, install, step_size
from trainables.tasks import build_module, load
from trainables.work import cpu_model

CYCLIC_MIN_FRACTION = 0.1  # the cyclic arm cycles between suggestion x 0.1 and the suggestion


def _save_finder(trial_dir: Path, result: FinderResult, rule: str, logger) -> None:
    record = {**result.record(), "rule": rule, "suggestion": result.suggestions[rule]}
    write_atomic(trial_dir / FINDER_FILE, json.dumps(record, indent=1))
    curves = {"lr_finder/lr": result.lrs, "lr_finder/loss": result.loss, "lr_finder/loss_raw": result.loss_raw,
              "lr_finder/loss_lightning": result.loss_lightning}
    for tag, values in curves.items():
        for step, value in enumerate(values):
            logger.experiment.add_scalar(tag, value, step)


def train_trial(config: dict, data: dict[str, Dataset | None] | Dataset) -> None:
    """The Ray Tune trainable: `run_trial` in Ray's working directory for the trial, on its node,
    on its task's data (`data`: by --task spec, or one Dataset for every task; None: the task's
    live DataModule, made in the trial)."""
    data = data[config["task"]] if isinstance(data, dict) else data
    trial_start_ts = time.time()
    node_id = ray.get_runtime_context().get_node_id()
    node_ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), None)
    # Artifacts (TensorBoard events, the finder's curve) go to the trial's working directory, which
    # Ray makes the current directory of the trial, on whichever node it runs; the driver's
    # SyncConfig(sync_artifacts=True) copies it into the experiment's trial folder. Ray's
    # get_trial_dir() is a driver-side staging path (and the working dir for reused actors).
    run_trial(config, data, Path.cwd(), tune.get_checkpoint(),
              {"trial_start_ts": trial_start_ts, "node_id": node_id, "node_ip": node_ip or ray.util.get_node_ip_address()})


def _build(config: dict, data: Dataset | None):
    """The task's module, freshly built (after seeding), with its data's pretrained `weights` where it
    has them (fashion-vit-finetune): loaded into the short form's model, every key it has but those
    the weights lack (a fresh head) replaced; a key the model lacks is an error."""
    module = build_module(config["task"])
    if data is not None and data.weights is not None:
        net = getattr(module, "net", module)  # the short form's model inside LitClassifier
        unexpected = net.load_state_dict(data.weights, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"the task's pretrained weights have keys its model lacks: {', '.join(unexpected)}")
    return module


def _loaders(config: dict, data: Dataset | None, device: torch.device) -> Loaders:
    if data is not None:
        return in_memory(data, config["batch_size"], config["seed"], device)
    task = load(config["task"])
    dm = datamodule(task.data, config["task"]) or datamodule(task.data(), config["task"])
    return live(dm, config["batch_size"])


def run_trial(config: dict, data: Dataset | None, trial_dir: Path, checkpoint: tune.Checkpoint | None,
              context: dict) -> None:
    """Train one trial as `config` says, into `trial_dir`, from `checkpoint` if Ray restarted it;
    every epoch goes to `tune.report` with `context` (when and where the trial runs)."""
    framework.quiet()
    torch.set_num_threads(config["cpus_per_trial"])
    use_gpu = torch.cuda.is_available()  # Ray hides GPUs from trials that were given none
    framework.seed(config["seed"])
    module = _build(config, data)  # after seeding: the seed's initial weights, whatever the arm
    pl = framework.package(module)
    loaders = _loaders(config, data, torch.device("cuda" if use_gpu else "cpu"))

    fixed = {"arm": config["arm"], "seed": config["seed"], "task": config["task"], "optimizer": config["optimizer"],
             **context, "node_cpu": cpu_model(), "node_gpu": torch.cuda.get_device_name() if use_gpu else None,
             "torch_threads": torch.get_num_threads(), "finder_steps": 0, "finder_samples": 0}
    ReportToTune, DivergenceCheck = for_package(pl)
    report = ReportToTune(fixed, hparams=config, study={})
    logger = pl.loggers.TensorBoardLogger(save_dir=str(trial_dir), name="", version="", default_hp_metric=False)
    trainer = pl.Trainer(
        max_epochs=config["epochs"],
        accelerator="gpu" if use_gpu else "cpu",
        devices=1,
        logger=logger,
        # a NaN check syncs the GPU: not on every step there; ReportToTune checkpoints every epoch
        callbacks=[DivergenceCheck(50 if use_gpu else 1), report],
        default_root_dir=str(trial_dir),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=0,  # no step logs: a module's epoch metrics are logged once per epoch, whatever its length
    )

    with checkpoint.as_directory() if checkpoint else nullcontext() as ckpt_dir:
        ckpt_path = Path(ckpt_dir) / CHECKPOINT_FILE if checkpoint else None
        if ckpt_path:  # a restarted trial: same LR and optimiser, no second range test
            study = torch.load(ckpt_path, map_location="cpu", weights_only=False)[STUDY_KEY]
            lr, optim = study["lr"], study["optim"] and Optim(**study["optim"])
        else:
            lr, optim = _arm(config, trainer, module, loaders, trial_dir, logger, report)
        report.study = {"lr": lr, "optim": optim and asdict(optim)}
        if optim is not None:
            install(module, optim)
        framework.set_lr(module, lr)
        # Every arm trains on the same batches (a live DataModule's shuffling and augmentation draw
        # from these RNGs): Lightning's range test already runs inside `isolate_rng`; reseeding
        # makes it so whatever else an arm drew before training.
        framework.seed(config["seed"])
        try:
            trainer.fit(module, **loaders.fit_kwargs(), ckpt_path=ckpt_path)
        except Diverged as e:
            report.report_divergence(trainer, str(e), step_size(trainer.optimizers[0]) if trainer.optimizers else lr)
            return
        tested = loaders.has_test and framework.overrides(module, "test_step")  # else: no test metrics
        test = trainer.test(module, **loaders.test_kwargs(), verbose=False)[0] if tested else {}
        report.finish(trainer, {k: float(v) for k, v in test.items()})


def _arm(config: dict, trainer, module, loaders: Loaders, trial_dir: Path, logger, report) -> tuple[float, Optim | None]:
    """The arm's LR, and the study's optimiser for it (None: the module's own). The arm's LR is the
    peak of the trial's LR schedule; the cyclic arm keeps its own cycle."""
    own = config["optimizer"] == OWN_OPTIMIZER
    schedule = config["lr_schedule"] if config["arm"] != "cyclic" else "constant"
    optim = None if own else _optim(config, schedule)
    if config["arm"] == "manual":
        return config["lr"], optim
    if config["arm"] in LR_FREE:  # no range test: the optimiser adapts its step size from the base LR
        return config["lr"], replace(optim, lr_free=config["arm"])
    # finder and cyclic arms: Lightning's range test on the training data gives the LR (or, for
    # Smith's cyclical arm, the top of the range), then this same trial trains with it, from the
    # same initial weights (lr_find restores them). With the study's optimiser, the range test's
    # probe has no LR schedule (OneCycleLR would set its momentum on construction): the test is
    # the same under any schedule. A module's own optimiser is range-tested as Lightning's Tuner does.
    result = _range_test(config, trainer, module, loaders)
    rule = config["finder_rule"]
    _save_finder(trial_dir, result, rule, logger)
    lr = result.suggestions[rule]
    if lr is None:
        raise RuntimeError(f"LR finder gave no suggestion (rule {rule!r}, {len(result.lrs)} points recorded)")
    report.fixed.update(finder_time_s=result.seconds, finder_rule=rule, finder_steps=len(result.lrs),
                        finder_samples=result.samples)  # one optimiser step per point of the curve
    if config["arm"] == "cyclic":
        report.fixed.update(cyclic_min_lr=lr * CYCLIC_MIN_FRACTION, cyclic_max_lr=lr)
        return lr, replace(optim, cyclic_min_lr=lr * CYCLIC_MIN_FRACTION)
    return lr, optim


def _optim(config: dict, schedule: str) -> Optim:
    """The study's optimiser of the trial, under `schedule` (a config without `weight_decay`, an
    older study's, had none)."""
    return Optim(config["optimizer"], config["momentum"], schedule, weight_decay=config.get("weight_decay", 0.0))


def _range_test(config: dict, trainer, module, loaders: Loaders) -> FinderResult:
    if config["optimizer"] != OWN_OPTIMIZER:  # the probe: the study's optimiser, constant, no cycle
        install(module, _optim(config, "constant"))
    fit = loaders.fit_kwargs()
    return range_test(trainer, module, train_dataloaders=fit.get("train_dataloaders"), datamodule=fit.get("datamodule"),
                      min_lr=config["finder_min_lr"], max_lr=config["finder_max_lr"],
                      num_training=config["finder_num_training"], mode=config["finder_mode"])


def trial_range_test(config: dict, data: Dataset | None) -> FinderResult:
    """The range test of a finder trial of `config` alone, as `run_trial` runs it (same seeding,
    same data order, same initial weights), in this process, without Ray or logging
    (study/sensitivity.py)."""
    framework.quiet()
    torch.set_num_threads(config["cpus_per_trial"])
    framework.seed(config["seed"])
    module = _build(config, data)
    loaders = _loaders(config, data, torch.device("cpu"))
    trainer = framework.package(module).Trainer(
        max_epochs=config["epochs"], accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    return _range_test(config, trainer, module, loaders)
