"""What a user installs: constraints.txt pins every dependency within pyproject.toml's ranges, and
`make venv` and cluster.yaml's setup both install through it."""

from __future__ import annotations

import subprocess
import tomllib

import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO

CONSTRAINTS = REPO / "constraints.txt"


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    """constraints.txt as {name: version}; every line that is not a comment is `name==version`."""
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras and not req.marker, line
            assert req.name not in out, f"{req.name} pinned twice"
            out[req.name] = spec.version
    return out


def test_constraints_pin_every_dependency_within_its_range():
    pinned = pins()
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        assert req.name in pinned, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(pinned[req.name]), f"{req.name}=={pinned[req.name]} is outside {req.specifier}"


def make_dry_run(*args: str) -> str:
    """The commands `make venv` would run for a venv that does not exist yet."""
    proc = subprocess.run(["make", "-n", "venv", "VENV=/nonexistent/venv", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return next(line for line in proc.stdout.splitlines() if " install " in line)


def test_make_venv_installs_through_the_constraints_unless_opted_out():
    assert "-c constraints.txt -e '.[dev]'" in make_dry_run()
    assert "-c" not in make_dry_run("CONSTRAINTS=").split()


def test_cluster_setup_installs_through_the_constraints():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert len(installs) == 1 and "-c ~/lrstudy/constraints.txt -e ~/lrstudy" in installs[0], installs
    assert "==" not in installs[0]  # the versions live in constraints.txt only
    # constraints.txt reaches every node with the code: "." is copied, less what .gitignore ignores
    assert config["file_mounts"]["~/lrstudy"] == "." and config["rsync_filter"] == [".gitignore"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "constraints.txt"], cwd=REPO, timeout=60)
    assert ignored.returncode == 1


def test_benchmarks_and_psutil_are_developer_tools_not_installed_with_the_project():
    project = pyproject()
    packages = project["tool"]["setuptools"]["packages"]  # every package of the project's code, and no other
    assert packages == ["study", "study.figures", "trainables"]
    assert sorted(str(p.parent.relative_to(REPO)).replace("/", ".") for d in ("study", "trainables")
                  for p in (REPO / d).rglob("__init__.py")) == packages
    assert "psutil" not in {Requirement(r).name for r in project["project"]["dependencies"]}
    assert "psutil" in {Requirement(r).name for r in project["project"]["optional-dependencies"]["dev"]}
    assert (REPO / "benchmarks" / "bench.py").is_file() and not (REPO / "study" / "bench.py").exists()
    bench = subprocess.run(["make", "-n", "bench"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert "-m benchmarks.bench" in bench
