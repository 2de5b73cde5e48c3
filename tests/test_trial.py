"""A trial depends only on its own config: what trainables/ imports, the search space Ray Tune
gets, and the paired design's premise (real Lightning trials on tiny generated data, no Ray)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import torch
from ray import tune
from ray.tune.experiment import Experiment
from ray.tune.search.basic_variant import BasicVariantGenerator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from study.config import StudyConfig
from study.space import param_space, trial_points
from tests.conftest import REPO, make_idx_dir
from trainables.data import load_dataset
from trainables.trainable import run_trial

STUDY = StudyConfig(arms=("finder", "manual", "cyclic"), optimizer=("sgd", "adam"), seeds=2, lrs=(0.01,),
                    finder_rules=("valley",), epochs=1, batch_size=32, val_size=100, finder_max_lr=0.1,
                    finder_num_training=20)


def test_trainables_import_nothing_from_study():
    imported = {}
    for path in sorted((REPO / "trainables").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            imported[path.name] = imported.get(path.name, []) + names
    assert "trainable.py" in imported and any(n.startswith("trainables.") for n in imported["trainable.py"])
    offending = {f: [n for n in names if n == "study" or n.startswith("study.")] for f, names in imported.items()}
    assert not any(offending.values()), offending


def test_param_space_gives_ray_tune_exactly_the_points_and_no_warning():
    points = trial_points(STUDY)
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    log = logging.getLogger("ray.tune.search.variant_generator")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        generator = BasicVariantGenerator(points_to_evaluate=[dict(p) for p in points])
        generator.add_configurations([Experiment("space", lambda config: None, config=param_space(points),
                                                 num_samples=len(points))])
        trials = []
        while (trial := generator.next_trial()) is not None:
            trials.append(trial.config)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert trials == points and generator.is_finished()
    assert [r.getMessage() for r in seen if r.levelno >= logging.WARNING] == []
    space = param_space(points)
    assert space["epochs"] == 1 and space["subset"] is None  # settings are values, not domains
    assert isinstance(space["arm"], tune.search.sample.Categorical) and set(space["arm"].categories) == set(STUDY.arms)


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> list[tuple[dict, list[dict], Path]]:
    """Every trial of STUDY, run by `run_trial` as Ray would run it fresh: (config, rows, trial dir)."""
    data = load_dataset(str(make_idx_dir(tmp_path_factory.mktemp("idx"))), val_size=STUDY.val_size,
                        strict_counts=False)
    threads, out = torch.get_num_threads(), []
    with pytest.MonkeyPatch.context() as mp:
        rows = []
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            for i, config in enumerate(trial_points(STUDY)):
                trial_dir = tmp_path_factory.mktemp(f"trial{i}")
                run_trial(config, data, trial_dir, None, {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
                out.append((config, rows[:], trial_dir))
                rows.clear()
        finally:
            torch.set_num_threads(threads)
    return out


def test_trials_of_one_seed_start_from_the_same_weights_and_see_the_same_batches(trials):
    """The premise of the paired finder-vs-manual comparison, whatever the arm and optimiser."""
    assert {(c["arm"], c["optimizer"]) for c, _, _ in trials} == {(a, o) for a in STUDY.arms for o in STUDY.optimizer}
    by_seed = {}
    for config, rows, _ in trials:
        assert rows and all(r["init_fingerprint"] and r["batch_fingerprint"] for r in rows), config
        by_seed.setdefault(config["seed"], set()).update((r["init_fingerprint"], r["batch_fingerprint"]) for r in rows)
    assert list(by_seed) == [0, 1]
    assert all(len(prints) == 1 for prints in by_seed.values()), by_seed  # every arm, both optimisers
    (init0, batches0), (init1, batches1) = by_seed[0].pop(), by_seed[1].pop()
    assert init0 != init1 and batches0 != batches1  # the fingerprints do tell seeds apart


def hparams(trial_dir: Path) -> dict:
    """The trial's row in TensorBoard's HParams view, as TensorBoard reads it."""
    acc = EventAccumulator(str(trial_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}


def test_tensorboard_hparams_describe_the_trial_completely(trials):
    for config, rows, trial_dir in trials:
        if config["seed"] != 0 or config["optimizer"] != "sgd":
            continue
        hp, last = hparams(trial_dir), rows[-1]
        cyclic = {"cyclic_min_lr", "cyclic_max_lr"} if config["arm"] == "cyclic" else set()
        assert set(hp) == {k for k, v in config.items() if v is not None} | {"lr"} | cyclic, config["arm"]
        # (torch's summary writes a bool as a number)
        assert hp["epochs"] == 1 and hp["batch_size"] == 32 and hp["normalize"] == 1 and hp["arm"] == config["arm"]
        lr = config["lr"] if config["arm"] == "manual" else last["cyclic_max_lr"] if cyclic else last["lr"]
        assert hp["lr"] == pytest.approx(lr)  # the LR it trained with (the top of the cycle)
        if cyclic:
            assert hp["cyclic_min_lr"] == pytest.approx(last["cyclic_min_lr"]) and "finder_rule" in hp


def test_a_diverged_trial_counts_the_compute_it_spent(tmp_path):
    """Its last row's train_time_s covers the steps up to the NaN: a search that tried a diverging
    LR paid for it (the strategies' compute)."""
    data = load_dataset(str(make_idx_dir(tmp_path / "idx")), val_size=STUDY.val_size, strict_counts=False)
    config = {**trial_points(STUDY)[0], "arm": "manual", "lr": 1e4, "finder_rule": None, "optimizer": "sgd"}
    rows = []
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            run_trial(config, data, tmp_path, None, {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
        finally:
            torch.set_num_threads(threads)
    [row] = rows
    assert row["diverged"] is True and row["epoch"] == 0 and row["train_time_s"] > 0
