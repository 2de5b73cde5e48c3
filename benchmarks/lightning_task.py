"""The module benchmark's task (benchmarks/bench.py --only module): what a Lightning user brings, a
LightningModule with its own steps, metric and optimiser, and a LightningDataModule whose training
loader flips each image at random (per sample, per epoch), on Fashion-MNIST (`--subset` images)."""
import os
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainables.data import load_dataset
from trainables.model import lenet5


class LeNet(pl.LightningModule):
    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.net = lenet5()

    def _step(self, stage, batch):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step("train", batch)

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step("test", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class Flipped(Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return (x.flip(-1) if torch.rand(()) < 0.5 else x), y


class Fashion(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        subset = os.environ.get("LRSTUDY_BENCH_SUBSET")
        d = load_dataset(subset=int(subset) if subset else None)
        self.sets = {k: TensorDataset(torch.from_numpy(getattr(d, f"{k}_x")), torch.from_numpy(getattr(d, f"{k}_y")))
                     for k in ("train", "val", "test")}

    def train_dataloader(self):
        return DataLoader(Flipped(self.sets["train"]), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=1024)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=1024)


TASK = SimpleNamespace(model=LeNet, data=Fashion)
