"""Any metric, in either direction (issue 31, item 2), on hand-built experiments: the best manual LR,
paired differences, verdicts, time-to-target, tables and figures on a setting's own metric; a
verdict on one seed; figures that show every trial and number every axis; old experiments."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from study import analysis, figures, report, tables, verdicts
from study.config import StudyConfig, metric_settings, objective, with_task_defaults
from study.config import test_metric as counterpart
from study.experiment import EPOCH_COLUMNS, TRIAL_COLUMNS, Experiment, _with_objective
from study.figures.epochs import METRIC
from study.space import trial_points
from trainables import tasks

CONFIG = {"search": "grid", "task": ["fashion-lenet"], "optimizer": ["sgd"], "lr_schedule": ["constant"],
          "finder_rules": ["valley"], "arms": ["finder", "manual"], "seeds": 2, "seed": 0, "epochs": 2}


def hand_built(values: dict, metric="val_mae", mode="min", target=0.4, seeds=(0, 1), epochs=2, config=None,
               flops=(1.3e12, 6.5e12)) -> Experiment:
    """An experiment of `values`: arm key -> per seed, the validation metric of each epoch (the test
    metric is the last one plus 0.01). `metric` None: an old experiment, val_acc, no metric columns."""
    name = metric or "val_acc"
    tested = counterpart(name)
    trials, rows = [], []
    for key, by_seed in values.items():
        arm = key.split(":")[0]
        lr = float(key.split(":")[1]) if arm == "manual" else 0.007
        for seed in seeds:
            curve = by_seed[seed][:epochs]
            tid = f"{key}-{seed}"
            work = flops[0] if arm == "finder" else flops[1] / (len(values) - 1)
            for epoch, v in enumerate(curve):
                rows.append({"trial_id": tid, "epoch": epoch, name: v, "val_loss": v + 1, "train_loss": v + 1.1,
                             "train_acc": 0.5, "lr": lr, "train_time_s": 10.0 * (epoch + 1), "flops": work * (epoch + 1) / len(curve),
                             "report_ts": len(rows), **({tested: v + 0.01, "test_loss": v + 1} if epoch == len(curve) - 1 else {})})
            trials.append({"trial_id": tid, "setting": "sgd", "arm": arm, "arm_key": key, "optimizer": "sgd",
                           "finder_rule": "valley" if arm == "finder" else None, "lr": lr, "seed": seed, "status": "finished",
                           "epochs": len(curve), "time_s": 10.0 * len(curve) + (5.0 if arm == "finder" else 0.0),
                           "flops": work, name: curve[-1], "val_loss": curve[-1] + 1, tested: curve[-1] + 0.01,
                           "test_loss": curve[-1] + 1, "finder_time_s": 5.0 if arm == "finder" else None,
                           "train_time_s": 10.0 * len(curve), "dir": tid, "error": None, "task": "fashion-lenet",
                           "lr_schedule": "constant",
                           **({"metric": metric, "mode": mode, "target": target} if metric else {})})
    trial_frame = pd.DataFrame(trials).reindex(columns=[*TRIAL_COLUMNS, *(c for c in trials[0] if c not in TRIAL_COLUMNS)])
    if not metric:
        trial_frame = trial_frame.drop(columns=["metric", "mode", "target"])
    epoch_frame = pd.DataFrame(rows).reindex(columns=[*EPOCH_COLUMNS, *([name, tested] if name not in EPOCH_COLUMNS else [])])
    study = {"config": {**CONFIG, "seeds": len(seeds), **(config or {"metric": "val_acc", "mode": "max", "target": None})}}
    return Experiment("hand", study, trial_frame, epoch_frame, {})


# val_mae by seed and epoch: the lower LR is better here, and the finder in between
REGRESSION = {"finder": {0: [0.6, 0.35], 1: [0.6, 0.37]},
              "manual:0.01": {0: [0.5, 0.30], 1: [0.5, 0.32]},
              "manual:0.1": {0: [0.9, 0.80], 1: [0.9, 0.84]}}


def test_test_metric_is_the_validation_metric_with_test_for_val():
    assert [counterpart(m) for m in ("val_acc", "val_mae", "val/acc", "val_loss")] == ["test_acc", "test_mae", "test/acc", "test_loss"]
    assert objective(0.3, "min") == -0.3 and objective(0.3, "max") == 0.3 and math.isnan(objective(None, "max"))
    assert metric_settings({"target_acc": 0.9}) == {"metric": "val_acc", "mode": "max", "target": 0.9}


def test_a_minimised_metric_picks_the_lowest_manual_lr_and_compares_in_its_direction():
    s = analysis.summarize(hand_built(REGRESSION))
    setting = s["settings"]["sgd"]
    assert {k: setting[k] for k in ("metric", "test_metric", "mode", "target")} == \
        {"metric": "val_mae", "test_metric": "test_mae", "mode": "min", "target": 0.4}
    assert setting["best_manual"] == "manual:0.01"  # the lowest mean val_mae, not the highest
    pair = setting["vs_best_manual"]["finder"]
    assert pair["metric"] == "test_mae" and pair["test_mae_diff"]["values"] == pytest.approx([0.05, 0.05])
    assert s["arms"]["finder"]["test_mae"]["mean"] == pytest.approx(0.37)
    grid = next(r for r in setting["strategies"] if r["kind"] == "search")
    assert grid["test_mae"]["mean"] == pytest.approx(0.32)  # it delivers its lowest-val_mae trial
    assert setting["search_progress"]["0"]["best_val_mae"] == [0.5, 0.3, 0.3, 0.3]  # best so far: the lowest
    # time to target: the first epoch at or below 0.4, in the order things ran
    finder = [t for t in s["trials"] if t["arm"] == "finder"]
    assert [t["time_to_target_s"] for t in finder] == [25.0, 25.0]  # 20 s of training + the 5 s range test
    assert all(t["time_to_target_s"] is None for t in s["trials"] if t["arm_key"] == "manual:0.1")
    assert grid["reached_target"] == 2 and grid["compute_to_target_s"]["values"] == [20.0, 20.0]  # manual:0.01 ran first
    lines = verdicts.verdicts(s)["sgd"]
    assert "test_mae" in lines[0] and "0.32" in lines[0]
    assert "finder (valley) vs best manual (lr=0.01): +0.05 ± 0 test_mae (minimised) over 2 seeds" in lines[1]
    assert lines[1].endswith("FLOPs for the whole manual search, per seed; 25.0 s vs 40.0 s): worse than best manual.")
    assert "worse than best manual" in lines[1] and "points" not in lines[1]
    arms = tables.arms_frame(setting)
    assert list(arms.columns[3:5]) == ["test_mae [95% CI]", "val_mae [95% CI]"] and arms.iloc[0, 3] == "0.37 [0.2429, 0.4971]"


def test_a_setting_without_a_target_has_no_time_to_target():
    s = analysis.summarize(hand_built(REGRESSION, target=None))
    setting = s["settings"]["sgd"]
    assert setting["target"] is None and s["target"] is None
    assert all(t["time_to_target_s"] is None and t["flops_to_target"] is None for t in s["trials"])
    assert all(r["reached_target"] is None for r in setting["strategies"])
    assert set(tables.strategies_frame(setting)["reached target"]) == {"n/a"}
    text = report.render_markdown(s, {k: "skipped" for k in figures.FIGURES})
    assert "Compute to target: not applicable (no target set)" in text and "not applicable, this setting has no target" in text


def test_one_seed_verdicts_give_the_difference_and_claim_no_winner():
    """The default study's case: a finder 0.06 points behind the grid for 4.9x less work, one seed."""
    values = {"finder": {0: [0.80, 0.8950]}, "manual:0.01": {0: [0.80, 0.8956]}, "manual:0.1": {0: [0.5, 0.6]}}
    s = analysis.summarize(hand_built(values, metric="val_acc", mode="max", target=0.88, seeds=(0,)))
    strategy, arm = verdicts.verdicts(s)["sgd"]
    assert "one seed cannot separate two strategies" in strategy and "nothing cheaper" not in strategy
    assert "-0.06 points, 5.0x less compute" in strategy and "finder" in strategy
    assert arm.endswith(", 5.0x less compute (1.3e12 vs 6.5e12 FLOPs for the "
                        "whole manual search, per seed; 25.0 s vs 40.0 s): one seed cannot separate two strategies.") and "-0.06 points of test accuracy over 1 seed" in arm


def test_one_seed_verdict_names_the_most_accurate_of_equally_cheap_finder_rules():
    """The default study: Lightning's rule (listed first) at chance and `valley` level with the grid,
    at the same cost; the verdict is `valley`'s, not the first rule's."""
    values = {"finder": {0: [0.10, 0.0990]}, "finder:valley": {0: [0.80, 0.8950]},
              "manual:0.01": {0: [0.80, 0.8956]}, "manual:0.1": {0: [0.5, 0.6]}}
    s = analysis.summarize(hand_built(values, metric="val_acc", mode="max", target=0.88, seeds=(0,)))
    strategy = verdicts.verdicts(s)["sgd"][0]
    assert "the cheapest strategy besides the search, finder:valley (" in strategy and "-0.06 points" in strategy, strategy


def test_an_old_experiment_with_target_acc_and_no_metric_still_analyses():
    values = {"finder": {0: [0.8, 0.9], 1: [0.8, 0.9]}, "manual:0.01": {0: [0.7, 0.85], 1: [0.7, 0.86]},
              "manual:0.1": {0: [0.5, 0.6], 1: [0.5, 0.6]}}
    s = analysis.summarize(hand_built(values, metric=None, config={"target_acc": 0.88}))
    assert (s["metric"], s["mode"], s["target"], s["test_metric"]) == ("val_acc", "max", 0.88, "test_acc")
    assert s["settings"]["sgd"]["best_manual"] == "manual:0.01" and "test_acc" in s["arms"]["finder"]
    assert [t["time_to_target_s"] for t in s["trials"] if t["arm"] == "finder"] == [25.0, 25.0]


def test_the_reader_derives_objective_from_the_trials_metric_when_not_reported():
    rows = pd.DataFrame({"trial_id": ["a", "a", "b"], "val_mae": [0.5, 0.4, 1e9], "val_acc": [0.1, 0.2, 0.3],
                         "diverged": [None, None, True]})
    out = _with_objective(rows, {"a": {"metric": "val_mae", "mode": "min"}, "b": {"metric": "val_acc", "mode": "max"}})
    assert out["objective"].tolist()[:2] == [-0.5, -0.4] and math.isnan(out["objective"].iloc[2])
    given = _with_objective(rows.assign(objective=[1.0, 2.0, 3.0]), {"a": {"metric": "val_mae", "mode": "min"},
                                                                       "b": {"metric": "val_acc", "mode": "max"}})
    assert given["objective"].tolist() == [1.0, 2.0, 3.0]


def test_the_metric_settings_are_in_every_trials_config_and_the_builtin_tasks_target_088():
    config = StudyConfig()
    assert (config.metric, config.mode, config.target) == ("val_acc", "max", None)
    lenet = with_task_defaults(config, tasks.BUILTIN["fashion-lenet"].defaults, given=set())
    assert {(p["metric"], p["mode"], p["target"]) for p in trial_points(config, {"fashion-lenet": lenet})} == {("val_acc", "max", 0.88)}
    assert with_task_defaults(config, {"target": 0.88}, given={"target"}).target is None  # a flag given wins
    assert tasks.BUILTIN["fashion-resnet"].defaults == {"epochs": 5, "target": 0.88}


def _labelled(ax, axis) -> list[str]:
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = (ax.xaxis if axis == "x" else ax.yaxis).get_major_ticks()
    locs = (ax.xaxis if axis == "x" else ax.yaxis).get_majorticklocs()
    return [t.label1.get_text() for t, loc in zip(ticks, locs) if lo <= loc <= hi and t.label1.get_visible()
            and t.label1.get_text()]


@pytest.mark.parametrize("metric, mode", [("val_mae", "min"), ("val_acc", "max")])
def test_every_axis_of_every_figure_has_numbers(metric, mode, tmp_path):
    """compute_vs_accuracy.png's work spans 1.3e12 to 6.5e12 FLOPs, less than a decade: numbered too."""
    values = REGRESSION if metric == "val_mae" else {k: {s: [1 - v for v in c] for s, c in by.items()} for k, by in REGRESSION.items()}
    experiment = hand_built(values, metric=metric, mode=mode, target=0.4 if mode == "min" else 0.6)
    s = analysis.summarize(experiment)
    drawn = {"test_vs_lr": figures.plot_test_metric_vs_lr(s), "metric": figures.plot_epochs(experiment, s, (METRIC,)),
             "curves": figures.plot_epochs(experiment, s, ("train_loss", "lr")),
             "compute": figures.plot_compute_vs_accuracy(s), "search": figures.plot_search_progress(s)}
    compute = drawn["compute"].axes[0]
    assert compute.get_xscale() == "log" and 1 < compute.get_xlim()[1] / compute.get_xlim()[0] < 10
    for name, fig in drawn.items():
        assert fig is not None, name
        FigureCanvasAgg(fig).draw()
        for ax in (a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"):
            for axis in "xy":
                assert len(_labelled(ax, axis)) >= 2, (name, ax.get_title(), axis, ax.get_xlim(), ax.get_ylim())
    assert drawn["test_vs_lr"].axes[0].get_ylabel() == counterpart(metric) or metric == "val_acc"
    assert drawn["metric"].axes[0].get_ylabel() == metric
    targets = [line for line in drawn["metric"].axes[0].lines if line.get_label().startswith("target")]
    assert [line.get_ydata()[0] for line in targets] == [0.4 if mode == "min" else 0.6]
    aimless = hand_built(values, metric=metric, mode=mode, target=None)
    fig = figures.plot_epochs(aimless, analysis.summarize(aimless), (METRIC,))
    assert not [line for line in fig.axes[0].lines if line.get_label().startswith("target")]


def test_a_one_epoch_study_draws_every_trial_as_a_marker():
    """1 epoch: a curve of one point has no line segment; each trial is a marker."""
    values = {"finder": {s: [0.5 + s / 100] for s in range(25)},
              **{f"manual:{lr:g}": {s: [0.4 + s / 100] for s in range(25)} for lr in (0.001, 0.01, 0.1)}}
    experiment = hand_built(values, metric="val_acc", mode="max", seeds=tuple(range(25)), epochs=1)
    s = analysis.summarize(experiment)
    fig = figures.plot_epochs(experiment, s, (METRIC,))
    ax = fig.axes[0]
    [manual] = [c for c in ax.collections if c.get_gid() == "points: manual finished"]
    assert len(manual.get_offsets()) == 75 and manual.get_sizes()[0] > 0
    [finder] = [line for line in ax.lines if line.get_gid() == "finder finished points"]
    assert len(finder.get_xdata()) == 25 and finder.get_marker() == "o" and finder.get_linestyle() == "None"
