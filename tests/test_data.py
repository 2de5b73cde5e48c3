"""IDX parsing, validation, split and batching, on tiny generated files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from tests.conftest import make_idx_dir, write_idx
from trainables.batches import batches
from trainables.data import FILES, IMAGE_MAGIC, DataError, load_dataset, locate, read_idx


def small(directory, **kw):
    return load_dataset(str(directory), val_size=100, strict_counts=False, **kw)


def test_reads_gzipped_and_raw_files_alike(tmp_path):
    raw = small(make_idx_dir(tmp_path / "raw", compress=False))
    gz = small(make_idx_dir(tmp_path / "gz", compress=True))
    np.testing.assert_array_equal(raw.train_x, gz.train_x)
    assert raw.sizes() == {"train": 500, "val": 100, "test": 100}


def test_split_is_fixed_by_its_seed_and_disjoint(tiny_idx_dir):
    a, b, c = small(tiny_idx_dir), small(tiny_idx_dir), small(tiny_idx_dir, split_seed=1)
    np.testing.assert_array_equal(a.val_x, b.val_x)
    assert not np.array_equal(a.val_x, c.val_x)
    train_rows = {row.tobytes() for row in a.train_x}
    assert not any(row.tobytes() in train_rows for row in a.val_x)


def test_normalised_with_training_statistics(tiny_idx_dir):
    d = small(tiny_idx_dir)
    assert d.train_x.dtype == np.float32 and d.train_x.shape[1:] == (1, 28, 28)
    assert abs(float(d.train_x.mean())) < 1e-4 and abs(float(d.train_x.std()) - 1) < 1e-3
    raw = small(tiny_idx_dir, normalize=False)
    assert raw.train_x.min() >= 0 and raw.train_x.max() <= 1


def test_subset_shrinks_every_split(tiny_idx_dir):
    d = small(tiny_idx_dir, subset=250)
    assert d.sizes() == {"train": 250, "val": 50, "test": 50}


def test_real_counts_are_enforced(tiny_idx_dir):
    with pytest.raises(DataError, match="expected 60000"):
        load_dataset(str(tiny_idx_dir))


def test_truncated_file_is_a_clear_error(tiny_idx_dir):
    path = tiny_idx_dir / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        small(tiny_idx_dir)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    d = make_idx_dir(tmp_path / "gz", compress=True)
    path = d / (FILES["test_images"] + ".gz")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="cannot read|truncated"):
        small(d)


def test_wrong_magic_is_a_clear_error(tiny_idx_dir):
    labels = tiny_idx_dir / FILES["train_labels"]
    images = tiny_idx_dir / FILES["train_images"]
    labels.write_bytes(images.read_bytes())  # images where labels belong
    with pytest.raises(DataError, match="magic"):
        small(tiny_idx_dir)


def test_label_out_of_range_and_count_mismatch(tmp_path):
    d = make_idx_dir(tmp_path / "a")
    write_idx(d / FILES["train_labels"], np.full(600, 12), 0x801)
    with pytest.raises(DataError, match="label 12"):
        small(d)
    d = make_idx_dir(tmp_path / "b")
    write_idx(d / FILES["train_labels"], np.zeros(599), 0x801)
    with pytest.raises(DataError, match="600 train_images but 599"):
        small(d)


def test_wrong_image_size(tmp_path):
    d = make_idx_dir(tmp_path / "a")
    write_idx(d / FILES["train_images"], np.zeros((600, 32, 32)), IMAGE_MAGIC)
    with pytest.raises(DataError, match="shape"):
        small(d)


def test_data_dir_without_files_names_the_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        locate(str(tmp_path))


def test_environment_variable_is_a_source(tiny_idx_dir, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tiny_idx_dir))
    assert locate(None) == tiny_idx_dir.resolve()


def test_read_idx_shape(tmp_path):
    path = write_idx(tmp_path / "x", np.arange(24).reshape(2, 3, 4), IMAGE_MAGIC)
    assert read_idx(path, IMAGE_MAGIC).shape == (2, 3, 4)
    path.write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(DataError):
        read_idx(path, IMAGE_MAGIC)


def test_batches_cover_every_sample_once_and_reshuffle_per_epoch():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    loader = batches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    epoch0 = torch.cat([b[1] for b in loader])
    assert sorted(epoch0.tolist()) == list(range(10))
    loader.sampler.set_epoch(1)
    epoch1 = torch.cat([b[1] for b in loader])
    assert not torch.equal(epoch0, epoch1)
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([b[1] for b in loader]), epoch0)  # same (seed, epoch): same order
    xb, yb = next(iter(batches(x, y, 4, shuffle=False, seed=0)))
    assert torch.equal(yb, torch.arange(4)) and torch.equal(xb[:, 0], yb.float())
