"""The work a trial does, counted rather than timed, and the machine it ran on.

Seconds depend on the host and on what else runs on it; the work does not. A trial counts its
optimiser steps, the samples they processed and the samples it evaluated (trainables/trainable.py),
and turns them into FLOPs with per-unit figures from torch's own counter,
`torch.utils.flop_counter.FlopCounterMode`, run around real work of the trial's own module
(`Counting`), whatever that module computes:

* `flops_per_train_step`: the trial's first training step, forward, loss and backward (the
  optimiser's update is elementwise, and the counter counts only matrix products, convolutions
  and attention: it is not in the figure), over `flops_step_samples`, that step's samples;
* `flops_per_eval_sample`: the first validation batch's forward pass, divided by its size.

Every op the counter counts (convolutions, matrix products, their gradients) is linear in the
batch size, so a step's FLOPs are `flops_per_train_step x its samples / flops_step_samples`,
exactly, and a partial last batch counts by its samples (`total_flops`). Counting only watches
the step: it computes nothing of its own and draws no random number.
"""

from __future__ import annotations

import platform
from pathlib import Path

from torch.utils.flop_counter import FlopCounterMode


class Counting:
    """FlopCounterMode entered in one hook and left in a later one (a training batch's start and
    end): `start()`, then `stop()` returns the FLOPs in between; `stop()` without a running count
    returns None."""

    def __init__(self):
        self._mode: FlopCounterMode | None = None

    def start(self) -> None:
        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()

    def stop(self) -> int | None:
        if self._mode is None:
            return None
        mode, self._mode = self._mode, None
        mode.__exit__(None, None, None)
        return mode.get_total_flops()


def total_flops(flops_per_train_step: int, step_samples: int, train_samples: int, flops_per_eval_sample: int,
                eval_samples: int) -> int:
    """Everything a trial computed: its training samples (range test included) at the per-step
    figure scaled by samples, plus its evaluated samples."""
    return flops_per_train_step * train_samples // step_samples + flops_per_eval_sample * eval_samples


def cpu_model() -> str:
    """This machine's CPU, as the kernel names it (Linux), else as Python's platform module does."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
