"""The LightningModule: a task's classifier (trainables/tasks.py; LeNet-5 by default),
cross-entropy, SGD (momentum) or Adam, optionally a cyclical LR, or a learning-rate-free optimiser (Prodigy, D-Adaptation) that adapts its own step size; the LR
constant or on a schedule (one-cycle, cosine) that peaks at it.

Per-epoch metrics are accumulated as tensors inside the steps (no `self.log` per step, no
host sync on GPU) and read once per epoch through `epoch_metrics()`.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from dadaptation import DAdaptAdam, DAdaptSGD
from prodigyopt import Prodigy

from trainables import LR_FREE, LR_SCHEDULES, OPTIMIZERS
from trainables.tasks import build_model


WARMUP_FRACTION = 0.05  # cosine: the linear warm-up's share of the training's steps ...
WARMUP_START = 0.01  # ... from this fraction of the peak LR


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def step_size(optimizer: torch.optim.Optimizer) -> float:
    """The LR the optimiser applies at its next step, as the matching torch optimiser reads it: its
    `lr`; for a learning-rate-free one, its adapted step size d x lr (`d` in its first param
    group). DAdaptSGD steps by d x lr / |g0| (the first gradient's norm, known after the first
    step) along averaged iterates, which is torch's SGD with the same momentum at
    (1 - momentum) x d x lr / |g0|: that is its step size here."""
    group = optimizer.param_groups[0]
    if "d" not in group:
        return group["lr"]
    dlr = group["d"] * group["lr"]
    if isinstance(optimizer, DAdaptSGD) and group.get("g0_norm"):
        return (1 - group["momentum"]) * dlr / group["g0_norm"]
    return dlr


class LitClassifier(pl.LightningModule):
    def __init__(
        self,
        lr: float,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        cyclic_min_lr: float | None = None,
        divergence_check_every: int = 1,
        lr_free: str | None = None,
        lr_schedule: str = "constant",
        task: str = "fashion-lenet",
    ):
        """`cyclic_min_lr` set: the LR cycles (triangular CyclicLR) between it and `lr`.
        `lr_free` set ("prodigy", "dadapt"): that optimiser, `lr` its base LR (see `configure_optimizers`).
        `lr_schedule` (LR_SCHEDULES): how the LR moves over the training, `lr` its peak (see `schedule`).
        `task` (a --task spec, trainables/tasks.py): whose model is trained, built here from the seeded RNG."""
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if lr_schedule not in LR_SCHEDULES or (lr_schedule != "constant" and cyclic_min_lr is not None):
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, constant with a cyclical LR; got {lr_schedule!r}")
        if lr_free is not None and (lr_free not in LR_FREE or cyclic_min_lr is not None):
            raise ValueError(f"lr_free must be one of {', '.join(LR_FREE)}, without a cyclical LR; got {lr_free!r}")
        self.save_hyperparameters()
        self.lr = lr  # the attribute Lightning's LR finder reads
        # channels_last: oneDNN's convolutions run ~30 % faster on CPU in this layout (benchmarks/bench.py);
        # a 1-channel batch is already laid out this way, so inputs need no conversion (and a
        # model without convolutions has no 4-d weights for it to change).
        self.net = build_model(task).to(memory_format=torch.channels_last)
        self._sums: dict[str, list] = {}
        self.step_losses: list[float] | None = None  # a list: every training step's loss goes in (range tests)
        self.step_samples = 0  # ... and, while it is a list, the samples of those steps add up here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self):
        hp = self.hparams
        opt = self._optimizer()
        if hp.cyclic_min_lr is not None:
            steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs))
            sched = torch.optim.lr_scheduler.CyclicLR(
                opt,
                base_lr=hp.cyclic_min_lr,
                max_lr=self.lr,
                step_size_up=2 * steps_per_epoch,  # Smith: a half cycle of 2-10 epochs
                cycle_momentum=hp.optimizer == "sgd",
            )
        elif hp.lr_schedule != "constant":
            sched = self.schedule(opt, int(self.trainer.estimated_stepping_batches))
        else:
            return opt  # constant: no scheduler at all
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        # The learning-rate-free optimisers as their authors' READMEs recommend: lr 1.0 (the study
        # passes it), everything else at its default (Prodigy: d_coef 1, no weight decay;
        # D-Adaptation: no weight decay, unlimited growth_rate). Both take an LR schedule on that
        # base LR ("use the same scheduler you would normally use"; Prodigy's README: cosine, and
        # safeguard_warmup=True under a warm-up, which both schedules here start with).
        if hp.lr_free == "prodigy":  # Adam-based, for either --optimizer
            return Prodigy(self.parameters(), lr=self.lr, safeguard_warmup=hp.lr_schedule != "constant")
        if hp.lr_free == "dadapt":
            if hp.optimizer == "sgd":
                return DAdaptSGD(self.parameters(), lr=self.lr, momentum=hp.momentum)
            return DAdaptAdam(self.parameters(), lr=self.lr)
        if hp.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=hp.momentum)
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def schedule(self, opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        """The scheduler of `lr_schedule` over `steps` optimiser steps, stepped once per step, its
        peak the optimiser's LR.

        onecycle: torch's OneCycleLR with its defaults: from peak/25 up to the peak over the first
        30 % of the steps (cosine annealing), then down to peak/25/1e4. It also cycles the momentum
        (cycle_momentum=True), SGD's or Adam's beta1, 0.95 -> 0.85 -> 0.95, against the LR, in
        place of --momentum: kept, because that is Smith's one-cycle policy, and fastai's
        fit_one_cycle, for which its lr_find and valley rule were made, cycles it the same way.
        cosine: a linear warm-up over WARMUP_FRACTION of the steps from WARMUP_START x the peak
        (LinearLR), then cosine decay to zero over the rest (CosineAnnealingLR).
        Not for a range test: Lightning's lr_find swaps the scheduler for its own, but OneCycleLR
        has set the momentum by then, and lr_find's trainer has no epoch limit (no step count)."""
        if self.hparams.lr_schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        warmup = max(1, int(WARMUP_FRACTION * steps))
        return torch.optim.lr_scheduler.SequentialLR(opt, [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps - warmup), eta_min=0.0),
        ], milestones=[warmup])

    # -- accumulation -------------------------------------------------------------------------
    def _accumulate(self, stage: str, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        loss_sum, correct, count = self._sums.get(stage, (0.0, 0, 0))
        self._sums[stage] = (
            loss_sum + loss.detach() * len(y),
            correct + (logits.argmax(dim=1) == y).sum(),
            count + len(y),
        )

    def stage_metrics(self, stage: str) -> dict[str, float]:
        """Mean loss and accuracy of `stage` ("train", "val") since its epoch started."""
        loss_sum, correct, count = self._sums.get(stage, (0.0, 0, 0))
        if not count:
            return {}
        return {f"{stage}_loss": float(loss_sum) / count, f"{stage}_acc": float(correct) / count}

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    # -- steps --------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        every = self.hparams.divergence_check_every
        if every and batch_idx % every == 0 and not math.isfinite(loss.item()):
            raise Diverged(f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}")
        self._accumulate("train", logits, y, loss)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.step_losses is not None:  # the loss Lightning's LR finder smooths, as it reads it
            self.step_losses.append(outputs["loss"].item())
            self.step_samples += len(batch[1])

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self._accumulate("val", logits, y, F.cross_entropy(logits, y))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> dict[str, float]:
        """Loss and accuracy on whole tensors (the test set), outside any Trainer loop."""
        was_training = self.training
        self.eval()
        loss_sum, correct = 0.0, 0
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            logits = self.net(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
        self.train(was_training)
        return {"loss": loss_sum / len(y), "acc": correct / len(y)}
