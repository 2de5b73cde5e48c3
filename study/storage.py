"""Where results live: a local folder, or a URI that Ray's `storage_path` accepts (s3://, gs://, file://).

Ray Tune writes the experiment there itself (trial folders, TensorBoard events, checkpoints); the
driver's own files (study.json, the report) go through pyarrow's file systems, the ones Ray uses,
so a URI and a local path behave alike. A location is an absolute local path or a URI; URIs keep
their query (`s3://bucket/prefix?endpoint_override=host:9000&scheme=http`).

The analysis reads a local folder. For a URI, `local_copy` downloads the experiment, checkpoints
left out, into a mirror under `$XDG_CACHE_HOME/lrstudy/results` (default `~/.cache`), replaced on
each download; `publish` uploads the report's files back next to the trials.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from study.config import ConfigError, StudyConfig
from trainables.files import write_atomic

WRITE_CHECK = ".lrstudy-write-check"
STUDY_FILE = "study.json"  # the driver's record of a study, in its experiment folder


def is_uri(location: str) -> bool:
    return "://" in str(location)


def storage_path(results_dir: str) -> str:
    """What `RunConfig(storage_path=...)` gets: a URI unchanged, a local path made absolute."""
    return results_dir if is_uri(results_dir) else str(Path(results_dir).expanduser().resolve())


def experiment_dir(results_dir: str, name: str) -> str:
    """The experiment's location: an absolute local path, or a URI."""
    return join(storage_path(results_dir), name)


def join(location: str, name: str) -> str:
    """`location/name`; in a URI, the name goes into the path, before the query."""
    if not is_uri(location):
        return str(Path(location) / name)
    parts = urlsplit(location)
    return urlunsplit(parts._replace(path=posixpath.join(parts.path or "/", name)))


def _reason(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for a location and the path on it; ConfigError for a URI it can't use."""
    try:
        return pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as e:  # unknown scheme, bad query, unknown bucket region, ...
        raise ConfigError(f"cannot use results location {location}: {_reason(e)}") from None


def is_nonempty_dir(location: str) -> bool:
    """A folder with something in it; ConfigError when the storage can't be reached."""
    fs, path = filesystem(location)
    try:
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            return False
        return bool(fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))
    except OSError as e:
        raise ConfigError(f"cannot reach {location}: {_reason(e)}") from None


def check_writable(location: str) -> None:
    """ConfigError unless the folder `location` can be created: locally, its nearest existing
    parent must be a writable folder; elsewhere, a small file is written next to it and removed."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        local = Path(path)
        nearest = next(p for p in (local, *local.parents) if p.exists())
        if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
            why = "Not a directory" if not nearest.is_dir() else "Permission denied"
            raise ConfigError(f"cannot create results folder {location}: {why} ({nearest})")
        return
    probe = posixpath.join(posixpath.dirname(path), WRITE_CHECK)
    try:
        with fs.open_output_stream(probe) as f:
            f.write(b"lrstudy can write here\n")
        fs.delete_file(probe)
    except OSError as e:
        raise ConfigError(f"cannot write to results location {location}: {_reason(e)}") from None


def remove(location: str) -> None:
    fs, path = filesystem(location)
    fs.delete_dir(path)


def make_dir(location: str) -> None:
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


def write_text(location: str, name: str, text: str) -> None:
    """Write the file `name` in the folder `location`, whole or not at all."""
    write_atomic(join(location, name), text)


def read_text(location: str, name: str) -> str:
    fs, path = filesystem(location)
    with fs.open_input_stream(posixpath.join(path, name)) as f:
        return f.read().decode("utf-8")


def prepare_experiment_dir(config: StudyConfig, create: bool = True) -> str:
    """The experiment folder, refusing to clobber an earlier study unless asked to.

    `create=False` only checks: run.py refuses a taken --name before anything starts, and removes
    (--overwrite) or creates the folder only once Ray is reached and the resources fit, so a
    study that cannot start leaves the old one in place.
    """
    path = experiment_dir(config.results_dir, config.name)
    exists = is_nonempty_dir(path)
    if config.resume:
        from ray import tune  # only here: Ray Tune says whether it can restore what is there

        if not exists or not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no experiment to resume at {path}")
        return path
    if exists and not config.overwrite:
        raise ConfigError(f"experiment {path} already exists: pass --resume to continue it or --overwrite to replace it")
    if not create:
        check_writable(path)
        return path
    try:
        if exists:
            remove(path)
        make_dir(path)
    except OSError as e:
        raise ConfigError(f"cannot create results folder {path}: {str(e).splitlines()[0]}") from None
    return path


def mirror_dir(location: str) -> Path:
    """The local folder a URI's experiment is downloaded to: the URI's bucket and path under the cache."""
    parts = urlsplit(location)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lrstudy" / "results" / parts.scheme / parts.netloc / parts.path.strip("/")


def local_copy(location: str) -> Path:
    """A local folder holding the experiment: the experiment itself when it is local; for a URI its
    mirror, downloaded afresh without the checkpoint_* folders. ConfigError when there is nothing."""
    if not is_uri(location):
        return Path(location)
    if not is_nonempty_dir(location):
        raise ConfigError(f"{location}: no such experiment")
    fs, path = filesystem(location)
    mirror = mirror_dir(location)
    shutil.rmtree(mirror, ignore_errors=True)
    local = pafs.LocalFileSystem()
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        rel = posixpath.relpath(info.path, path)
        if info.type != pafs.FileType.File or any(p.startswith("checkpoint_") for p in rel.split("/")):
            continue
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(info.path, str(mirror / rel), source_filesystem=fs, destination_filesystem=local)
    return mirror


def publish(local_dir: Path, location: str, names) -> None:
    """Make the files `names` at a URI location match the local copy: upload those that exist
    locally, delete those that don't (a stale figure). Nothing to do when the location is local."""
    if not is_uri(location):
        return
    fs, path = filesystem(location)
    local = pafs.LocalFileSystem()
    for name in names:
        source, target = Path(local_dir) / name, posixpath.join(path, name)
        if source.is_file():
            pafs.copy_files(str(source), target, source_filesystem=local, destination_filesystem=fs)
        elif fs.get_file_info(target).type == pafs.FileType.File:
            fs.delete_file(target)
