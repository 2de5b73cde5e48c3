"""fashion-vit-finetune's pretraining: seeded, done once, cached by recipe and data, identical when
repeated; and the trial's model starts from it, with a fresh head (tiny generated data, no Ray)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from study.config import StudyConfig
from study.space import trial_points
from tests.conftest import make_idx_dir
from trainables import framework, pretrain, tasks, trainable
from trainables import data as data_module
from trainables.data import from_task, read_fashion_mnist
from trainables.model import ViT

TINY = pretrain.Recipe(images=120, epochs=1, batch_size=40)  # 3 steps: seconds


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_vit_has_one_logit_per_class_and_a_class_token_per_image():
    torch.manual_seed(0)
    model = ViT(10, patch=7, dim=16, depth=1, heads=2, mlp=32)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10) and model.features(torch.zeros(3, 1, 28, 28)).shape == (3, 16)
    assert model.pos.shape == (1, 16 + 1, 16)  # 4 x 4 patches and the class token


def test_the_pretraining_is_cached_and_identical_when_repeated(tmp_path, cache, monkeypatch):
    train_x, train_y, test_x, test_y = read_fashion_mnist(str(make_idx_dir(tmp_path / "idx", n_train=400)), strict_counts=False)
    first = pretrain.pretrained(TINY, (train_x, train_y), (test_x, test_y))
    files = list(cache.glob("vit-pretrain-*.pt"))
    assert len(files) == 1 and files[0].with_suffix(".json").exists()
    assert not any(k.startswith(pretrain.HEAD) for k in first) and "pos" in first
    mtime = files[0].stat().st_mtime_ns
    monkeypatch.setattr(pretrain, "_train", lambda *a: pytest.fail("pretrained again despite the cache"))
    again = pretrain.pretrained(TINY, (train_x, train_y), (test_x, test_y))
    assert files[0].stat().st_mtime_ns == mtime and list(cache.glob("vit-pretrain-*.pt")) == files
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    monkeypatch.undo()  # pretraining anew (another cache) gives the same weights, bit for bit
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path / "elsewhere"))
    fresh = pretrain.pretrained(TINY, (train_x, train_y), (test_x, test_y))
    assert all(torch.equal(first[k], fresh[k]) for k in first)
    # another recipe, or other data, is another cache file
    pretrain.pretrained(pretrain.Recipe(images=120, epochs=1, batch_size=40, seed=1), (train_x, train_y), (test_x, test_y))
    assert len(list((tmp_path / "elsewhere").glob("*.pt"))) == 2
    assert pretrain.key(TINY, train_x[:10], train_y[:10]) != pretrain.key(TINY, train_x[1:11], train_y[:10])


def test_the_finetuning_task_trains_on_classes_5_to_9_from_the_pretrained_weights_with_a_fresh_head(tmp_path, cache,
                                                                                                   monkeypatch):
    idx = str(make_idx_dir(tmp_path / "idx", n_train=400))
    monkeypatch.setattr(data_module, "read_fashion_mnist", partial(read_fashion_mnist, strict_counts=False))  # tiny files
    task = tasks.load("fashion-vit-finetune", idx)
    task = tasks.Task(task.model, tasks.FineTune(idx, TINY), task.defaults)
    data = from_task(task, "fashion-vit-finetune", val_size=40)
    _, all_y, _, _ = read_fashion_mnist(idx, strict_counts=False)
    assert len(data.train_y) + len(data.val_y) == np.isin(all_y, tasks.FINETUNE_CLASSES).sum()
    assert set(np.unique(data.train_y)) <= {0, 1, 2, 3, 4} and data.weights is not None
    assert tasks.load("fashion-vit-finetune").defaults["lrs"][0] == 1e-6
    config = trial_points(StudyConfig(task=("fashion-vit-finetune",), arms=("manual",), lrs=(1e-3,), batch_size=20,
                                      val_size=40, epochs=1))[0]
    framework.seed(config["seed"])  # as the trial seeds
    module = trainable._build(config, data)
    state = module.net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in data.weights.items())  # the range test and training start here
    framework.seed(config["seed"])
    fresh = tasks.build_model("fashion-vit-finetune").state_dict()
    assert torch.equal(state["head.weight"], fresh["head.weight"])  # the head: the seed's fresh draw
