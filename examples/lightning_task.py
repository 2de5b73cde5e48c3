"""Your LightningModule and DataModule as they are: python -m study.run --task examples/lightning_task.py:TASK --smoke"""
import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


class Classifier(L.LightningModule):
    def __init__(self, lr: float = 1e-3):  # the study sets each arm's LR here, as Lightning's Tuner does
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))

    def step(self, stage, batch):
        logits = self.net(batch[0])
        self.log(f"{stage}_acc", (logits.argmax(1) == batch[1]).float().mean())  # the study compares on val_acc
        return nn.functional.cross_entropy(logits, batch[1], label_smoothing=0.1)

    def training_step(self, batch, i): return self.step("train", batch)
    def validation_step(self, batch, i): self.step("val", batch)
    def test_step(self, batch, i): self.step("test", batch)
    def configure_optimizers(self): return torch.optim.AdamW(self.parameters(), self.hparams.lr, weight_decay=0.05)


class Blobs(L.LightningDataModule):  # three Gaussian blobs in 20 dimensions
    batch_size = 128  # --batch-size is set here, as Lightning's BatchSizeFinder sets it

    def setup(self, stage):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (24_000,), generator=g)
        x = torch.randn(3, 20, generator=g)[y] + 2 * torch.randn(24_000, 20, generator=g)
        self.fit, self.val, self.test = random_split(TensorDataset(x, y), [18_000, 2_000, 4_000], generator=g)

    def train_dataloader(self): return DataLoader(self.fit, self.batch_size, shuffle=True)
    def val_dataloader(self): return DataLoader(self.val, 1024)
    def test_dataloader(self): return DataLoader(self.test, 1024)


class TASK:  # the task: its model, its data, and settings the command line does not give
    model, data, defaults = Classifier, Blobs, {"epochs": 5}
