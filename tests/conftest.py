"""Shared fixtures: tiny generated IDX files, the real Fashion-MNIST files, a smoke study."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data import DEBIAN_DIR, FILES, IMAGE_MAGIC, LABEL_MAGIC

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = False) -> Path:
    """An IDX file as Fashion-MNIST ships them: big-endian magic, dims, then uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx_dir(directory: Path, n_train: int = 600, n_test: int = 100, compress: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n)
        # Learnable images: a bright bar whose row is the label, plus noise.
        images = rng.integers(0, 60, size=(n, 28, 28))
        images[np.arange(n), 2 + 2 * labels, :] = 250
        write_idx(directory / FILES[f"{split}_images"], images, IMAGE_MAGIC, compress)
        write_idx(directory / FILES[f"{split}_labels"], labels, LABEL_MAGIC, compress)
    return directory


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    return make_idx_dir(tmp_path / "idx")


def real_data_dir() -> Path:
    """The real files; CI installs Debian's package, so their absence is a failure there."""
    directory = Path(os.environ.get("FASHION_MNIST_DIR", DEBIAN_DIR))
    if not (directory / (FILES["train_images"] + ".gz")).exists() and not (directory / FILES["train_images"]).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST is missing at {directory} (CI installs dataset-fashion-mnist)")
        pytest.skip(f"Fashion-MNIST is not at {directory}")
    return directory


def run_module(module: str, *args: str, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


# `python -m study.run`, with one more Ray Tune callback in its driver: `source` defines `Watch`, a
# tune.Callback whose class attribute `seen` (a list) is printed as JSON once the study has ended.
WITH_CALLBACK = """
import json, sys
from ray import tune
from study import orchestrate, run
{source}
run_config = orchestrate._run_config

def with_watch(*args):
    config = run_config(*args)
    config.callbacks.append(Watch())
    return config

orchestrate._run_config = with_watch
code = run.main(sys.argv[1:])
print("seen:", json.dumps(Watch.seen))
sys.exit(code)
"""


def run_watched(source: str, *args: str, timeout: float = 300, **env) -> tuple[subprocess.CompletedProcess, list]:
    """study.run `args` with the callback `Watch` of `source` (see WITH_CALLBACK); what it saw."""
    proc = subprocess.run([sys.executable, "-c", WITH_CALLBACK.format(source=source), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [seen] = [line.removeprefix("seen: ") for line in proc.stdout.splitlines() if line.startswith("seen: ")]
    return proc, json.loads(seen)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real smoke study (real Ray, Lightning, Fashion-MNIST), shared by the tests that read it."""
    results = tmp_path_factory.mktemp("results")
    proc = run_module("study.run", "--smoke", "--results-dir", str(results), "--name", "smoke",
                      "--data-dir", str(real_data_dir()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "smoke", proc


# The small real run that the analysis tests read: every arm and both optimisers over two seeds,
# one epoch on a tiny subset; LR 50 diverges (SGD for sure).
RECORDED_ARGS = ("--arms", "finder,manual,cyclic", "--optimizer", "sgd,adam", "--seeds", "2", "--subset", "640",
                 "--epochs", "1", "--lrs", "0.01,50", "--finder-rules", "lightning,valley")


@pytest.fixture(scope="session")
def recorded_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The experiment folder of one small real study (real Ray, Lightning, Fashion-MNIST)."""
    results = tmp_path_factory.mktemp("recorded")
    proc = run_module("study.run", *RECORDED_ARGS, "--results-dir", str(results), "--name", "recorded",
                      "--data-dir", str(real_data_dir()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "recorded", proc
