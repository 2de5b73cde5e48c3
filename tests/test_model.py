"""LeNet-5 and the LightningModule, on tiny in-memory data (real Lightning)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import make_idx_dir
from trainables.batches import batches
from trainables.data import load_dataset
from trainables.model import lenet5
from trainables.callbacks import Diverged, for_package
from trainables.module import LitClassifier
from trainables.optim import Optim, install


def study_module(lr: float, **optim) -> LitClassifier:
    """The short form's module with the study's optimiser (`optim`: trainables.optim.Optim's fields)."""
    model = LitClassifier(lr=lr)
    install(model, Optim(**optim))
    return model


@torch.no_grad()
def evaluate(model: LitClassifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    logits = model(x)
    return {"loss": float(torch.nn.functional.cross_entropy(logits, y)), "acc": float((logits.argmax(1) == y).float().mean())}


def test_lenet5_shapes_and_parameter_count():
    net = lenet5()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) == 61_706


def test_lenet5_pools_before_relu_with_the_same_outputs_and_gradients_as_relu_then_pool():
    # Inputs with flat regions (ties inside pooling windows) and all-negative windows, where a
    # different pooling or activation would pick or weight different elements.
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    x[:, :, :14] = x[:, :, :14].round()
    x[:, :, 20:] = -1.0
    ours = lenet5()
    layers = list(ours.children())
    usual = torch.nn.Sequential(layers[0], layers[2], layers[1], layers[3], layers[5], layers[4], *layers[6:])
    assert [type(m).__name__ for m in usual[:6]] == ["Conv2d", "ReLU", "MaxPool2d"] * 2
    grads = []
    for net in (ours, usual):
        net.zero_grad()
        out = net(x)
        torch.nn.functional.cross_entropy(out, torch.arange(8) % 10).backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def tiny_loaders(tmp_path, batch_size=32):
    d = load_dataset(str(make_idx_dir(tmp_path / "idx", n_train=400)), val_size=100, strict_counts=False)
    t = {k: torch.from_numpy(getattr(d, k)) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
    return (batches(t["train_x"], t["train_y"], batch_size, True, 0), batches(t["val_x"], t["val_y"], 100, False, 0), t)


def trainer(epochs=3, **kw):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, **kw)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_learns_the_tiny_task_and_metrics_are_per_epoch(tmp_path, optimizer):
    pl.seed_everything(0, verbose=False)
    train, val, t = tiny_loaders(tmp_path)
    model = study_module(lr=0.05 if optimizer == "sgd" else 3e-3, optimizer=optimizer)
    before = evaluate(model, t["test_x"], t["test_y"])
    fit = trainer(epochs=4)
    fit.fit(model, train, val)
    after = evaluate(model, t["test_x"], t["test_y"])
    assert after["acc"] > 0.8 > before["acc"]
    m = {**model.stage_metrics("train"), **model.stage_metrics("val")}
    assert set(m) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert {k: float(v) for k, v in fit.callback_metrics.items()} == m  # logged once per epoch, exactly
    assert all(v.dtype == torch.float64 for v in fit.callback_metrics.values())
    assert 0 <= m["val_acc"] <= 1 and m["train_loss"] > 0
    fresh = evaluate(model, t["val_x"], t["val_y"])  # the last epoch's validation, not a running mean
    assert m["val_acc"] == pytest.approx(fresh["acc"]) and m["val_loss"] == pytest.approx(fresh["loss"], rel=1e-4)


def test_same_seed_same_metrics(tmp_path):
    results = []
    for _ in range(2):
        pl.seed_everything(7, verbose=False)
        train, val, _ = tiny_loaders(tmp_path)
        model = study_module(lr=0.05)
        trainer(epochs=1).fit(model, train, val)
        results.append(model.stage_metrics("val"))
    assert results[0] == results[1]


def test_nan_loss_raises_diverged(tmp_path):
    train, val, _ = tiny_loaders(tmp_path)
    _, DivergenceCheck = for_package(pl)
    with pytest.raises(Diverged, match="training loss is nan|training loss is inf"):
        trainer(epochs=2, callbacks=[DivergenceCheck()]).fit(study_module(lr=1e4, momentum=0.9), train, val)


def test_cyclic_lr_moves_between_its_bounds(tmp_path):
    train, val, _ = tiny_loaders(tmp_path)
    model = study_module(lr=0.1, cyclic_min_lr=0.01)
    seen = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(epochs=2, callbacks=[Watch()]).fit(model, train, val)
    assert min(seen) >= 0.01 - 1e-9 and max(seen) <= 0.1 + 1e-9 and max(seen) - min(seen) > 0.05


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Optim(optimizer="rmsprop")


def applied_rates(tmp_path, **kw) -> tuple[list[tuple[float, float]], pl.Trainer]:
    """(LR, momentum) of each step of a real 2-epoch training, as the optimiser applies them: 300
    images in batches of 15, 20 steps an epoch, 40 in all."""
    pl.seed_everything(0, verbose=False)
    train, val, _ = tiny_loaders(tmp_path, batch_size=15)
    seen = []

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            group = trainer.optimizers[0].param_groups[0]  # momentum: SGD's, or beta1
            seen.append((group["lr"], group["momentum"] if "momentum" in group else group["betas"][0]))

    fit = trainer(epochs=2, callbacks=[Watch()])
    fit.fit(study_module(**kw), train, val)
    assert len(seen) == 40
    return seen, fit


def test_constant_schedule_has_no_scheduler_at_all(tmp_path):
    seen, fit = applied_rates(tmp_path, lr=0.05)
    assert fit.lr_scheduler_configs == [] and set(seen) == {(0.05, 0.9)}


# Hand-worked, peak 0.05 over 40 steps. onecycle (torch's defaults): from 0.05 / 25 = 0.002, peak at
# step 0.3 x 40 - 1 = 11, down to 0.002 / 1e4 = 2e-7 at step 39; the momentum 0.95, 0.85, 0.95.
# cosine: warm-up over int(0.05 x 40) = 2 steps, 0.01 x 0.05 = 5e-4, then 0.505 x 0.05 = 0.02525;
# the peak at step 2; step 39 is step 37 of the cosine's 38: 0.025 x (1 + cos(37 pi / 38)).
@pytest.mark.parametrize("schedule, expected", [
    ("onecycle", {0: (0.002, 0.95), 11: (0.05, 0.85), 39: (2e-7, 0.95)}),
    ("cosine", {0: (5e-4, 0.9), 1: (0.02525, 0.9), 2: (0.05, 0.9), 39: (0.025 * (1 + np.cos(37 * np.pi / 38)), 0.9)}),
])
def test_each_schedule_applies_the_hand_worked_rates_at_its_first_peak_and_last_step(tmp_path, schedule, expected):
    seen, fit = applied_rates(tmp_path, lr=0.05, lr_schedule=schedule)
    assert [seen[step] for step in expected] == [pytest.approx(rates, rel=1e-6) for rates in expected.values()]
    assert max(lr for lr, _ in seen) == pytest.approx(0.05, rel=1e-6)  # the arm's LR is the peak
    assert fit.lr_scheduler_configs[0].interval == "step"


def test_the_cyclic_lr_refuses_a_schedule_and_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="constant with a cyclical LR"):
        Optim(cyclic_min_lr=0.01, lr_schedule="onecycle")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        Optim(lr_schedule="step")


@pytest.mark.parametrize("lr_free, optimizer", [("prodigy", "sgd"), ("dadapt", "sgd"), ("dadapt", "adam")])
def test_learning_rate_free_optimisers_take_the_schedule_on_their_base_lr(tmp_path, lr_free, optimizer):
    """onecycle on the base LR 1.0 (hand-worked as above): 0.04, 1.0 at step 11, 4e-6 at step 39."""
    seen, fit = applied_rates(tmp_path, lr=1.0, lr_free=lr_free, optimizer=optimizer, lr_schedule="onecycle")
    assert [seen[step] for step in (0, 11, 39)] == [pytest.approx(r, rel=1e-6) for r in ((0.04, 0.95), (1.0, 0.85), (4e-6, 0.95))]
    if lr_free == "prodigy":  # under a warm-up, as its README advises
        assert fit.optimizers[0].param_groups[0]["safeguard_warmup"] is True
