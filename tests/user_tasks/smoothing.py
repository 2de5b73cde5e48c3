"""Classification as Lightning's docs write it (`import lightning as L`): label smoothing, AdamW
with weight decay in the module's own configure_optimizers, torchmetrics-free accuracy."""
from types import SimpleNamespace

import lightning as L
import numpy as np
import torch
from torch import nn


class Smoothed(L.LightningModule):
    def __init__(self, learning_rate: float = 1e-3, weight_decay: float = 0.05):
        super().__init__()
        self.learning_rate, self.weight_decay = learning_rate, weight_decay  # attributes, not hparams
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))

    def _step(self, stage, batch):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
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
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


def data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=1200)
    x = (rng.normal(size=(3, 20))[y] + rng.normal(scale=2.0, size=(1200, 20))).astype(np.float32)
    return x[:1000], y[:1000], x[1000:], y[1000:]


TASK = SimpleNamespace(model=Smoothed, data=data, defaults={"batch_size": 50, "val_size": 200})
