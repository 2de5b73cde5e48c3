"""A quiet console: Lightning's warnings that depend on the data's size are settled by configuring
it (trainables/trainable.py's Trainer, trainables/batches.py's loader), not filtered; Ray Tune
prints no box of its own (study/orchestrate.py's TUNE_SETTINGS)."""

from __future__ import annotations

import os
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from tests.conftest import real_data_dir, run_module
from trainables.batches import batches
from trainables.module import LitClassifier
from trainables.optim import Optim, install

LOGGING_INTERVAL = "smaller than the logging interval"
WORKERS_HINT = "does not have many workers"


def lightning_warnings(train, val) -> list[str]:
    """Every warning of one epoch of `Trainer.fit` (the trial's loop settings, no logger)."""
    pl.seed_everything(0, verbose=False)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LitClassifier(lr=0.01)
        install(model, Optim())
        trainer.fit(model, train(x, y), val(x, y))
    return [str(w.message) for w in caught]


def test_the_tensor_loader_needs_no_workers_on_a_machine_of_many_cpus(monkeypatch):
    """Lightning hints at more DataLoader workers where the machine has more than 2 CPUs: seen as 16
    here, the hint comes for a DataLoader over the same tensors, and not for the trial's loader."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)

    def loader(x, y):
        return DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)

    assert any(WORKERS_HINT in m for m in lightning_warnings(loader, loader))
    ours = lightning_warnings(lambda x, y: batches(x, y, 64, shuffle=True, seed=0),
                              lambda x, y: batches(x, y, 1024, shuffle=False, seed=0))
    assert not [m for m in ours if WORKERS_HINT in m]


@pytest.mark.slow
def test_a_tiny_study_prints_no_lightning_warning_about_the_datas_size(tmp_path):
    """8 batches an epoch, fewer than Lightning's default logging interval (50 steps)."""
    proc = run_module("study.run", "--subset", "512", "--epochs", "1", "--arms", "manual", "--lrs", "1e-2,1e-1",
                      "--results-dir", str(tmp_path), "--name", "tiny", "--data-dir", str(real_data_dir()), timeout=300)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "[2/2]" in console  # the trials ran and their workers' output had time to reach the console
    assert LOGGING_INTERVAL not in console and WORKERS_HINT not in console, console
    assert "Configuration for experiment" not in console, console  # Ray Tune's box, printed even at verbose=0
