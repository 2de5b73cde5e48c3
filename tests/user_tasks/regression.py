"""A regression LightningModule (MSE, logs val_mae) on generated data, minimised: y = sin(x . w) + noise."""
from types import SimpleNamespace

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()  # the LR in hparams, where Lightning's Tuner also looks
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def _step(self, stage, batch):
        x, y = batch
        out = self(x)
        loss = nn.functional.mse_loss(out, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_mae", (out - y).abs().mean(), on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step("train", batch)

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step("test", batch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 8)).astype(np.float32)
    y = (np.sin(x @ rng.normal(size=8)) + 0.1 * rng.normal(size=1200)).astype(np.float32)
    return x[:1000], y[:1000], x[1000:], y[1000:]


TASK = SimpleNamespace(model=Regressor, data=data,
                       defaults={"metric": "val_mae", "mode": "min", "target": 0.5, "batch_size": 50, "val_size": 200})
