"""The study's optimisers and LR schedules, for a module that does not build its own.

A LightningModule that overrides `configure_optimizers` trains with its own optimiser, whatever the
study's flags. One that does not (the short form's `LitClassifier`, or a user's module without it)
gets the study's: `install` gives it a `configure_optimizers` that builds, from the module's LR as
Lightning's Tuner reads it (`lr` or `learning_rate`), SGD (momentum), Adam or AdamW, optionally a
cyclical LR, or a learning-rate-free optimiser (Prodigy, D-Adaptation) that adapts its own step
size; the LR constant or on a schedule (one-cycle, cosine) that peaks at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from dadaptation import DAdaptAdam, DAdaptSGD
from prodigyopt import Prodigy

from trainables import LR_FREE, LR_SCHEDULES, OPTIMIZERS
from trainables.framework import get_lr

WARMUP_FRACTION = 0.05  # cosine: the linear warm-up's share of the training's steps ...
WARMUP_START = 0.01  # ... from this fraction of the peak LR


@dataclass(frozen=True)
class Optim:
    """How the study trains a module: `optimizer` (OPTIMIZERS) with `momentum` (SGD) or
    `weight_decay` (AdamW's decoupled decay, and the learning-rate-free arms' under adamw);
    `lr_schedule` (LR_SCHEDULES), the module's LR its peak; `cyclic_min_lr` set: the LR cycles
    (triangular CyclicLR) between it and the module's LR; `lr_free` set ("prodigy", "dadapt"): that
    optimiser, the module's LR its base LR."""

    optimizer: str = "sgd"
    momentum: float = 0.9
    lr_schedule: str = "constant"
    cyclic_min_lr: float | None = None
    lr_free: str | None = None
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES or (self.lr_schedule != "constant" and self.cyclic_min_lr is not None):
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, constant with a cyclical LR; got {self.lr_schedule!r}")
        if self.lr_free is not None and (self.lr_free not in LR_FREE or self.cyclic_min_lr is not None):
            raise ValueError(f"lr_free must be one of {', '.join(LR_FREE)}, without a cyclical LR; got {self.lr_free!r}")


def install(module, optim: Optim) -> None:
    """Make `optim` the module's `configure_optimizers` (an instance attribute: Lightning calls the
    hook by name, and sees it as overridden)."""
    module.configure_optimizers = partial(configure_optimizers, module, optim)


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


def configure_optimizers(module, optim: Optim):
    """What `optim` makes of the module's parameters and LR, in Lightning's `configure_optimizers` form."""
    lr, trainer = get_lr(module), module.trainer
    opt = _optimizer(module.parameters(), lr, optim)
    if optim.cyclic_min_lr is not None:
        steps_per_epoch = max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs))
        sched = torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=optim.cyclic_min_lr,
            max_lr=lr,
            step_size_up=2 * steps_per_epoch,  # Smith: a half cycle of 2-10 epochs
            cycle_momentum=optim.optimizer == "sgd",
        )
    elif optim.lr_schedule != "constant":
        sched = schedule(opt, optim.lr_schedule, lr, int(trainer.estimated_stepping_batches))
    else:
        return opt  # constant: no scheduler at all
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _optimizer(params, lr: float, optim: Optim) -> torch.optim.Optimizer:
    # The learning-rate-free optimisers as their authors' READMEs recommend: lr 1.0 (the study
    # passes it), everything else at its default (Prodigy: d_coef 1, no weight decay;
    # D-Adaptation: no weight decay, unlimited growth_rate). Both take an LR schedule on that
    # base LR ("use the same scheduler you would normally use"; Prodigy's README: cosine, and
    # safeguard_warmup=True under a warm-up, which both schedules here start with).
    # Under adamw, both decay the weights as AdamW does, decoupled from the gradient, by
    # `weight_decay` (Prodigy's `decouple` is on by default; DAdaptAdam's is set).
    decay = optim.weight_decay if optim.optimizer == "adamw" else 0.0
    if optim.lr_free == "prodigy":  # Adam-based, for any --optimizer
        return Prodigy(params, lr=lr, safeguard_warmup=optim.lr_schedule != "constant", weight_decay=decay)
    if optim.lr_free == "dadapt":
        if optim.optimizer == "sgd":
            return DAdaptSGD(params, lr=lr, momentum=optim.momentum)
        return DAdaptAdam(params, lr=lr, weight_decay=decay, decouple=True)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim.momentum)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=optim.weight_decay)
    return torch.optim.Adam(params, lr=lr)


def schedule(opt: torch.optim.Optimizer, name: str, peak: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler `name` over `steps` optimiser steps, stepped once per step, peaking at `peak`
    (the optimiser's LR).

    onecycle: torch's OneCycleLR with its defaults: from peak/25 up to the peak over the first
    30 % of the steps (cosine annealing), then down to peak/25/1e4. It also cycles the momentum
    (cycle_momentum=True), SGD's or Adam's beta1, 0.95 -> 0.85 -> 0.95, against the LR, in
    place of --momentum: kept, because that is Smith's one-cycle policy, and fastai's
    fit_one_cycle, for which its lr_find and valley rule were made, cycles it the same way.
    cosine: a linear warm-up over WARMUP_FRACTION of the steps from WARMUP_START x the peak
    (LinearLR), then cosine decay to zero over the rest (CosineAnnealingLR).
    Not for a range test: the trial's probe trains under a constant `Optim` (OneCycleLR would set
    its momentum on construction, and lr_find's trainer has no epoch limit, so no step count)."""
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=steps)
    warmup = max(1, int(WARMUP_FRACTION * steps))
    return torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps - warmup), eta_min=0.0),
    ], milestones=[warmup])
