"""Lightning's LR range test, and explicit rules that turn its loss-vs-LR curve into one LR.

Lightning's own `suggestion()` changed in 2.5.3 (Lightning-AI/pytorch-lightning#21141): it used
to take the steepest descent along the sweep's index (that is, along log LR for the default
exponential sweep) and now differentiates with respect to the linear LR. Our rules are written
out here so the study does not silently change with the Lightning version; Lightning's own
suggestion is recorded beside ours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.tuner import Tuner

RULES = ("steepest", "valley", "minimum")


@dataclass
class FinderResult:
    lrs: list[float]
    losses: list[float]
    suggestions: dict[str, float | None]  # rule -> LR
    lightning_suggestion: float | None
    seconds: float
    args: dict = field(default_factory=dict)


def _finite_window(lrs, losses, skip_begin: int, skip_end: int) -> tuple[np.ndarray, np.ndarray]:
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    end = len(losses) - skip_end if skip_end else len(losses)
    lrs, losses = lrs[skip_begin:end], losses[skip_begin:end]
    keep = np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0)
    return lrs[keep], losses[keep]


def suggest(lrs, losses, rule: str = "steepest", skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """One LR from a range-test curve, or None when the curve is too short.

    - steepest: the steepest descent of the loss along log10(LR) (Lightning < 2.5.3, fastai's "steep").
    - valley: fastai's valley rule: the longest descending stretch of the curve, 2/3 of the way down it.
    - minimum: the LR of the lowest loss, divided by 10 (fastai's "minimum").
    """
    x, y = _finite_window(lrs, losses, skip_begin, skip_end)
    if len(y) < 2:
        return None
    if rule == "steepest":
        return float(x[int(np.argmin(np.gradient(y, np.log10(x))))])
    if rule == "minimum":
        return float(x[int(np.argmin(y))] / 10)
    if rule == "valley":
        # Longest strictly decreasing run ending at each point (O(n^2), n ~ 100).
        n = len(y)
        run = np.ones(n, dtype=int)
        back = np.arange(n)
        for i in range(1, n):
            for j in range(i):
                if y[i] < y[j] and run[j] + 1 > run[i]:
                    run[i], back[i] = run[j] + 1, j
        end = int(np.argmax(run))
        start = end
        while back[start] != start:
            start = back[start]
        return float(x[start + int(round((end - start) * 2 / 3))])
    raise ValueError(f"unknown finder rule {rule!r}; choose from {', '.join(RULES)}")


def range_test(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    train_loader,
    min_lr: float = 1e-8,
    max_lr: float = 1.0,
    num_training: int = 100,
    mode: str = "exponential",
    rules: tuple[str, ...] = ("steepest",),
) -> FinderResult:
    """Run `Tuner(trainer).lr_find` (which restores the model's weights afterwards) and apply `rules`."""
    start = time.perf_counter()
    finder = Tuner(trainer).lr_find(
        model,
        train_dataloaders=train_loader,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        mode=mode,
        update_attr=False,
    )
    seconds = time.perf_counter() - start
    lrs, losses = [float(v) for v in finder.results["lr"]], [float(v) for v in finder.results["loss"]]
    return FinderResult(
        lrs=lrs,
        losses=losses,
        suggestions={rule: suggest(lrs, losses, rule) for rule in rules},
        lightning_suggestion=finder.suggestion(),
        seconds=seconds,
        args={"min_lr": min_lr, "max_lr": max_lr, "num_training": num_training, "mode": mode},
    )
