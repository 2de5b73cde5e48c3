"""Batch size as a dimension of the study: settings kept apart, each trial's range test and
training at its own batch size (real Lightning trials on tiny generated data, no Ray), and the
figure of the LR against the batch size with its two scaling lines."""

from __future__ import annotations

import math

import pytest
import torch
from ray import tune

from study.config import StudyConfig, build_parser, config_from_args, setting_label
from study.figures.batch_size import plot_lr_vs_batch_size
from study.space import trial_points
from tests.conftest import make_idx_dir
from trainables.data import load_dataset
from trainables.trainable import run_trial

STUDY = StudyConfig(arms=("finder", "manual"), finder_rules=("valley",), lrs=(0.01,), batch_size=(16, 32), epochs=1,
                    val_size=100, finder_max_lr=0.1, finder_num_training=8)


def test_batch_sizes_are_comma_separated_and_each_is_a_setting_of_its_own():
    config = config_from_args(build_parser("t", "t").parse_args(["--batch-size", "16,32"]))
    assert config.batch_size == (16, 32) and StudyConfig().batch_size == (64,)  # the default study: one
    settings = config.settings()
    assert [s["batch_size"] for s in settings] == [16, 32]
    assert [setting_label(s, settings) for s in settings] == ["sgd/b16", "sgd/b32"]
    assert setting_label(StudyConfig().settings()[0], StudyConfig().settings()) == "sgd"  # unchanged labels
    points = trial_points(STUDY)
    assert [(p["arm"], p["batch_size"]) for p in points] == [("finder", 16), ("manual", 16), ("finder", 32), ("manual", 32)]


@pytest.fixture(scope="module")
def rows_by_batch_size(tmp_path_factory) -> dict[int, list[dict]]:
    data = load_dataset(str(make_idx_dir(tmp_path_factory.mktemp("idx"), n_train=420)), val_size=100, strict_counts=False)
    assert len(data.train_y) == 320
    threads, out = torch.get_num_threads(), {}
    with pytest.MonkeyPatch.context() as mp:
        rows = []
        mp.setattr(tune, "report", lambda metrics, **kw: rows.append(dict(metrics)))
        try:
            for config in trial_points(StudyConfig(**{**STUDY.__dict__, "arms": ("finder",)})):
                run_trial(config, data, tmp_path_factory.mktemp("trial"), None,
                          {"trial_start_ts": 0.0, "node_id": "n", "node_ip": "ip"})
                out[config["batch_size"]] = rows[:]
                rows.clear()
        finally:
            torch.set_num_threads(threads)
    return out


def test_each_trial_range_tests_and_trains_at_its_own_batch_size(rows_by_batch_size):
    """320 training images: 20 steps of 16 or 10 of 32 an epoch; the range test's steps of the same size."""
    assert set(rows_by_batch_size) == {16, 32}
    for b, rows in rows_by_batch_size.items():
        last = rows[-1]
        assert last["finder_steps"] > 0 and last["finder_samples"] == b * last["finder_steps"], b
        assert last["steps"] == 320 // b and last["samples"] == b * (last["finder_steps"] + last["steps"]), b
        assert last["flops_step_samples"] == b, b


def summary_of(best: dict[int, float], picks: dict[int, list[float]]) -> dict:
    """A summary (study/analysis.py's shape, what the figure reads) of one task, optimiser and
    schedule at the batch sizes of `best` (its best manual LR) with the valley rule's picks by seed."""
    settings = {f"sgd/b{b}": {"task": "fashion-lenet", "optimizer": "sgd", "lr_schedule": "constant", "batch_size": b,
                              "arms": {"manual": {"lr": {"values": [lr] * 3}}}} for b, lr in best.items()}
    trials = [{"setting": f"sgd/b{b}", "arm": "finder", "finder_rule": "valley", "lr": lr, "seed": s}
              for b, lrs in picks.items() for s, lr in enumerate(lrs)]
    return {"settings": settings, "trials": trials}


def test_the_batch_size_figure_draws_the_scaling_lines_from_the_smallest_batchs_best_lr():
    fig = plot_lr_vs_batch_size(summary_of({64: 0.01, 256: 0.03, 1024: 0.1},
                                           {64: [0.02, 0.05, 0.03], 256: [0.1, 0.2, 0.3], 1024: [1.0, 0.5, 0.4]}))
    ax = fig.axes[0]
    lines = {line.get_gid() or line.get_label(): line for line in ax.get_lines()}
    assert list(lines["linear"].get_xdata()) == [64, 256, 1024]
    assert list(lines["linear"].get_ydata()) == pytest.approx([0.01, 0.01 * 4, 0.01 * 16])  # lr0 x b / b0
    assert list(lines["sqrt"].get_ydata()) == pytest.approx([0.01, 0.01 * math.sqrt(4), 0.01 * math.sqrt(16)])
    assert list(lines["best manual LR"].get_ydata()) == pytest.approx([0.01, 0.03, 0.1])
    assert list(lines["finder (valley), median over seeds"].get_ydata()) == pytest.approx([0.03, 0.2, 0.5])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert plot_lr_vs_batch_size(summary_of({64: 0.01}, {64: [0.02]})) is None  # one batch size: nothing to draw
