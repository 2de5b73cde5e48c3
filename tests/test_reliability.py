"""Reliability, with real processes and real signals (docs/RELIABILITY.md maps each fault to its test).

* One study holds every in-study fault: its finder trial gets too few range-test steps for a
  suggestion (it raises), LR 50 diverges, and the worker of one of two identical LR 0.01 trials
  is SIGKILLed mid-training (the other one shows what the uninterrupted trial does).
* One study is interrupted twice: Ctrl-C (SIGINT to its process group), then, resumed, SIGKILL of
  its process group; the second --resume finishes it. Its finder trial's worker is killed too,
  so that a restarted finder trial is seen to keep its LR.
* Bad input that only shows at the process level: one line on stderr, exit 2, nothing written.

A study runs as `python -m study.run` in a session of its own (a process group, like a shell job),
its output in files; signals go only to the processes a test started, and a test that fails
mid-study kills its study's process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, real_data_dir, run_module, run_watched
from trainables.data import FILES

POLL_S = 0.05


# -- helpers ---------------------------------------------------------------------------------------

class Study:
    """`python -m study.run` in its own session (process group), stdout and stderr in files."""

    def __init__(self, results: Path, name: str, *args: str, log: str, env: dict | None = None):
        self.exp = results / name
        self.out, self.err = results / f"{name}.{log}.out", results / f"{name}.{log}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "study.run", "--results-dir", str(results), "--name", name, *args],
                cwd=REPO, stdout=out, stderr=err, start_new_session=True, text=True, env={**os.environ, **(env or {})})

    def tail(self, n: int = 3000) -> str:
        return (f"exit {self.proc.poll()}\n--- stdout\n{self.out.read_text()[-n:]}\n"
                f"--- stderr\n{self.err.read_text()[-n:]}")

    def wait_until(self, condition, timeout: float = 400):
        """Poll `condition()` until it returns something truthy; fail if the study ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"the study ended before the moment to interrupt it came\n{self.tail()}")
            time.sleep(POLL_S)
        pytest.fail(f"no moment to interrupt the study within {timeout} s\n{self.tail()}")

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)  # the session's group: driver, Ray's daemons (not its workers)

    def wait(self, timeout: float = 400) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the study did not end within {timeout} s\n{self.tail()}")

    def stop(self) -> None:
        """Whatever happened, leave nothing of this study running."""
        if self.proc.poll() is None:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(30)


def rows(trial: Path) -> list[dict]:
    """The trial's result.json in the experiment folder: one row per reported epoch."""
    path = trial / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def all_rows(exp: Path) -> dict[str, list[dict]]:
    return {t.parent.name: rows(t.parent) for t in sorted(exp.glob("*/result.json"))}


def epochs(history: list[dict]) -> list[int]:
    return [r["epoch"] for r in history]


def trial_dirs(exp: Path, prefix: str) -> list[Path]:
    """Trial folders by the start of their name: trials are named by arm and LR ("manual_lr=0.01_...")."""
    return sorted(p for p in exp.glob(f"{prefix}*") if p.is_dir()) if exp.is_dir() else []


def trial_dir(exp: Path, prefix: str) -> Path | None:
    found = trial_dirs(exp, prefix)
    assert len(found) <= 1, found
    return found[0] if found else None


def checkpoints(trial: Path) -> list[int]:
    """Indices of the checkpoints the trial's worker has written (directly into the experiment)."""
    return sorted(int(p.name.split("_")[1]) for p in trial.glob("checkpoint_*"))


def worker_of(trial: Path) -> int | None:
    """The pid of the Ray worker running `trial`: Ray Tune makes the trial's working dir its cwd."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if cwd.endswith(f"/working_dirs/{trial.name}"):
                return int(proc.name)
    return None


METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def same_metrics(a: dict, b: dict) -> bool:
    keys = [k for k in METRICS + ("test_loss", "test_acc") if k in a or k in b]
    return all(k in a and k in b and a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9) for k in keys)


def check_history(history: list[dict], n_epochs: int) -> None:
    """Epochs 0..n-1 in order, no gap. One repeat is allowed where a new worker took over: Ray
    logs an epoch's report before it registers the checkpoint that came with it, so a worker that
    dies in between is restarted from the checkpoint before and runs that epoch again. The repeat
    must show the same metrics (same weights, same batches)."""
    for prev, row in zip(history, history[1:]):
        if row["epoch"] == prev["epoch"]:
            assert row["pid"] != prev["pid"] and same_metrics(row, prev), (prev, row)
        else:
            assert row["epoch"] == prev["epoch"] + 1, epochs(history)
    assert history and history[0]["epoch"] == 0 and history[-1]["epoch"] == n_epochs - 1, epochs(history)


def summary_trials(exp: Path) -> dict[str, dict]:
    return {t["dir"]: t for t in json.loads((exp / "summary.json").read_text())["trials"]}


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and modification time."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def one_error_line(proc: subprocess.CompletedProcess, prog: str = "study.run") -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    return lines[0]


# -- 1, 2, 5: divergence, a killed worker and a trial that raises, in one study ------------------------

KILL_EPOCHS = 6


def mid_training(exp: Path, prefix: str, epochs: int) -> tuple[Path, int] | None:
    """A trial's worker, once the trial has checkpointed epoch 1 and has 2 or more epochs to go."""
    for trial in trial_dirs(exp, prefix):
        done = checkpoints(trial)
        pid = worker_of(trial) if done and 1 <= done[-1] <= epochs - 3 else None
        if pid:
            return trial, pid
    return None


@pytest.fixture(scope="module")
def faulty_study(tmp_path_factory) -> dict:
    """The finder gets too few range-test steps for a suggestion (it raises), LR 50 diverges, and
    the worker of one of two identical LR 0.01 trials is SIGKILLed mid-training (the other one is
    the uninterrupted reference)."""
    results = tmp_path_factory.mktemp("faulty")
    study = Study(results, "faulty", "--smoke", "--epochs", str(KILL_EPOCHS), "--lrs", "0.01,50,0.01",
                  "--finder-num-training", "5", "--finder-rules", "lightning", "--data-dir", str(real_data_dir()), log="run")
    try:
        trial, pid = study.wait_until(lambda: mid_training(study.exp, "manual_lr=0.01_", KILL_EPOCHS))
        os.kill(pid, signal.SIGKILL)
        study.wait()
    finally:
        study.stop()
    return {"study": study, "exp": study.exp, "killed": (trial.name, pid)}


@pytest.mark.slow
def test_fault_study_completes_with_exit_0(faulty_study):
    study = faulty_study["study"]
    assert study.proc.returncode == 0, study.tail()
    assert (study.exp / "summary.json").exists() and (study.exp / "report.md").exists()


@pytest.mark.slow
def test_divergence_ends_its_trial_in_the_first_epoch_as_diverged(faulty_study):
    exp = faulty_study["exp"]
    trial = trial_dir(exp, "manual_lr=50_")
    [row] = rows(trial)  # no second epoch: nothing wasted
    assert row["epoch"] == 0 and row["diverged"] is True and "at epoch 0" in row["diverged_reason"]
    assert not (trial / "error.txt").exists() and checkpoints(trial) == []
    t = summary_trials(exp)[trial.name]
    assert t["status"] == "diverged" and t["failures"] == 0 and t["lr"] == 50 and t["epochs"] == 1
    # The others went on: LR 0.01 trained all its epochs.
    assert {summary_trials(exp)[t.name]["status"] for t in trial_dirs(exp, "manual_lr=0.01_")} == {"finished"}
    assert any("diverged" in line and "| 50 |" in line for line in (exp / "report.md").read_text().splitlines())


@pytest.mark.slow
def test_killed_worker_is_retried_from_its_last_checkpoint(faulty_study):
    exp = faulty_study["exp"]
    name, killed = faulty_study["killed"]
    history = rows(exp / name)
    check_history(history, KILL_EPOCHS)
    pids = [r["pid"] for r in history]
    before = pids.count(killed)  # the epochs whose reports reached the driver before the kill
    # The other epochs come from one new worker, which restored the last registered checkpoint.
    assert 1 <= before < KILL_EPOCHS and pids[:before] == [killed] * before, (killed, pids)
    assert len(set(pids[before:])) == 1, pids
    t = summary_trials(exp)[name]
    assert t["status"] == "finished" and t["failures"] == 1 and t["epochs"] == KILL_EPOCHS, t
    # Resumed or not, the trial trains alike: every epoch as in the identical, uninterrupted trial.
    [reference] = [rows(t) for t in trial_dirs(exp, "manual_lr=0.01_") if t.name != name]
    assert [r["pid"] for r in reference] == [reference[0]["pid"]] * KILL_EPOCHS
    for row in history:
        assert same_metrics(row, reference[row["epoch"]]), (row, reference[row["epoch"]])
    # ... and counts its work once, from its checkpoint on: --smoke trains on 4,000 images, 63
    # batches of 64 an epoch (the last of 32), so a row's steps are 63 x the epochs done so far.
    for row in history:
        assert row["steps"] == 63 * (row["epoch"] + 1) and row["samples"] == 4000 * (row["epoch"] + 1), row
    assert history[-1]["steps"] == KILL_EPOCHS * 63
    work = ("steps", "samples", "eval_samples", "flops")
    assert {k: history[-1][k] for k in work} == {k: reference[-1][k] for k in work}


@pytest.mark.slow
def test_a_trial_that_raises_is_an_error_with_its_message(faulty_study):
    exp = faulty_study["exp"]
    finder = trial_dir(exp, "finder")
    t = summary_trials(exp)[finder.name]
    assert t["status"] == "error" and "LR finder gave no suggestion" in t["error"], t
    assert rows(finder) == []
    report = (exp / "report.md").read_text()
    assert any("error" in line and "LR finder gave no suggestion" in line for line in report.splitlines())


# -- 3: an interrupted study, resumed ------------------------------------------------------------------

EPOCHS = 5
LRS = "0.01,0.02,0.05"  # + the finder: 4 trials
# Ray's local node gets one CPU, so trials run one after another, in order (a trial that failed
# goes to the back of the queue), on any machine: each interruption finds the trials it expects.
ONE_AT_A_TIME = {"RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 1})}


def progress(exp: Path, saved: bool = False) -> tuple[dict, dict]:
    """(finished, unfinished with at least one epoch) trials, by name, with their rows so far; with
    `saved`, only the rows that the experiment's saved state has seen reported: what --resume
    starts from (result.json may hold more, reported after the state was saved: --resume drops them
    and the trial reports them again)."""
    current = all_rows(exp)
    if saved:
        from ray import tune

        state = {Path(t.path).name: (t.last_result or {}).get("training_iteration", 0)
                 for t in tune.ExperimentAnalysis(str(exp)).trials}
        current = {k: [r for r in v if r["training_iteration"] <= state.get(k, 0)] for k, v in current.items()}
    done = {k: v for k, v in current.items() if v and v[-1]["epoch"] == EPOCHS - 1}
    partial = {k: v for k, v in current.items() if v and v[-1]["epoch"] < EPOCHS - 1}
    return done, partial


@pytest.fixture(scope="module")
def interrupted_study(tmp_path_factory) -> dict:
    """One study, four processes. (1) The finder trial's worker is SIGKILLed (Ray requeues the
    trial behind the others), then Ctrl-C while LR 0.02 trains; (2) the same command without
    --resume; (3) --resume, then SIGKILL of its process group once LR 0.02 has finished and LR 0.05
    trains; (4) --resume to the end. The finder resumes in (3) or (4)."""
    results = tmp_path_factory.mktemp("interrupted")
    args = ("--smoke", "--epochs", str(EPOCHS), "--lrs", LRS, "--finder-num-training", "30", "--finder-rules", "lightning",
            "--finder-max-lr", "0.1", "--data-dir", str(real_data_dir()))
    resume = ("--resume", "--results-dir", str(results), "--name", "study")
    record = {}

    study = Study(results, "study", *args, log="first", env=ONE_AT_A_TIME)
    try:
        finder, killed = study.wait_until(lambda: mid_training(study.exp, "finder", EPOCHS))
        os.kill(killed, signal.SIGKILL)
        record["finder"] = finder.name

        def manual_done_and_next_partway():
            done, partial = progress(study.exp)
            return done and set(partial) - {finder.name}
        study.wait_until(manual_done_and_next_partway)
        study.signal_group(signal.SIGINT)
        record["sigint_exit"] = study.wait()
    finally:
        study.stop()
    record["sigint_study"] = study
    record["at_sigint"] = progress(study.exp, saved=True)  # what the resume starts from
    record["reports_after_sigint"] = [p.name for p in study.exp.iterdir() if p.name in ("summary.json", "report.md")]

    before = tree(study.exp)
    record["rerun"] = run_module("study.run", "--results-dir", str(results), "--name", "study", *args,
                                 timeout=120, **ONE_AT_A_TIME)
    record["tree_unchanged"] = tree(study.exp) == before

    first_done = set(record["at_sigint"][0])
    study = Study(results, "study", *resume, log="second", env=ONE_AT_A_TIME)
    try:
        def another_done_and_next_partway():  # in the saved state, what a resume starts from
            done, partial = progress(study.exp, saved=True)
            return set(done) - first_done and set(partial) - {finder.name}
        study.wait_until(another_done_and_next_partway)
        study.signal_group(signal.SIGKILL)
        record["sigkill_exit"] = study.wait()
    finally:
        study.stop()
    record["at_sigkill"] = progress(study.exp, saved=True)

    study = Study(results, "study", *resume, log="third", env=ONE_AT_A_TIME)
    try:
        record["final_exit"] = study.wait()
    finally:
        study.stop()
    record["final_study"] = study
    return record


@pytest.mark.slow
def test_ctrl_c_stops_the_study_with_the_resume_command(interrupted_study):
    study = interrupted_study["sigint_study"]
    assert interrupted_study["sigint_exit"] == 130, study.tail()
    err = study.err.read_text()
    assert f"--resume --name study --results-dir {study.exp.parent}" in err, err[-2000:]
    assert interrupted_study["reports_after_sigint"] == []  # no summary of a study that did not finish


@pytest.mark.slow
def test_rerun_without_resume_refuses_and_touches_nothing(interrupted_study):
    line = one_error_line(interrupted_study["rerun"])
    assert "already exists" in line and "--resume" in line and "--overwrite" in line
    assert interrupted_study["tree_unchanged"]


@pytest.mark.slow
def test_resume_finishes_every_trial_exactly_once(interrupted_study):
    study = interrupted_study["final_study"]
    assert interrupted_study["sigkill_exit"] == -signal.SIGKILL
    assert interrupted_study["final_exit"] == 0, study.tail()
    final = all_rows(study.exp)
    assert len(final) == 1 + len(LRS.split(","))
    for name, history in final.items():
        check_history(history, EPOCHS)
    trials = summary_trials(study.exp)
    assert len(trials) == len(final) and {t["status"] for t in trials.values()} == {"finished"}


@pytest.mark.slow
@pytest.mark.parametrize("interruption", ["sigint", "sigkill"])
def test_finished_trials_are_not_rerun(interrupted_study, interruption):
    done, _ = interrupted_study[f"at_{interruption}"]
    final = all_rows(interrupted_study["final_study"].exp)
    assert done
    for name, history in done.items():
        kept, extra = final[name][: len(history)], final[name][len(history):]
        assert kept == history, name  # the same rows: same pid, trial_start_ts, report_ts
        if extra:  # only check_history's one repeat (the last epoch, same metrics, a new worker)
            assert len(extra) == 1, (name, epochs(extra))
            check_history(final[name], EPOCHS)


@pytest.mark.slow
@pytest.mark.parametrize("interruption", ["sigint", "sigkill"])
def test_unfinished_trials_resume_from_their_checkpoints(interrupted_study, interruption):
    _, partial = interrupted_study[f"at_{interruption}"]
    final = all_rows(interrupted_study["final_study"].exp)
    assert partial  # the trial then training (after Ctrl-C, also the finder waiting for its retry)
    for name, seen in partial.items():
        history, kept = final[name], len(seen)
        assert history[:kept] == seen, name  # the epochs reported before the interruption stay
        # ... and the next one comes from a new worker that restored the last one's checkpoint.
        check_history(history, EPOCHS)
        assert history[kept]["pid"] != seen[-1]["pid"] and history[kept]["epoch"] >= seen[-1]["epoch"], name


@pytest.mark.slow
def test_restarted_finder_trial_keeps_its_lr_and_range_test(interrupted_study):
    exp = interrupted_study["final_study"].exp
    name = interrupted_study["finder"]
    history = rows(exp / name)
    assert len({r["pid"] for r in history}) >= 2  # it was restarted
    finder = json.loads((exp / name / "lr_finder.json").read_text())
    assert [r["lr"] for r in history] == pytest.approx([finder["suggestion"]] * len(history))
    assert [r["finder_time_s"] for r in history] == pytest.approx([finder["finder_time_s"]] * len(history))
    t = summary_trials(exp)[name]
    assert t["status"] == "finished" and t["failures"] == 1, t


# Each reported row, and how many rows the trial's result.json in the experiment folder has then
ROWS_AT_RESULT = """
from pathlib import Path

class Watch(tune.Callback):
    seen = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        path = Path(trial.path) / "result.json"
        Watch.seen.append([result["training_iteration"], len(path.read_text().splitlines()) if path.is_file() else 0])
"""


@pytest.mark.parametrize("last_iteration, rows", [(0, []), (2, [1, 2]), (3, [1, 2, 3]), (9, [1, 2, 3])])
def test_a_resumed_trials_rows_are_those_its_restored_state_reported(tmp_path, last_iteration, rows):
    """Rows after the restored state's last iteration go (the trial reports them again), and so
    does the half line of a driver killed mid-write; the rows written after stay whole."""
    from study.orchestrate import keep_rows

    path = tmp_path / "trial" / "result.json"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"training_iteration": i}) + "\n" for i in (1, 2, 3)) + '{"training_it')
    keep_rows(path, last_iteration)
    with path.open("a") as f:
        f.write(json.dumps({"training_iteration": 10}) + "\n")
    assert [json.loads(line)["training_iteration"] for line in path.read_text().splitlines()] == rows + [10]
    keep_rows(tmp_path / "new" / "result.json", 0)  # a trial's first start: nothing there yet
    assert not (tmp_path / "new" / "result.json").exists()


@pytest.mark.slow
def test_each_row_is_in_the_experiment_folder_as_soon_as_it_is_reported(tmp_path):
    """result.json is appended in the trial's folder, not copied there from Ray Tune's staging
    folder at each sync (a copy that a killed driver left empty, every finished epoch lost): when a
    trial's row reaches the callbacks, the experiment folder already holds it and every row before."""
    _, seen = run_watched(ROWS_AT_RESULT, "--smoke", "--epochs", "2", "--results-dir", str(tmp_path), "--name", "rows",
                          "--data-dir", str(real_data_dir()))
    assert len(seen) >= 7 and all(rows == epoch for epoch, rows in seen), seen  # 7 trials, 1-2 rows each


# -- 4: bad input that only shows at the process level ------------------------------------------------

def truncated_copy(tmp_path: Path) -> Path:
    """The real four files, the training images cut in half: a real-looking, truncated gzip."""
    src, dst = real_data_dir(), tmp_path / "fmnist"
    dst.mkdir()
    for stem in FILES.values():
        found = next(p for p in (src / (stem + ".gz"), src / stem) if p.exists())
        shutil.copy(found, dst / found.name)
    images = next(dst.glob(FILES["train_images"] + "*"))
    data = images.read_bytes()
    images.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unreachable_address", "too_many_cpus", "too_many_gpus", "truncated_data",
                                  "results_under_a_file"])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path):
    results = tmp_path / "results"
    (tmp_path / "file").write_text("")
    args, message, env = {
        "unreachable_address": (["--address", "127.0.0.1:1"], "cannot reach --address 127.0.0.1:1", {}),
        # Ray prints a one-line notice of its default token auth when RAY_AUTH_MODE is unset.
        "too_many_cpus": (["--cpus-per-trial", "64"], "--cpus-per-trial 64 is more than any node has (largest: 2 CPUs)",
                          {"RAY_AUTH_MODE": "token", "RAY_OVERRIDE_RESOURCES": '{"CPU": 2}'}),  # whatever this machine has
        "too_many_gpus": (["--gpus-per-trial", "64"], "--gpus-per-trial 64 is more than any node has", {"RAY_AUTH_MODE": "token"}),
        "truncated_data": (["--data-dir", str(truncated_copy(tmp_path))], FILES["train_images"], {}),
        "results_under_a_file": (["--results-dir", str(tmp_path / "file" / "results")], "cannot create results folder", {}),
    }[case]
    started = time.monotonic()
    proc = run_module("study.run", "--smoke", "--results-dir", str(results), *args, timeout=120, **env)
    assert message in one_error_line(proc)
    assert not results.exists()  # nothing written, not even the folder
    assert time.monotonic() - started < 60  # no minutes of retries


@pytest.mark.slow
def test_overwrite_keeps_the_old_study_when_the_new_one_cannot_start(tmp_path):
    old = tmp_path / "results" / "lr-study"
    old.mkdir(parents=True)
    (old / "study.json").write_text('{"config": {}}')
    before = tree(old)
    proc = run_module("study.run", "--smoke", "--overwrite", "--results-dir", str(old.parent), "--address", "127.0.0.1:1",
                      timeout=120)
    assert "cannot reach --address" in one_error_line(proc)
    assert tree(old) == before


@pytest.mark.parametrize("case", ["results_folder", "file", "corrupt_study_json"])
def test_analyze_on_what_is_not_an_experiment(case, tmp_path):
    """tests/test_analysis.py covers a missing and a junk folder; these are the likely mistakes."""
    target = tmp_path / "target"
    if case == "results_folder":  # the folder of experiments instead of one experiment
        (target / "lr-study").mkdir(parents=True)
        (target / "lr-study" / "study.json").write_text('{"config": {}}')
    elif case == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        (target / "study.json").write_text('{"config": ')
    before = tree(tmp_path)
    proc = run_module("study.analyze", str(target), timeout=120)
    line = one_error_line(proc, prog="study.analyze")
    assert str(target) in line and proc.stdout == ""
    assert tree(tmp_path) == before
