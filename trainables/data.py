"""Fashion-MNIST as in-memory arrays: find the IDX files, validate them, split, normalise.

The driver calls `load_dataset` once; the resulting `Dataset` (plain numpy arrays) travels to
every trial through Ray's object store, so worker nodes need no dataset files. Inside a trial,
trainables/batches.py turns them into a cheap, seeded, re-shuffling batch loader. This module
imports numpy alone (torch only for the split, when a dataset is loaded): the driver reads the
data while Ray starts, and Lightning is imported by the trials only.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path.home() / ".cache" / "lrstudy"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
SIDE, NUM_CLASSES = 28, 10
TRAIN_COUNT, TEST_COUNT = 60_000, 10_000


class DataError(Exception):
    """The dataset cannot be found or its files are invalid; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Normalised float32 images (N, 1, 28, 28) and int64 labels (N,), split three ways."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    weights: dict | None = None  # a state dict each trial loads into its model (the data's `weights()`)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking the magic number and that the data is complete."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (incomplete header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupted: {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_split(directory: Path, images: str, labels: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(_find_file(directory, FILES[images]), IMAGE_MAGIC)
    y = read_idx(_find_file(directory, FILES[labels]), LABEL_MAGIC)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{directory}: {images} has shape {x.shape}, expected (N, {SIDE}, {SIDE})")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{directory}: {len(x)} {images} but {len(y)} {labels}")
    if count and len(x) != count:
        raise DataError(f"{directory}: {images} has {len(x)} images, expected {count}")
    if y.size and y.max() >= NUM_CLASSES:
        raise DataError(f"{directory}: {labels} has label {int(y.max())}, expected 0..{NUM_CLASSES - 1}")
    return x, y


def _has_all(directory: Path) -> bool:
    return all(_find_file(directory, stem) for stem in FILES.values())


def _torchvision_download(cache: Path) -> Path:
    """torchvision's own download (checksummed) into a cache folder; returns the raw folder."""
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(cache), train=train, download=True)
    return cache / "FashionMNIST" / "raw"


def locate(data_dir: str | None) -> Path:
    """The first source that has all four files: --data-dir, $FASHION_MNIST_DIR, Debian's folder, download."""
    if data_dir:
        directory = Path(data_dir).expanduser().resolve()
        if not _has_all(directory):
            raise DataError(f"--data-dir {directory} does not hold the four Fashion-MNIST IDX files ({', '.join(FILES.values())}, gzipped or not)")
        return directory
    candidates = [Path(os.environ["FASHION_MNIST_DIR"])] if os.environ.get("FASHION_MNIST_DIR") else []
    candidates += [DEBIAN_DIR, CACHE_DIR / "FashionMNIST" / "raw"]
    for directory in candidates:
        if _has_all(directory):
            return directory.resolve()
    try:
        return _torchvision_download(CACHE_DIR)
    except Exception as e:  # offline, proxy, disk: any failure means "no source worked"
        raise DataError(
            "Fashion-MNIST not found: pass --data-dir DIR (the four IDX files), set $FASHION_MNIST_DIR, "
            f"install Debian's package dataset-fashion-mnist ({DEBIAN_DIR}), or go online for torchvision's "
            f"download (failed: {type(e).__name__}: {e})"
        ) from None


MAX_DATA_BYTES = 4 * 2**30  # a task's data travels whole through Ray's object store, into every trial


def read_fashion_mnist(data_dir: str | None = None, strict_counts: bool = True) -> tuple[np.ndarray, ...]:
    """Fashion-MNIST's 60,000 training and 10,000 test images, float32 in [0, 1], (N, 1, 28, 28),
    and their labels: the built-in tasks' data (trainables/tasks.py). `strict_counts` checks 60k/10k."""
    directory = locate(data_dir)
    train_x, train_y = _read_split(directory, "train_images", "train_labels", TRAIN_COUNT if strict_counts else 0)
    test_x, test_y = _read_split(directory, "test_images", "test_labels", TEST_COUNT if strict_counts else 0)
    return _unit(train_x), train_y, _unit(test_x), test_y


def _unit(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[:, None, :, :]


def load_dataset(
    data_dir: str | None = None,
    val_size: int = 5_000,
    split_seed: int = 0,
    normalize: bool = True,
    subset: int | None = None,
    strict_counts: bool = True,
) -> Dataset:
    """Load, validate and split Fashion-MNIST (`read_fashion_mnist`, then `split`)."""
    return split(read_fashion_mnist(data_dir, strict_counts), val_size, split_seed, normalize, subset,
                 str(locate(data_dir)))


def split(arrays, val_size: int = 5_000, split_seed: int = 0, normalize: bool = True, subset: int | None = None,
          source: str = "") -> Dataset:
    """(train_x, train_y, test_x, test_y) -> a Dataset: `val_size` training examples held out (a
    seeded permutation), `subset` keeps that many training examples (and a proportional share of
    validation and test) for smoke runs; `normalize` standardises inputs with the training part's
    mean and std. Inputs become float32, labels int64."""
    train_x, train_y, test_x, test_y = arrays
    if not 0 < val_size < len(train_x):
        raise DataError(f"--val-size {val_size} must be between 1 and {len(train_x) - 1} (the training examples less one)")

    import torch  # torch's permutation: the split every earlier result was trained on

    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(split_seed)).numpy()
    val_idx, train_idx = order[:val_size], order[val_size:]
    if subset:
        scale = subset / len(train_idx)
        train_idx = train_idx[:subset]
        val_idx = val_idx[: max(1, int(len(val_idx) * scale))]
        test_x, test_y = test_x[: max(1, int(len(test_x) * scale))], test_y[: max(1, int(len(test_y) * scale))]

    inputs = train_x[train_idx].astype(np.float32)
    mean, std = (float(inputs.mean()), float(inputs.std()) or 1.0) if normalize else (0.0, 1.0)  # constant inputs: std 0

    def prep(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32, copy=False) - mean) / std

    def labels(y: np.ndarray) -> np.ndarray:  # class indices int64; a regression's targets float32
        return y.astype(np.int64 if np.issubdtype(y.dtype, np.integer) else np.float32)

    return Dataset(
        train_x=prep(inputs),
        train_y=labels(train_y[train_idx]),
        val_x=prep(train_x[val_idx]),
        val_y=labels(train_y[val_idx]),
        test_x=prep(test_x),
        test_y=labels(test_y),
        source=source,
    )


def _numpy(x, what: str, spec: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as e:
        raise DataError(f"--task {spec}: {what} is not an array ({type(e).__name__})") from None


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _read_datamodule(dm, spec: str):
    """A LightningDataModule's training and test sets, read once, in order, into arrays."""
    import torch

    def read(stage: str, loader_name: str):
        dm.setup(stage)
        loader = getattr(dm, loader_name)()
        dataset = getattr(loader, "dataset", None)
        ordered = torch.utils.data.DataLoader(dataset, batch_size=1024, shuffle=False) if dataset is not None else loader
        xs, ys = zip(*((x, y) for x, y in ordered))
        return torch.cat(xs), torch.cat(ys)

    dm.prepare_data()
    try:
        train_x, train_y = read("fit", "train_dataloader")
        test_x, test_y = read("test", "test_dataloader")
    except Exception as e:
        raise DataError(f"--task {spec}: reading its LightningDataModule failed ({type(e).__name__}: {e})") from None
    return train_x, train_y, test_x, test_y


def datamodule(data, spec: str):
    """The LightningDataModule that a task's `data` is (an instance) or makes (a class, or a
    function returning one), else None (a function of arrays is not called here)."""
    from trainables.framework import is_datamodule, is_datamodule_class

    if is_datamodule(data):
        return data
    if is_datamodule_class(data):
        try:
            return data()
        except Exception as e:
            raise DataError(f"--task {spec}: {data.__name__}() failed ({type(e).__name__}: {_last(e)})") from None
    return None


def _last(e: BaseException) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else ""


def from_task(task, spec: str, val_size: int = 5_000, split_seed: int = 0, normalize: bool = True,
              subset: int | None = None, classification: bool = True):
    """A task's data (trainables/tasks.py), checked: a live LightningDataModule is returned as it is
    (its trials use it, trainables/loaders.py); arrays, or a DataModule's loaders read once where the
    task sets `in_memory`, are checked and split (`split`) into a Dataset. DataError with one line
    where lengths differ, labels are not class indices from 0 (`classification`: the short form), or
    the data is larger than MAX_DATA_BYTES."""
    data = datamodule(task.data, spec)
    if data is None and callable(task.data):
        try:
            data = task.data()
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"--task {spec}: its data() failed ({type(e).__name__}: {_last(e)})") from None
    elif data is None:
        raise DataError(f"--task {spec}: data must be a LightningDataModule (an instance, a class or a function "
                        "returning one) or a function returning (train_x, train_y, test_x, test_y)")
    dm = datamodule(data, spec)
    if dm is not None and not task.in_memory:
        return dm
    arrays = _read_datamodule(dm, spec) if dm is not None else data
    if not isinstance(arrays, (tuple, list)) or len(arrays) != 4:
        raise DataError(f"--task {spec}: data() must return (train_x, train_y, test_x, test_y) or a LightningDataModule")
    train_x, train_y, test_x, test_y = (_numpy(a, w, spec) for a, w in zip(arrays, ("train_x", "train_y", "test_x", "test_y")))
    for what, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.ndim < 1 or len(x) != len(y) or not len(y) or (classification and y.ndim != 1):
            raise DataError(f"--task {spec}: {what}_x has {len(x) if x.ndim else 0} examples but {what}_y has "
                            f"{len(y) if y.ndim else 0} labels (one label each, at least one example)")
        if classification and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise DataError(f"--task {spec}: {what}_y must hold class indices 0, 1, ... (whole numbers): the short form "
                            "(a plain torch.nn.Module and arrays) is single-label classification with cross-entropy; "
                            "for regression or any other loss, make model a LightningModule")
    size = sum(a.nbytes for a in (train_x, train_y, test_x, test_y))
    if size > MAX_DATA_BYTES:
        raise DataError(f"--task {spec}: its data is {_bytes(size)}, more than the {_bytes(MAX_DATA_BYTES)} limit "
                        "(MAX_DATA_BYTES in trainables/data.py) for data held in memory")
    source = getattr(task.data, "source", None) or spec  # where the built-in tasks found Fashion-MNIST
    dataset = split((train_x, train_y, test_x, test_y), val_size, split_seed, normalize, subset, str(source))
    weights = getattr(task.data, "weights", None)  # pretrained weights: computed here, in the driver, once
    return replace(dataset, weights=weights()) if callable(weights) else dataset
