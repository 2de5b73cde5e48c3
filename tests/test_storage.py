"""--results-dir as a URI: study/storage.py on file:// and on a real S3 server (moto, on 127.0.0.1),
and one real study written to S3, resumed, refused and re-analysed there."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray.train._internal.storage import get_fs_and_path

from study import storage
from study.config import ConfigError, StudyConfig
from study.orchestrate import _run_config
from study.space import plan
from study.storage import prepare_experiment_dir
from study.run import main
from tests.conftest import real_data_dir, run_module

BUCKET = "lrstudy-test"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}  # dummy credentials; never ask EC2 for real ones


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_uri(path: str, port: int) -> str:
    return f"s3://{path}?endpoint_override=127.0.0.1:{port}&scheme=http"


@pytest.fixture(scope="module")
def s3_port():
    """A real S3 API (moto's server) on a free local port, with one empty bucket."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_ENV.items():
            mp.setenv(key, value)
        port = free_port()
        server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                              allow_bucket_creation=True).create_dir(BUCKET)
            yield port
        finally:
            server.stop()


@pytest.fixture(params=["file", "s3"])
def results_uri(request, tmp_path, monkeypatch) -> str:
    """A fresh --results-dir URI: file:// (pyarrow's local file system) or S3; mirrors go to tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if request.param == "file":
        return f"file://{tmp_path / 'results'}"
    return s3_uri(f"{BUCKET}/{tmp_path.name}/results", request.getfixturevalue("s3_port"))


def test_join_puts_the_name_before_the_query_and_ray_reads_the_same_path():
    uri = s3_uri("bkt/pre", 9000)
    assert storage.join(uri, "x") == s3_uri("bkt/pre/x", 9000)
    assert storage.join("s3://bkt", "x") == "s3://bkt/x"
    assert storage.join("file:///tmp/r", "x") == "file:///tmp/r/x"
    fs, path = get_fs_and_path(storage.join(uri, "x"))  # what Ray does with storage_path and restore paths
    assert isinstance(fs, pafs.S3FileSystem) and path == "bkt/pre/x"
    assert pafs.FileSystem.from_uri(storage.join(uri, "x"))[1] == "bkt/pre/x"


def test_ray_gets_a_uri_unchanged_and_a_local_path_absolute(tmp_path, monkeypatch):
    uri = s3_uri("bkt/pre", 9000)
    assert _run_config(StudyConfig(results_dir=uri), plan(StudyConfig())).storage_path == uri
    monkeypatch.chdir(tmp_path)
    assert _run_config(StudyConfig(results_dir="res"), plan(StudyConfig())).storage_path == str(tmp_path.resolve() / "res")
    assert storage.storage_path("~/res") == str(Path.home().resolve() / "res")


def test_existing_experiment_at_a_uri_is_refused_unless_resume_or_overwrite(results_uri):
    config = StudyConfig(results_dir=results_uri, name="x")
    location = storage.join(results_uri, "x")
    assert prepare_experiment_dir(config, create=False) == location  # checks only
    assert not storage.is_nonempty_dir(location)
    assert prepare_experiment_dir(config) == location
    storage.write_text(location, "study.json", json.dumps({"config": {"epochs": 3}}))
    assert json.loads(storage.read_text(location, "study.json")) == {"config": {"epochs": 3}}
    assert storage.is_nonempty_dir(location)
    for create in (False, True):
        with pytest.raises(ConfigError, match="already exists: pass --resume"):
            prepare_experiment_dir(config, create=create)
    with pytest.raises(ConfigError, match="no experiment to resume"):  # no Ray state in it
        prepare_experiment_dir(replace(config, resume=True))
    assert storage.read_text(location, "study.json")
    prepare_experiment_dir(replace(config, overwrite=True))
    assert not storage.is_nonempty_dir(location)


def test_local_copy_leaves_checkpoints_out_and_publish_uploads_the_report(results_uri, tmp_path):
    location = storage.join(results_uri, "x")
    for name in ("study.json", "t1/result.json", "t1/checkpoint_000001/checkpoint.ckpt", "val_acc.png"):
        storage.write_text(location, name, name)
    local = storage.local_copy(location)
    assert local.is_relative_to(tmp_path / "cache" / "lrstudy" / "results")
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == ["study.json", "t1/result.json", "val_acc.png"]
    (local / "report.md").write_text("# report")
    (local / "val_acc.png").unlink()  # a figure the new report no longer has
    storage.publish(local, location, ["report.md", "val_acc.png", "never_written.png"])
    assert storage.read_text(location, "report.md") == "# report"
    assert storage.read_text(location, "t1/checkpoint_000001/checkpoint.ckpt")  # untouched
    with pytest.raises(OSError):
        storage.read_text(location, "val_acc.png")
    (local / "stale.txt").write_text("from an earlier download")
    assert not (storage.local_copy(location) / "stale.txt").exists()
    with pytest.raises(ConfigError, match="no such experiment"):
        storage.local_copy(storage.join(results_uri, "missing"))


def test_local_folders_stay_local(tmp_path):
    assert storage.local_copy(str(tmp_path)) == tmp_path
    storage.publish(tmp_path, str(tmp_path), ["report.md"])  # nothing to upload


def exit_code(main_fn, argv: list[str]) -> int:
    """A CLI's return value, or the code it exits with."""
    try:
        return main_fn(argv)
    except SystemExit as e:
        return e.code


def one_line_error(capsys, code: int, *words: str) -> None:
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and all(w in err for w in words), err


def test_unknown_scheme_unreachable_server_or_missing_bucket_is_one_line_and_exit_2(s3_port, capsys):
    from study.analyze import main as analyze

    one_line_error(capsys, exit_code(main, ["--results-dir", "foo://x"]), "Unrecognized filesystem type")
    one_line_error(capsys, exit_code(main, ["--results-dir", s3_uri(f"{BUCKET}/r", free_port())]), "cannot reach")
    one_line_error(capsys, exit_code(main, ["--results-dir", s3_uri("no-such-bucket/r", s3_port)]), "cannot write")
    one_line_error(capsys, exit_code(main, ["--resume", "--results-dir", s3_uri(f"{BUCKET}/r", s3_port)]), "missing or unreadable")
    one_line_error(capsys, exit_code(analyze, ["foo://x"]), "Unrecognized filesystem type")
    one_line_error(capsys, exit_code(analyze, [s3_uri(f"{BUCKET}/nothing-here", s3_port)]), "no such experiment")


def s3_files(uri: str) -> dict[str, bytes]:
    """Every file under a URI, by relative path, with its content."""
    fs, root = pafs.FileSystem.from_uri(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(root) + 1:]] = f.read()
    return out


@pytest.mark.slow
def test_study_runs_resumes_and_is_analysed_on_s3(s3_port, tmp_path):
    results = s3_uri(f"{BUCKET}/studies", s3_port)
    exp = storage.join(results, "s3")
    env = {**AWS_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    study = ["--smoke", "--subset", "2000", "--epochs", "2", "--lrs", "0.01", "--finder-rules", "lightning", "--results-dir", results, "--name", "s3",
             "--data-dir", str(real_data_dir())]
    proc = run_module("study.run", *study, **env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    files = s3_files(exp)
    trials = sorted({name.split("/")[0] for name in files if name.endswith("/params.json")})
    assert len(trials) == 2, sorted(files)  # the finder and manual 0.01
    for trial in trials:
        assert files[f"{trial}/result.json"].count(b"\n") == 2  # one row per epoch
        assert any(n.startswith(f"{trial}/events.out.tfevents.") for n in files), trial
        assert any(n.startswith(f"{trial}/checkpoint_") for n in files), trial
    assert {"study.json", "summary.json", "comparison.csv", "report.md", "val_acc.png"} <= files.keys()
    assert json.loads(files["study.json"])["config"]["results_dir"] == results
    mirror = tmp_path / "cache" / "lrstudy" / "results" / "s3" / BUCKET / "studies" / "s3"
    assert (mirror / "report.md").read_bytes() == files["report.md"]
    assert not list(mirror.glob("*/checkpoint_*"))
    assert str(mirror) in proc.stdout and exp in proc.stdout

    resumed = run_module("study.run", "--resume", "--results-dir", results, "--name", "s3", **env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = s3_files(exp)
    for trial in trials:  # nothing reran: every trial's results are byte for byte the same
        for name in ("result.json", "progress.csv"):
            assert after[f"{trial}/{name}"] == files[f"{trial}/{name}"], (trial, name)

    again = run_module("study.run", *study, **env)
    assert again.returncode == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1, again.stderr

    analysed = run_module("study.analyze", exp, **env)
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    assert json.loads(s3_files(exp)["summary.json"]) == json.loads(files["summary.json"])
