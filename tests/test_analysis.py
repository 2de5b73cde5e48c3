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
from study.analysis import NotAnExperiment, load_trials, summarize
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
                "lightning_suggestion": 0.02, "min_lr": 1e-5, "max_lr": 10.0, "num_training": 25,
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
    assert summarize(exp)["verdict"] == (
        "The LR finder (lr=0.03) reached 89.50% test accuracy, 2.50 points above the best manual LR "
        "(lr=0.01, 87.00%), at 0.34x the time cost (35.0 s vs 104.0 s for the whole manual search).")


def test_failed_finder_gives_null_and_says_so(exp):
    d = next(exp.glob("*arm=finder*"))
    (d / "result.json").write_text(json.dumps(json.loads((d / "result.json").read_text().splitlines()[0])) + "\n")
    (d / "error.txt").write_text("Failure # 1 (occurred at x)\nValueError: lr_find returned no suggestion\n")
    s = summarize(exp)
    assert s["finder"] is None and s["time_cost_ratio"] is None
    assert s["verdict"].startswith("The finder trial did not finish (error: ValueError: lr_find returned no suggestion)")
    assert s["trials"][0]["status"] == "error" and s["best_manual"]["lr"] == 0.01


def test_no_finished_manual_trial(exp):
    for lr in ("0.0100", "0.0030"):
        shutil.rmtree(next(exp.glob(f"*lr={lr}")))
    s = summarize(exp)
    assert s["best_manual"] is None and s["finder"]["lr"] == 0.03
    assert "no manual trial finished (of 3)" in s["verdict"]
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
    for key in ("lr_finder", "val_acc", "val_loss", "train_curves"):
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
    for name in ("lr_finder.png", "val_acc.png", "val_loss.png", "train_curves.png"):
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
    assert s["verdict"] == ("The finder trial did not finish (error: ValueError: boom); no manual trial "
                            "finished (of 1), so the two arms cannot be compared.")
    assert set(paths) == {"summary", "comparison", "report"} and not list(exp.glob("*.png"))
    assert paths["report"].read_text().count("_Skipped:") == 4


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
