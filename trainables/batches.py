"""In-memory tensors as a cheap, seeded, re-shuffling batch loader, inside a trial."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShuffledBatches(Sampler):
    """Yields index tensors, one per batch, reshuffled per epoch from (seed, epoch).

    Lightning calls `set_epoch` at every epoch start, sometimes after it has made the epoch's
    iterator (a trial restored from a checkpoint): the order is drawn at the first batch, so a
    resumed trial sees exactly the batches an uninterrupted trial would have seen.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, device: torch.device):
        self.n, self.batch_size, self.shuffle, self.seed, self.device = n, batch_size, shuffle, seed, device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator).to(self.device)
        else:
            order = torch.arange(self.n, device=self.device)
        yield from order.split(self.batch_size)


class TensorBatches:
    """One epoch of batches, `(x[index], y[index])` for each index tensor of `sampler`: no
    per-sample work, no collation. Not a torch DataLoader, on purpose: there is no work for worker
    processes, and Lightning's hint that a DataLoader "does not have many workers" (on machines of
    more than two CPUs) looks at DataLoaders alone. Lightning calls `sampler.set_epoch` as it does
    a DataLoader's."""

    batch_sampler = None  # Lightning reads a loader's `sampler` and `batch_sampler`, as a DataLoader's

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sampler: ShuffledBatches):
        self.x, self.y, self.sampler = x, y, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for index in self.sampler:
            yield self.x[index], self.y[index]


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> TensorBatches:
    """Batches of tensors already on their device (CPU or GPU), in the calling process."""
    return TensorBatches(x, y, ShuffledBatches(len(y), batch_size, shuffle, seed, x.device))
