"""docs/CLUSTER.md works as written on the cluster.yaml it ships with: every `ray ...` command in its
code blocks parses against the installed Ray CLI, every `python -m study.*` command (there and in
cluster.yaml's comments) against the study's own parser, and the NFS lines the page says to
uncomment give a cluster.yaml that Ray accepts and that mounts /mnt/shared."""

from __future__ import annotations

import re
import shlex

import click
import pytest
import yaml

from study.analyze import build_parser as analyze_parser
from study.config import build_parser, config_from_args
from tests.conftest import REPO

CLUSTER_MD = (REPO / "docs" / "CLUSTER.md").read_text()
CLUSTER_YAML = (REPO / "cluster.yaml").read_text()


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of the bash code blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def ray_commands() -> list[list[str]]:
    return [words[1:] for words in shell_commands(CLUSTER_MD) if words[0] == "ray"]


def study_commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, args) of every `python -m study.X ...`, also inside a quoted remote command."""
    found = []
    for name, text in (("CLUSTER.md", CLUSTER_MD), ("cluster.yaml", CLUSTER_YAML)):
        for module, rest in re.findall(r"python -m study\.(\w+)((?: [^'`\n#]*)?)", text.replace("\\\n", " ")):
            found.append((name, module, shlex.split(rest)))
    return found


def test_the_page_has_the_commands_this_test_checks():
    subcommands = {words[0] for words in ray_commands()}
    assert {"up", "exec", "rsync-down", "dashboard", "down", "get-auth-token", "job"} <= subcommands, subcommands
    assert len([m for _, m, _ in study_commands() if m == "run"]) >= 5


@pytest.mark.parametrize("args", ray_commands(), ids=" ".join)
def test_every_ray_command_parses_against_the_ray_cli(args):
    from ray.scripts.scripts import cli

    command, rest = cli, list(args)
    while isinstance(command, click.Group):  # `ray job submit ...`: down to the command itself
        name, rest = rest[0], rest[1:]
        command = command.get_command(click.Context(command), name)
        assert command is not None, f"ray has no command {name!r}"
    with command.make_context("ray " + " ".join(args[:1]), rest, resilient_parsing=False):
        pass  # unknown options, a missing argument or too many raise click.UsageError


@pytest.mark.parametrize("file, module, args", study_commands(), ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_every_study_command_parses_and_validates(file, module, args):
    assert module in ("run", "analyze"), module
    if module == "run":
        config_from_args(build_parser("study.run", "").parse_args(args))
    else:
        analyze_parser().parse_args(args)
    if file == "cluster.yaml":  # its own example must run on it as shipped: /mnt/shared is not mounted
        assert not any(a.startswith("/mnt/shared") for a in args), args


def test_the_nfs_lines_the_page_names_uncommented_give_a_valid_cluster_yaml_that_mounts_mnt_shared():
    from ray.autoscaler._private.util import prepare_config, validate_config

    assert "uncomment the two lines under `# Shared storage`" in " ".join(CLUSTER_MD.split())
    shipped = yaml.safe_load(CLUSTER_YAML)
    assert not any("/mnt/shared" in c for c in shipped["setup_commands"])  # why the page says so
    lines = CLUSTER_YAML.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# Shared storage"))
    commented = [i for i in range(start + 1, len(lines)) if lines[i].startswith("  # - ")][:2]
    assert commented == [commented[0], commented[0] + 1], "the two lines follow the comment"
    for i in commented:
        lines[i] = lines[i].replace("  # - ", "  - ", 1)
    config = yaml.safe_load("\n".join(lines))
    validate_config(prepare_config(config))
    setup = config["setup_commands"]
    assert setup[-2].endswith("nfs-common)") and "mount -t nfs4" in setup[-1] and " /mnt/shared)" in setup[-1]
    assert setup[:-2] == shipped["setup_commands"]
