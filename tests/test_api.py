"""lrstudy from Python (study/api.py): the same engine as the command line, the results as data,
classes in memory as tasks, a user's own Ray left running, bad arguments as ConfigError; and
examples/notebook.ipynb run in a real Jupyter kernel."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from study import ConfigError, StudyResult, load, run_study
from study.run import main
from tests.conftest import REPO, real_data_dir, run_module

SMALL = {"subset": 640, "epochs": 1, "arms": ["finder", "manual"], "finder_rules": ["valley"], "lrs": [0.01, 0.1]}
FLAGS = ("--subset", "640", "--epochs", "1", "--arms", "finder,manual", "--finder-rules", "valley", "--lrs", "0.01,0.1")


class Tiny(nn.Module):
    """A model class of this test module, passed to run_study as it is (the short form)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(6, 2)

    def forward(self, x):
        return self.layer(x)


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    return torch.randn(400, 6, generator=g) + 2.0 * y[:, None], y


def tiny_data():
    x, y = pairs()
    return x[:300].numpy(), y[:300].numpy(), x[300:].numpy(), y[300:].numpy()


# What a user's script does: its own ray.init, then run_study twice (the small Fashion-MNIST study,
# and a task of this module's classes), in a process of its own (Ray in the pytest process would
# share it with the other tests' Rays).
SCRIPT = """
import json, sys
import ray
from study import run_study
from tests.test_api import SMALL, Tiny, tiny_data

root, data_dir = sys.argv[1], sys.argv[2]
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
api = run_study(data_dir=data_dir, results_dir=root + "/api", name="small", **SMALL)
mine = run_study(task=(Tiny, tiny_data), arms=["finder", "manual"], finder_rules=["valley"], lrs=[0.1], epochs=2,
                 val_size=50, results_dir=root + "/mine", name="mine")
still_up = ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
ray.shutdown()
print(json.dumps({"api": api.path, "mine": mine.path, "still_up": still_up, "api_summary": api.summary,
                  "api_arms": api.arms.columns.tolist(), "html": api._repr_html_()}))
"""


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict:
    """The small study through the command line, and through run_study from a user's script."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("api")
    data_dir = str(real_data_dir())
    cli = run_module("study.run", *FLAGS, "--data-dir", data_dir, "--results-dir", str(root / "cli"), "--name", "small",
                     timeout=600)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    script = subprocess.run([sys.executable, "-c", SCRIPT, str(root), data_dir], cwd=REPO, capture_output=True,
                            text=True, timeout=900)
    assert script.returncode == 0, script.stdout[-3000:] + script.stderr[-3000:]
    said = json.loads(script.stdout.strip().splitlines()[-1])
    return {**said, "api": load(said["api"]), "mine": load(said["mine"]), "cli": root / "cli" / "small"}


TIMES = re.compile(r"(_s|_s_by_seed|_ts|seconds|time_to_target.*|_at|_over_finder)$")  # seconds, and ratios of them
RUN = ("results_dir", "trial_id", "dir", "node_id")  # where and as which Ray trials it ran


def timeless(value):
    """summary.json without what differs between two runs of one study: times, and where it ran."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if not TIMES.search(k) and k not in RUN}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return re.sub(r"\d+\.\d s\b", "- s", value) if isinstance(value, str) else value  # "0.3 s vs 0.2 s" in verdicts


@pytest.mark.slow
def test_the_api_and_the_command_line_give_the_same_summary(studies):
    api, cli = studies["api"], json.loads((studies["cli"] / "summary.json").read_text())
    assert studies["api_summary"] == api.summary  # what run_study returned is what it wrote
    assert timeless(api.summary) == timeless(cli)
    assert json.loads((studies["cli"].parent.parent / "api" / "small" / "summary.json").read_text()) == api.summary
    loaded = load(studies["cli"])  # a study the command line ran, read from Python
    assert isinstance(loaded, StudyResult) and loaded.summary == cli
    assert loaded.trials["trial_id"].tolist() == [t for t in loaded.trials["trial_id"]]


@pytest.mark.slow
def test_the_result_is_the_analysis_as_data(studies):
    api = studies["api"]
    assert set(api.trials["arm"]) == {"finder", "manual"} and len(api.trials) == 3
    assert set(api.arms["arm"]) == {"finder", "manual", "manual:0.01", "manual:0.1"}
    best = api.arms.set_index("arm").loc["manual"]
    assert best["test_acc.mean"] == pytest.approx(max(api.trials.loc[api.trials["arm"] == "manual", "test_acc"]))
    assert "grid search" in set(api.strategies["strategy"]) and api.verdicts and all(isinstance(v, str) for v in api.verdicts)
    assert api.figures and all(p.is_file() and p.suffix == ".png" for p in api.figures.values())
    page = studies["html"]  # as run_study's own result showed itself
    assert "<table" in page and page.count("<img") == len(api.figures) and api.verdicts[0][:30] in page


@pytest.mark.slow
def test_a_class_of_the_tests_own_module_is_a_task_and_the_users_ray_is_left_running(studies):
    mine = studies["mine"]
    assert studies["still_up"]  # run_study used the test's ray.init and did not stop it
    [setting] = mine.summary["settings"].values()
    assert setting["task"] == "object:Tiny" and len(mine.trials) == 2
    assert (mine.trials["status"] == "finished").all() and mine.trials["test_acc"].notna().all()


def test_bad_arguments_raise_config_error_with_the_command_lines_line(capsys):
    for kwargs, flags in (({"optimizer": ["rmsprop"]}, ["--optimizer", "rmsprop"]),
                          ({"lrs": [0.1, -1]}, ["--lrs", "0.1,-1"]),
                          ({"search": "random"}, ["--search", "random"]),
                          ({"epochs": 0}, ["--epochs", "0"])):
        with pytest.raises(ConfigError) as e:
            run_study(**kwargs)
        try:
            code = main(flags)
        except SystemExit as exit_:  # argparse's own exit, for a value its parser refuses
            code = exit_.code
        assert code == 2
        said = capsys.readouterr().err.strip().removeprefix("study.run: error: ")
        assert str(e.value) == said, (kwargs, said)
    with pytest.raises(ConfigError, match="unknown setting 'seed_count'"):
        run_study(seed_count=3)
    with pytest.raises(ConfigError, match=r"argument --epochs: takes a whole number, not 2\.5"):
        run_study(epochs=2.5)


@pytest.mark.slow
def test_the_notebook_runs_in_a_real_jupyter_kernel(tmp_path):
    """examples/notebook.ipynb, end to end: its cells define a LightningModule and a DataModule, run
    a 3-trial study, show its table, a figure and the result itself."""
    import nbclient
    import nbformat

    notebook = nbformat.read(REPO / "examples" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    outputs = {i: c.outputs for i, c in enumerate(cells)}
    assert not [o for os_ in outputs.values() for o in os_ if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs[2] if o.output_type == "stream")
    assert "[3/3] " in printed and "6/6 epochs |" in printed, printed[-2000:]  # the trials' lines and the status line
    table = outputs[3][0]["data"]["text/html"]
    assert "finder" in table and "manual:0.03" in table
    assert "image/png" in outputs[4][0]["data"]
    assert "lrstudy" in outputs[5][0]["data"]["text/html"] and "<img" in outputs[5][0]["data"]["text/html"]
    assert (tmp_path / "results" / "notebook" / "summary.json").is_file()
