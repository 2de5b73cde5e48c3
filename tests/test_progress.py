"""study.progress: the console line per ended trial and trials.log, on a local experiment folder.

Ray Tune calls the callback with its Trial objects; these tests hand it the four attributes it
reads (config, last_result, trial_id, status). The real thing runs in test_study's smoke study."""

from __future__ import annotations

import json
from types import SimpleNamespace

from study.progress import LOG_FILE, Progress


def trial(tid: str, arm: str, lr, val_acc, iteration: int = 2, status: str = "RUNNING", **result):
    config = {"arm": arm, "lr": lr, "seed": 0, "optimizer": "sgd", "finder_rule": "valley" if lr is None else None}
    return SimpleNamespace(trial_id=tid, config=config, status=status,
                           last_result={"val_acc": val_acc, "training_iteration": iteration, **result})


def test_lines_count_done_of_total_track_the_best_and_log_every_trial(tmp_path):
    lines = []
    p = Progress(str(tmp_path), total=4, epochs=2, print_line=lines.append)
    trials = [trial("a", "finder", None, 0.8), trial("b", "manual", 0.01, 0.85), trial("c", "manual", 0.1, 0.9, 1),
              trial("d", "manual", 1.0, 0.0, 1, diverged=True)]
    p.on_step_begin(0, trials)
    for t in trials[:3]:
        p.on_trial_complete(0, trials, t)
    p.on_trial_error(0, trials, trials[3])
    assert [ln.split(" | ")[0] for ln in lines] == [
        "[1/4] finder (valley), sgd, seed 0: done, val_acc 0.8000",
        "[2/4] manual lr=0.01, sgd, seed 0: done, val_acc 0.8500",
        "[3/4] manual lr=0.1, sgd, seed 0: pruned, val_acc 0.9000",  # stopped early: never the best
        "[4/4] manual lr=1, sgd, seed 0: error"]
    assert "| best 0.8000 (finder (valley), sgd, seed 0) | about" in lines[0]
    assert all("| best 0.8500 (manual lr=0.01, sgd, seed 0)" in ln for ln in lines[1:]) and "left" not in lines[3]
    log = [json.loads(ln) for ln in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [(e["trial"], e["status"]) for e in log] == [("a", "done"), ("b", "done"), ("c", "pruned"), ("d", "error")]


def test_a_resumed_study_counts_the_trials_that_ended_before_and_keeps_their_log(tmp_path):
    first = Progress(str(tmp_path), total=3, epochs=2, print_line=lambda line: None)
    ended = trial("a", "manual", 0.01, 0.9, status="TERMINATED")
    first.on_step_begin(0, [ended])
    first.on_trial_complete(0, [ended], ended)
    (tmp_path / LOG_FILE).write_text((tmp_path / LOG_FILE).read_text() + "{torn\n")  # a killed writer

    lines = []
    resumed = Progress(str(tmp_path), total=3, epochs=2, print_line=lines.append)
    rest = [trial("b", "manual", 0.1, 0.7), trial("c", "manual", 1e-3, 0.8)]
    resumed.on_step_begin(0, [ended, *rest])
    for t in rest:
        resumed.on_trial_complete(0, [ended, *rest], t)
    assert [ln.split(":")[0] for ln in lines] == ["[2/3] manual lr=0.1, sgd, seed 0", "[3/3] manual lr=0.001, sgd, seed 0"]
    assert all("| best 0.9000 (manual lr=0.01, sgd, seed 0)" in ln for ln in lines)
    assert [json.loads(ln)["trial"] for ln in (tmp_path / LOG_FILE).read_text().splitlines() if ln != "{torn"] == ["a", "b", "c"]
