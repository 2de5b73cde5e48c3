"""The config dataclass, its flags, and bad input: one line on stderr, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest

from study.config import SMOKE, ConfigError, StudyConfig, build_parser, config_from_args, flag, setting_label
from study.orchestrate import _tune_settings
from study.storage import prepare_experiment_dir
from study.engine import stored_config
from study.run import main
from study.space import bayes_searches, manual_lrs, trial_dirname, trial_points
from tests.conftest import REPO, run_module


def parse(*argv: str) -> StudyConfig:
    return config_from_args(build_parser("t", "").parse_args(list(argv)))


def test_every_field_is_a_documented_flag():
    help_text = build_parser("t", "").format_help()
    for f in fields(StudyConfig):
        assert flag(f.name, f.default) in help_text, f.name
        assert f.metadata["help"], f.name


def test_help_lists_each_flag_once():
    """One option string per field, and no `--no-x` twin of a switch that is off by default."""
    options = {a.dest: a.option_strings for a in build_parser("t", "")._actions if a.dest != "help"}
    assert sorted(options) == sorted(f.name for f in fields(StudyConfig))
    assert options["resume"] == ["--resume"] and options["smoke"] == ["--smoke"] and options["overwrite"] == ["--overwrite"]
    assert options["normalize"] == ["--no-normalize"] and options["lr_range"] == ["--lr-range"]
    assert [o for opts in options.values() for o in opts if o.startswith("--no-")] == ["--no-normalize"]
    help_text = build_parser("t", "").format_help()
    for twin in ("--no-resume", "--no-overwrite", "--no-smoke", "--normalize "):
        assert twin not in help_text, twin


@pytest.mark.parametrize("argv", [["--no-resume"], ["--no-smoke"], ["--normalize"]])
def test_removed_twins_are_unrecognized(argv, capsys):
    assert exit_code(argv) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_switches_set_their_field_only_when_given():
    assert vars(build_parser("t", "").parse_args([])) == {}
    assert vars(build_parser("t", "").parse_args(["--smoke", "--no-normalize"])) == {"smoke": True, "normalize": False}
    assert parse("--resume", "--overwrite").resume is True and parse().resume is False
    # a tool whose own default turns a switch on gets the `--no-` form of it
    tool = build_parser("t", "", only=("smoke",), defaults={"smoke": True})
    assert [a.option_strings for a in tool._actions if a.dest == "smoke"] == [["--no-smoke"]]
    assert config_from_args(tool.parse_args([]), {"smoke": True}).smoke is True
    assert config_from_args(tool.parse_args(["--no-smoke"]), {"smoke": True}).smoke is False


def test_defaults_and_flags_map_one_to_one():
    assert parse() == StudyConfig()
    c = parse("--lrs", "0.1,0.01", "--epochs", "3", "--optimizer", "adam", "--gpus-per-trial", "0.5",
              "--no-normalize", "--lr-range", "1e-4,1e-2", "--name", "x", "--finder-rules", "valley,steepest")
    assert c.lrs == (0.1, 0.01) and c.epochs == 3 and c.optimizer == ("adam",) and c.gpus_per_trial == 0.5
    assert c.finder_rules == ("valley", "steepest")
    assert c.normalize is False and c.lr_range == (1e-4, 1e-2) and c.name == "x"


def test_smoke_shrinks_unless_told_otherwise():
    assert parse("--smoke").epochs == SMOKE["epochs"] and parse("--smoke").subset == SMOKE["subset"]
    assert parse("--smoke", "--epochs", "5").epochs == 5


def test_grid_points_are_a_finder_trial_per_default_rule_plus_each_lr_each_a_whole_config():
    points = trial_points(StudyConfig(lrs=(1e-3, 1e-1), seed=4, epochs=3, batch_size=32, subset=1000, normalize=False))
    common = {"seed": 4, "task": "fashion-lenet", "optimizer": "sgd", "lr_schedule": "constant", "epochs": 3, "batch_size": 32, "momentum": 0.9, "weight_decay": 0.01,
              "finder_min_lr": 1e-8, "finder_max_lr": 1.0, "finder_num_training": 100, "finder_mode": "exponential", "cpus_per_trial": 1,
              "val_size": 5000, "split_seed": 0, "normalize": False, "subset": 1000,
              "metric": "val_acc", "mode": "max", "target": None}
    assert points == [{"arm": "finder", "lr": None, "finder_rule": "lightning", **common},
                      {"arm": "finder", "lr": None, "finder_rule": "valley", **common},
                      {"arm": "manual", "lr": 1e-3, "finder_rule": None, **common},
                      {"arm": "manual", "lr": 1e-1, "finder_rule": None, **common}]


def test_seeds_rules_cyclic_and_optimizers_multiply_the_trials():
    c = StudyConfig(lrs=(1e-3, 1e-1), seeds=3, seed=5, finder_rules=("steepest", "valley"),
                    arms=("finder", "manual", "cyclic"), optimizer=("sgd", "adam"))
    points = trial_points(c)
    assert len(points) == 2 * 3 * (2 + 1 + 2)
    assert {p["seed"] for p in points} == {5, 6, 7} and {p["optimizer"] for p in points} == {"sgd", "adam"}
    assert sum(p["arm"] == "finder" and p["finder_rule"] == "valley" for p in points) == 6
    assert [p for p in points if p["arm"] == "cyclic"][0]["finder_rule"] == "steepest"
    assert len({tuple(sorted(p.items(), key=str)) for p in points}) == len(points)  # no duplicates
    assert [p["arm"] for p in trial_points(StudyConfig(arms=("manual",), lrs=(0.1,)))] == ["manual"]


def test_learning_rate_free_arms_parse_and_run_once_per_optimizer_and_seed():
    c = parse("--arms", "finder,manual,prodigy,dadapt", "--optimizer", "sgd,adam", "--seeds", "2", "--lrs", "0.1")
    assert c.arms == ("finder", "manual", "prodigy", "dadapt")
    free = [(p["arm"], p["optimizer"], p["seed"], p["lr"], p["finder_rule"]) for p in trial_points(c)
            if p["arm"] in ("prodigy", "dadapt")]
    assert free == [(a, o, s, 1.0, None) for o in ("sgd", "adam") for s in (0, 1) for a in ("prodigy", "dadapt")]
    assert parse("--arms", "dadapt", "--optimizer", "adam", "--momentum", "1").momentum == 1  # Adam has none


def test_lr_schedules_are_a_dimension_of_every_trial_its_folder_and_its_label():
    assert "--lr-schedule LR_SCHEDULE" in build_parser("t", "").format_help()
    assert parse().lr_schedule == ("constant",)
    c = parse("--lr-schedule", "constant,onecycle,cosine", "--optimizer", "sgd,adam", "--arms", "manual,cyclic",
              "--lrs", "0.1", "--seeds", "2")
    assert c.settings() == [{"task": "fashion-lenet", "optimizer": o, "lr_schedule": s, "batch_size": 64} for o in ("sgd", "adam")
                            for s in ("constant", "onecycle", "cosine")]
    points = trial_points(c)
    assert len(points) == 2 * 3 * 2 * 2  # optimisers x schedules x seeds x arms
    assert [(p["optimizer"], p["lr_schedule"]) for p in points[::4]] == [(s["optimizer"], s["lr_schedule"]) for s in c.settings()]
    assert {p["lr_schedule"] for p in points if p["arm"] == "cyclic"} == {"constant", "onecycle", "cosine"}  # it ignores it
    searches = bayes_searches(replace(c, search="bayes"))  # one Bayesian search per setting and seed
    assert [(b["optimizer"], b["lr_schedule"], b["seed"]) for b in searches] == \
        [(s["optimizer"], s["lr_schedule"], seed) for s in c.settings() for seed in (0, 1)]

    class Trial:
        config, trial_id = points[7], "abc"  # sgd, onecycle, seed 1: cyclic, manual

    assert trial_dirname(Trial) == "manual_lr=0.1_fashion-lenet_sgd_onecycle_b64_s1_abc"
    assert [setting_label(s, c.settings()) for s in c.settings()[:3]] == ["sgd/constant", "sgd/onecycle", "sgd/cosine"]
    assert setting_label({"optimizer": "adam", "lr_schedule": "cosine"}, parse("--lr-schedule", "cosine").settings()) == "adam"


def test_tasks_are_a_dimension_of_every_trial_its_folder_and_its_label():
    assert parse().task == ("fashion-lenet",)  # without --task, today's study
    c = parse("--task", "fashion-mlp,fashion-resnet", "--optimizer", "sgd,adam", "--arms", "finder,manual",
              "--finder-rules", "valley", "--lrs", "0.1")
    assert c.settings() == [{"task": t, "optimizer": o, "lr_schedule": "constant", "batch_size": 64}
                            for t in ("fashion-mlp", "fashion-resnet") for o in ("sgd", "adam")]
    points = trial_points(c)
    assert [(p["task"], p["optimizer"], p["arm"]) for p in points] == [
        (t, o, a) for t in ("fashion-mlp", "fashion-resnet") for o in ("sgd", "adam") for a in ("finder", "manual")]

    class Trial:
        config, trial_id = points[5], "abc"

    assert trial_dirname(Trial) == "manual_lr=0.1_fashion-resnet_sgd_constant_b64_s0_abc"
    assert [setting_label(s, c.settings()) for s in c.settings()] == [
        "fashion-mlp/sgd", "fashion-mlp/adam", "fashion-resnet/sgd", "fashion-resnet/adam"]
    assert setting_label(c.settings()[0], parse("--task", "fashion-mlp").settings()) == "sgd"  # one task: not named
    from study.progress import _label
    assert _label(points[5]) == "manual lr=0.1, fashion-resnet, sgd, seed 0"
    assert _label({**points[5], "task": "fashion-lenet"}) == "manual lr=0.1, sgd, seed 0"  # the default is not named


def test_bayes_search_and_its_scheduler_parse():
    c = parse("--search", "bayes", "--num-samples", "6", "--lr-range", "1e-4,1e-2", "--scheduler", "asha")
    assert (c.search, c.num_samples, c.lr_range, c.scheduler, c.pruned) == ("bayes", 6, (1e-4, 1e-2), "asha", True)
    assert not parse("--search", "bayes").pruned and parse("--search", "asha").pruned and not parse().pruned
    assert [p["arm"] for p in trial_points(c)] == ["finder", "finder"]  # its manual LRs are drawn as it runs


def test_writeup_preset_is_the_write_ups_setting():
    c = parse("--preset", "writeup")
    assert c.optimizer == ("adam",) and c.epochs == 5 and c.batch_size == (64,) and c.val_size == 12_000
    assert c.split_seed == 7 and c.normalize is False and c.lrs == (1e-5, 1e-4, 1e-1, 2e-3, 0.0363)
    assert (c.finder_min_lr, c.finder_max_lr, c.finder_num_training) == (1e-8, 1.0, 100)
    assert parse("--preset", "writeup", "--epochs", "2").epochs == 2


def test_asha_draws_are_seeded_log_uniform_and_in_range():
    c = StudyConfig(search="asha", num_samples=50, lr_range=(1e-5, 1e-1), seed=1)
    lrs = manual_lrs(c)
    assert lrs == manual_lrs(c) and lrs != manual_lrs(StudyConfig(search="asha", num_samples=50, seed=2))
    assert len(lrs) == 50 and all(1e-5 <= lr <= 1e-1 for lr in lrs)
    assert sum(lr < 1e-3 for lr in lrs) > 15  # log-uniform: half the draws below the geometric middle


@pytest.mark.parametrize("argv, message", [
    (["--lrs", "abc"], "not a comma-separated list"),
    (["--lrs", "0.1,-1"], "positive"),
    (["--lrs", "0"], "positive"),
    (["--lrs", "nan"], "positive"),
    (["--lrs", ""], "empty"),
    (["--search", "asha", "--lr-range", "1e-1,1e-5"], "LOW < HIGH"),
    (["--search", "asha", "--num-samples", "0"], "--num-samples"),
    (["--search", "random"], "invalid choice"),
    (["--search", "bayes", "--num-samples", "0"], "--num-samples"),
    (["--search", "bayes", "--lr-range", "1e-1,1e-5"], "LOW < HIGH"),
    (["--search", "bayes", "--lr-range", "1e-3"], "LOW < HIGH"),
    (["--search", "bayes", "--lr-range", "0,1e-1"], "positive"),
    (["--search", "bayes", "--arms", "finder,prodigy"], "add manual to --arms"),
    (["--scheduler", "asha"], "--scheduler asha needs a search that can use it"),
    (["--search", "asha", "--scheduler", "fifo"], "drop --scheduler fifo"),
    (["--scheduler", "hyperband"], "invalid choice"),
    (["--optimizer", "rmsprop"], "unknown 'rmsprop'"),
    (["--optimizer", "sgd,sgd"], "each once"),
    (["--lr-schedule", "step"], "unknown 'step'; choose from constant, onecycle, cosine"),
    (["--task", "fashion-bert"], "unknown 'fashion-bert'; choose from fashion-lenet, fashion-mlp, fashion-resnet, fashion-vit, fashion-vit-finetune"),
    (["--task", "fashion-mlp,fashion-mlp"], "--task must list at least one value, each once"),
    (["--lr-schedule", "onecycle,onecycle"], "--lr-schedule must list at least one value, each once"),
    (["--lr-schedule", ""], "--lr-schedule must list"),
    (["--schedule", "onecycle"], "unrecognized arguments: --schedule"),
    (["--arms", "finder,bogus"], "unknown 'bogus'"),
    (["--arms", "finder,dadapt", "--momentum", "1"], "--momentum must be below 1 for --arms dadapt"),
    (["--finder-rules", ""], "--finder-rules"),
    (["--seeds", "0"], "--seeds"),
    (["--preset", "paper"], "invalid choice"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
    (["--target", "nan"], "--target must be a finite number"),
    (["--target", "abc"], "--target"),
    (["--metric", "acc"], "--metric must name a validation metric the module logs (val_...), got acc"),
    (["--metric", "test_mae"], "--metric must name a validation metric"),
    (["--mode", "up"], "invalid choice"),
    (["--target-acc", "0.9"], "unrecognized arguments: --target-acc"),  # replaced by --target
    (["--name", "a/b"], "--name"),
    (["--bogus"], "unrecognized"),
    (["--schedule", "asha"], "unrecognized arguments: --schedule"),  # no abbreviations of --scheduler
    (["--epoch", "3"], "unrecognized arguments: --epoch"),
    (["--data-dir", "/nonexistent/fmnist"], "does not hold"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert exit_code([*argv, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def exit_code(argv: list[str]) -> int:
    """main()'s return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_tune_settings_hold_only_while_a_study_runs(monkeypatch):
    """Ray Tune reads them from the environment; outside a study (an import, a benchmark) they are
    not there, and a user's own value is left alone."""
    ours, users = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
    monkeypatch.delenv(ours, raising=False)
    monkeypatch.setenv(users, "5")
    with _tune_settings():
        assert os.environ[ours] == "1" and os.environ[users] == "5"
    assert ours not in os.environ and os.environ[users] == "5"


def test_results_path_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create results folder"):
        prepare_experiment_dir(StudyConfig(results_dir=str(blocker / "sub")))


def test_existing_experiment_is_refused_unless_resume_or_overwrite(tmp_path):
    config = StudyConfig(results_dir=str(tmp_path), name="x")
    path = Path(prepare_experiment_dir(config))
    assert path == tmp_path / "x" and path.is_dir()
    (path / "keep.txt").write_text("finished work")
    with pytest.raises(ConfigError, match="already exists: pass --resume"):
        prepare_experiment_dir(config)
    assert (path / "keep.txt").exists()
    assert not (Path(prepare_experiment_dir(replace(config, overwrite=True))) / "keep.txt").exists()
    with pytest.raises(ConfigError, match="no experiment to resume"):
        prepare_experiment_dir(replace(config, resume=True))


def test_cli_error_has_no_traceback_as_a_process():
    proc = run_module("study.run", "--lrs", "0.1,x", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_results_dir_may_be_a_uri_but_an_unknown_scheme_is_one_line_and_exit_2(capsys):
    assert parse("--results-dir", "s3://bucket/lrstudy").results_dir == "s3://bucket/lrstudy"  # unchanged
    assert exit_code(["--results-dir", "foo://x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "foo://x" in err and "Traceback" not in err, err


def test_config_errors_are_value_errors():
    with pytest.raises(ConfigError):
        StudyConfig(epochs=0).validate()


@pytest.mark.slow
def test_too_many_cpus_is_one_line_even_after_ray_started(tmp_path):
    """Found only once Ray runs: Ray's own token-auth notice must not make it two lines."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_OVERRIDE_RESOURCES"] = '{"CPU": 2}'  # whatever this machine has
    proc = subprocess.run([sys.executable, "-m", "study.run", "--cpus-per-trial", "64", "--results-dir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "--cpus-per-trial 64 is more than any node has (largest: 2 CPUs)" in proc.stderr


# -- --resume with flags ------------------------------------------------------------------------------

def stored_study(results: Path, *argv: str) -> StudyConfig:
    """An experiment folder whose study.json holds the config `study.run *argv` resolves to: the
    part of the record that --resume reads (orchestrate.write_study_record writes the same dict)."""
    config = parse(*argv, "--results-dir", str(results), "--name", "s")
    (results / "s").mkdir(parents=True)
    (results / "s" / "study.json").write_text(json.dumps({"config": config.to_dict(), "argv": ["study.run", *argv]}))
    return config


@pytest.mark.parametrize("stored, given, line", [
    ([], ["--epochs", "5"], "--epochs 5 differs from the stored study (10)"),
    (["--epochs", "3"], ["--epochs", "10"], "--epochs 10 differs from the stored study (3)"),
    ([], ["--lrs", "0.1,0.01"], "--lrs 0.1,0.01 differs from the stored study (1e-05,0.0001,0.001,0.01,0.1)"),
    ([], ["--optimizer", "adam"], "--optimizer adam differs from the stored study (sgd)"),
    ([], ["--smoke"], "--smoke differs from the stored study (off)"),
    ([], ["--no-normalize"], "--no-normalize differs from the stored study (on)"),
    ([], ["--subset", "640"], "--subset 640 differs from the stored study (not set)"),
    (["--smoke"], ["--momentum", "0.5"], "--momentum 0.5 differs from the stored study (0.9)"),
    (["--smoke"], ["--smoke", "--subset", "640"], "--subset 640 differs from the stored study (4000)"),
])
def test_resume_with_a_differing_flag_names_it_and_exits_2(stored, given, line, tmp_path, capsys):
    stored_study(tmp_path, *stored)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert exit_code(["--resume", "--results-dir", str(tmp_path), "--name", "s", *given]) == 2
    assert capsys.readouterr().err == (f"study.run: error: --resume: {line}; drop the flag or start a new --name\n")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written


def test_resume_accepts_flags_equal_to_the_stored_study_and_the_resume_flags(tmp_path, capsys):
    """Equal flags and RESUME_FLAGS pass the check: the next refusal is that the folder holds no
    Ray Tune experiment (a study.json alone), which comes after it."""
    stored = stored_study(tmp_path, "--smoke", "--epochs", "3", "--no-normalize")
    argv = ["--resume", "--results-dir", str(tmp_path), "--name", "s", "--smoke", "--epochs", "3", "--no-normalize",
            "--lrs", "1e-5,1e-4,1e-3,1e-2,1e-1", "--max-failures", "7"]
    assert exit_code(argv) == 2
    assert "no experiment to resume" in capsys.readouterr().err
    resumed = stored_config(replace(parse(*argv), resume=True), given={"resume", "results_dir", "name", "max_failures",
                                                                        "smoke", "epochs", "normalize", "lrs"})
    assert resumed == replace(stored, resume=True, max_failures=7)
    assert (resumed.epochs, resumed.subset, resumed.normalize) == (3, SMOKE["subset"], False)
    # flags not given come from the stored study, not from the defaults
    assert stored_config(parse("--resume", "--results-dir", str(tmp_path), "--name", "s"), given=set()) == replace(stored, resume=True)


# -- an instant CLI: nothing heavy before the flags are valid -----------------------------------------

HEAVY = {"torch", "pytorch_lightning", "lightning", "ray", "pandas", "scipy", "matplotlib", "pyarrow"}


def imports_and_exit(module: str, *argv: str) -> tuple[set[str], int, str, str]:
    """The top-level packages `python -m module argv` imported (from -X importtime), its exit code,
    stdout and its stderr without the import lines."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", module, *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return imported, proc.returncode, proc.stdout, "\n".join(line for line in lines if not line.startswith("import time:"))


@pytest.mark.parametrize("module, argv, code", [
    ("study.run", ["--lrs", "-1"], 2),
    ("study.run", ["--epochs", "0"], 2),
    ("study.run", ["--search", "asha", "--lr-range", "1e-1,1e-5"], 2),
    ("study.run", ["--bogus"], 2),
    ("study.run", ["--help"], 0),
    ("study.run", ["--version"], 0),
    ("study.analyze", ["--help"], 0),
    ("study.analyze", ["x", "--target", "nan"], 2),
    ("study.analyze", ["x", "--metric", "mae"], 2),
])
def test_help_version_and_config_errors_import_nothing_heavy(module, argv, code):
    imported, returncode, out, err = imports_and_exit(module, *argv)
    assert returncode == code, err
    assert imported & {"study", "argparse"} and not imported & HEAVY, sorted(imported & HEAVY)
    assert (err.count("\n") == 0 and "error:" in err) if code else (out and not err), (out, err)


def test_a_valid_study_imports_ray_only_after_validation(tmp_path):
    """The control of the test above: past validation (here, a Ray address nobody listens on) the
    same probe sees Ray imported, and the error is still one line, exit 2."""
    from tests.conftest import real_data_dir  # the data is read alongside: it must be there

    imported, returncode, _, err = imports_and_exit("study.run", "--address", "127.0.0.1:1", "--data-dir",
                                                    str(real_data_dir()), "--results-dir", str(tmp_path))
    assert returncode == 2 and err.count("\n") == 0 and "127.0.0.1:1" in err, err
    assert "ray" in imported


def test_a_data_dir_without_the_files_is_said_before_ray_starts(tmp_path):
    imported, returncode, _, err = imports_and_exit("study.run", "--data-dir", str(tmp_path / "none"),
                                                    "--results-dir", str(tmp_path))
    assert returncode == 2 and err.count("\n") == 0 and "does not hold the four Fashion-MNIST IDX files" in err, err
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_the_driver_prepares_a_study_without_lightning():
    """What the driver imports and reads while Ray starts (study.run's `_prepare`: Ray Tune, the
    analysis, the report, every built-in task's data and one forward pass of its model) leaves
    Lightning, torchmetrics and torchvision (4 s of imports here) to the trials' workers; the
    built-in tasks share one copy of Fashion-MNIST."""
    from tests.conftest import real_data_dir

    probe = ("import sys; from study.config import StudyConfig; from study.engine import _prepare; "
             "data, _, _ = _prepare(StudyConfig(subset=640, task=('fashion-lenet', 'fashion-mlp', 'fashion-resnet'), "
             f"data_dir={str(real_data_dir())!r})); print([len(d.train_y) for d in data.values()], len(set(map(id, data.values())))); "
             "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'torchmetrics', 'torchvision') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[640, 640, 640] 1", "[]"], proc.stdout


def test_version_prints_the_projects_version():
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    _, returncode, out, err = imports_and_exit("study.run", "--version")
    assert (returncode, out, err) == (0, f"study.run {expected}\n", "")


def test_resume_with_a_differing_flag_is_refused_before_torch_ray_or_lightning(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text(json.dumps({"config": StudyConfig(name="s", epochs=10).to_dict()}))
    imported, returncode, _, err = imports_and_exit("study.run", "--resume", "--results-dir", str(tmp_path),
                                                    "--name", "s", "--epochs", "3")
    assert returncode == 2 and err.count("\n") == 0 and "--epochs 3 differs" in err, err
    assert not imported & {"torch", "pytorch_lightning", "ray"}, sorted(imported & HEAVY)


def test_a_tasks_defaults_may_set_its_own_optimisers_and_schedules_and_each_setting_keeps_a_label_of_its_own():
    """The dimensions stay the keys of one setting: per task, the product of its own config's values."""
    from study.config import with_task_defaults

    c = parse("--task", "fashion-lenet,fashion-mlp", "--arms", "manual", "--lrs", "0.1")
    mlp = with_task_defaults(c, {"optimizer": "adam", "lr_schedule": ["constant", "cosine"], "val_size": 1000}, given=set(),
                             task="fashion-mlp")
    assert (mlp.optimizer, mlp.lr_schedule, mlp.val_size) == (("adam",), ("constant", "cosine"), 1000)
    assert with_task_defaults(c, {"optimizer": "adam"}, given={"optimizer"}).optimizer == ("sgd",)  # the flag wins
    settings = c.settings({"fashion-mlp": mlp})
    assert [tuple(s.values()) for s in settings] == [("fashion-lenet", "sgd", "constant", 64), ("fashion-mlp", "adam", "constant", 64),
                                                     ("fashion-mlp", "adam", "cosine", 64)]
    assert [setting_label(s, settings) for s in settings] == ["fashion-lenet/sgd/constant", "fashion-mlp/adam/constant",
                                                              "fashion-mlp/adam/cosine"]
    one = parse("--arms", "manual", "--lrs", "0.1")  # one task, two schedules of its own: still two labels
    own = one.settings({"fashion-lenet": replace(one, lr_schedule=("constant", "cosine"))})
    assert [setting_label(s, own) for s in own] == ["sgd/constant", "sgd/cosine"]
    assert [(p["optimizer"], p["lr_schedule"]) for p in trial_points(c, {"fashion-mlp": mlp})] == \
        [("sgd", "constant"), ("adam", "constant"), ("adam", "cosine")]
    with pytest.raises(ConfigError, match=r"^--task t.py:T: its defaults set lr_schedule to \('warm',\): unknown 'warm'; choose from"):
        with_task_defaults(c, {"lr_schedule": ("warm",)}, given=set(), task="t.py:T")
