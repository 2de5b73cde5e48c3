"""In-memory tensors as a cheap, seeded, re-shuffling batch loader, inside a trial."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler


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


class TensorBatches(torch.utils.data.Dataset):
    """Indexing with a whole batch of indices returns the batch: no per-sample work, no collation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader over tensors already on their device (CPU or GPU), in the calling process."""
    sampler = ShuffledBatches(len(y), batch_size, shuffle, seed, x.device)
    return DataLoader(TensorBatches(x, y), sampler=sampler, batch_size=None, num_workers=0)
