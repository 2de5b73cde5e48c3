"""study.progress: the console line per ended trial, the status line on a terminal and trials.log,
on a local experiment folder.

Ray Tune calls the callback with its Trial objects; these tests hand it the four attributes it
reads (config, last_result, trial_id, status). The status line is drawn by tqdm on a StringIO here;
the real thing runs in test_study's smoke study (no terminal) and, on a pseudo-terminal, below."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from study.progress import LOG_FILE, Progress
from tests.conftest import REPO, real_data_dir


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


def drawn(screen: io.StringIO) -> tuple[str, str]:
    """The last status line on `screen` (tqdm redraws it after a carriage return): its epochs
    counter and what follows its bar."""
    last = [part for part in screen.getvalue().replace("\n", "\r").split("\r") if part.strip()][-1]
    epochs, _bar, rest = last.split("|", 2)
    return epochs.strip(), rest.strip()


def report(p: Progress, trials: list, t, iteration: int, val_acc: float, **extra) -> None:
    """One epoch's result of trial `t`, as Ray Tune hands it to its callbacks."""
    t.last_result = {"training_iteration": iteration, "val_acc": val_acc, **extra}
    p.on_trial_result(0, trials, t, dict(t.last_result))


def test_status_line_shows_epochs_trials_best_and_time_left_from_the_first_step(tmp_path):
    screen = io.StringIO()
    p = Progress(str(tmp_path), total=3, epochs=4, terminal=screen)
    a, b, c = trial("a", "manual", 0.01, None, 0), trial("b", "manual", 1.0, None, 0), \
        trial("c", "manual", 0.1, None, 0, status="PENDING")
    trials = [a, b, c]
    p.on_step_begin(0, trials)  # before any result: the first update
    assert drawn(screen) == ("0/12 epochs", "00:00<? | 2 running, 0 ended, 1 left")

    report(p, trials, a, 1, 0.5)
    report(p, trials, b, 1, 0.7)
    p.started -= 60  # a minute for 2 epochs: 30 s an epoch, 10 to go
    p.on_step_begin(1, trials)  # a loop step redraws at most once a second: as the last result left it
    assert drawn(screen) == ("2/12 epochs", "00:00<00:00 | 2 running, 0 ended, 1 left | best val_acc 0.7000")
    p.drawn -= 1
    p.on_step_begin(2, trials)
    assert drawn(screen) == ("2/12 epochs", "01:00<05:00 | 2 running, 0 ended, 1 left | best val_acc 0.7000")

    report(p, trials, b, 2, 0.0, diverged=True)  # its 2 unrun epochs leave the total; its 0.7 the best
    b.status = "TERMINATED"
    p.on_trial_complete(0, trials, b)
    assert "\r[1/3] manual lr=1, sgd, seed 0: diverged, val_acc 0.0000 | about" in screen.getvalue()  # above the bar
    assert drawn(screen)[0] == "3/10 epochs" and drawn(screen)[1].endswith("| 1 running, 1 ended, 1 left | best val_acc 0.5000")

    c.status = "RUNNING"
    p.on_trial_start(0, trials, c)
    assert drawn(screen)[1].endswith("| 2 running, 1 ended, 0 left | best val_acc 0.5000")
    for t, acc in ((a, 0.8), (c, 0.6)):
        for i in range(2 if t is a else 1, 5):
            report(p, trials, t, i, acc)
        t.status = "TERMINATED"
        p.on_trial_complete(0, trials, t)
    p.on_experiment_end(trials)
    assert drawn(screen) == ("10/10 epochs", drawn(screen)[1]) and \
        drawn(screen)[1].endswith("<00:00 | 0 running, 3 ended, 0 left | best val_acc 0.8000")
    assert screen.getvalue().endswith("\n")  # closed: the last status line stays, on its own line
    assert [ln.split(":")[0] for ln in screen.getvalue().splitlines() if ln.startswith("[")] == [
        "[1/3] manual lr=1, sgd, seed 0", "[2/3] manual lr=0.01, sgd, seed 0", "[3/3] manual lr=0.1, sgd, seed 0"]


def test_pickled_with_the_tuner_it_keeps_no_tqdm_and_a_resume_counts_the_epochs_before(tmp_path):
    screen = io.StringIO()
    first = Progress(str(tmp_path), total=3, epochs=4, terminal=screen)
    a, b, c = trial("a", "manual", 0.01, None, 0), trial("b", "manual", 1.0, None, 0), trial("c", "manual", 0.1, None, 0)
    trials = [a, b, c]
    first.on_step_begin(0, trials)
    for i in range(1, 5):
        report(first, trials, a, i, 0.8)
    a.status = "TERMINATED"
    first.on_trial_complete(0, trials, a)
    report(first, trials, b, 1, 0.1)
    report(first, trials, b, 2, 0.0, diverged=True)
    b.status = "TERMINATED"
    first.on_trial_complete(0, trials, b)
    report(first, trials, c, 2, 0.6)
    assert first.bar is not None and drawn(screen)[0] == "8/10 epochs"

    resumed = pickle.loads(pickle.dumps(first))  # as Tuner.restore brings it back in a new process
    assert resumed.done_before is None and not hasattr(resumed, "bar") and resumed.terminal is None
    first.on_experiment_end(trials)  # Ctrl-C: this process's study ends
    resumed.terminal = again = io.StringIO()
    c.status = "PENDING"  # restored, from its checkpoint of epoch 2
    resumed.on_step_begin(0, trials)
    assert drawn(again) == ("8/10 epochs", "00:00<? | 0 running, 2 ended, 1 left | best val_acc 0.8000")
    c.status = "RUNNING"
    report(resumed, trials, c, 3, 0.85)
    resumed.started -= 20  # one epoch here in 20 s, one to go
    resumed.on_trial_start(0, trials, c)
    assert drawn(again) == ("9/10 epochs", "00:20<00:20 | 1 running, 2 ended, 0 left | best val_acc 0.8500")


def run_in_terminal(args: list[str], stderr: Path, timeout: float = 600) -> tuple[int, str]:
    """`python -m study.run args` with its stdout on a real pseudo-terminal (100 columns), as a
    user at a terminal runs it; stderr to a file. Its return code and everything it drew."""
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=child, stderr=err)
    os.close(child)
    drawn, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # every writer is gone
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:  # done, and nothing left to read
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
    return proc.returncode, drawn.decode(errors="replace")


@pytest.mark.slow
def test_a_study_on_a_terminal_redraws_one_status_line_from_before_the_first_trial_ends(tmp_path):
    code, screen = run_in_terminal(["--smoke", "--subset", "640", "--epochs", "2", "--results-dir", str(tmp_path),
                                    "--name", "tty", "--data-dir", str(real_data_dir())], tmp_path / "stderr")
    assert code == 0, screen[-3000:] + (tmp_path / "stderr").read_text()[-3000:]
    assert "Configuration for experiment" not in screen and "╭" not in screen and "View detailed results" not in screen
    # Every draw of the status line starts with a carriage return: its epochs counter, its time
    draws = re.findall(r"\r(\d+)/(\d+) epochs \|[^|]*\| (\d\d:\d\d)<([^ ]+) \| (\d+) running, (\d+) ended, (\d+) left",
                       screen)
    first_end = screen.index("[1/7] ")
    before = [d for d in re.finditer(r"\r(\d+)/14 epochs", screen) if d.start() < first_end]
    assert before and before[0].group(1) == "0", screen[:3000]  # drawn before any epoch was done
    assert {int(d.group(1)) for d in before} - {0}, screen[:first_end]  # and moved before the first trial ended
    waiting = {elapsed for n, total, elapsed, *_ in draws if n == "0"}
    assert len(waiting) >= 2, draws[:10]  # redrawn while no result came: the time moves
    assert [int(n) for n, *_ in draws] == sorted(int(n) for n, *_ in draws), draws  # epochs only go up
    assert draws[-1] == ("14", "14", draws[-1][2], "00:00", "0", "7", "0"), draws[-1]
    assert [ln.split("]")[0].split("[")[-1] for ln in screen.splitlines() if "] " in ln and ": done, val_acc " in ln] \
        == [f"{i}/7" for i in range(1, 8)]  # the ended trials' lines, above the status line
    assert "Study wall time" in screen.split("\r14/14 epochs")[-1]  # then the table and verdicts, below
