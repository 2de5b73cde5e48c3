"""The trial's Lightning callbacks, made of the classes of the module's own Lightning package
(`for_package`: a Trainer takes only its own package's callbacks): `ReportToTune` reports each
epoch to Ray Tune with a checkpoint, `DivergenceCheck` ends a training whose loss is not finite.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import shutil
import tempfile
import time
from functools import cache
from types import ModuleType

import torch
from pytorch_lightning.utilities.data import extract_batch_size  # the same function in either package
from ray import tune
from torch.utils._pytree import tree_leaves

from trainables.optim import step_size
from trainables.work import Counting, total_flops

FINGERPRINT_BATCHES = 4  # batch_fingerprint hashes the first epoch's first batches (every tensor in them)
CHECKPOINT_FILE = "checkpoint.ckpt"
STUDY_KEY = "lrstudy"  # the checkpoint's record of what the study set on the module (its LR, its optimiser)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the tensors' values, in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _loss(outputs):
    return outputs if isinstance(outputs, torch.Tensor) else (outputs or {}).get("loss")


class _DivergenceCheck:
    """Raises Diverged when a training step's loss is NaN or infinite, every `every` steps (a
    check syncs the GPU: not on every step there); the step's work is not counted."""

    def __init__(self, every: int = 1):
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = _loss(outputs)
        if self.every and batch_idx % self.every == 0 and loss is not None and not math.isfinite(loss.item()):
            raise Diverged(f"training loss is {loss.item()} at epoch {trainer.current_epoch}, batch {batch_idx}")


class _ReportToTune:
    """Reports each finished epoch to Tune, with every metric the module logged, and a checkpoint.

    Ray ships `TuneReportCheckpointCallback`, but it can only forward `trainer.callback_metrics`
    tensors; a trial here must also report strings (arm), timings and the work it did. It is a
    `Checkpoint` callback (it checkpoints every epoch), so Lightning calls its
    `on_train_epoch_end` after the module's own, and metrics a module logs there are in.
    The last epoch is reported by `finish`, once the trial has run the module's `test_step`.

    A fresh trial also records, before its first step, `init_fingerprint` (its initial weights)
    and, over its first epoch, `batch_fingerprint` (the first `FINGERPRINT_BATCHES` batches it
    sees): trials of one seed must agree on both, whatever their arm, for the paired comparison
    to hold. Both travel in `fixed`, so a restored trial keeps those of its fresh start.

    It counts the work it has seen, which travels in the checkpoint with `train_time_s`, so a
    restored trial goes on from its checkpoint's counts: training steps and samples, and
    evaluated samples (validation, and the test set at the end). A fresh trial's first training
    step and first validation batch are counted in FLOPs (trainables/work.py); those figures and the
    range test's steps are in `fixed`; `work()` adds it all up.
    """

    def __init__(self, fixed: dict, hparams: dict, study: dict):
        self.fixed = fixed  # reported with every epoch: arm, seed, node, finder_time_s, fingerprints ...
        self.hparams = hparams  # the trial's config: its row in TensorBoard's HParams view
        self.study = study  # what the study set on the module ({"lr": ..., "optim": ...}), for a restart
        self.train_time_s = 0.0  # cumulative, survives restarts through the checkpoint
        self.steps = 0  # optimiser steps in training (the range test's are fixed["finder_steps"]), likewise
        self.train_samples = 0  # their samples, likewise
        self.eval_samples = 0  # samples evaluated (validation every epoch, test at the end), likewise
        self._epoch_start = 0.0
        self._first_batches: list[torch.Tensor] | None = None  # a fresh trial's, until its first epoch ends
        self._counting = Counting()
        self._last: tuple[dict, str] | None = None  # the last epoch's metrics and checkpoint, until `finish`

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"train_time_s": self.train_time_s, "steps": self.steps, "train_samples": self.train_samples,
                "eval_samples": self.eval_samples, "fixed": self.fixed}

    def load_state_dict(self, state: dict) -> None:
        self.train_time_s = state["train_time_s"]
        self.steps, self.train_samples, self.eval_samples = state["steps"], state["train_samples"], state["eval_samples"]
        here = ("torch_threads",)  # this process's, on this node
        self.fixed = {**state["fixed"], **{k: v for k, v in self.fixed.items() if k.startswith("node") or k in here}}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[STUDY_KEY] = self.study

    # -- counting --------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if "init_fingerprint" not in self.fixed:  # a fresh trial (a restored one has its fixed back)
            self.fixed["init_fingerprint"] = fingerprint(*pl_module.state_dict().values())
            self._first_batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._first_batches is not None and batch_idx < FINGERPRINT_BATCHES:
            self._first_batches += [t for t in tree_leaves(batch) if isinstance(t, torch.Tensor)]
        if "flops_per_train_step" not in self.fixed:
            self._counting.start()  # the first step of a fresh trial, counted as it runs

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        n = extract_batch_size(batch)
        if "flops_per_train_step" not in self.fixed:
            self.fixed.update(flops_per_train_step=self._counting.stop(), flops_step_samples=n)
        self.steps += 1  # one optimiser step per batch (no gradient accumulation)
        self.train_samples += n

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if "flops_per_eval_sample" not in self.fixed and not trainer.sanity_checking:
            self._counting.start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        n = extract_batch_size(batch)
        flops = self._counting.stop()
        if flops is not None:
            self.fixed["flops_per_eval_sample"] = flops // n
        self.eval_samples += n

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.eval_samples += extract_batch_size(batch)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._counting.stop()  # a count left running (a divergence in the first step) ends here

    def work(self) -> dict:
        """The work so far, cumulative, range test included: `steps` (training's optimiser steps),
        `samples` (training samples, the range test's too), `eval_samples` and `flops` (all of it,
        from the per-unit figures in `fixed`, None where one was never counted; trainables/work.py)."""
        samples = self.fixed["finder_samples"] + self.train_samples
        f = self.fixed
        per_eval = f.get("flops_per_eval_sample", 0 if not self.eval_samples else None)  # none evaluated: none needed
        flops = None if None in (f.get("flops_per_train_step"), per_eval) else \
            total_flops(f["flops_per_train_step"], f["flops_step_samples"], samples, per_eval, self.eval_samples)
        return {"steps": self.steps, "samples": samples, "eval_samples": self.eval_samples, "flops": flops}

    # -- reporting -------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Validation has run by now (it closes the training epoch), and the module's own
        # on_train_epoch_end too (this is a Checkpoint callback), so every metric of the epoch is in.
        self.train_time_s += time.perf_counter() - self._epoch_start
        self.close_batch_fingerprint()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        metrics["lr"] = step_size(trainer.optimizers[0])
        if trainer.logger:
            trainer.logger.log_metrics({"lr": metrics["lr"]}, step=trainer.global_step)
        tmp = tempfile.mkdtemp(prefix="lrstudy-ckpt-")
        trainer.save_checkpoint(os.path.join(tmp, CHECKPOINT_FILE))
        if trainer.current_epoch == trainer.max_epochs - 1:
            self._last = (metrics, tmp)  # reported by `finish`, with the test set's metrics
        else:
            self._report(metrics, trainer.current_epoch, tmp)

    def finish(self, trainer, test_metrics: dict) -> None:
        """Report the last epoch, with the test set's metrics (the module's own test_step)."""
        if self._last is None:
            return
        (metrics, tmp), self._last = self._last, None
        metrics = {**metrics, **test_metrics}
        if trainer.logger:  # TensorBoard takes no None: a setting that does not apply is left out
            hparams = {**self.hparams, "lr": self.study["lr"],
                       **{k: v for k, v in self.fixed.items() if k.startswith("cyclic_")}}
            shown = {f"hp/{k}": v for k, v in metrics.items() if k.startswith(("val", "test"))}
            trainer.logger.log_hyperparams({k: v for k, v in hparams.items() if v is not None}, shown)
        self._report(metrics, trainer.max_epochs - 1, tmp)

    def _report(self, metrics: dict, epoch: int, checkpoint_dir: str) -> None:
        report = {**metrics, "objective": objective(metrics, self.hparams), **self.fixed, **self.work(),
                  "epoch": epoch, "train_time_s": self.train_time_s, "report_ts": time.time(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        try:
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def report_divergence(self, trainer, reason: str, lr: float) -> None:
        """End cleanly: one last row says so, the metric at its worst for Ray Tune's schedulers."""
        self.close_batch_fingerprint()
        self.train_time_s += time.perf_counter() - self._epoch_start  # the steps up to the NaN count as compute
        metric = self.hparams.get("metric", "val_acc")
        tune.report({"train_loss": math.nan, "val_loss": math.nan, metric: math.nan, "objective": -math.inf, "lr": lr,
                     **self.fixed, "epoch": trainer.current_epoch, "diverged": True, "diverged_reason": reason,
                     "train_time_s": self.train_time_s, "report_ts": time.time(),
                     **self.work()})  # the steps before the NaN batch (whose forward pass is not counted)

    def close_batch_fingerprint(self) -> None:
        """`batch_fingerprint` from the batches seen so far (at the end of the first epoch, or of
        a trial that diverged in it)."""
        if self._first_batches is not None:
            self.fixed["batch_fingerprint"] = fingerprint(*self._first_batches)
            self._first_batches = None


def objective(metrics: dict, config: dict) -> float:
    """What Ray Tune's schedulers and searches maximise: the study's metric, negated where it is
    minimised; NaN where the epoch did not log it."""
    value = metrics.get(config.get("metric", "val_acc"), math.nan)
    return -value if config.get("mode", "max") == "min" else value


@cache
def for_package(pl: ModuleType) -> tuple[type, type]:
    """(ReportToTune, DivergenceCheck) as callbacks of the Lightning package `pl`."""
    return (type("ReportToTune", (_ReportToTune, pl.callbacks.Checkpoint), {}),
            type("DivergenceCheck", (_DivergenceCheck, pl.Callback), {}))
