"""What a trial trains, validates and tests on: in-memory batches, or the task's LightningDataModule.

* Arrays (the short form, the built-in tasks, a DataModule that opts in: trainables/data.py read
  them once in the driver) become `TensorBatches` on the trial's device, reshuffled per epoch from
  the seed: no per-sample work, the fast path.
* A live LightningDataModule is used as Lightning uses it: the trial's Trainer calls its
  `prepare_data` and `setup` and draws its own train, validation and test loaders every epoch, at
  its own batch size, or at `--batch-size` where the user gave one (set as `BatchSizeFinder` sets
  it). Its augmentation is seeded: the trial reseeds every RNG before training (trainable.py), so
  trials of one task and seed see the same batches, whatever their arm.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from trainables.batches import batches
from trainables.framework import set_batch_size

VAL_BATCH = 1024  # in-memory validation batches (any size gives the same metrics)
TEST_BATCH = 2048


@dataclass
class Loaders:
    """For `Trainer.fit` / `Trainer.test`: `datamodule`, or the three loaders."""

    train: Any = None
    val: Any = None
    test: Any = None
    datamodule: Any = None

    def fit_kwargs(self) -> dict:
        if self.datamodule is not None:
            return {"datamodule": self.datamodule}
        return {"train_dataloaders": self.train, "val_dataloaders": self.val}

    def test_kwargs(self) -> dict:
        return {"datamodule": self.datamodule} if self.datamodule is not None else {"dataloaders": self.test}

    @property
    def has_test(self) -> bool:
        if self.datamodule is None:
            return self.test is not None
        from trainables.framework import package

        base = package(self.datamodule).LightningDataModule
        return type(self.datamodule).test_dataloader is not base.test_dataloader


def in_memory(data, batch_size: int, seed: int, device: torch.device) -> Loaders:
    """`data` (trainables/data.py's Dataset) as tensors on `device`, batched."""
    with warnings.catch_warnings():  # arrays from the object store are read-only; we never write them
        warnings.simplefilter("ignore", UserWarning)
        t = {k: torch.from_numpy(getattr(data, k)).to(device) for k in
             ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
    return Loaders(train=batches(t["train_x"], t["train_y"], batch_size, shuffle=True, seed=seed),
                   val=batches(t["val_x"], t["val_y"], VAL_BATCH, shuffle=False, seed=0),
                   test=batches(t["test_x"], t["test_y"], TEST_BATCH, shuffle=False, seed=0))


def live(datamodule, batch_size: int | None) -> Loaders:
    """The task's DataModule as is; `batch_size` set on it unless None (its own)."""
    if batch_size is not None:
        set_batch_size(datamodule, batch_size)
    return Loaders(datamodule=datamodule)
