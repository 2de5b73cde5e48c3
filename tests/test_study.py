"""The real thing, small: `python -m study.run --smoke` with real Ray, Lightning, Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from study.config import SMOKE, StudyConfig
from study.sensitivity import SETTINGS
from tests.conftest import real_data_dir, run_module

pytestmark = pytest.mark.slow
SCALARS = {"train_loss", "train_acc", "val_loss", "val_acc"}


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in exp.glob("*/params.json"))


def rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def test_every_trial_finished_all_epochs(smoke_study):
    exp, proc = smoke_study
    trials = trial_dirs(exp)
    expected = len(StudyConfig().finder_rules) + len(StudyConfig().lrs)
    assert len(trials) == expected
    for trial in trials:
        history = rows(trial)
        assert [r["epoch"] for r in history] == list(range(SMOKE["epochs"])), trial.name
        last = history[-1]
        assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "arm", "test_acc", "test_loss",
                "train_time_s", "node_id", "node_ip"} <= set(last)
        assert 0 <= last["val_acc"] <= 1 and last["arm"] in ("finder", "manual")
        assert not (trial / "error.txt").exists()


def test_manual_trials_train_with_their_own_lr(smoke_study):
    exp, _ = smoke_study
    manual = [t for t in trial_dirs(exp) if json.loads((t / "params.json").read_text())["arm"] == "manual"]
    assert sorted(rows(t)[-1]["lr"] for t in manual) == sorted(StudyConfig().lrs)


def test_finder_trials_record_their_curve_and_train_with_their_rules_pick(smoke_study):
    exp, _ = smoke_study
    finders = [t for t in trial_dirs(exp) if json.loads((t / "params.json").read_text())["arm"] == "finder"]
    records = {json.loads((t / "params.json").read_text())["finder_rule"]: (t, json.loads((t / "lr_finder.json").read_text()))
               for t in finders}
    assert sorted(records) == sorted(StudyConfig().finder_rules) == ["lightning", "valley"]
    for rule, (trial, record) in records.items():
        history = rows(trial)
        assert record["rule"] == rule and record["suggestion"] == record["suggestions"][rule] > 0
        assert len(record["lr"]) == len(record["loss"]) == len(record["loss_raw"]) == len(record["loss_lightning"]) > 11
        assert record["loss"][0] == record["loss_raw"][0] and record["lightning_suggestion"] == record["suggestions"]["lightning"]
        assert {"min_lr", "max_lr", "num_training", "mode", "lightning_version", "suggestions_lightning_curve"} <= set(record)
        assert all(r["lr"] == pytest.approx(record["suggestion"]) for r in history)  # trained with the pick
        assert history[0]["finder_time_s"] == pytest.approx(record["finder_time_s"]) and record["finder_time_s"] > 0
    # Both finder trials of the seed read the same range test: same LRs, same raw losses, same picks.
    (_, a), (_, b) = records.values()
    assert (a["lr"], a["loss_raw"], a["suggestions"]) == (b["lr"], b["loss_raw"], b["suggestions"])


def test_each_trial_has_tensorboard_scalars(smoke_study):
    exp, _ = smoke_study
    for trial in trial_dirs(exp):
        acc = EventAccumulator(str(trial))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert SCALARS <= tags, (trial.name, tags)
        assert not [t for t in tags if t.startswith("ray/")], tags  # no second copy from Ray's TBX logger
        # once per epoch, at the epoch's last global step (Lightning's own logger, as for any module)
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert [e.step for e in acc.Scalars("val_acc")] == [(r["steps"] - 1) for r in rows]
        assert [e.value for e in acc.Scalars("val_acc")] == pytest.approx([r["val_acc"] for r in rows])
        assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")  # TensorBoard's HParams view
        is_finder = json.loads((trial / "params.json").read_text())["arm"] == "finder"
        finder_tags = {"lr_finder/lr", "lr_finder/loss", "lr_finder/loss_raw", "lr_finder/loss_lightning"}
        assert (finder_tags <= tags) == is_finder and (not is_finder) == tags.isdisjoint(finder_tags)


def test_experiment_records_what_produced_it(smoke_study):
    exp, proc = smoke_study
    record = json.loads((exp / "study.json").read_text())
    assert record["config"]["smoke"] is True and record["config"]["epochs"] == SMOKE["epochs"]
    assert {"torch", "pytorch-lightning", "ray"} <= set(record["versions"])
    assert record["data"]["train"] == SMOKE["subset"]
    assert f"tensorboard --logdir {exp}" in proc.stdout


def test_run_reports_where_its_wall_time_went(smoke_study):
    """Start-up (Ray's start alongside imports and data), Ray Tune, then Ray's shutdown alongside
    the report: the three phases add up to the wall time, the overlapped parts fit in theirs."""
    exp, proc = smoke_study
    seconds = json.loads((exp / "timings.json").read_text())
    assert list(seconds) == ["ray_start_s", "prepare_s", "startup_s", "tune_s", "ray_shutdown_s", "analysis_s",
                             "finish_s", "wall_s"] and all(v > 0 for v in seconds.values())
    phases = seconds["startup_s"] + seconds["tune_s"] + seconds["finish_s"]
    assert phases <= seconds["wall_s"] < phases + 1
    assert seconds["ray_start_s"] <= seconds["startup_s"] and seconds["prepare_s"] <= seconds["startup_s"]
    assert seconds["ray_shutdown_s"] <= seconds["finish_s"] and seconds["analysis_s"] <= seconds["finish_s"]
    assert seconds["tune_s"] > seconds["ray_start_s"] > 0.5  # a real local Ray instance started and stopped
    line = next(l for l in proc.stdout.splitlines() if l.startswith("Study wall time"))
    assert f"Ray's {seconds['ray_start_s']:.1f} s" in line and f"Ray shutdown {seconds['ray_shutdown_s']:.1f} s" in line


def test_experiment_loads_with_rays_own_tools(smoke_study):
    from ray.tune import ExperimentAnalysis

    exp, _ = smoke_study
    analysis = ExperimentAnalysis(str(exp))
    assert len(analysis.trials) == len(StudyConfig().finder_rules) + len(StudyConfig().lrs)
    assert all(t.status == "TERMINATED" for t in analysis.trials)


METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "test_loss", "test_acc",
           "steps", "finder_steps", "samples", "eval_samples", "flops")  # metrics and the work counted


def metric_history(exp: Path) -> dict:
    """{(arm, rule, lr-as-configured, seed): [per-epoch metrics]}, times left out."""
    out = {}
    for trial in trial_dirs(exp):
        p = json.loads((trial / "params.json").read_text())
        key = (p["arm"], p.get("finder_rule"), p["lr"], p["seed"])
        out[key] = [{m: r.get(m) for m in METRICS} for r in rows(trial)]
    return out


def test_same_command_twice_gives_identical_metrics_and_work(smoke_study, tmp_path):
    from tests.conftest import real_data_dir, run_module

    exp, _ = smoke_study
    proc = run_module("study.run", "--smoke", "--results-dir", str(tmp_path), "--name", "again",
                      "--data-dir", str(real_data_dir()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = metric_history(exp), metric_history(tmp_path / "again")
    assert first.keys() == second.keys() and len(first) == len(StudyConfig().finder_rules) + len(StudyConfig().lrs)
    assert first == second


def test_summary_agrees_with_the_trials_own_files(smoke_study):
    exp, proc = smoke_study
    summary = json.loads((exp / "summary.json").read_text())
    by_id = {t["trial_id"]: t for t in summary["trials"]}
    assert len(by_id) == len(trial_dirs(exp))
    for trial in trial_dirs(exp):
        last = rows(trial)[-1]
        s = by_id[last["trial_id"]]
        assert s["status"] == "finished" and s["epochs"] == SMOKE["epochs"]
        for key in ("val_acc", "val_loss", "test_acc", "test_loss", "lr"):
            assert s[key] == pytest.approx(last[key]), (trial.name, key)
    finder = summary["finder"]
    assert finder["lr"] == pytest.approx(json.loads(next(exp.glob("finder-lightning*/lr_finder.json")).read_text())["suggestion"])
    assert finder["time_s"] == pytest.approx(finder["finder_time_s"] + finder["train_time_s"])
    manual = [t for t in summary["trials"] if t["arm"] == "manual"]
    assert summary["best_manual"]["val_acc"] == max(t["val_acc"] for t in manual)  # one seed: the best trial
    assert summary["verdict"] and summary["verdict"] in proc.stdout


def test_figures_are_real_pngs_and_analyze_reproduces_the_summary(smoke_study):
    from tests.conftest import run_module

    exp, _ = smoke_study
    for name in ("lr_finder.png", "val_acc.png", "val_loss.png", "train_curves.png", "test_acc_vs_lr.png"):
        data = (exp / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    before = json.loads((exp / "summary.json").read_text())
    proc = run_module("study.analyze", str(exp), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((exp / "summary.json").read_text()) == before


def test_asha_prunes_manual_trials_but_never_the_finder(tmp_path):
    from tests.conftest import real_data_dir, run_module

    proc = run_module("study.run", "--smoke", "--search", "asha", "--num-samples", "6", "--epochs", "3",
                      "--results-dir", str(tmp_path), "--name", "asha", "--data-dir", str(real_data_dir()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "asha" / "summary.json").read_text())
    statuses = {t["arm"]: [] for t in summary["trials"]}
    for t in summary["trials"]:
        statuses[t["arm"]].append((t["status"], t["epochs"]))
    assert statuses["finder"] == [("finished", 3)] * len(StudyConfig().finder_rules)
    assert len(statuses["manual"]) == 6
    assert any(s == "pruned" and e < 3 for s, e in statuses["manual"])
    assert any(s == "finished" for s, _ in statuses["manual"])
    # Work counts up to the epoch where ASHA stopped a trial: --smoke's 4,000 images are 63 steps an
    # epoch at batch 64; 363 validation images an epoch, and the 727 test images once, when finished.
    from tests.test_trial import LENET_EVAL, LENET_TRAIN

    for t in (t for t in summary["trials"] if t["arm"] == "manual"):
        evaluated = 363 * t["epochs"] + (727 if t["status"] == "finished" else 0)
        assert (t["steps"], t["finder_steps"], t["samples"], t["eval_samples"]) == (63 * t["epochs"], 0, 4000 * t["epochs"], evaluated)
        assert t["flops"] == 4000 * t["epochs"] * LENET_TRAIN + evaluated * LENET_EVAL


def test_sensitivity_range_tests_are_the_studys_own(smoke_study, tmp_path):
    """`python -m study.sensitivity` runs the range test exactly as a finder trial does: on the smoke
    study's data, seed 0 and Lightning's setting, every rule picks what the smoke study's trials recorded."""
    exp, _ = smoke_study
    proc = run_module("study.sensitivity", "--smoke", "--seeds", "1", "--optimizer", "sgd", "--results-dir",
                      str(tmp_path), "--data-dir", str(real_data_dir()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "finder-sensitivity" / "sensitivity.json").read_text())
    assert [(r["setting"], r["seed"]) for r in out["rows"]] == [(s, 0) for s in SETTINGS]
    finder = next(t for t in trial_dirs(exp) if json.loads((t / "params.json").read_text())["arm"] == "finder")
    trial = json.loads((finder / "lr_finder.json").read_text())
    assert out["rows"][0]["suggestions"] == trial["suggestions"]
    assert out["rows"][0]["points"] == len(trial["lr"])
    assert "| sgd | lightning 1e-8..1, 100 steps |" in proc.stdout


def test_summary_and_report_show_every_rules_pick_on_both_curves(smoke_study):
    exp, _ = smoke_study
    finder = next(t for t in trial_dirs(exp) if json.loads((t / "params.json").read_text())["arm"] == "finder")
    record = json.loads((finder / "lr_finder.json").read_text())
    tests = json.loads((exp / "summary.json").read_text())["settings"]["sgd"]["range_tests"]
    assert [t["seed"] for t in tests] == [0] and tests[0]["points"] == len(record["lr"])
    assert tests[0]["suggestions"] == record["suggestions"]
    assert tests[0]["suggestions_lightning_curve"] == record["suggestions_lightning_curve"]
    report = (exp / "report.md").read_text()
    section = report.split("### Range tests: every rule's pick")[1].split("###")[0]
    line = next(ln for ln in section.splitlines() if ln.startswith("| valley |"))
    assert line.split("|")[2].strip() == f"{record['suggestions']['valley']:.3g}"
    assert line.split("|")[3].strip() == f"{record['suggestions_lightning_curve']['valley']:.3g}"


def test_console_shows_one_line_per_ended_trial_and_trials_log_the_details(smoke_study):
    """No Ray Tune boxes or tables on the console: a header, one line per trial as it ends (done
    out of the total, the best so far, the time left), then the table and verdicts."""
    exp, proc = smoke_study
    n = len(trial_dirs(exp))
    progress = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in progress] == [f"[{i}/{n}" for i in range(1, n + 1)], proc.stdout
    assert all(": done, val_acc " in ln and " | best " in ln for ln in progress), progress
    assert all("left" in ln for ln in progress[:-1]) and "left" not in progress[-1]
    best = max(rows(t)[-1]["val_acc"] for t in trial_dirs(exp))
    assert f"| best {best:.4f} " in progress[-1]
    # No Ray Tune box (not even its configuration box at the start), table or status per trial;
    # no status line away from a terminal (tests/test_progress.py draws it on a pseudo-terminal)
    assert "╭" not in proc.stdout and "Configuration for experiment" not in proc.stdout
    assert "Trial status" not in proc.stdout and "Trial name" not in proc.stdout and " epochs |" not in proc.stdout
    assert len(proc.stdout.splitlines()) < 40, proc.stdout
    log = [json.loads(line) for line in (exp / "trials.log").read_text().splitlines()]
    assert len(log) == n and {e["status"] for e in log} == {"done"}
    assert {e["trial"] for e in log} == {rows(t)[0]["trial_id"] for t in trial_dirs(exp)}
    assert all({"arm", "seed", "optimizer"} <= set(e["config"]) and "val_acc" in e["last_result"] for e in log)
