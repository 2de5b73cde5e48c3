"""A LightningDataModule in the style of Lightning's docs, with random augmentation in its
training loader (noise and a random flip of the features, drawn per sample, per epoch), its own
validation split and batch size; the short form's model (a plain nn.Module of logits)."""
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split


class Augmented(Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        x = x + 0.3 * torch.randn_like(x)  # torch's global RNG, as torchvision's transforms draw
        return (x.flip(0) if torch.rand(()) < 0.5 else x), y


class Blobs(pl.LightningDataModule):
    def __init__(self, batch_size: int = 40):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(2)
        y = torch.randint(0, 3, (1200,), generator=g)
        centres = torch.randn(3, 16, generator=g)
        x = centres[y] + 1.5 * torch.randn(1200, 16, generator=g)
        x = (x + x.flip(1)) / 2  # a flip of the features keeps the class
        full = TensorDataset(x[:1000], y[:1000])
        self.train_set, self.val_set = random_split(full, [800, 200], generator=torch.Generator().manual_seed(0))
        self.test_set = TensorDataset(x[1000:], y[1000:])

    def train_dataloader(self):
        return DataLoader(Augmented(self.train_set), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=200)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=200)


def model():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


TASK = SimpleNamespace(model=model, data=Blobs)
