"""study.analysis, study.report and study.analyze on a small real run (tests/conftest.py,
`recorded_study`): finder (lightning, valley), cyclic and manual LRs 0.01 and 50, SGD and Adam,
seeds 0 and 1, one epoch on 640 images.

Expected values come from the producer's own files (result.json, params.json, read here with
plain json) or from numbers worked out by hand, never from the calls the analysis itself makes.
Statistics are checked on the real tables with a few metrics overwritten by known values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from study import analysis, figures, report, tables, verdicts
from study import experiment as experiment_module
from study.analyze import main as analyze_main
from tests.conftest import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORDER = ["finder", "finder:valley", "cyclic", "manual:0.01", "manual:50"]  # within an optimiser and seed


@pytest.fixture(scope="module")
def recorded(recorded_study) -> Path:
    return recorded_study[0]


@pytest.fixture
def experiment(recorded) -> analysis.Experiment:
    return analysis.load(recorded)  # fresh tables: a test may overwrite values


@pytest.fixture
def exp_copy(recorded, tmp_path) -> Path:
    return Path(shutil.copytree(recorded, tmp_path / "exp", ignore=shutil.ignore_patterns("checkpoint_*")))


def result_rows(trial_dir: Path) -> list[dict]:
    """Ray's result.json, read independently of the analysis."""
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def trial(df: pd.DataFrame, optimizer: str, key: str, seed: int) -> pd.Series:
    [row] = df[(df["optimizer"] == optimizer) & (df["arm_key"] == key) & (df["seed"] == seed)].itertuples(index=False)
    return pd.Series(row._asdict())


def set_metric(experiment, optimizer: str, key: str, metric: str, by_seed: dict) -> None:
    t = experiment.trials
    for seed, value in by_seed.items():
        t.loc[(t["optimizer"] == optimizer) & (t["arm_key"] == key) & (t["seed"] == seed), metric] = value


# ---------------------------------------------------------------- the tables


def test_one_row_per_trial_in_the_studys_order(experiment, recorded):
    t = experiment.trials
    assert len(t) == 20 and t["trial_id"].is_unique
    assert sorted(t["dir"]) == sorted(p.name for p in recorded.iterdir() if (p / "params.json").is_file())
    # optimisers in the study's order; finder by rule, cyclic, then manual by LR; seeds last
    assert list(zip(t["optimizer"], t["arm_key"], t["seed"])) == [(o, k, s) for o in ("sgd", "adam") for k in ORDER for s in (0, 1)]
    assert list(t.columns[:len(analysis.TRIAL_COLUMNS)]) == list(analysis.TRIAL_COLUMNS)


def test_one_row_per_trial_and_epoch_from_rays_rows(experiment, recorded):
    for row in experiment.trials.itertuples():
        rows = result_rows(recorded / row.dir)
        mine = experiment.epochs[experiment.epochs["trial_id"] == row.trial_id]
        assert list(mine["epoch"]) == [r["epoch"] for r in rows] == [0]
        last = rows[-1]
        assert row.val_acc == pytest.approx(last["val_acc"], nan_ok=True) and row.epochs == 1
        if row.status == "finished":
            assert row.test_acc == pytest.approx(last["test_acc"]) and row.test_loss == pytest.approx(last["test_loss"])
        finder = last.get("finder_time_s", 0.0) if row.arm != "manual" else 0.0
        assert row.time_s == pytest.approx(last["train_time_s"] + finder)
        config = json.loads((recorded / row.dir / "params.json").read_text())
        assert (row.arm, row.optimizer, row.seed, row.epochs) == (config["arm"], config["optimizer"], config["seed"], config["epochs"])


def test_a_torn_last_line_of_a_result_file_is_left_out(exp_copy):
    """A driver killed while writing leaves half a line at the end of a result.json: the epochs
    before it are read as they are, the analysis goes on."""
    before = analysis.load(exp_copy)
    torn = exp_copy / before.trials["dir"].iloc[0] / "result.json"
    torn.write_text(torn.read_text() + '{"val_acc": 0.99, "epoch": 1, "training_iter')
    after = analysis.load(exp_copy)
    pd.testing.assert_frame_equal(after.epochs, before.epochs)
    pd.testing.assert_series_equal(after.trials["val_acc"], before.trials["val_acc"])  # NaN: a diverged trial's


def test_lr_is_the_trained_one(experiment, recorded):
    for row in experiment.trials.itertuples():
        last = result_rows(recorded / row.dir)[-1]
        if row.arm == "manual":
            assert row.lr == json.loads((recorded / row.dir / "params.json").read_text())["lr"]
        elif row.arm == "finder":
            curve = json.loads((recorded / row.dir / "lr_finder.json").read_text())
            assert row.lr == pytest.approx(curve["suggestions"][row.finder_rule]) == pytest.approx(last["lr"])
        else:  # cyclic: the top of its cycle, which is the primary rule's pick
            assert row.lr == pytest.approx(last["cyclic_max_lr"]) and row.cyclic_min_lr == pytest.approx(row.lr / 10)


def test_a_finder_trials_lr_is_its_pick_not_where_its_lr_schedule_ended(exp_copy):
    """Under --lr-schedule onecycle or cosine, a finder trial's last reported lr is where its
    schedule ended (0 for cosine): its LR in the tables is still the pick, the schedule's peak."""
    finder = analysis.load(exp_copy).trials.query("arm == 'finder'").iloc[0]
    result = exp_copy / finder["dir"] / "result.json"
    result.write_text("".join(json.dumps({**r, "lr": 0.0}) + "\n" for r in result_rows(exp_copy / finder["dir"])))
    [lr] = analysis.load(exp_copy).trials.query("dir == @finder.dir")["lr"]
    assert lr == finder["lr"] > 0


def test_the_result_rows_are_those_ray_tune_reads(recorded, experiment):
    """The analysis reads every result.json once into one table (Ray Tune's ExperimentAnalysis would
    build a DataFrame per trial): the same rows, epoch by epoch, as Ray Tune's own reader gives."""
    from ray import tune

    theirs = tune.ExperimentAnalysis(str(recorded)).trial_dataframes
    assert set(theirs) == set(experiment.trials["trial_id"])
    for tid, df in theirs.items():
        mine = experiment.epochs[experiment.epochs["trial_id"] == tid]
        assert mine["epoch"].tolist() == df["epoch"].tolist()
        for col in ("train_loss", "val_acc", "val_loss", "lr", "train_time_s", "report_ts"):
            np.testing.assert_allclose(mine[col].astype(float), df[col].astype(float), err_msg=f"{tid} {col}")


def test_work_is_each_trials_last_row_and_the_finders_ratio_to_the_grid_is_one_of_steps(experiment):
    """640 training images are 10 steps of 64 an epoch; 58 validation and 116 test images are
    evaluated (one epoch). The finder's ratio to the grid is (range-test steps + training steps) /
    the grid's training steps, each weighed by torch's FLOPs per step, plus evaluation."""
    from tests.test_trial import LENET_EVAL, LENET_TRAIN

    step, t = 64 * LENET_TRAIN, experiment.trials
    adam = t[(t["optimizer"] == "adam") & (t["status"] == "finished")]
    assert (adam["steps"] == 10).all() and (adam["eval_samples"] == 58 + 116).all()
    assert (adam["samples"] == 640 + 64 * adam["finder_steps"]).all() and (adam["finder_steps"] > 0).sum() == 6
    assert (adam["flops"] == (adam["finder_steps"] + 10) * step + 174 * LENET_EVAL).all()
    s = analysis.summarize(experiment)["settings"]["adam"]
    finder = adam[adam["arm_key"] == "finder"]
    grid = 2 * (10 * step + 174 * LENET_EVAL)  # LRs 0.01 and 50 per seed (adam does not diverge at 50)
    assert s["compute"]["manual_over_finder_flops"] == pytest.approx(grid / finder["flops"].mean(), rel=1e-12)
    steps_only = 2 * 10 / (finder["finder_steps"].mean() + 10)  # evaluation is the rest: under 10 % here
    assert s["compute"]["manual_over_finder_flops"] == pytest.approx(steps_only, rel=0.1)
    [search] = [r for r in s["strategies"] if r["kind"] == "search"]
    assert search["compute_flops"]["values"] == [grid, grid]
    assert s["arms"]["finder"]["flops"]["values"] == finder["flops"].tolist()


def test_statuses(experiment):
    t = experiment.trials
    assert set(t.loc[t["lr"] != 50, "status"]) == {"finished"}
    sgd50 = t[(t["optimizer"] == "sgd") & (t["arm_key"] == "manual:50")]
    assert list(sgd50["status"]) == ["diverged", "diverged"] and sgd50["test_acc"].isna().all()


@pytest.mark.parametrize("ray_status, rows, diverged, status", [
    ("TERMINATED", 3, False, "finished"), ("TERMINATED", 2, False, "pruned"), ("TERMINATED", 1, True, "diverged"),
    ("ERROR", 0, False, "error"), ("ERROR", 3, False, "error"), ("RUNNING", 1, False, "unfinished"),
    ("PENDING", 0, False, "unfinished"),
])
def test_status_rules(ray_status, rows, diverged, status):
    assert experiment_module._status(ray_status, rows, diverged, planned=3) == status


def test_range_tests_one_per_seed_with_every_rule(experiment, recorded):
    """One per seed: its points as the trial's lr_finder.json has them (at most --finder-num-training;
    fewer where Lightning stopped a diverging test, its early_stop_threshold), every rule's pick."""
    s = analysis.summarize(experiment)
    for opt in ("sgd", "adam"):
        tests = s["settings"][opt]["range_tests"]
        assert [r["seed"] for r in tests] == [0, 1]
        for r in tests:
            f = trial(experiment.trials, opt, "finder:valley", r["seed"])
            curve = json.loads((recorded / f.dir / "lr_finder.json").read_text())
            assert r["points"] == len(curve["lr"]) <= 100 and r["points"] > 50
            assert set(r["suggestions"]) == {"lightning", "steepest", "valley", "minimum", "steep", "slide"}
            assert f.lr == pytest.approx(r["suggestions"]["valley"])


# ---------------------------------------------------------------- statistics, with expectations worked out by hand


def test_arm_mean_and_interval(experiment):
    set_metric(experiment, "sgd", "finder", "test_acc", {0: 0.80, 1: 0.90})
    a = analysis.summarize(experiment)["settings"]["sgd"]["arms"]["finder"]["test_acc"]
    # mean 0.85, sd 0.0707107, sem 0.05, t(0.975, df=1) = 12.7062
    assert a["n"] == 2 and a["mean"] == pytest.approx(0.85) and a["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert a["ci95"] == pytest.approx([0.85 - 0.635310, 0.85 + 0.635310], rel=1e-5)


def test_paired_difference_interval_and_p(experiment):
    set_metric(experiment, "sgd", "manual:0.01", "test_acc", {0: 0.85, 1: 0.80})
    set_metric(experiment, "sgd", "finder", "test_acc", {0: 0.90, 1: 0.80})
    p = analysis.summarize(experiment)["settings"]["sgd"]["vs_best_manual"]["finder"]
    # differences .05 and 0: mean .025, sem .025, t = 1 with df 1, so p = 0.5; half-width 12.7062 x .025
    assert p["against"] == "manual:0.01" and p["n"] == 2 and p["seeds"] == [0, 1]
    assert p["test_acc_diff"]["mean"] == pytest.approx(0.025) and p["p_value"] == pytest.approx(0.5)
    assert p["test_acc_diff"]["ci95"] == pytest.approx([0.025 - 0.317655, 0.025 + 0.317655], rel=1e-5)


def test_paired_skips_a_seed_where_either_did_not_finish(experiment):
    experiment.trials.loc[(experiment.trials["arm_key"] == "cyclic") & (experiment.trials["seed"] == 1), "status"] = "error"
    p = analysis.summarize(experiment)["settings"]["adam"]["vs_best_manual"]["cyclic"]
    assert p["n"] == 1 and p["seeds"] == [0] and p["p_value"] is None and p["test_acc_diff"]["ci95"] is None


def test_best_manual_by_mean_validation_accuracy_never_test(experiment):
    t = experiment.trials
    t.loc[(t["optimizer"] == "sgd") & (t["arm_key"] == "manual:50"), "status"] = "finished"
    set_metric(experiment, "sgd", "manual:50", "val_acc", {0: 0.90, 1: 0.70})      # mean .80
    set_metric(experiment, "sgd", "manual:50", "test_acc", {0: 0.99, 1: 0.99})
    set_metric(experiment, "sgd", "manual:0.01", "val_acc", {0: 0.75, 1: 0.86})    # mean .805: the best
    set_metric(experiment, "sgd", "manual:0.01", "test_acc", {0: 0.50, 1: 0.50})
    s = analysis.summarize(experiment)["settings"]["sgd"]
    assert s["best_manual"] == "manual:0.01" and s["arms"]["manual"]["chosen"] == "manual:0.01"
    assert s["arms"]["manual"]["test_acc"]["mean"] == pytest.approx(0.50)


def test_best_manual_tie_goes_to_the_lower_validation_loss(experiment):
    t = experiment.trials
    t.loc[(t["optimizer"] == "sgd") & (t["arm_key"] == "manual:50"), "status"] = "finished"
    for key, loss in (("manual:0.01", 0.6), ("manual:50", 0.5)):
        set_metric(experiment, "sgd", key, "val_acc", {0: 0.8, 1: 0.8})
        set_metric(experiment, "sgd", key, "val_loss", {0: loss, 1: loss})
    assert analysis.summarize(experiment)["settings"]["sgd"]["best_manual"] == "manual:50"


def test_bayes_like_search_pairs_each_seed_with_its_own_best_manual_trial(experiment):
    """Seeds that tried different LRs (a Bayesian search) have no LR with a mean over seeds: the
    reference is each seed's best manual trial by validation accuracy, never test accuracy."""
    t = experiment.trials
    sgd = t["optimizer"] == "sgd"
    t.loc[sgd & (t["arm_key"] == "manual:50"), "status"] = "finished"
    for key, vals, tests in (("manual:0.01", {0: .90, 1: .70}, {0: .86, 1: .60}),
                             ("manual:50", {0: .80, 1: .95}, {0: .95, 1: .88})):
        set_metric(experiment, "sgd", key, "val_acc", vals)
        set_metric(experiment, "sgd", key, "test_acc", tests)
    set_metric(experiment, "sgd", "finder", "test_acc", {0: .90, 1: .80})
    seed1 = sgd & (t["arm"] == "manual") & (t["seed"] == 1)  # seed 1 tried LRs 0.02 and 100 instead
    t.loc[seed1, "lr"] = t.loc[seed1, "lr"] * 2
    t.loc[seed1, "arm_key"] = "manual:" + t.loc[seed1, "lr"].map("{:g}".format)
    s = analysis.summarize(experiment)["settings"]["sgd"]
    manual = s["arms"]["manual"]
    assert s["best_manual"] == manual["chosen"] == analysis.SEARCH_PICKS
    # seed 0 delivers LR 0.01 (val .90; test .86), seed 1 LR 100 (val .95; test .88)
    assert [(p["seed"], p["lr"], p["test_acc"]) for p in manual["picks"]] == [(0, 0.01, .86), (1, 100, .88)]
    assert manual["n"] == manual["n_trials"] == 2 and manual["test_acc"]["values"] == pytest.approx([.86, .88])
    pair = s["vs_best_manual"]["finder"]  # .90 - .86, .80 - .88
    assert pair["n"] == 2 and pair["test_acc_diff"]["values"] == pytest.approx([.04, -.08])
    summary = analysis.summarize(experiment)
    line = verdicts.verdict_lines(summary)[1]
    assert line.startswith("sgd: finder (lightning) vs each seed's best manual trial (lr 0.01, 100): -2.00 ± "), line
    fig = figures.plot_test_acc_vs_lr(summary)  # each seed's pick circled where it is
    [circles] = [c for c in fig.axes[0].collections if c.get_label().startswith("each seed's best")]
    assert circles.get_offsets().tolist() == [[0.01, 0.86], [100, 0.88]]


def test_compute_counts_every_manual_trial_of_a_seed(experiment):
    s = analysis.summarize(experiment)["settings"]["sgd"]
    t = experiment.trials
    manual = t[(t["optimizer"] == "sgd") & (t["arm"] == "manual")]
    by_seed = {seed: manual.loc[manual["seed"] == seed, "time_s"].tolist() for seed in (0, 1)}
    assert all(len(v) == 2 for v in by_seed.values())  # the diverged LR 50 counts too
    assert s["compute"]["manual_search_time_s_by_seed"] == [[0, pytest.approx(sum(by_seed[0]))], [1, pytest.approx(sum(by_seed[1]))]]
    finder = t[(t["optimizer"] == "sgd") & (t["arm_key"] == "finder")]["time_s"]
    assert s["compute"]["manual_over_finder"] == pytest.approx((sum(by_seed[0]) + sum(by_seed[1])) / 2 / finder.mean())


def test_time_to_target_adds_the_range_test(experiment, recorded):
    s = analysis.summarize(experiment, target=0.01)
    for row in s["trials"]:
        if row["status"] == "finished":
            last = result_rows(recorded / row["dir"])[-1]
            assert row["time_to_target_s"] == pytest.approx(last["train_time_s"] + (row["finder_time_s"] or 0.0))
    assert all(r["time_to_target_s"] is None for r in analysis.summarize(experiment, target=1.0)["trials"])


def strategy(summary: dict, optimizer: str, name: str) -> dict:
    [row] = [r for r in summary["strategies"] if r["optimizer"] == optimizer and r["strategy"] == name]
    return row


def test_strategies_compute_and_delivered_accuracy_per_seed(experiment):
    t = experiment.trials
    sgd = t["optimizer"] == "sgd"
    t.loc[sgd & (t["arm_key"] == "manual:50"), "status"] = "finished"
    for key, times, vals, tests in (("finder:valley", {0: 10.0, 1: 30.0}, {0: .5, 1: .5}, {0: .80, 1: .84}),
                                    ("manual:0.01", {0: 40.0, 1: 40.0}, {0: .90, 1: .70}, {0: .86, 1: .60}),
                                    ("manual:50", {0: 20.0, 1: 60.0}, {0: .80, 1: .95}, {0: .95, 1: .88})):
        set_metric(experiment, "sgd", key, "time_s", times)
        set_metric(experiment, "sgd", key, "flops", {seed: 1e9 * x for seed, x in times.items()})  # the work counted
        set_metric(experiment, "sgd", key, "val_acc", vals)
        set_metric(experiment, "sgd", key, "test_acc", tests)
    for key in ("finder", "cyclic"):  # far below: out of the race
        set_metric(experiment, "sgd", key, "test_acc", {0: .1, 1: .1})
    s = analysis.summarize(experiment)
    valley, grid = strategy(s, "sgd", "finder:valley"), strategy(s, "sgd", "grid search")
    assert valley["kind"] == "arm" and valley["compute_s"]["values"] == [10.0, 30.0] and valley["test_acc"]["mean"] == pytest.approx(.82)
    # the grid spends every manual trial of a seed (60, 100) and delivers the one with the best validation
    # accuracy (on seed 0 LR 0.01: .86, though LR 50 tests at .95)
    assert grid["kind"] == "search" and grid["compute_s"]["values"] == [60.0, 100.0]
    assert grid["compute_flops"]["values"] == [60e9, 100e9] and valley["compute_flops"]["values"] == [10e9, 30e9]
    assert grid["test_acc"]["values"] == pytest.approx([.86, .88]) and grid["seeds"] == [0, 1]
    # .87 [0.7429, 0.9971]: finder:valley's .82 [.5659, 1.0741] reaches it within its interval, at 2e10
    # FLOPs against 8e10 (the ratio is of work; the seconds are what it took on this host)
    line = verdicts.verdict_lines(s)[0]
    assert line == ("sgd: the cheapest strategy that reaches the grid search's test accuracy (87.00 %) within its "
                    "interval: finder:valley, 82.00 [56.59, 107.41] %, 2e10 FLOPs of compute per seed against 8e10 "
                    "FLOPs (4.0x less; 20.0 s against 80.0 s on this host), over 2 seeds."), line


def test_strategy_verdict_among_equally_cheap_strategies_names_the_most_accurate(experiment):
    """Finder rules cost the same (one range test, one training): a rule whose wide interval merely
    reaches the search's accuracy is not the verdict when an equally cheap rule is more accurate."""
    for key, tests in (("finder", {0: .10, 1: .95}),  # mean .525, its interval reaches .87
                       ("finder:valley", {0: .84, 1: .86}), ("cyclic", {0: .1, 1: .1}),
                       ("manual:0.01", {0: .86, 1: .88}), ("manual:50", {0: .5, 1: .5})):
        work = 1e10 if key.startswith(("finder", "cyclic")) else 4e10  # a range test and one training; a grid trial
        set_metric(experiment, "sgd", key, "flops", {0: work, 1: work})
        set_metric(experiment, "sgd", key, "test_acc", tests)
    line = verdicts.verdict_lines(analysis.summarize(experiment))[0]
    assert "within its interval: finder:valley, 85.00 [" in line, line


def test_search_compute_to_target_counts_every_trial_in_the_order_they_ran(experiment):
    t, e = experiment.trials, experiment.epochs
    ids = {key: trial(t, "sgd", key, 0).trial_id for key in ("manual:0.01", "manual:50")}
    for key, (ts, spent, val) in {"manual:50": (5.0, 3.0, 0.90), "manual:0.01": (10.0, 2.0, 0.50)}.items():
        e.loc[e["trial_id"] == ids[key], ["report_ts", "train_time_s", "val_acc"]] = [ts, spent, val]
    # a second epoch of LR 0.01: its train_time_s is cumulative (4.0), so it spent 2.0 more
    second = e[e["trial_id"] == ids["manual:0.01"]].assign(epoch=1, report_ts=12.0, train_time_s=4.0, val_acc=0.6)
    experiment.epochs = pd.concat([e, second], ignore_index=True)
    s = analysis.summarize(experiment, target=0.85)
    run = s["settings"]["sgd"]["search_progress"]["0"]  # by seed (a JSON key)
    assert {k: run[k] for k in ("compute_s", "best_val_acc")} == {"compute_s": [3.0, 5.0, 7.0], "best_val_acc": [0.90, 0.90, 0.90]}
    assert run["compute_flops"] == sorted(run["compute_flops"]) and len(run["compute_flops"]) == 3  # the work, alike
    assert strategy(s, "sgd", "grid search")["compute_to_target_s"]["values"][0] == 3.0


def test_top_level_finder_and_best_manual_are_the_first_optimisers_means(experiment):
    s = analysis.summarize(experiment)
    t = experiment.trials
    sgd_finder = t[(t["optimizer"] == "sgd") & (t["arm_key"] == "finder")]
    assert s["finder"]["test_acc"] == pytest.approx(sgd_finder["test_acc"].mean())
    assert s["finder"]["lr"] == pytest.approx(sgd_finder["lr"].mean()) and s["finder"]["n"] == 2
    assert s["best_manual"]["chosen"] == s["settings"]["sgd"]["best_manual"]
    assert s["arms"] == s["settings"]["sgd"]["arms"] and s["optimizers"] == ["sgd", "adam"]


def test_not_an_experiment(tmp_path, recorded):
    with pytest.raises(analysis.NotAnExperiment, match="no such directory"):
        analysis.load(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    with pytest.raises(analysis.NotAnExperiment, match="no study.json"):
        analysis.load(tmp_path / "junk")
    shutil.copy(recorded / "study.json", tmp_path / "junk")
    with pytest.raises(analysis.NotAnExperiment, match="no Ray Tune experiment state"):
        analysis.load(tmp_path / "junk")


# ---------------------------------------------------------------- the report


@pytest.fixture
def written(experiment, tmp_path):
    """The report of the real run, written into an empty folder: it needs nothing from disk."""
    summary = analysis.summarize(experiment)
    return tmp_path, summary, report.write_report(tmp_path, experiment, summary)


def test_report_reads_nothing_from_disk(written):
    out, _, paths = written
    always = {key: v for key, v in figures.FIGURES.items() if key not in figures.OPTIONAL}  # one batch size here
    assert sorted(p.name for p in out.iterdir()) == sorted(set(report.OUTPUTS) - {"lr_vs_batch_size.png"})
    assert "lr_vs_batch_size" not in paths
    for key, (name, _) in always.items():
        data = paths[key].read_bytes()
        assert paths[key] == out / name and data[:8] == PNG_MAGIC and len(data) > 5000


def test_summary_json_is_the_summary_plus_the_verdicts(written):
    out, summary, paths = written
    def no_nan(token):
        raise ValueError(token)
    saved = json.loads(paths["summary"].read_text(), parse_constant=no_nan)
    assert {k: v for k, v in saved.items() if k not in ("verdict", "verdicts")} == summary
    # per optimiser: the strategies' verdict, then finder, finder:valley and cyclic against the best manual LR
    assert list(saved["verdicts"]) == ["sgd", "adam"] and all(len(v) == 4 for v in saved["verdicts"].values())
    assert saved["verdicts"]["adam"][1].startswith("adam: finder (lightning) vs best manual (lr=")
    assert saved["verdict"].startswith("sgd: the cheapest strategy that reaches the grid search's test accuracy")
    assert " adam: the cheapest strategy" in saved["verdict"]


def test_comparison_csv_one_row_per_trial(written):
    _, summary, paths = written
    df = pd.read_csv(paths["comparison"])
    assert list(df["trial_id"]) == [t["trial_id"] for t in summary["trials"]]
    assert list(df.columns[:len(analysis.TRIAL_COLUMNS)]) == list(analysis.TRIAL_COLUMNS)


def test_report_md_sections(written):
    _, summary, paths = written
    md = paths["report"].read_text()
    for line in verdicts.verdict_lines(summary):
        assert line in md
    assert md.count("## Setting: ") == 2 and md.count("### Finder rules") == 2 and md.count("### Range tests") == 2
    for key, (name, _) in figures.FIGURES.items():
        assert (f"]({name})" in md) != (key in figures.OPTIONAL)  # one batch size: no batch-size figure, nor a line for it
    assert "diverged" in md
    assert "optimizer=['sgd', 'adam'], lr_schedule=['constant'], seeds=" in md  # the setup names the LR schedules


def test_report_setup_gives_epochs_and_batch_size_as_the_trials_ran(written):
    """A task's defaults (fashion-vit: 5 epochs) override the study's --epochs: the setup line says what ran."""
    _, summary, _ = written
    ran = {t["param_epochs"] for t in summary["trials"]}
    assert len(ran) == 1
    study = dict(summary, config={**summary["config"], "epochs": 99, "batch_size": [7]})
    md = report.render_markdown(study, {})
    assert f"epochs={ran.pop()}, batch_size={summary['trials'][0]['batch_size']}" in md and "epochs=99" not in md


def test_verdict_sentence_numbers(experiment):
    set_metric(experiment, "sgd", "manual:0.01", "test_acc", {0: 0.85, 1: 0.80})
    set_metric(experiment, "sgd", "finder", "test_acc", {0: 0.90, 1: 0.80})
    line = verdicts.verdict_lines(analysis.summarize(experiment))[1]
    # +2.50 points, half-width 100 x .317655 = 31.77, p = 0.5
    assert line.startswith("sgd: finder (lightning) vs best manual (lr=0.01): +2.50 ± 31.77 points of test accuracy "
                           "over 2 seeds (paired t-test p = 0.5), "), line


def test_verdict_without_a_finished_finder_says_why(experiment):
    t = experiment.trials
    t.loc[(t["optimizer"] == "adam") & (t["arm_key"] == "finder"), ["status", "error"]] = ["error", "RuntimeError: boom"]
    adam = verdicts.verdict_lines(analysis.summarize(experiment))[5]  # sgd's four, adam's strategies, then its finder
    assert adam == ("adam: no finder (lightning) trial finished (of 2: 2 error, first error: RuntimeError: boom), "
                    "so finder (lightning) and best manual cannot be compared.")


def test_a_failed_write_keeps_the_old_file_and_no_temp(experiment, tmp_path, monkeypatch):
    (tmp_path / "summary.json").write_text("old")
    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("trainables.files.os.fsync", disk_full)  # after the bytes went to the temporary file
    with pytest.raises(OSError):
        report.write_report(tmp_path, experiment, analysis.summarize(experiment))
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert (tmp_path / "summary.json").read_text() == "old"


def test_a_figure_without_data_is_removed_not_left_stale(experiment, tmp_path):
    (tmp_path / "val_acc.png").write_bytes(PNG_MAGIC)  # from an earlier report
    experiment.epochs = experiment.epochs.iloc[0:0]
    experiment.curves = {}
    paths = report.write_report(tmp_path, experiment, analysis.summarize(experiment))
    assert set(paths) == {"summary", "comparison", "report", "test_acc_vs_lr", "compute_vs_accuracy"}
    assert not (tmp_path / "val_acc.png").exists() and paths["report"].read_text().count("_Skipped:") == 5


def test_format_table_one_line_per_trial(experiment):
    s = analysis.summarize(experiment)
    lines = tables.format_table(s).splitlines()
    assert len(lines) == 1 + 20
    assert lines[0].split() == ["setting", "arm", "lr", "seed", "status", "epochs", "val_acc", "test_acc", "time_s",
                                "time_to_target_s", "node"]


def test_lr_finder_axes_keep_the_blow_up_from_squashing_the_curve():
    """A range test that ends in a loss of 1e6: the y axis stops at 1.5x the 90th percentile
    and never goes below 0 (cross-entropy), so the flat-then-dipping part stays readable."""
    lrs = [10 ** (-8 + 8 * k / 99) for k in range(100)]
    loss = [2.3] * 90 + [2.2, 2.1, 2.0, 2.5, 10.0, 1e3, 1e4, 1e5, 1e6, 1e6]
    fig = figures.plot_lr_finder({"lr": lrs, "loss": loss, "suggestions": {"valley": 1e-2}})
    bottom, top = fig.axes[0].get_ylim()
    assert top == pytest.approx(1.5 * 2.3) and 0 <= bottom <= 2.0


def test_epoch_curves_one_panel_per_optimiser_colour_per_arm_loss_blow_up_clipped(experiment):
    """A diverged trial's loss of 1e24 leaves the plot instead of squashing every other curve; each
    arm has one colour (its seeds share it, as in compute_vs_accuracy.png), manual trials greys."""
    e, t = experiment.epochs, experiment.trials
    blown = trial(t, "sgd", "manual:50", 0).trial_id
    e.loc[e["trial_id"] == blown, "train_loss"] = 1e24
    t.loc[(t["arm_key"] == "finder") & (t["seed"] == 1), "status"] = "diverged"  # the last finder lines drawn
    summary = analysis.summarize(experiment)
    fig = figures.plot_epochs(experiment, summary, ("train_loss", "train_acc"))
    loss_sgd, loss_adam, acc_sgd, acc_adam = fig.axes[:4]
    assert [ax.get_title() for ax in fig.axes[:4]] == ["train_loss per epoch, sgd", "train_loss per epoch, adam",
                                                       "train_acc per epoch, sgd", "train_acc per epoch, adam"]
    others = e.loc[(e["trial_id"] != blown) & e["trial_id"].isin(t.loc[t["optimizer"] == "sgd", "trial_id"]), "train_loss"]
    assert loss_sgd.get_yscale() == "log" and loss_sgd.get_ylim()[1] < 100 * others.max()
    colours = {}  # arm -> the colours of its lines (gid: "<arm key> <status>": one artist per arm and status)
    for line in acc_sgd.get_lines():
        if line.get_gid():
            colours.setdefault(line.get_gid().split()[0], set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert {k: len(v) for k, v in colours.items()} == {"finder": 1, "finder:valley": 1, "cyclic": 1}
    manual = [c for c in acc_sgd.collections if (c.get_gid() or "").startswith("manual")]  # one per status
    shades = {matplotlib.colors.to_hex(c) for coll in manual for c in coll.get_colors()}
    # 2 seeds x LR 0.01 (LR 50 diverged in its first epoch: no accuracy to draw), in one shade of grey
    assert sum(len(c.get_segments()) for c in manual) == 2 and len(manual) == len({c.get_gid() for c in manual})
    assert len(shades) == 1
    assert len(set().union(*colours.values(), shades)) == 4
    [legend] = fig.legends  # one for the figure; a diverged trial is dotted, its arm's sample not
    samples = dict(zip([text.get_text() for text in legend.get_texts()], legend.legend_handles))
    assert samples["finder"].get_linestyle() == "-" and samples["diverged"].get_linestyle() == ":"


def test_the_lr_each_epoch_ended_at_is_drawn_per_arm_on_a_log_axis(experiment):
    """train_curves.png's last row: each epoch's `lr` (a schedule's rate at the epoch's end), each
    arm's trials one artist, its values those the trials reported."""
    summary = analysis.summarize(experiment)
    fig = figures.plot_epochs(experiment, summary, ("lr",))
    sgd = fig.axes[0]
    assert sgd.get_title() == "lr per epoch, sgd" and sgd.get_yscale() == "log"
    [valley] = [line for line in sgd.get_lines() if line.get_gid() == "finder:valley finished"]
    t, e = experiment.trials, experiment.epochs
    ids = t[(t["optimizer"] == "sgd") & (t["arm_key"] == "finder:valley")]["trial_id"]
    drawn = valley.get_ydata()
    assert sorted(drawn[np.isfinite(drawn)]) == sorted(e[e["trial_id"].isin(ids)]["lr"].astype(float))


def many_seeds(experiment, seeds: int) -> analysis.Experiment:
    """The real run's seed-0 trials, every row of them, as if they had run on `seeds` seeds."""
    t, e = experiment.trials, experiment.epochs
    base = t[t["seed"] == 0]
    trials, epochs, curves = [], [], {}
    for seed in range(seeds):
        ids = {tid: f"{tid}-{seed}" for tid in base["trial_id"]}
        trials.append(base.assign(seed=seed, trial_id=base["trial_id"].map(ids)))
        rows = e[e["trial_id"].isin(ids)]
        epochs.append(rows.assign(trial_id=rows["trial_id"].map(ids), report_ts=rows["report_ts"] + seed))
        curves.update({ids[tid]: c for tid, c in experiment.curves.items() if tid in ids})
    return analysis.Experiment(experiment.name, experiment.study, pd.concat(trials, ignore_index=True),
                               pd.concat(epochs, ignore_index=True), curves)


def test_every_figure_stays_readable_at_500_seeds(experiment, tmp_path):
    """5,000 trials built from the real run's rows: every figure within 2,000 pixels a side, its
    legend one entry per arm or strategy (never one per seed), its many curves a few artists."""
    from PIL import Image

    big = many_seeds(experiment, 500)
    summary = analysis.summarize(big)
    assert summary["settings"]["sgd"]["arms"]["finder"]["n_trials"] == 500
    paths = report.write_report(tmp_path, big, summary)
    for key, (name, _) in figures.FIGURES.items():
        if key in figures.OPTIONAL:  # one batch size
            continue
        width, height = Image.open(tmp_path / name).size
        assert width <= 2000 and height <= 2000, (name, width, height)
    strategies = {r["strategy"] for r in summary["strategies"]}
    for fig in (figures.plot_epochs(big, summary, ("train_loss", "train_acc")), figures.plot_search_progress(summary),
                figures.plot_test_acc_vs_lr(summary), figures.plot_lr_finders(big, summary)):
        [legend] = fig.legends
        labels = [t.get_text() for t in legend.get_texts()]
        assert len(labels) <= len(strategies) + 12 and sum("seed" in label for label in labels) <= 1, labels
        assert all(len(label) <= 60 for label in labels), labels  # no list of 500 seeds in one entry either
        for ax in fig.axes:
            assert len(ax.get_lines()) + len(ax.collections) < 40, ax.get_title()  # not an artist per trial
    assert set(paths) >= {"test_acc_vs_lr", "val_acc", "search_progress", "compute_vs_accuracy", "lr_finder"}


# ---------------------------------------------------------------- the CLI


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "study.analyze", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing", "not_experiment", "bad_target"])
def test_cli_errors_are_one_line_exit_2(tmp_path, case):
    (tmp_path / "junk").mkdir()
    args = {"missing": [tmp_path / "nope"], "not_experiment": [tmp_path / "junk"],
            "bad_target": [tmp_path / "junk", "--target", "abc"]}[case]
    p = run_cli(*args)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("study.analyze: error: ")


def test_cli_flags_are_only_their_whole_names(exp_copy):
    p = run_cli(exp_copy, "--targ", "0.5")  # not --target
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unrecognized arguments: --targ" in p.stderr


def test_cli_rewrites_the_report_with_another_target(exp_copy, capsys):
    assert analyze_main([str(exp_copy), "--target", "0.01"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((exp_copy / "summary.json").read_text())
    assert saved["target"] == 0.01 and "target_acc" not in saved and all(t["time_to_target_s"] for t in saved["trials"] if t["status"] == "finished")
    assert saved["verdict"].split(" adam: ")[0] in out and f"report: {exp_copy / 'report.md'}" in out
    assert sum(line.startswith(("sgd: ", "adam: ")) for line in out.splitlines()) == 8


def test_cli_reads_an_experiment_given_by_a_relative_path(exp_copy, capsys, monkeypatch):
    """`python -m study.analyze results/lr-study`, as the README writes it, from the folder above."""
    monkeypatch.chdir(exp_copy.parent)
    assert analyze_main([exp_copy.name]) == 0, capsys.readouterr().err
    assert "report: " in capsys.readouterr().out
