"""The pretraining of `fashion-vit-finetune` (trainables/tasks.py): the task's ViT trained once on
Fashion-MNIST's classes 0-4 by a fixed recipe (`Recipe`), its weights cached on disk and reused.

The driver pretrains (or loads the cache) while it reads the task's data, before any trial starts
(trainables/data.py `from_task` calls the data's `weights()`); the weights then travel inside the
task's Dataset (its `weights`) through Ray's object store, as the images do, and each trial loads
them into its freshly built model, all but the head, which keeps the trial's seeded fresh draw
(trainables/trainable.py). A worker never pretrains and needs no cache of its own.

The cache file is `CACHE_DIR/vit-pretrain-<key>.pt` (`$LRSTUDY_CACHE_DIR`, else
~/.cache/lrstudy), `key` a SHA-256 of the recipe and of the pretraining images and labels
themselves: another recipe or other data is another file, never a stale one. Beside it,
`<same>.json` records the recipe, the key, the pretraining's test accuracy on classes 0-4 and
its seconds. The pretraining runs on one CPU thread whatever the machine (torch's CPU kernels
give the same bits for the same thread count), so the recipe's seed gives the same weights
everywhere, and a second call reads them back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CACHE_ENV = "LRSTUDY_CACHE_DIR"
HEAD = "head."  # the classifier's parameters: never pretrained into a trial's model


@dataclass(frozen=True)
class Recipe:
    """How the ViT is pretrained: on the training images of `classes` (the first `images` of them;
    None: all 30,000), standardised by their own mean and std, `epochs` of AdamW at a constant
    `lr` with `weight_decay`, batches of `batch_size` in a `seed`ed order from `seed`ed weights.
    `vit` is the architecture (trainables/model.py ViT's arguments, the fine-tuned model's)."""

    classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    images: int | None = None
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 64
    seed: int = 0
    vit: tuple[tuple[str, int], ...] = (("patch", 7), ("dim", 64), ("depth", 4), ("heads", 4), ("mlp", 128))


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lrstudy")


def restrict(x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes`, labelled 0, 1, ... in that order."""
    keep = np.isin(y, classes)
    relabel = np.full(max(int(y.max()), *classes) + 1, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[y[keep]]


def key(recipe: Recipe, x: np.ndarray, y: np.ndarray) -> str:
    """The cache key: the recipe and the pretraining data (`x`, `y`: already restricted), hashed."""
    h = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode())
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def pretrained(recipe: Recipe, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict:
    """The ViT's pretrained weights (a state dict of CPU tensors, the head left out), by `recipe`
    on `train` (Fashion-MNIST's training images and labels, all classes; `test` only scores it):
    read from the cache, else trained and cached."""
    import torch

    x, y = restrict(*train, recipe.classes)
    if recipe.images is not None:
        x, y = x[: recipe.images], y[: recipe.images]
    path = cache_dir() / f"vit-pretrain-{key(recipe, x, y)}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    start = time.perf_counter()
    weights, accuracy = _train(recipe, x, y, restrict(*test, recipe.classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(weights, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
    path.with_suffix(".json").write_text(json.dumps({"recipe": asdict(recipe), "key": path.stem.rsplit("-", 1)[1],
                                                     "test_acc": accuracy, "seconds": time.perf_counter() - start}, indent=1))
    return weights


def _train(recipe: Recipe, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray]) -> tuple[dict, float]:
    import torch
    import torch.nn.functional as F

    from trainables.model import ViT

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mean, std = float(x.mean()), float(x.std()) or 1.0
        xs, ys = (torch.as_tensor((x.astype(np.float32) - mean) / std), torch.as_tensor(y))
        torch.manual_seed(recipe.seed)
        model = ViT(len(recipe.classes), **dict(recipe.vit))
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        order = torch.Generator().manual_seed(recipe.seed)
        model.train()
        for _ in range(recipe.epochs):
            for idx in torch.randperm(len(ys), generator=order).split(recipe.batch_size):
                loss = F.cross_entropy(model(xs[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            tx = torch.as_tensor((test[0].astype(np.float32) - mean) / std)
            accuracy = float(torch.cat([model(b).argmax(1) for b in tx.split(1000)]).eq(torch.as_tensor(test[1])).float().mean())
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(HEAD)}, accuracy
