"""The rules that turn an LR range test's loss-vs-LR curve into one learning rate, as their authors wrote them.

Every rule is a port of its source, window and all, so the study measures each finder as its
users get it:

- `lightning`: Lightning's own `_LRFinder.suggestion()` of the installed version, on Lightning's
  own recorded curve (see `trainables.finder`); here `lightning_rule` applies that same method
  to any curve. Since 2.5.3 (Lightning-AI/pytorch-lightning#21141) it differentiates the loss
  with respect to the linear LR.
- `steepest`: Lightning's `suggestion()` before 2.5.3: `np.gradient` of the loss along the sweep's
  index on `[10:-1]`, non-finite losses dropped (and, as there, the index not corrected for them).
- `valley`, `slide`, `minimum`, `steep`: fastai's suggestion functions
  (`fastai/callback/schedule.py`), applied as `Learner.lr_find` applies them: on
  `[num_it//10 : -5]` of the recorded curve, cut at its first NaN.

Each takes `(lrs, losses, num_training)` and returns an LR, or None when the curve is too short.
"""

from __future__ import annotations

import copy

import numpy as np

RULES = ("lightning", "steepest", "valley", "minimum", "steep", "slide")
LIGHTNING_SKIP = (10, 1)  # Lightning's suggestion(skip_begin=10, skip_end=1), before and after 2.5.3


def lightning_rule(lrs, losses, num_training: int, finder=None) -> float | None:
    """Lightning's `suggestion()` (the installed version) on this curve.

    `finder` is the `_LRFinder` that `Tuner.lr_find` returned; without one, a fresh one is made.
    Its method is called on a copy whose results are this curve: nothing is re-implemented.
    """
    if finder is None:
        from pytorch_lightning.tuner.lr_finder import _LRFinder

        finder = _LRFinder("exponential", float(lrs[0]) if len(lrs) else 1e-8, 1.0, num_training)
    finder = copy.copy(finder)
    finder.results = {"lr": [float(v) for v in lrs], "loss": [float(v) for v in losses]}
    lr = finder.suggestion(*LIGHTNING_SKIP)
    return None if lr is None else float(lr)


def steepest(lrs, losses, num_training: int) -> float | None:
    """Lightning < 2.5.3: `min_grad = np.gradient(losses).argmin(); idx = min_grad + skip_begin`."""
    begin, end = LIGHTNING_SKIP
    window = np.asarray(losses, dtype=float)[begin:-end]
    window = window[np.isfinite(window)]
    if len(window) < 2:
        return None
    return float(lrs[int(np.gradient(window).argmin()) + begin])


def fastai_window(lrs, losses, num_training: int) -> tuple[np.ndarray, np.ndarray]:
    """`Learner.lr_find`: `[num_it//10:-5]`, then everything from the first NaN on dropped."""
    lrs = np.asarray(lrs, dtype=float)[num_training // 10:-5]
    losses = np.asarray(losses, dtype=float)[num_training // 10:-5]
    nan = np.flatnonzero(np.isnan(losses))
    if len(nan):
        lrs, losses = lrs[:nan[0]], losses[:nan[0]]
    return lrs, losses


def valley(lrs, losses, num_training: int) -> float | None:
    """fastai `valley`: the longest decreasing subsequence, then index start + int(len/3) + int(len/6).

    As in fastai, `max_start = max_end - lds[max_end]` (one before the run's first point) and the
    running maximum is updated inside the inner loop.
    """
    lrs, losses = fastai_window(lrs, losses, num_training)
    n = len(losses)
    if n < 2:
        return None
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def slide(lrs, losses, num_training: int, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> float | None:
    """fastai `slide`: from the end, slide a window of `lr_diff` points left until the loss
    gradients (along the index) at its two ends differ by at most `thresh`; its left LR."""
    lrs, losses = fastai_window(lrs, losses, num_training)
    if len(losses) < lr_diff + 2:
        return None
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(losses) and abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


def minimum(lrs, losses, num_training: int) -> float | None:
    """fastai `minimum`: the LR of the lowest loss, divided by 10."""
    lrs, losses = fastai_window(lrs, losses, num_training)
    if len(losses) < 1:
        return None
    return float(lrs[int(losses.argmin())]) / 10


def steep(lrs, losses, num_training: int) -> float | None:
    """fastai `steep`: the left LR of the steepest forward difference of the loss along log LR."""
    lrs, losses = fastai_window(lrs, losses, num_training)
    if len(losses) < 2:
        return None
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[int(grads.argmin())])


_RULE_FUNCTIONS = {"lightning": lightning_rule, "steepest": steepest, "valley": valley, "minimum": minimum,
                   "steep": steep, "slide": slide}


def suggest(rule: str, lrs, losses, num_training: int) -> float | None:
    """The LR that `rule` picks on the curve (lrs, losses) of a range test of `num_training` steps."""
    if rule not in _RULE_FUNCTIONS:
        raise ValueError(f"unknown finder rule {rule!r}; choose from {', '.join(RULES)}")
    return _RULE_FUNCTIONS[rule](lrs, losses, num_training)
