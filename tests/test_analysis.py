"""Unit tests of study.analysis / study.report / study.analyze on a hand-written experiment dir.

The synthetic experiment has 3 epochs and six trials (T = trial_start base time):

  trial          arm     lr      status    val_acc per epoch   test_acc  time_s      start..last report
  abcde_00000    finder  0.03    finished  .85 .89 .90         .895      5 + 30 = 35 T-100..T-70
  abcde_00001    manual  0.01    finished  .84 .87 .89 (best)  .870      30          T+0..T+30
  abcde_00002    manual  0.003   finished  .83 .88 .88         .885 (!)  33          T+1..T+40
  abcde_00003    manual  0.1     error     .70                 -         12          T+2..T+14
  abcde_00004    manual  0.0001  pruned    .50                 -         9           T-3..T+6
  abcde_00005    manual  1.0     diverged  .10 .10 (NaN loss)  -         20          T+5..T+50

So the best manual trial by validation is lr=0.01 while lr=0.003 has the better test accuracy;
search_time_s = 30+33+12+9+20 = 104; search_wall_s = (T+50) - (T-3) = 53.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from study import analysis, report
from study.analysis import NotAnExperiment, load_trials, read_rows, read_trial_rows, summarize
from study.analyze import main as analyze_main
from study.report import format_table, write_report

REPO = Path(__file__).resolve().parents[1]
T = 1_700_000_000.0
EPOCHS = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(i, *, arm, lr, tid, start, report, val_acc, val_loss, train_time, finder_time=None,
         test=None, diverged=False, node="n1"):
    row = {
        "training_iteration": i + 1, "epoch": i, "train_loss": 1.0 / (i + 1), "train_acc": 0.6 + 0.1 * i,
        "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "arm": arm, "train_time_s": train_time,
        "trial_start_ts": start, "report_ts": report, "node_id": f"{node}" * 8, "node_ip": f"10.0.0.{node[-1]}",
        "trial_id": tid, "time_this_iter_s": 10.0, "done": False, "config": {"arm": arm, "lr": lr},
        "pid": 123, "hostname": "h",
    }
    if finder_time is not None:
        row["finder_time_s"] = finder_time
    if test is not None:
        row["test_acc"], row["test_loss"] = test
    if diverged:
        row["diverged"] = True
        row["train_loss"] = float("nan")
    return row


def write_trial(exp: Path, name: str, params: dict, rows: list[dict], error: str | None = None,
                lr_finder: dict | None = None) -> Path:
    d = exp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.json").write_text(json.dumps(params))
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN as bare NaN, like Ray
    if error is not None:
        (d / "error.txt").write_text(error)
    if lr_finder is not None:
        (d / "lr_finder.json").write_text(json.dumps(lr_finder))
    return d


def manual_rows(lr, tid, start, reports, val_accs, val_losses, times, test=None, diverged_last=False):
    n = len(val_accs)
    return [_row(i, arm="manual", lr=lr, tid=tid, start=start, report=reports[i], val_acc=val_accs[i],
                 val_loss=val_losses[i], train_time=times[i], test=test if i == n - 1 else None,
                 diverged=diverged_last and i == n - 1, node="n2")
            for i in range(n)]


FINDER_CURVE = {"lr": [1e-5 * 10 ** (k / 4) for k in range(25)], "loss": [2.3 - 0.05 * k for k in range(20)]
                + [1.5, 3.0, float("nan"), float("inf"), 9.0], "rule": "steepest", "suggestion": 0.03,
                "suggestions": {"lightning": 0.02, "steepest": 0.03, "valley": 0.005}, "lightning_suggestion": 0.02, "min_lr": 1e-5, "max_lr": 10.0, "num_training": 25,
                "mode": "exponential", "finder_time_s": 5.0, "lightning_version": "2.6.0"}


def make_experiment(root: Path, study: bool = True) -> Path:
    exp = root / "exp1"
    exp.mkdir(parents=True)
    if study:
        (exp / "study.json").write_text(json.dumps({
            "config": {"epochs": EPOCHS, "target_acc": 0.88, "search": "grid", "seed": 0, "optimizer": "sgd",
                       "batch_size": 64},
            "argv": ["python", "-m", "study.run"], "versions": {"torch": "2.x", "ray": "2.60"},
            "started_at": "2025-01-01T00:00:00"}))
    (exp / "experiment_state-2025-01-01_00-00-00.json").write_text("{}")
    (exp / "tuner.pkl").write_bytes(b"\x80\x04N.")
    finder = [_row(i, arm="finder", lr=0.03, tid="abcde_00000", start=T - 100, report=T - 90 + 10 * i,
                   val_acc=[0.85, 0.89, 0.90][i], val_loss=[0.40, 0.32, 0.30][i], train_time=10.0 * (i + 1),
                   finder_time=5.0, test=(0.895, 0.31) if i == 2 else None) for i in range(3)]
    write_trial(exp, "train_abcde_00000_0_arm=finder_2025-01-01_00-00-00",
                {"arm": "finder", "lr": None, "seed": 0, "finder_rule": "steepest"}, finder, lr_finder=FINDER_CURVE)
    write_trial(exp, "train_abcde_00001_1_arm=manual,lr=0.0100", {"arm": "manual", "lr": 0.01, "seed": 0},
                manual_rows(0.01, "abcde_00001", T, [T + 10, T + 20, T + 30], [0.84, 0.87, 0.89],
                            [0.45, 0.36, 0.33], [10.0, 20.0, 30.0], test=(0.870, 0.36)))
    write_trial(exp, "train_abcde_00002_2_arm=manual,lr=0.0030", {"arm": "manual", "lr": 0.003, "seed": 0},
                manual_rows(0.003, "abcde_00002", T + 1, [T + 12, T + 23, T + 40], [0.83, 0.88, 0.88],
                            [0.50, 0.35, 0.34], [11.0, 22.0, 33.0], test=(0.885, 0.35)))
    write_trial(exp, "train_abcde_00003_3_arm=manual,lr=0.1000", {"arm": "manual", "lr": 0.1, "seed": 0},
                manual_rows(0.1, "abcde_00003", T + 2, [T + 14], [0.70], [0.9], [12.0]),
                error="Failure # 1 (occurred at 2025-01-01_00-00-14)\nray::ImplicitFunc.train() (pid=1)\n"
                      "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                      "RuntimeError: CUDA out of memory\n\n")
    write_trial(exp, "train_abcde_00004_4_arm=manual,lr=0.0001", {"arm": "manual", "lr": 0.0001, "seed": 0},
                manual_rows(0.0001, "abcde_00004", T - 3, [T + 6], [0.50], [1.5], [9.0]))
    write_trial(exp, "train_abcde_00005_5_arm=manual,lr=1.0000", {"arm": "manual", "lr": 1.0, "seed": 0},
                manual_rows(1.0, "abcde_00005", T + 5, [T + 15, T + 50], [0.10, 0.10], [2.3, float("nan")],
                            [10.0, 20.0], diverged_last=True))
    return exp


@pytest.fixture
def exp(tmp_path) -> Path:
    return make_experiment(tmp_path)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One experiment with its report written (figures are the slow part: do them once)."""
    exp = make_experiment(tmp_path_factory.mktemp("rep"))
    summary = summarize(exp)
    return exp, summary, write_report(exp, summary)


def by_lr(summary: dict) -> dict:
    return {t["lr"]: t for t in summary["trials"]}


# ---------------------------------------------------------------- summary numbers


def test_finder_summary(exp):
    f = summarize(exp)["finder"]
    assert f["lr"] == 0.03 and f["status"] == "finished" and f["trial_id"] == "abcde_00000"
    assert f["finder_time_s"] == 5.0 and f["train_time_s"] == 30.0 and f["total_time_s"] == 35.0
    assert (f["val_acc"], f["val_loss"], f["test_acc"], f["test_loss"]) == (0.90, 0.30, 0.895, 0.31)


def test_best_manual_is_chosen_by_validation_not_test(exp):
    s = summarize(exp)
    b = s["best_manual"]
    tests = {t["lr"]: t["test_acc"] for t in s["trials"] if t["arm"] == "manual" and t["test_acc"] is not None}
    assert max(tests, key=tests.get) == 0.003  # the fixture: test-best differs from val-best
    assert b["lr"] == 0.01 and b["trial_id"] == "abcde_00001"
    assert (b["val_acc"], b["val_loss"], b["test_acc"], b["test_loss"], b["train_time_s"]) == (0.89, 0.33, 0.87, 0.36, 30.0)


def test_best_manual_tie_broken_by_lower_val_loss(exp):
    write_trial(exp, "train_abcde_00002_2_arm=manual,lr=0.0030", {"arm": "manual", "lr": 0.003, "seed": 0},
                manual_rows(0.003, "abcde_00002", T + 1, [T + 12, T + 23, T + 40], [0.83, 0.88, 0.89],
                            [0.50, 0.35, 0.31], [11.0, 22.0, 33.0], test=(0.885, 0.35)))
    assert summarize(exp)["best_manual"]["lr"] == 0.003


def test_search_time_and_wall_cover_all_manual_trials(exp):
    s = summarize(exp)
    assert s["best_manual"]["search_time_s"] == pytest.approx(30 + 33 + 12 + 9 + 20)
    assert s["best_manual"]["search_wall_s"] == pytest.approx(53.0)
    assert s["manual_search"]["n_by_status"] == {"finished": 2, "pruned": 1, "diverged": 1, "error": 1}
    assert s["time_cost_ratio"] == pytest.approx(35 / 104)


def test_statuses_epochs_time_and_errors(exp):
    t = by_lr(summarize(exp))
    assert {lr: r["status"] for lr, r in t.items()} == {
        0.03: "finished", 0.01: "finished", 0.003: "finished", 0.1: "error", 0.0001: "pruned", 1.0: "diverged"}
    assert {lr: r["epochs"] for lr, r in t.items()} == {0.03: 3, 0.01: 3, 0.003: 3, 0.1: 1, 0.0001: 1, 1.0: 2}
    assert {lr: r["time_s"] for lr, r in t.items()} == {0.03: 35.0, 0.01: 30.0, 0.003: 33.0, 0.1: 12.0,
                                                       0.0001: 9.0, 1.0: 20.0}
    assert t[0.1]["error"] == "RuntimeError: CUDA out of memory"
    assert [r["error"] for lr, r in t.items() if lr != 0.1] == [None] * 5
    assert t[0.01]["node_ip"] == "10.0.0.2" and t[0.01]["seed"] == 0
    assert t[0.03]["finder_rule"] == "steepest"  # extra params are carried


def test_trials_sorted_finder_first_then_manual_by_lr(exp):
    s = summarize(exp)
    assert [(t["arm"], t["lr"]) for t in s["trials"]] == [
        ("finder", 0.03), ("manual", 0.0001), ("manual", 0.003), ("manual", 0.01), ("manual", 0.1), ("manual", 1.0)]


def test_time_to_target_counts_finder_time(exp):
    s = summarize(exp)  # target from study.json: 0.88
    assert s["target_acc"] == 0.88
    assert {lr: r["time_to_target_s"] for lr, r in by_lr(s).items()} == {
        0.03: 25.0, 0.01: 30.0, 0.003: 22.0, 0.1: None, 0.0001: None, 1.0: None}
    s = summarize(exp, target_acc=0.9)
    assert s["target_acc"] == 0.9
    assert {lr: r["time_to_target_s"] for lr, r in by_lr(s).items()}[0.03] == 35.0
    assert by_lr(s)[0.01]["time_to_target_s"] is None


def test_nan_and_missing_values_become_null(exp):
    s = summarize(exp)
    t = by_lr(s)
    assert t[1.0]["val_loss"] is None and t[1.0]["val_acc"] == 0.10
    assert t[0.0001]["test_acc"] is None and t[0.0001]["test_loss"] is None
    json.dumps(s, allow_nan=False)  # raises on any NaN/inf left


def test_verdict_sentence(exp):
    s = summarize(exp)
    assert s["verdict"] == s["settings"]["sgd"]["verdict"] == (
        "sgd: finder (steepest) vs best manual (lr=0.01): +2.50 points of test accuracy over 1 seed, 3.0x less compute "
        "(35.0 s vs 104.0 s for the whole manual search, per seed).")
    assert s["first_run_verdict"] == (
        "The LR finder (lr=0.03) reached 89.50% test accuracy, 2.50 points above the best manual LR "
        "(lr=0.01, 87.00%), at 0.34x the time cost (35.0 s vs 104.0 s for the whole manual search).")


def test_single_seed_study_has_arms_without_intervals(exp):
    s = summarize(exp)
    assert s["optimizers"] == ["sgd"] and s["seeds"] == [0] and s["first_run"] == {"optimizer": "sgd", "seed": 0}
    assert s["arms"] == s["settings"]["sgd"]["arms"]
    assert list(s["arms"]) == ["finder", "manual", "manual:0.0001", "manual:0.003", "manual:0.01", "manual:0.1",
                               "manual:1"]
    f = s["arms"]["finder"]
    assert (f["n"], f["test_acc"]["mean"], f["test_acc"]["ci95"], f["lr"]["values"]) == (1, 0.895, None, [0.03])
    assert s["arms"]["manual"]["chosen"] == "manual:0.01" and s["arms"]["manual"]["test_acc"]["mean"] == 0.87
    assert s["arms"]["manual:1"]["n"] == 0 and s["arms"]["manual:1"]["n_by_status"]["diverged"] == 1
    assert s["paired"]["n"] == 1 and s["paired"]["p_value"] is None and s["paired"]["against"] == "manual:0.01"
    assert s["paired"]["test_acc_diff"]["mean"] == pytest.approx(0.025) and s["paired"]["test_acc_diff"]["ci95"] is None


def test_trials_gain_optimizer_rule_and_arm_key(exp):
    t = by_lr(summarize(exp))
    assert (t[0.03]["optimizer"], t[0.03]["finder_rule"], t[0.03]["arm_key"]) == ("sgd", "steepest", "finder")
    assert (t[0.01]["optimizer"], t[0.01]["finder_rule"], t[0.01]["arm_key"]) == ("sgd", None, "manual:0.01")
    assert "param_optimizer" not in t[0.03] and "param_finder_rule" not in t[0.03]


def test_failed_finder_gives_null_and_says_so(exp):
    d = next(exp.glob("*arm=finder*"))
    (d / "result.json").write_text(json.dumps(json.loads((d / "result.json").read_text().splitlines()[0])) + "\n")
    (d / "error.txt").write_text("Failure # 1 (occurred at x)\nValueError: lr_find returned no suggestion\n")
    s = summarize(exp)
    assert s["finder"] is None and s["time_cost_ratio"] is None
    assert s["first_run_verdict"].startswith(
        "The finder trial did not finish (error: ValueError: lr_find returned no suggestion)")
    assert s["verdict"] == ("sgd: no finder (steepest) trial finished (of 1: 1 error, first error: ValueError: lr_find "
                            "returned no suggestion), so finder (steepest) and best manual cannot be compared.")
    assert s["arms"]["finder"]["n"] == 0 and s["paired"]["n"] == 0 and s["paired"]["test_acc_diff"]["mean"] is None
    assert s["trials"][0]["status"] == "error" and s["best_manual"]["lr"] == 0.01


def test_no_finished_manual_trial(exp):
    for lr in ("0.0100", "0.0030"):
        shutil.rmtree(next(exp.glob(f"*lr={lr}")))
    s = summarize(exp)
    assert s["best_manual"] is None and s["finder"]["lr"] == 0.03
    assert "no manual trial finished (of 3)" in s["verdict"]
    assert "no manual trial finished (of 3)" in s["first_run_verdict"]
    assert s["settings"]["sgd"]["best_manual"] is None and "manual" not in s["arms"] and s["paired"] is None
    assert s["manual_search"]["search_time_s"] == pytest.approx(12 + 9 + 20)


def test_trial_without_results_is_error_no_results(exp):
    write_trial(exp, "train_abcde_00006_6", {"arm": "manual", "lr": 0.5, "seed": 0}, [])
    t = by_lr(summarize(exp))[0.5]
    assert (t["status"], t["error"], t["epochs"], t["time_s"], t["trial_id"]) == (
        "error", "no results", 0, None, "abcde_00006")


def test_retried_trial_that_finished_is_finished(exp):
    d = next(exp.glob("*lr=0.0100"))
    (d / "error.txt").write_text("Failure # 1 (occurred at x)\nThe actor died unexpectedly\n")
    t = by_lr(summarize(exp))[0.01]
    assert (t["status"], t["failures"], t["error"]) == ("finished", 1, None)


def test_repeated_epoch_after_restore_is_counted_once(exp):
    d = next(exp.glob("*lr=0.0100"))
    lines = (d / "result.json").read_text().splitlines()
    (d / "result.json").write_text("\n".join(lines[:2] + lines[1:]) + "\n{\"torn")  # repeat + torn line
    t = by_lr(summarize(exp))[0.01]
    assert t["epochs"] == 3 and t["status"] == "finished"


def test_without_study_json_epochs_are_inferred(tmp_path):
    exp = make_experiment(tmp_path, study=False)
    s = summarize(exp)
    assert s["config"] == {} and s["target_acc"] == 0.88
    assert by_lr(s)[0.01]["status"] == "finished" and by_lr(s)[0.0001]["status"] == "pruned"


def test_load_trials_gives_frames(exp):
    trials = load_trials(exp)
    assert len(trials) == 6 and all(isinstance(t.df, pd.DataFrame) for t in trials)
    f = trials[0]
    assert f.arm == "finder" and list(f.df["val_acc"]) == [0.85, 0.89, 0.90] and f.lr_finder["suggestion"] == 0.03


def test_not_an_experiment(tmp_path):
    with pytest.raises(NotAnExperiment, match="no such directory"):
        summarize(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "junk.txt").write_text("x")
    with pytest.raises(NotAnExperiment, match="not an experiment"):
        summarize(tmp_path / "empty")
    (tmp_path / "ray_only").mkdir()
    (tmp_path / "ray_only" / "experiment_state-1.json").write_text("{}")
    assert analysis.is_experiment(tmp_path / "ray_only")
    assert summarize(tmp_path / "ray_only")["trials"] == []


# ---------------------------------------------------------------- report files


def test_summary_json_is_plain_json_and_equals_summary(reported):
    exp, summary, paths = reported
    def no_nan(token):
        raise ValueError(token)
    assert json.loads(paths["summary"].read_text(), parse_constant=no_nan) == summary


def test_figures_are_real_pngs(reported):
    exp, _, paths = reported
    for key in ("lr_finder", "val_acc", "val_loss", "train_curves", "test_acc_vs_lr"):
        data = paths[key].read_bytes()
        assert paths[key] == exp / f"{key}.png" and data[:8] == PNG_MAGIC and len(data) > 1000


def test_comparison_csv_one_row_per_trial(reported):
    exp, summary, paths = reported
    df = pd.read_csv(paths["comparison"])
    assert len(df) == 6 and list(df["trial_id"]) == [t["trial_id"] for t in summary["trials"]]
    assert df.loc[df["lr"] == 0.1, "status"].item() == "error"


def test_report_md_has_verdict_table_and_figures(reported):
    _, summary, paths = reported
    md = paths["report"].read_text()
    assert summary["verdict"] in md and "Time cost ratio" in md
    for name in ("lr_finder.png", "val_acc.png", "val_loss.png", "train_curves.png", "test_acc_vs_lr.png"):
        assert f"]({name})" in md
    assert "| arm | lr |" in md and md.count("| manual |") == 5 and "CUDA out of memory" in md


def test_no_temp_files_left(reported):
    exp, _, _ = reported
    assert [p.name for p in exp.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")] == []


def test_failed_write_keeps_old_file_and_no_temp(exp, monkeypatch):
    (exp / "summary.json").write_text("old")
    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(report.os, "fsync", disk_full)  # fails after the bytes went to the temp file
    with pytest.raises(OSError):
        write_report(exp, summarize(exp))
    assert (exp / "summary.json").read_text() == "old"
    assert not [p for p in exp.iterdir() if p.name.endswith(".tmp")]


def test_summary_with_nan_is_refused(exp):
    bad = summarize(exp)
    bad["target_acc"] = float("nan")
    with pytest.raises(ValueError):
        write_report(exp, bad)
    assert not (exp / "summary.json").exists()


def test_clean_makes_plain_json():
    import numpy as np
    data = {"a": [np.float64("nan"), np.int64(3), (1.5, float("inf"))], "b": {"c": -float("inf"), "d": "x"}}
    assert analysis.clean(data) == {"a": [None, 3, [1.5, None]], "b": {"c": None, "d": "x"}}
    assert type(analysis.clean(np.int64(3))) is int


def test_report_without_data_skips_figures(tmp_path):
    exp = tmp_path / "bare"
    write_trial(exp, "t0", {"arm": "finder", "lr": None, "seed": 0}, [], error="ValueError: boom\n")
    write_trial(exp, "t1", {"arm": "manual", "lr": 0.1, "seed": 0}, [], error="RuntimeError: bang\n")
    (exp / "val_acc.png").write_bytes(PNG_MAGIC)  # a stale figure from an earlier run
    s = summarize(exp)
    paths = write_report(exp, s)
    assert s["finder"] is None and s["best_manual"] is None
    assert s["first_run_verdict"] == ("The finder trial did not finish (error: ValueError: boom); no manual trial "
                                      "finished (of 1), so the two arms cannot be compared.")
    assert s["verdict"] == ("sgd: no finder (steepest) trial finished (of 1: 1 error, first error: ValueError: boom); no manual "
                            "trial finished (of 1), so finder (steepest) and best manual cannot be compared.")
    assert set(paths) == {"summary", "comparison", "report"} and not list(exp.glob("*.png"))
    assert paths["report"].read_text().count("_Skipped:") == 5


def test_format_table_one_line_per_trial(exp):
    s = summarize(exp)
    lines = format_table(s).splitlines()
    assert len(lines) == 1 + 6
    assert lines[0].split() == ["arm", "lr", "status", "epochs", "val_acc", "test_acc", "time_s",
                                "time_to_target_s", "node"]
    assert lines[1].split() == ["finder", "0.03", "finished", "3", "0.9000", "0.8950", "35.0", "25.0", "10.0.0.1"]
    assert format_table({"trials": []}) == "(no trials)"


# ---------------------------------------------------------------- CLI


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "study.analyze", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""}, timeout=60)


@pytest.mark.parametrize("case", ["missing", "not_experiment", "bad_target"])
def test_cli_errors_are_one_line_exit_2(tmp_path, case):
    (tmp_path / "junk").mkdir()
    args = {"missing": [tmp_path / "nope"], "not_experiment": [tmp_path / "junk"],
            "bad_target": [tmp_path / "junk", "--target-acc", "abc"]}[case]
    p = run_cli(*args)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("study.analyze: error: ")


def test_cli_writes_report_and_prints(exp, capsys):
    assert analyze_main([str(exp), "--target-acc", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "0.03" in out and summarize(exp, 0.9)["verdict"] in out and f"report: {exp / 'report.md'}" in out
    assert json.loads((exp / "summary.json").read_text())["target_acc"] == 0.9


# ---------------------------------------------------------------- several seeds, rules, optimisers, cyclic
#
# A hand-written study: config optimizer ["sgd", "adam"], finder_rules ["steepest", "valley"], 2 epochs.
#
#   sgd, seeds 0 1 2   lr per seed           val_acc (last)        test_acc               time_s
#   finder  steepest   .03 .02 .04           .895 .885 .900        .890 .880 .900         25 27 29
#   finder  valley     .005 .006 .004        .870 .875 diverged    .870 .875 -            25 25 15
#   cyclic  steepest   max .03 .02 .04       .900 .890 .905        .900 .895 .905         26 26 26
#   manual  0.001                            .850 .850 error       .840 .840 -            30 30 12
#   manual  0.01       (best mean val .880)  .880 .884 .876        .885 .870 .880         30 30 30
#   manual  0.1        (best on seed 0 and best mean test)  .890 .860 .860  .900 .905 .910  30 30 30
#
#   adam, seeds 0 1
#   finder  steepest   .002, error           .880, -               .875, -                20, -
#   manual  0.0001                           .800 .810             .790 .800              30 30
#   manual  0.001      (best)                .870 .872             .865 .869              30 30
#
# sgd: finder - manual:0.01 per seed = .005 .010 .020; manual search per seed 90 90 72 (mean 84) vs finder 27.

MULTI_CONFIG = {"epochs": 2, "target_acc": 0.88, "search": "grid", "seed": 0, "seeds": 3, "batch_size": 64,
                "arms": ["finder", "manual", "cyclic"], "finder_rules": ["steepest", "valley"],
                "optimizer": ["sgd", "adam"], "preset": None}
SGD_FINDER_TEST, SGD_MANUAL_TEST = [0.890, 0.880, 0.900], [0.885, 0.870, 0.880]


def curve(suggestion: float, seed: int) -> dict:
    """One range test per (optimizer, seed), shared by that seed's finder and cyclic trials."""
    return {**FINDER_CURVE, "loss": [2.3 - 0.05 * k - 0.01 * seed for k in range(20)] + [1.5, 3.0, 5.0, 7.0, 9.0],
            "suggestion": suggestion}


def multi_trial(exp: Path, tid: str, *, opt: str, arm: str, seed: int, lr: float | None, val=None, test=None,
                time_s=30.0, rule=None, status="finished", shared_curve=None) -> Path:
    finder_time = 5.0 if arm != "manual" else None
    train = time_s - (finder_time or 0.0)
    fixed = {"arm": arm, "seed": seed, "trial_id": tid, "trial_start_ts": T, "node_id": "n1" * 8,
             "node_ip": "10.0.0.1"}
    if arm != "manual":
        fixed.update(finder_time_s=finder_time, finder_rule=rule)
    if arm == "cyclic":
        fixed.update(cyclic_min_lr=lr / 10, cyclic_max_lr=lr)
    epoch_lr = lr / 10 if arm == "cyclic" else lr  # the cyclic LR at an epoch's end is not its max
    rows = [{**fixed, "training_iteration": 1, "epoch": 0, "train_loss": 0.6, "train_acc": 0.8,
             "val_loss": 0.45, "val_acc": (val or 0.8) - 0.02, "lr": epoch_lr,
             "train_time_s": train / 2 if status in ("finished", "diverged") else train, "report_ts": T + train / 2}]
    if status == "finished":
        rows.append({**rows[0], "training_iteration": 2, "epoch": 1, "val_loss": 1.2 - val, "val_acc": val,
                     "train_time_s": train, "report_ts": T + train, "test_acc": test, "test_loss": 1.3 - test})
    elif status == "diverged":
        rows.append({**rows[0], "training_iteration": 2, "epoch": 1, "train_loss": float("nan"),
                     "val_loss": float("nan"), "val_acc": 0.0, "diverged": True, "train_time_s": train})
    elif status == "error-no-results":
        rows = []
    params = {"arm": arm, "lr": lr if arm == "manual" else None, "seed": seed, "optimizer": opt,
              "finder_rule": rule}
    reason = "RuntimeError: LR finder gave no suggestion" if arm != "manual" else "RuntimeError: worker died"
    error = f"Failure # 1 (occurred at x)\n{reason}\n" if "error" in status else None
    name = f"{arm}_{opt}_{rule or lr}_s{seed}_{tid}"
    return write_trial(exp, name, params, rows, error=error, lr_finder=shared_curve)


def make_multi_experiment(root: Path) -> Path:
    exp = root / "multi"
    exp.mkdir(parents=True)
    (exp / "study.json").write_text(json.dumps({"config": MULTI_CONFIG, "versions": {"torch": "2.x"}}))
    n = iter(range(100))
    tid = lambda: f"multi_{next(n):05d}"  # noqa: E731
    for seed in range(3):
        shared = curve([0.03, 0.02, 0.04][seed], seed)
        multi_trial(exp, tid(), opt="sgd", arm="finder", rule="steepest", seed=seed, lr=[0.03, 0.02, 0.04][seed],
                    val=[0.895, 0.885, 0.900][seed], test=SGD_FINDER_TEST[seed], time_s=[25.0, 27.0, 29.0][seed],
                    shared_curve=shared)
        multi_trial(exp, tid(), opt="sgd", arm="finder", rule="valley", seed=seed, lr=[0.005, 0.006, 0.004][seed],
                    val=[0.870, 0.875, None][seed], test=[0.870, 0.875, None][seed], time_s=[25.0, 25.0, 15.0][seed],
                    status="diverged" if seed == 2 else "finished",
                    shared_curve={**shared, "rule": "valley", "suggestion": [0.005, 0.006, 0.004][seed]})
        multi_trial(exp, tid(), opt="sgd", arm="cyclic", rule="steepest", seed=seed, lr=[0.03, 0.02, 0.04][seed],
                    val=[0.900, 0.890, 0.905][seed], test=[0.900, 0.895, 0.905][seed], time_s=26.0,
                    shared_curve=shared)
        multi_trial(exp, tid(), opt="sgd", arm="manual", seed=seed, lr=0.001, val=[0.85, 0.85, None][seed],
                    test=[0.84, 0.84, None][seed], time_s=[30.0, 30.0, 12.0][seed],
                    status="error" if seed == 2 else "finished")
        multi_trial(exp, tid(), opt="sgd", arm="manual", seed=seed, lr=0.01, val=[0.880, 0.884, 0.876][seed],
                    test=SGD_MANUAL_TEST[seed])
        multi_trial(exp, tid(), opt="sgd", arm="manual", seed=seed, lr=0.1, val=[0.890, 0.860, 0.860][seed],
                    test=[0.900, 0.905, 0.910][seed])
    multi_trial(exp, tid(), opt="adam", arm="finder", rule="steepest", seed=0, lr=0.002, val=0.880, test=0.875,
                time_s=20.0, shared_curve=curve(0.002, 0))
    multi_trial(exp, tid(), opt="adam", arm="finder", rule="steepest", seed=1, lr=None, status="error-no-results")
    for seed in range(2):
        multi_trial(exp, tid(), opt="adam", arm="manual", seed=seed, lr=0.0001, val=[0.80, 0.81][seed],
                    test=[0.79, 0.80][seed])
        multi_trial(exp, tid(), opt="adam", arm="manual", seed=seed, lr=0.001, val=[0.870, 0.872][seed],
                    test=[0.865, 0.869][seed])
    return exp


@pytest.fixture
def multi(tmp_path) -> Path:
    return make_multi_experiment(tmp_path)


@pytest.fixture(scope="module")
def multi_reported(tmp_path_factory):
    exp = make_multi_experiment(tmp_path_factory.mktemp("multi"))
    summary = summarize(exp)
    return exp, summary, write_report(exp, summary)


def t_interval(values):
    from scipy import stats
    n = len(values)
    return list(stats.t.interval(0.95, n - 1, loc=sum(values) / n, scale=stats.sem(values)))


def test_multi_arm_keys_settings_and_order(multi_reported):
    _, s, _ = multi_reported
    assert s["optimizers"] == ["sgd", "adam"] and list(s["settings"]) == ["sgd", "adam"]
    assert s["finder_rules"] == ["steepest", "valley"] and s["seeds"] == [0, 1, 2]
    assert list(s["settings"]["sgd"]["arms"]) == ["finder", "finder:valley", "cyclic", "manual", "manual:0.001",
                                                  "manual:0.01", "manual:0.1"]
    assert list(s["settings"]["adam"]["arms"]) == ["finder", "manual", "manual:0.0001", "manual:0.001"]
    assert s["settings"]["sgd"]["seeds"] == [0, 1, 2] and s["settings"]["adam"]["seeds"] == [0, 1]
    keys = [(t["optimizer"], t["arm_key"], t["seed"]) for t in s["trials"]]
    assert keys[:3] == [("sgd", "finder", 0), ("sgd", "finder", 1), ("sgd", "finder", 2)]
    assert keys[3:9] == [("sgd", "finder:valley", i) for i in range(3)] + [("sgd", "cyclic", i) for i in range(3)]
    assert keys[-4:] == [("adam", "manual:0.0001", 0), ("adam", "manual:0.0001", 1),
                         ("adam", "manual:0.001", 0), ("adam", "manual:0.001", 1)]


def test_multi_cyclic_lr_is_the_top_of_its_cycle(multi_reported):
    _, s, _ = multi_reported
    cyc = [t for t in s["trials"] if t["arm"] == "cyclic"]
    assert [(t["lr"], t["cyclic_min_lr"], t["cyclic_max_lr"]) for t in cyc] == [
        (0.03, 0.003, 0.03), (0.02, 0.002, 0.02), (0.04, 0.004, 0.04)]
    assert [t["finder_rule"] for t in cyc] == ["steepest"] * 3 and cyc[0]["finder_time_s"] == 5.0
    assert s["settings"]["sgd"]["arms"]["cyclic"]["lr"]["values"] == [0.03, 0.02, 0.04]


def test_multi_arm_statistics_match_scipy(multi_reported):
    _, s, _ = multi_reported
    f = s["settings"]["sgd"]["arms"]["finder"]
    assert f["n"] == 3 and f["seeds"] == [0, 1, 2] and f["rule"] == "steepest"
    assert f["test_acc"]["mean"] == pytest.approx(0.89)
    assert f["test_acc"]["ci95"] == pytest.approx(t_interval(SGD_FINDER_TEST))
    assert f["test_acc"]["ci95"] == pytest.approx([0.86516, 0.91484], abs=1e-5)  # 0.89 ± 4.303 * 0.01 / sqrt(3)
    assert f["lr"]["values"] == [0.03, 0.02, 0.04] and (f["lr"]["min"], f["lr"]["max"]) == (0.02, 0.04)
    assert f["lr"]["mean"] == pytest.approx(0.03)
    assert f["time_s"]["mean"] == pytest.approx(27.0) and f["finder_time_s"]["mean"] == 5.0
    v = s["settings"]["sgd"]["arms"]["finder:valley"]  # seed 2 diverged: no metrics, but its LR counts
    assert (v["n"], v["n_trials"], v["n_by_status"]["diverged"], v["rule"]) == (2, 3, 1, "valley")
    assert v["lr"]["values"] == [0.005, 0.006, 0.004] and v["test_acc"]["values"] == [0.870, 0.875]
    assert v["test_acc"]["ci95"] == pytest.approx(t_interval([0.870, 0.875]))
    m = s["settings"]["sgd"]["arms"]["manual:0.01"]
    assert m["val_acc"]["mean"] == pytest.approx(0.88) and m["val_acc"]["ci95"] == pytest.approx(
        t_interval([0.880, 0.884, 0.876]))
    a = s["settings"]["adam"]["arms"]["finder"]
    assert (a["n"], a["n_trials"], a["test_acc"]["mean"], a["test_acc"]["ci95"]) == (1, 2, 0.875, None)


def test_multi_best_manual_by_mean_val_not_test_nor_first_seed(multi_reported):
    _, s, _ = multi_reported
    sgd = s["settings"]["sgd"]
    arms = sgd["arms"]
    assert arms["manual:0.1"]["test_acc"]["mean"] > arms["manual:0.01"]["test_acc"]["mean"]  # test would pick 0.1
    assert arms["manual:0.1"]["val_acc"]["values"][0] > arms["manual:0.01"]["val_acc"]["values"][0]  # seed 0 too
    assert sgd["best_manual"] == "manual:0.01" and arms["manual"]["chosen"] == "manual:0.01"
    assert arms["manual"]["test_acc"] == arms["manual:0.01"]["test_acc"]
    assert s["settings"]["adam"]["best_manual"] == "manual:0.001"
    # the one-run view (sgd, seed 0) keeps today's meaning: that seed's best by validation
    assert s["first_run"] == {"optimizer": "sgd", "seed": 0}
    assert s["best_manual"]["lr"] == 0.1 and s["best_manual"]["search_time_s"] == pytest.approx(90.0)
    assert s["finder"]["lr"] == 0.03 and s["finder"]["test_acc"] == 0.890 and s["finder"]["total_time_s"] == 25.0


def test_multi_paired_matches_ttest_rel(multi_reported):
    from scipy import stats
    _, s, _ = multi_reported
    p = s["settings"]["sgd"]["paired"]
    diffs = [f - m for f, m in zip(SGD_FINDER_TEST, SGD_MANUAL_TEST)]
    assert (p["n"], p["seeds"], p["against"]) == (3, [0, 1, 2], "manual:0.01")
    assert p["test_acc_diff"]["values"] == pytest.approx([0.005, 0.010, 0.020])
    assert p["test_acc_diff"]["mean"] == pytest.approx(0.035 / 3)
    assert p["test_acc_diff"]["ci95"] == pytest.approx(t_interval(diffs))
    assert p["p_value"] == pytest.approx(stats.ttest_rel(SGD_FINDER_TEST, SGD_MANUAL_TEST).pvalue)
    assert 0.05 < p["p_value"] < 0.2  # t = 2.65 on 2 degrees of freedom
    assert s["paired"] == p and s["arms"] == s["settings"]["sgd"]["arms"]
    vs = s["settings"]["sgd"]["vs_finder"]["finder:valley"]  # rules compared on the seeds both finished
    assert vs["n"] == 2 and vs["seeds"] == [0, 1] and vs["test_acc_diff"]["mean"] == pytest.approx(-0.0125)
    assert vs["p_value"] == pytest.approx(stats.ttest_rel([0.870, 0.875], [0.890, 0.880]).pvalue)
    assert set(s["settings"]["sgd"]["vs_best_manual"]) == {"finder", "finder:valley", "cyclic"}
    adam = s["settings"]["adam"]["paired"]
    assert adam["n"] == 1 and adam["p_value"] is None and adam["test_acc_diff"]["ci95"] is None
    assert adam["test_acc_diff"]["mean"] == pytest.approx(0.01)


def test_multi_compute_and_verdicts(multi_reported):
    _, s, _ = multi_reported
    c = s["settings"]["sgd"]["compute"]
    assert c["finder_time_s"] == pytest.approx(27.0) and c["manual_search_time_s"] == pytest.approx(84.0)
    assert c["manual_search_time_s_by_seed"] == [[0, 90.0], [1, 90.0], [2, 72.0]]
    sgd, adam = s["settings"]["sgd"]["verdict"], s["settings"]["adam"]["verdict"]
    assert sgd == ("sgd: finder (steepest) vs best manual (lr=0.01): +1.17 ± 1.90 points of test accuracy over 3 seeds "
                   "(paired t-test p = 0.12), 3.1x less compute (27.0 s vs 84.0 s for the whole manual search, "
                   "per seed).")
    lo, hi = s["settings"]["sgd"]["paired"]["test_acc_diff"]["ci95"]
    assert f"± {100 * (hi - lo) / 2:.2f} points" in sgd  # ± is the half-width of the 95 % interval
    assert adam == ("adam: finder (steepest) vs best manual (lr=0.001): +1.00 points of test accuracy over 1 seed, 3.0x less "
                    "compute (20.0 s vs 60.0 s for the whole manual search, per seed); 1 of 2 finder (steepest) "
                    "trials did not finish (1 error).")
    assert s["verdict"] == f"{sgd} {adam}"
    # One sentence per rule. valley - manual 0.01 on seeds 0, 1 (seed 2 diverged): -.015, +.005, mean
    # -0.50 points; sd .01414, t(0.975, 1) = 12.706: half-width 12.706 * .01414 / sqrt 2 = 12.71 points;
    # its own compute (25 + 25) / 2 = 25 s against 84 s: 3.4x.
    verdicts = s["settings"]["sgd"]["verdicts"]
    assert list(verdicts) == ["finder", "finder:valley", "cyclic"] and verdicts["finder"] == sgd
    assert verdicts["finder:valley"] == (
        "sgd: finder (valley) vs best manual (lr=0.01): -0.50 ± 12.71 points of test accuracy over 2 seeds "
        "(paired t-test p = 0.7), 3.4x less compute (25.0 s vs 84.0 s for the whole manual search, per seed); "
        "1 of 3 finder (valley) trials did not finish (1 diverged).")
    assert verdicts["cyclic"].startswith("sgd: cyclic (steepest) vs best manual (lr=0.01): +2.17")  # .015 .025 .025


def test_multi_failed_arm_verdict_is_plain(multi):
    d = next(multi.glob("finder_adam_steepest_s0_*"))
    shutil.rmtree(d)
    multi_trial(multi, "multi_00099", opt="adam", arm="finder", rule="steepest", seed=0, lr=None,
                status="error-no-results")
    s = summarize(multi)
    assert s["settings"]["adam"]["verdict"] == (
        "adam: no finder (steepest) trial finished (of 2: 2 error, first error: RuntimeError: LR finder gave no suggestion), "
        "so finder (steepest) and best manual cannot be compared.")
    assert s["settings"]["sgd"]["verdict"].startswith("sgd: finder (steepest) vs best manual (lr=0.01): +1.17")
    for d in multi.glob("manual_adam_*"):
        shutil.rmtree(d)
    assert summarize(multi)["settings"]["adam"]["verdict"].endswith(
        "; there is no manual trial, so finder (steepest) and best manual cannot be compared.")


def test_configured_optimizer_without_trials_says_so(multi):
    (multi / "study.json").write_text(json.dumps({"config": {**MULTI_CONFIG, "optimizer": ["sgd", "adam", "rmsprop"]}}))
    s = summarize(multi)
    assert list(s["settings"]) == ["sgd", "adam", "rmsprop"]
    assert s["settings"]["rmsprop"]["verdict"] == "rmsprop: no trials."


def test_old_trials_default_optimizer_and_rule(tmp_path):
    exp = make_experiment(tmp_path)  # params without optimizer; the finder's params name its rule
    d = next(exp.glob("*arm=finder*"))
    (d / "params.json").write_text(json.dumps({"arm": "finder", "lr": None, "seed": 0}))
    (d / "lr_finder.json").write_text(json.dumps({**FINDER_CURVE, "rule": "valley"}))
    study = json.loads((exp / "study.json").read_text())
    study["config"]["optimizer"] = ["adam", "sgd"]
    (exp / "study.json").write_text(json.dumps(study))
    s = summarize(exp)
    assert {t["optimizer"] for t in s["trials"]} == {"adam"} and s["optimizers"] == ["adam", "sgd"]
    f = s["trials"][0]
    assert (f["finder_rule"], f["arm_key"]) == ("valley", "finder:valley")  # no finder_rules: primary is steepest
    assert s["finder"] is None and "finder:valley" in s["arms"]
    study["config"]["finder_rule"] = "valley"  # an old study that ran the valley rule: that is its primary rule
    (exp / "study.json").write_text(json.dumps(study))
    assert summarize(exp)["trials"][0]["arm_key"] == "finder"


def test_multi_report_sections_and_csv(multi_reported):
    exp, s, paths = multi_reported
    md = paths["report"].read_text()
    sgd, adam = md.index("## Optimizer: sgd"), md.index("## Optimizer: adam")
    assert sgd < adam
    assert s["settings"]["sgd"]["verdict"] in md[sgd:adam] and s["settings"]["adam"]["verdict"] in md[adam:]
    assert md.count("### Finder rules") == 1 and sgd < md.index("### Finder rules") < adam
    assert "| manual (= manual:0.01) | 3/3 |" in md and "| finder:valley | 2/3 |" in md
    assert "| finder | 3/3 | 0.03 (0.02 to 0.04) | 89.00 [86.52, 91.48] |" in md
    assert "0: 0.005, 1: 0.006, 2: 0.004" in md  # the valley rule's LR per seed
    df = pd.read_csv(paths["comparison"])
    assert len(df) == len(s["trials"]) == 24
    assert {"arm_key", "optimizer", "finder_rule", "cyclic_min_lr", "cyclic_max_lr"} <= set(df.columns)
    assert sorted(df.loc[df["arm"] == "cyclic", "cyclic_min_lr"]) == [0.002, 0.003, 0.004]
    assert df["optimizer"].value_counts().to_dict() == {"sgd": 18, "adam": 6}


def test_multi_format_table_shows_optimizer_and_seed(multi_reported):
    _, s, _ = multi_reported
    lines = format_table(s).splitlines()
    assert lines[0].split()[:4] == ["optimizer", "arm", "lr", "seed"] and len(lines) == 25
    assert lines[4].split()[:4] == ["sgd", "finder:valley", "0.005", "0"]


def test_test_acc_vs_lr_figure(multi_reported):
    exp, s, paths = multi_reported
    data = paths["test_acc_vs_lr"].read_bytes()
    assert paths["test_acc_vs_lr"] == exp / "test_acc_vs_lr.png" and data[:8] == PNG_MAGIC and len(data) > 5000
    assert "](test_acc_vs_lr.png)" in paths["report"].read_text()
    fig = report.plot_test_acc_vs_lr(s)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["test accuracy vs LR, sgd", "test accuracy vs LR, adam"]
    assert all(ax.get_xscale() == "log" for ax in axes)
    labels = {t.get_text() for t in axes[-1].get_legend().get_texts()}
    assert {"finder (steepest)", "finder (valley)", "cyclic (min to max LR)", "manual trial (one per seed)",
            "best manual LR (by mean val acc)"} <= labels
    segments = sorted(tuple(line.get_xdata()) for line in axes[0].get_lines()
                      if line.get_label() == "cyclic (min to max LR)")
    assert segments == [(0.002, 0.02), (0.003, 0.03), (0.004, 0.04)]
    markers = {c.get_label(): len(c.get_offsets()) for c in axes[0].collections}
    assert markers["manual trial (one per seed)"] == 8  # 9 manual trials, one failed
    finder_points = sorted(c.get_offsets()[0][0] for c in axes[0].collections if c.get_label().startswith("finder"))
    assert finder_points == pytest.approx([0.005, 0.006, 0.02, 0.03, 0.04])  # the diverged valley trial has no test_acc
    assert report.plot_test_acc_vs_lr({"trials": []}) is None


def test_lr_finder_figure_one_curve_per_range_test(multi_reported):
    exp, s, paths = multi_reported
    assert paths["lr_finder"].read_bytes()[:8] == PNG_MAGIC
    trials = load_trials(exp)
    rows = {t["dir"]: t for t in s["trials"]}
    fig = report.plot_lr_finders(trials, rows, s["optimizers"])
    sgd, adam = fig.axes
    curves = [ln.get_label() for ln in sgd.get_lines() if ln.get_label().startswith("range test")]
    assert curves == ["range test, seed 0", "range test, seed 1", "range test, seed 2"]  # shared tests drawn once
    assert len([ln for ln in adam.get_lines() if ln.get_label().startswith("range test")]) == 1
    legend = {t.get_text() for t in sgd.get_legend().get_texts()}
    assert {"pick: lightning", "pick: steepest", "pick: valley", "cyclic: min to max LR", "raw loss per step",
            "Lightning's recorded curve"} <= legend
    # every rule's pick is marked on every curve; the trained rules (steepest, valley) with a black edge
    picks = [ln for ln in sgd.get_lines() if ln.get_marker() in ("o", "*", "D") and len(ln.get_xdata()) == 1]
    assert sorted(ln.get_xdata()[0] for ln in picks) == pytest.approx(sorted([0.005, 0.02, 0.03] * 3))
    assert {ln.get_marker() for ln in picks if ln.get_markeredgecolor() == "black"} == {"*", "D"}


def test_cli_prints_one_verdict_line_per_optimizer(multi, capsys):
    assert analyze_main([str(multi)]) == 0
    out = capsys.readouterr().out.splitlines()
    s = json.loads((multi / "summary.json").read_text())
    i = out.index(s["settings"]["sgd"]["verdict"])
    sgd = s["settings"]["sgd"]["verdicts"]
    assert out[i:i + 3] == [sgd["finder"], sgd["finder:valley"], sgd["cyclic"]]  # one line per rule and arm
    assert out[i + 3] == s["settings"]["adam"]["verdict"] and out[i + 4] == f"report: {multi / 'report.md'}"
    assert (multi / "test_acc_vs_lr.png").read_bytes()[:8] == PNG_MAGIC


def test_history_json_is_the_trials_own_record(exp):
    """history.json (written by the trial, carried in its checkpoints) wins over result.json for
    the epochs it holds; later result.json rows that were not yet copied into it are kept."""
    d = next(exp.glob("*lr=0.0100"))
    rows = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
    # result.json repeats epoch 1 with other metrics (a rerun); history.json knows epochs 0-1 only.
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows[:2] + [{**rows[1], "val_acc": 0.1}] + rows[2:]))
    history = [{**r, "val_acc": 0.5 + r["epoch"]} for r in rows[:2]]
    (d / "history.json").write_text(json.dumps(history))
    got = read_trial_rows(d)
    assert [r["epoch"] for r in got] == [0, 1, 2]
    assert [r["val_acc"] for r in got] == [0.5, 1.5, rows[2]["val_acc"]]
    assert by_lr(summarize(exp))[0.01]["epochs"] == 3


def test_unreadable_history_json_falls_back_to_result_json(exp):
    d = next(exp.glob("*lr=0.0100"))
    (d / "history.json").write_text('[{"epoch": 0')  # torn
    assert read_trial_rows(d) == read_rows(d / "result.json")


def test_lr_finder_axes_keep_the_blow_up_from_squashing_the_curve():
    """A range test that ends in a loss of 1e6: the y axis stops at 1.5x the 90th percentile
    and never goes below 0 (cross-entropy), so the flat-then-dipping part stays readable."""
    lrs = [10 ** (-8 + 8 * k / 99) for k in range(100)]
    loss = [2.3] * 90 + [2.2, 2.1, 2.0, 2.5, 10.0, 1e3, 1e4, 1e5, 1e6, 1e6]
    fig = report.plot_lr_finder({"lr": lrs, "loss": loss, "suggestions": {"valley": 1e-2}})
    bottom, top = fig.axes[0].get_ylim()
    assert top == pytest.approx(1.5 * 2.3) and 0 <= bottom <= 2.0
