"""Your own task, in one file: python -m study.run --task examples/my_task.py:TASK --smoke"""
from types import SimpleNamespace

import numpy as np
from torch import nn


def model() -> nn.Module:  # called inside each trial, after seeding: logits over the classes
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))


def data():  # (train_x, train_y, test_x, test_y); the study splits validation off the training set
    rng = np.random.default_rng(0)  # three Gaussian blobs in 20 dimensions
    y = rng.integers(0, 3, size=24_000)
    x = rng.normal(size=(3, 20))[y] + rng.normal(scale=2.0, size=(24_000, 20))
    return x[:20_000].astype(np.float32), y[:20_000], x[20_000:].astype(np.float32), y[20_000:]


TASK = SimpleNamespace(model=model, data=data, defaults={"epochs": 5, "batch_size": 128})
