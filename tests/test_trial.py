"""A trial depends only on its own config: what trainables/ imports, the search space Ray Tune
gets, and the paired design's premise (real Lightning trials on tiny generated data, no Ray)."""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import shutil
from dataclasses import replace
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
from trainables.files import FINDER_FILE
from trainables.model import lenet5
from trainables.trainable import CHECKPOINT_FILE, run_trial
from trainables.work import Counting

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
    # ... and its work: the steps before the batch whose loss was NaN (all full batches of 32)
    steps = int(re.search(r"at epoch 0, batch (\d+)", row["diverged_reason"]).group(1))
    assert steps >= 1 and row["steps"] == steps and row["finder_steps"] == 0
    assert row["samples"] == 32 * steps and row["eval_samples"] == 0
    assert row["flops"] == steps * 32 * LENET_TRAIN


# -- the work a trial counts (trainables/work.py) ------------------------------------------------
# LeNet-5's FLOPs per 28x28 image, by hand (2 per multiply-add; torch's counter counts convolutions
# and matrix products): conv1 2 x 6 x 28 x 28 x 25 = 235,200; conv2 2 x 16 x 10 x 10 x 150 =
# 480,000; the FC layers 2 x (400 x 120 + 120 x 84 + 84 x 10) = 117,840: a forward pass is 833,040.
# Backward computes every weight's gradient (833,040 again) and every layer's input gradient but
# the image's (833,040 - 235,200 = 597,840).
LENET_EVAL = 833_040
LENET_TRAIN = 2 * LENET_EVAL + (LENET_EVAL - 235_200)  # 2,263,920 per image


def test_lenet_flops_are_counted_as_worked_out_by_hand_on_a_real_step():
    """`Counting` around real work, as a trial counts its first step and validation batch."""
    net, counting = lenet5(), Counting()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    counting.start()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    assert counting.stop() == 64 * LENET_TRAIN  # 144,890,880
    counting.start()
    with torch.no_grad():
        net(x[:32])
    assert counting.stop() == 32 * LENET_EVAL  # linear in the batch
    assert counting.stop() is None  # nothing running


# 420 images, 100 of them for validation: 320 = 10 full batches of 32 an epoch; 100 test images.
WORK_STUDY = replace(STUDY, arms=("finder", "manual"), optimizer=("sgd",), seeds=1, epochs=2)
WORK_KEYS = ("steps", "finder_steps", "samples", "finder_samples", "eval_samples", "flops",
             "flops_per_train_step", "flops_per_eval_sample")


@pytest.fixture(scope="module")
def work_trials(tmp_path_factory) -> dict[str, tuple[list[dict], list[dict], Path]]:
    """WORK_STUDY's finder and manual trials, each run twice: arm -> (rows, rows again, trial dir)."""
    data = load_dataset(str(make_idx_dir(tmp_path_factory.mktemp("idx"), n_train=420)),
                        val_size=WORK_STUDY.val_size, strict_counts=False)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (320, 100, 100)
    threads, out = torch.get_num_threads(), {}
    with pytest.MonkeyPatch.context() as mp:
        rows = []
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            for config in trial_points(WORK_STUDY):
                runs = []
                for _ in range(2):
                    trial_dir = tmp_path_factory.mktemp(config["arm"])
                    run_trial(config, data, trial_dir, None, {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
                    runs.append(rows[:])
                    rows.clear()
                out[config["arm"]] = (*runs, trial_dir)
        finally:
            torch.set_num_threads(threads)
    return out


def test_a_trial_counts_its_range_test_training_and_evaluation(work_trials):
    """Every epoch's row: steps = epochs so far x 10 batches; the range test's steps are the points
    of its curve; FLOPs = (range-test steps + steps) x the per-step figure + evaluated images x the
    per-image one (validation's 100 every epoch, the test set's 100 at the last)."""
    assert set(work_trials) == {"finder", "manual"}
    for arm, (rows, _, trial_dir) in work_trials.items():
        finder_steps = len(json.loads((trial_dir / FINDER_FILE).read_text())["lr"]) if arm == "finder" else 0
        assert (finder_steps > 0) == (arm == "finder")
        assert [r["epoch"] for r in rows] == [0, 1]
        for r in rows:
            epochs = r["epoch"] + 1
            assert r["flops_per_train_step"] == 32 * LENET_TRAIN and r["flops_per_eval_sample"] == LENET_EVAL
            assert r["finder_steps"] == finder_steps and r["finder_samples"] == 32 * finder_steps, arm
            assert r["steps"] == 10 * epochs and r["samples"] == 32 * (finder_steps + r["steps"]), arm
            assert r["eval_samples"] == 100 * epochs + (100 if epochs == 2 else 0), arm
            assert r["flops"] == (finder_steps + r["steps"]) * 32 * LENET_TRAIN + r["eval_samples"] * LENET_EVAL, arm
        assert rows[-1]["steps"] == 2 * 10 and rows[-1]["eval_samples"] == 300


def test_two_runs_of_one_trial_count_the_same_work(work_trials):
    for arm, (rows, again, _) in work_trials.items():
        assert [{k: r[k] for k in WORK_KEYS} for r in rows] == [{k: r[k] for k in WORK_KEYS} for r in again], arm


# -- LR schedules (--lr-schedule): 320 training images, 10 batches of 32 an epoch, 20 steps in all -------
SCHEDULE_STUDY = replace(WORK_STUDY, arms=("finder", "manual", "cyclic"), lr_schedule=("constant", "onecycle", "cosine"))


@pytest.fixture(scope="module")
def schedule_trials(tmp_path_factory) -> dict[tuple[str, str], tuple[dict, list[dict], Path, list[Path]]]:
    """SCHEDULE_STUDY's trials, run by `run_trial` as Ray runs them fresh: (arm, schedule) -> (config,
    rows, trial dir, a copy of each epoch's checkpoint); and "data"."""
    data = load_dataset(str(make_idx_dir(tmp_path_factory.mktemp("idx"), n_train=420)),
                        val_size=SCHEDULE_STUDY.val_size, strict_counts=False)
    threads, out = torch.get_num_threads(), {"data": data}
    with pytest.MonkeyPatch.context() as mp:
        rows, saved = [], []

        def report(metrics, checkpoint=None):
            rows.append(dict(metrics))
            saved.append(Path(shutil.copytree(checkpoint.path, tmp_path_factory.mktemp("checkpoint"), dirs_exist_ok=True)))

        mp.setattr(tune, "report", report)
        try:
            for config in trial_points(SCHEDULE_STUDY):
                trial_dir = tmp_path_factory.mktemp(config["arm"])
                run_trial(config, data, trial_dir, None, {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
                out[config["arm"], config["lr_schedule"]] = (config, rows[:], trial_dir, saved[:])
                rows.clear()
                saved.clear()
        finally:
            torch.set_num_threads(threads)
    return out


def test_the_range_test_is_the_same_under_every_schedule(schedule_trials):
    """It runs before the schedule starts, on a probe without one: its curve and picks do not change."""
    for arm in ("finder", "cyclic"):
        curves = [json.loads((schedule_trials[arm, s][2] / FINDER_FILE).read_text()) for s in SCHEDULE_STUDY.lr_schedule]
        for curve in curves[1:]:
            assert {k: curve[k] for k in ("lr", "loss_raw", "loss_lightning", "suggestions")} == \
                {k: curves[0][k] for k in ("lr", "loss_raw", "loss_lightning", "suggestions")}, arm


def test_each_epoch_reports_the_schedules_rate_at_its_end_peaking_at_the_arms_lr(schedule_trials):
    """The LR the optimiser holds when epoch 0 ends (after step 10 of 20) and when the training
    ends (after step 20). cosine: a warm-up of int(0.05 x 20) = 1 step, then cosine decay over 19
    steps: peak x (1 + cos(9 pi / 19)) / 2, then 0. onecycle: the peak at step 0.3 x 20 - 1 = 5,
    then down to peak / 25e4 at step 19: after step 10, peak / 25e4 + (peak - peak / 25e4) x
    (1 + cos(5 pi / 14)) / 2."""
    for arm in ("manual", "finder"):
        peak = SCHEDULE_STUDY.lrs[0] if arm == "manual" else \
            json.loads((schedule_trials[arm, "constant"][2] / FINDER_FILE).read_text())["suggestion"]
        rates = {s: [r["lr"] for r in schedule_trials[arm, s][1]] for s in SCHEDULE_STUDY.lr_schedule}
        low = peak / 25e4
        assert rates["constant"] == [peak, peak], arm
        assert rates["cosine"] == [pytest.approx(peak * (1 + math.cos(9 * math.pi / 19)) / 2, rel=1e-9),
                                   pytest.approx(0.0, abs=1e-15)], arm
        assert rates["onecycle"][0] == pytest.approx(low + (peak - low) * (1 + math.cos(5 * math.pi / 14)) / 2, rel=1e-9), arm
        for s in SCHEDULE_STUDY.lr_schedule:  # and the trial's config says which schedule it trained with
            config, _, trial_dir, _ = schedule_trials[arm, s]
            assert config["lr_schedule"] == hparams(trial_dir)["lr_schedule"] == s


def test_the_cyclic_arm_keeps_its_own_cycle_whatever_the_schedule(schedule_trials):
    metrics = [[(r["lr"], r["val_acc"], r["train_loss"]) for r in schedule_trials["cyclic", s][1]]
               for s in SCHEDULE_STUDY.lr_schedule]
    assert metrics[0] == metrics[1] == metrics[2] and metrics[0][0][0] != metrics[0][1][0]


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_restored_trial_resumes_its_schedule_where_it_stopped(schedule_trials, tmp_path, schedule):
    """Restarted from its checkpoint of epoch 0, as Ray restarts a trial whose worker died, a trial's
    epoch 1 is the uninterrupted trial's: the same rate at its end, the same training."""
    config, fresh, _, saved = schedule_trials["manual", schedule]
    assert (saved[0] / CHECKPOINT_FILE).exists()
    rows = []
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            run_trial(config, schedule_trials["data"], tmp_path, tune.Checkpoint.from_directory(saved[0]),
                      {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
        finally:
            torch.set_num_threads(threads)
    [row] = rows
    keys = ("epoch", "lr", "train_loss", "val_loss", "val_acc", "test_acc", "steps")
    assert {k: row[k] for k in keys} == {k: fresh[1][k] for k in keys}
    assert fresh[0]["lr"] != fresh[1]["lr"]
