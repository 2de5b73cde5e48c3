"""Lightning's LR range test (`Tuner.lr_find`), and the curve it really measured.

Lightning 2.6.6 records, per step, an EMA of the training loss (beta 0.98) debiased with
`1 - beta ** (global_step + 1)`, but `global_step` has already been incremented when its
`_LRCallback.on_train_batch_end` runs: step k is divided by `1 - beta ** (k + 2)`, so the first
point is about half the real loss and the curve rises for ~50 steps whatever the LR does
(Lightning-AI/pytorch-lightning#14167). So every step's raw loss is recorded too (the loss
Lightning smooths, as it reads it, through the module's `on_train_batch_end` hook: `lr_find`
replaces the trainer's callbacks, the module's hooks still run), exact, and as long as Lightning's
curve when its early stop cuts the test short; the rules read `loss`: the correctly debiased EMA of those raw losses with
Lightning's beta, the curve fastai's rules are written for. Lightning's own curve is kept as
`loss_lightning`, and the `lightning` rule reads it, as a Lightning user's `suggestion()` does.
"""

from __future__ import annotations

import time
from importlib import import_module
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.data import extract_batch_size

from trainables.framework import package
from trainables.finder_rules import RULES, lightning_rule, suggest

BETA = 0.98  # Lightning's _LRCallback(beta=0.98), which lr_find does not let a caller change


@dataclass
class FinderResult:
    lrs: list[float]
    loss_raw: list[float]        # each step's training loss, as the model computed it
    loss_lightning: list[float]  # what Lightning recorded (its EMA, debiased one step late)
    loss: list[float]            # ema_debiased(loss_raw): the curve the rules read
    suggestions: dict[str, float | None]  # every rule -> its LR (`lightning` on loss_lightning)
    suggestions_lightning_curve: dict[str, float | None]  # every rule applied to loss_lightning
    seconds: float
    samples: int  # the training samples the test's steps processed (its steps: one per point)
    args: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What lr_finder.json holds."""
        return {"lr": self.lrs, "loss_raw": self.loss_raw, "loss_lightning": self.loss_lightning,
                "loss": self.loss, "suggestions": self.suggestions,
                "suggestions_lightning_curve": self.suggestions_lightning_curve,
                "lightning_suggestion": self.suggestions["lightning"], "ema_beta": BETA,
                **self.args, "finder_time_s": self.seconds, "finder_samples": self.samples,
                "lightning_version": pl.__version__}


def ema_debiased(values, beta: float = BETA) -> list[float]:
    """avg_k = beta avg_(k-1) + (1 - beta) x_k from avg_(-1) = 0, divided by 1 - beta^(k+1): loss[0] = x[0]."""
    avg, out = 0.0, []
    for k, x in enumerate(values):
        avg = beta * avg + (1 - beta) * float(x)
        out.append(avg / (1 - beta ** (k + 1)))
    return out


def all_suggestions(lrs, losses, num_training: int, finder=None) -> dict[str, float | None]:
    """Every rule's pick on one curve (`lightning` through Lightning's own method)."""
    return {rule: lightning_rule(lrs, losses, num_training, finder) if rule == "lightning"
            else suggest(rule, lrs, losses, num_training) for rule in RULES}


def range_test(trainer, model, train_dataloaders=None, datamodule=None, min_lr: float = 1e-8,
               max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential") -> FinderResult:
    """Run `Tuner(trainer).lr_find` on `model` (any LightningModule with an `lr` or `learning_rate`;
    Lightning restores its weights afterwards) on `train_dataloaders` or `datamodule`, and apply
    every rule. The Tuner is of the trainer's own Lightning package.

    `lr_find` caps the test at `num_training` steps but not the trainer's `max_epochs`: a trainer
    of one epoch over 10 batches would end the test after 10 steps. So the epoch limit is lifted
    while the test runs, and restored after.
    """
    tuner = import_module(package(model).__name__ + ".tuner").Tuner  # the module's own Lightning
    raw, samples = [], [0]
    hook = model.on_train_batch_end  # the module's own (bound) hook, called first

    def record(outputs, batch, batch_idx: int) -> None:  # what Lightning's _LRCallback reads, unsmoothed
        hook(outputs, batch, batch_idx)
        loss = outputs if isinstance(outputs, torch.Tensor) else (outputs or {}).get("loss")
        raw.append(float("nan") if loss is None else loss.item())
        samples[0] += extract_batch_size(batch)

    model.on_train_batch_end = record  # an instance attribute: Lightning calls module hooks by name
    max_epochs = trainer.fit_loop.max_epochs
    trainer.fit_loop.max_epochs = -1  # no epoch limit (Trainer(max_epochs=-1))
    start = time.perf_counter()
    try:
        finder = tuner(trainer).lr_find(
            model, train_dataloaders=train_dataloaders, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr,
            num_training=num_training, mode=mode, update_attr=False,
        )
    finally:
        del model.on_train_batch_end
        trainer.fit_loop.max_epochs = max_epochs
    seconds = time.perf_counter() - start
    lrs = [float(v) for v in finder.results["lr"]]
    lightning = [float(v) for v in finder.results["loss"]]
    if len(raw) != len(lightning):
        raise RuntimeError(f"range test: {len(raw)} raw losses recorded for {len(lightning)} of Lightning's points")
    loss = ema_debiased(raw)
    on_true = all_suggestions(lrs, loss, num_training)
    on_lightning = all_suggestions(lrs, lightning, num_training, finder)
    return FinderResult(
        lrs=lrs, loss_raw=raw, loss_lightning=lightning, loss=loss,
        suggestions={**on_true, "lightning": on_lightning["lightning"]},
        suggestions_lightning_curve=on_lightning, seconds=seconds, samples=samples[0],
        args={"min_lr": min_lr, "max_lr": max_lr, "num_training": num_training, "mode": mode},
    )
