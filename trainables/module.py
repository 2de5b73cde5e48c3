"""The short form's LightningModule: a task whose `model` returns a plain `torch.nn.Module` of logits
(LeNet-5 by default) trains as this classifier, with cross-entropy and accuracy. From here on it is
a LightningModule like a user's own (trainables/trainable.py): it has an `lr`, and no
`configure_optimizers` of its own, so it trains with the study's optimiser (trainables/optim.py).

Per-epoch metrics are accumulated as tensors inside the steps (no `self.log` per step, no host
sync on GPU) and logged once per epoch, in float64: `train_loss`, `train_acc`, `val_loss`,
`val_acc`, `test_loss`, `test_acc`.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from trainables.tasks import build_model

STAGES = ("train", "val", "test")


class LitClassifier(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, task: str = "fashion-lenet", net: torch.nn.Module | None = None):
        """`task` (a --task spec, trainables/tasks.py): whose model is trained, `net` (built by the
        caller from the seeded RNG), else built here; `lr`: the attribute Lightning's LR finder (and
        the study) reads and sets."""
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.lr = lr
        # channels_last: oneDNN's convolutions run ~30 % faster on CPU in this layout (benchmarks/bench.py);
        # a 1-channel batch is already laid out this way, so inputs need no conversion (and a
        # model without convolutions has no 4-d weights for it to change).
        self.net = (net if net is not None else build_model(task)).to(memory_format=torch.channels_last)
        self._sums: dict[str, tuple] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        loss_sum, correct, count = self._sums.get(stage, (0.0, 0, 0))
        # the test set's loss summed per batch in float64 (it is seen once), as it always was
        part = float(F.cross_entropy(logits, y, reduction="sum")) if stage == "test" else loss.detach() * len(y)
        self._sums[stage] = (loss_sum + part, correct + (logits.argmax(dim=1) == y).sum(), count + len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step("train", batch)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step("test", batch)

    def stage_metrics(self, stage: str) -> dict[str, float]:
        """Mean loss and accuracy of `stage` (STAGES) since its epoch started."""
        loss_sum, correct, count = self._sums.get(stage, (0.0, 0, 0))
        if not count:
            return {}
        return {f"{stage}_loss": float(loss_sum) / count, f"{stage}_acc": float(correct) / count}

    def _log_stage(self, stage: str) -> None:
        for name, value in self.stage_metrics(stage).items():  # once per epoch, exactly (float64, one "batch")
            self.log(name, torch.tensor(value, dtype=torch.float64), on_step=False, on_epoch=True, batch_size=1)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._sums.pop("test", None)

    def on_train_epoch_end(self) -> None:
        self._log_stage("train")

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")
