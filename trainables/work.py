"""The work a trial does, counted rather than timed, and the machine it ran on.

Seconds depend on the host and on what else runs on it; the work does not. A trial counts its
optimiser steps, the samples they processed and the samples it evaluated (trainables/trainable.py),
and turns them into FLOPs with the per-unit figures `measure` takes from torch's own counter,
`torch.utils.flop_counter.FlopCounterMode`, on the trial's model:

* `flops_per_train_step`: one training step at the trial's batch size, forward, loss and backward
  (the optimiser's update is elementwise, and the counter counts only matrix products and
  convolutions: it is not in the figure);
* `flops_per_eval_sample`: one evaluation batch's forward pass, divided by its size.

Every op the counter counts (convolutions, matrix products, their gradients) is linear in the
batch size, so a step's FLOPs are `flops_per_train_step x its samples / batch_size`, exactly, and a
partial last batch counts by its samples (`total_flops`).

`measure` runs on a copy of the model on PyTorch's "meta" device: shapes only, no arithmetic, no
random numbers drawn, so counting changes nothing the trial computes.
"""

from __future__ import annotations

import copy
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

EVAL_BATCH = 1024  # the validation loader's batch size (any size gives the same per-sample figure)


def measure(net: nn.Module, sample_shape: tuple[int, ...], batch_size: int) -> dict[str, int]:
    """`flops_per_train_step` (forward + cross-entropy + backward at `batch_size`) and
    `flops_per_eval_sample` of `net` on inputs of `sample_shape` (one sample's, e.g. (1, 28, 28))."""
    meta = copy.deepcopy(net).to("meta")
    x = torch.zeros(batch_size, *sample_shape, device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(meta(x), y).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as evaluate:
        meta(torch.zeros(EVAL_BATCH, *sample_shape, device="meta"))
    return {"flops_per_train_step": train.get_total_flops(),
            "flops_per_eval_sample": evaluate.get_total_flops() // EVAL_BATCH}


def total_flops(flops_per_train_step: int, batch_size: int, train_samples: int, flops_per_eval_sample: int,
                eval_samples: int) -> int:
    """Everything a trial computed: its training samples (range test included) at the per-step
    figure scaled by samples, plus its evaluated samples."""
    return flops_per_train_step * train_samples // batch_size + flops_per_eval_sample * eval_samples


def cpu_model() -> str:
    """This machine's CPU, as the kernel names it (Linux), else as Python's platform module does."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
