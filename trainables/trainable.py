"""The Ray Tune function trainable: one trial = one Lightning Trainer on in-memory Fashion-MNIST,
training its task's model (trainables/tasks.py).

`train_trial(config, data)` runs in the trial's worker, called by the entry point the driver
wraps with `tune.with_parameters` (`trainables.train_trial`, in `study.orchestrate.trainable`),
so `data` arrives once per node through the object store.
`config` is everything that shapes the trial, flat, and nothing else (it is the trial's
params.json):

* the trial's point: "arm" ("finder" | "manual" | "cyclic" | "prodigy" | "dadapt"), "lr" (float:
  the manual LR, the base LR 1.0 of the learning-rate-free arms; None for the arms whose LR the
  range test picks), "seed", "task" (a --task spec: trainables/tasks.py), "optimizer" ("sgd" |
  "adam"), "finder_rule" (str, None for manual and learning-rate-free trials);
* training: "lr_schedule" ("constant" | "onecycle" | "cosine", peaking at the arm's LR; the
  cyclic arm keeps its own cycle), "epochs", "batch_size", "momentum" (SGD), "cpus_per_trial"
  (torch threads);
* the range test: "finder_min_lr", "finder_max_lr", "finder_num_training", "finder_mode";
* the data the driver loaded and passed as `data`: "val_size", "split_seed", "normalize",
  "subset" (they describe it; the trial reads the arrays it gets).

Every epoch the trial reports to Tune (and to TensorBoard, in its own trial directory) the
metrics in `EPOCH_METRICS` (`lr`: the step size the optimiser applies, d x lr for the
learning-rate-free arms, see `trainables.module.step_size`, as it stands when the epoch ends:
under a schedule, the rate of the next step), plus bookkeeping (arm, timings,
node and its hardware, the fingerprints of its initial weights and first batches) and the work
done so far (`ReportToTune.work`); the last epoch adds the test-set metrics. A Lightning
checkpoint travels with every report, so Ray can restart a killed trial from its last epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import ray
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from ray import tune

from trainables import LR_FREE
from trainables.batches import batches
from trainables.data import Dataset
from trainables.files import FINDER_FILE, write_atomic
from trainables.finder import FinderResult, range_test
from trainables.module import Diverged, LitClassifier, step_size
from trainables.work import cpu_model, measure, total_flops

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
CHECKPOINT_FILE = "checkpoint.ckpt"
FINGERPRINT_BATCHES = 4  # batch_fingerprint hashes the first epoch's first batches (inputs and labels)
CYCLIC_MIN_FRACTION = 0.1  # the cyclic arm cycles between suggestion x 0.1 and the suggestion


class ReportToTune(pl.Callback):
    """Reports each finished epoch to Tune, logs it to TensorBoard, and attaches a checkpoint.

    Ray ships `TuneReportCheckpointCallback`, but it can only forward `trainer.callback_metrics`
    tensors; a trial here must also report strings (arm), timings and, on its last epoch, the
    test-set evaluation. This is the same idea on Ray's public `tune.report` API.

    A fresh trial also records, before its first step, `init_fingerprint` (its initial weights)
    and, over its first epoch, `batch_fingerprint` (the first `FINGERPRINT_BATCHES` batches it
    sees): trials of one seed must agree on both, whatever their arm, for the paired comparison
    to hold. Both travel in `fixed`, so a restored trial keeps those of its fresh start.

    It counts the work it has seen, which travels in the checkpoint with `train_time_s`, so a
    restored trial goes on from its checkpoint's counts: training steps and samples, and
    evaluated samples (validation, and the test set at the last epoch). The range test and the
    per-unit FLOPs are in `fixed` (the trial puts them there); `work()` adds it all up.
    """

    def __init__(self, fixed: dict, hparams: dict, test: tuple[torch.Tensor, torch.Tensor]):
        self.fixed = fixed  # reported with every epoch: arm, seed, node, finder_time_s, fingerprints ...
        self.hparams = hparams  # the trial's config: its row in TensorBoard's HParams view
        self.test = test
        self.train_time_s = 0.0  # cumulative, survives restarts through the checkpoint
        self.uncounted = False  # restored from a checkpoint that has no counts (written before they were kept)
        self.steps = 0  # optimiser steps in training (the range test's are fixed["finder_steps"]), likewise
        self.train_samples = 0  # their samples, likewise
        self.eval_samples = 0  # samples evaluated (validation every epoch, test at the last), likewise
        self._epoch_start = 0.0
        self._first_batches: list[torch.Tensor] | None = None  # a fresh trial's, until its first epoch ends

    def state_dict(self) -> dict:
        return {"train_time_s": self.train_time_s, "steps": self.steps, "train_samples": self.train_samples,
                "eval_samples": self.eval_samples, "fixed": self.fixed}

    def load_state_dict(self, state: dict) -> None:
        self.train_time_s = state["train_time_s"]
        # A checkpoint from before work was counted has no counts: its trial's work is unknown (None).
        self.uncounted = "steps" not in state
        self.steps, self.train_samples, self.eval_samples = (state.get(k, 0) for k in ("steps", "train_samples", "eval_samples"))
        here = ("torch_threads", "flops_per_train_step", "flops_per_eval_sample")  # this process's, on this node
        self.fixed = {**state["fixed"], **{k: v for k, v in self.fixed.items() if k.startswith("node") or k in here}}

    def on_train_start(self, trainer, pl_module: LitClassifier) -> None:
        if "init_fingerprint" not in self.fixed:  # a fresh trial (a restored one has its fixed back)
            self.fixed["init_fingerprint"] = fingerprint(*pl_module.state_dict().values())
            self._first_batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._first_batches is not None and batch_idx < FINGERPRINT_BATCHES:
            self._first_batches += batch  # inputs and labels

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.steps += 1  # one optimiser step per batch (no gradient accumulation)
        self.train_samples += len(batch[1])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self.eval_samples += len(batch[1])

    def work(self) -> dict:
        """The work so far, cumulative, range test included: `steps` (training's optimiser steps),
        `samples` (training samples, the range test's too), `eval_samples` and `flops` (all of it,
        from the per-unit figures in `fixed`; trainables/work.py)."""
        if self.uncounted:
            return dict.fromkeys(("steps", "samples", "eval_samples", "flops"))
        samples = self.fixed["finder_samples"] + self.train_samples
        flops = total_flops(self.fixed["flops_per_train_step"], self.hparams["batch_size"], samples,
                            self.fixed["flops_per_eval_sample"], self.eval_samples)
        return {"steps": self.steps, "samples": samples, "eval_samples": self.eval_samples, "flops": flops}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: LitClassifier) -> None:
        # Validation has run by now (it closes the training epoch), so both stages are complete.
        self.train_time_s += time.perf_counter() - self._epoch_start
        self.close_batch_fingerprint()
        epoch = trainer.current_epoch
        metrics = {**pl_module.stage_metrics("train"), **pl_module.stage_metrics("val"),
                   "lr": step_size(trainer.optimizers[0])}
        if trainer.logger:
            trainer.logger.log_metrics(metrics, step=epoch)
        if epoch == trainer.max_epochs - 1:
            test = pl_module.evaluate(*self.test)
            self.eval_samples += len(self.test[1])
            metrics.update(test_loss=test["loss"], test_acc=test["acc"])
            if trainer.logger:  # TensorBoard takes no None: a setting that does not apply is left out
                hparams = {**self.hparams, "lr": pl_module.lr,
                           **{k: v for k, v in self.fixed.items() if k.startswith("cyclic_")}}
                trainer.logger.log_hyperparams(
                    {k: v for k, v in hparams.items() if v is not None},
                    {"hp/val_acc": metrics["val_acc"], "hp/val_loss": metrics["val_loss"],
                     "hp/test_acc": metrics["test_acc"], "hp/test_loss": metrics["test_loss"]},
                )
        report = {**metrics, **self.fixed, **self.work(), "epoch": epoch, "train_time_s": self.train_time_s,
                  "report_ts": time.time(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save_checkpoint(os.path.join(tmp, CHECKPOINT_FILE))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))

    def close_batch_fingerprint(self) -> None:
        """`batch_fingerprint` from the batches seen so far (at the end of the first epoch, or of
        a trial that diverged in it)."""
        if self._first_batches is not None:
            self.fixed["batch_fingerprint"] = fingerprint(*self._first_batches)
            self._first_batches = None


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the tensors' values, in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _tensors(data: Dataset, device: torch.device) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():  # arrays from the object store are read-only; we never write them
        warnings.simplefilter("ignore", UserWarning)
        return {k: torch.from_numpy(getattr(data, k)).to(device) for k in
                ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}


def _save_finder(trial_dir: Path, result: FinderResult, rule: str, logger: TensorBoardLogger) -> None:
    record = {**result.record(), "rule": rule, "suggestion": result.suggestions[rule]}
    write_atomic(trial_dir / FINDER_FILE, json.dumps(record, indent=1))
    curves = {"lr_finder/lr": result.lrs, "lr_finder/loss": result.loss, "lr_finder/loss_raw": result.loss_raw,
              "lr_finder/loss_lightning": result.loss_lightning}
    for tag, values in curves.items():
        for step, value in enumerate(values):
            logger.experiment.add_scalar(tag, value, step)


def _quiet_lightning() -> None:
    """Keep the trial logs to what matters: no device banners, tips or known deprecations."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # "Checkpoint successfully created" x epochs
    for pattern in (".*weights_only.*", ".*LeafSpec.*", ".*no `val_dataloader`.*"):
        warnings.filterwarnings("ignore", message=pattern)


def train_trial(config: dict, data: dict[str, Dataset] | Dataset) -> None:
    """The Ray Tune trainable: `run_trial` in Ray's working directory for the trial, on its node,
    on its task's data (`data`: by --task spec, or one Dataset for every task)."""
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


def run_trial(config: dict, data: Dataset, trial_dir: Path, checkpoint: tune.Checkpoint | None, context: dict) -> None:
    """Train one trial as `config` says, into `trial_dir`, from `checkpoint` if Ray restarted it;
    every epoch goes to `tune.report` with `context` (when and where the trial runs)."""
    _quiet_lightning()
    torch.set_num_threads(config["cpus_per_trial"])
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    use_gpu = torch.cuda.is_available()  # Ray hides GPUs from trials that were given none
    t = _tensors(data, torch.device("cuda" if use_gpu else "cpu"))
    train_loader = batches(t["train_x"], t["train_y"], config["batch_size"], shuffle=True, seed=config["seed"])
    val_loader = batches(t["val_x"], t["val_y"], 1024, shuffle=False, seed=0)

    fixed = {"arm": config["arm"], "seed": config["seed"], "task": config["task"], "optimizer": config["optimizer"], **context,
             "node_cpu": cpu_model(), "node_gpu": torch.cuda.get_device_name() if use_gpu else None,
             "torch_threads": torch.get_num_threads(), "finder_steps": 0, "finder_samples": 0}
    report = ReportToTune(fixed, hparams=config, test=(t["test_x"], t["test_y"]))
    logger = TensorBoardLogger(save_dir=str(trial_dir), name="", version="", default_hp_metric=False)
    trainer = pl.Trainer(
        max_epochs=config["epochs"],
        accelerator="gpu" if use_gpu else "cpu",
        devices=1,
        logger=logger,
        callbacks=[report],
        default_root_dir=str(trial_dir),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,  # Ray Tune keeps the checkpoints (ReportToTune)
        num_sanity_val_steps=0,
        log_every_n_steps=0,  # no step logs: ReportToTune logs once per epoch, whatever the epoch's length
    )
    check_every = 50 if use_gpu else 1  # a NaN check syncs the GPU: not on every step there

    with checkpoint.as_directory() if checkpoint else tempfile.TemporaryDirectory() as ckpt_dir:
        ckpt_path = Path(ckpt_dir) / CHECKPOINT_FILE if checkpoint else None
        if ckpt_path:  # a restarted trial: same LR, no second range test
            saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            model = LitClassifier(**saved["hyper_parameters"])
        else:
            model = _new_model(config, trainer, train_loader, trial_dir, logger, report, check_every)
        # FLOPs per unit, on a copy of the model on the meta device: no arithmetic, no random draw
        # (a restored trial gets the same figures back from its checkpoint)
        report.fixed.update(measure(model.net, tuple(t["train_x"].shape[1:]), config["batch_size"]))
        try:
            trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path)
        except Diverged as e:
            # End cleanly: one last row says so; the scheduler needs its metric, so a diverged
            # model counts as zero accuracy.
            report.close_batch_fingerprint()
            report.train_time_s += time.perf_counter() - report._epoch_start  # the steps up to the NaN count as compute
            lr = step_size(trainer.optimizers[0]) if trainer.optimizers else model.lr
            tune.report({"train_loss": float("nan"), "val_loss": float("nan"), "val_acc": 0.0, "train_acc": 0.0,
                         "lr": lr, **report.fixed, "epoch": trainer.current_epoch, "diverged": True,
                         "diverged_reason": str(e), "train_time_s": report.train_time_s, "report_ts": time.time(),
                         **report.work()})  # the steps before the NaN batch (whose forward pass is not counted)


def finder_range_test(trainer: pl.Trainer, train_loader, optimizer: str, momentum: float, min_lr: float,
                      max_lr: float, num_training: int, mode: str, task: str) -> tuple[LitClassifier, FinderResult]:
    """The range test of a finder or cyclic trial: a fresh model of the task (the next draw of the
    seeded RNG), Lightning's `lr_find` from `min_lr` to `max_lr` in `num_training` steps; the probe
    keeps its initial weights."""
    probe = LitClassifier(lr=1e-3, optimizer=optimizer, momentum=momentum, divergence_check_every=0, task=task)
    return probe, range_test(trainer, probe, train_loader, min_lr=min_lr, max_lr=max_lr,
                             num_training=num_training, mode=mode)


def _new_model(config, trainer, train_loader, trial_dir, logger, report, check_every) -> LitClassifier:
    # The arm's LR is the peak of the trial's LR schedule; the cyclic arm keeps its own cycle.
    schedule = config["lr_schedule"] if config["arm"] != "cyclic" else "constant"
    common = {"optimizer": config["optimizer"], "momentum": config["momentum"], "lr_schedule": schedule,
              "task": config["task"]}
    if config["arm"] == "manual":
        return LitClassifier(lr=config["lr"], divergence_check_every=check_every, **common)
    if config["arm"] in LR_FREE:  # no range test: the optimiser adapts its step size from the base LR
        return LitClassifier(lr=config["lr"], lr_free=config["arm"], divergence_check_every=check_every, **common)
    # finder and cyclic arms: Lightning's range test on the training data gives the LR (or, for
    # Smith's cyclical arm, the top of the range), then this same trial trains with it, from the
    # same initial weights (lr_find restores them). The range test's probe has no LR schedule
    # (OneCycleLR would set its momentum on construction): the test is the same under any schedule.
    probe, result = finder_range_test(trainer, train_loader, config["optimizer"], config["momentum"],
                                      config["finder_min_lr"], config["finder_max_lr"],
                                      config["finder_num_training"], config["finder_mode"], config["task"])
    rule = config["finder_rule"]
    _save_finder(trial_dir, result, rule, logger)
    lr = result.suggestions[rule]
    if lr is None:
        raise RuntimeError(f"LR finder gave no suggestion (rule {rule!r}, {len(result.lrs)} points recorded)")
    report.fixed.update(finder_time_s=result.seconds, finder_rule=rule, finder_steps=len(result.lrs),
                        finder_samples=result.samples)  # one optimiser step per point of the curve
    cyclic_min = None
    if config["arm"] == "cyclic":
        cyclic_min = lr * CYCLIC_MIN_FRACTION
        report.fixed.update(cyclic_min_lr=cyclic_min, cyclic_max_lr=lr)
    model = LitClassifier(lr=lr, cyclic_min_lr=cyclic_min, divergence_check_every=check_every, **common)
    model.load_state_dict(probe.state_dict())
    return model
