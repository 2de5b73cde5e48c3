"""The project's one way to write a file: whole or not at all, on a local disk or at a URI."""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path

FINDER_FILE = "lr_finder.json"  # a finder or cyclic trial's range test, in its trial folder


def write_atomic(location: str | Path, data: str | bytes) -> None:
    """Write `data` (text is UTF-8) to the file `location`: a local path, or a URI that Ray's
    `storage_path` accepts (s3://, gs://, file://; through pyarrow's file systems, as Ray does).

    The bytes go to a temporary file next to the target, then replace it in one rename: a reader
    sees the old file or the new one, never half of one, and a failed write leaves no temporary
    file. A local file is fsynced before the rename. On object stores a move is a copy, but the
    upload itself is whole or absent."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    location = str(location)
    if "://" in location:
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(location)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = path + ".tmp"
        try:
            with fs.open_output_stream(tmp) as f:
                f.write(data)
            fs.move(tmp, path)
        except BaseException:
            fs.delete_file(tmp) if fs.get_file_info(tmp).type == pafs.FileType.File else None
            raise
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
