"""Outputs to a local directory or a cloud URI (s3://, gs://, file://).

Stages write to a local directory; for a URI they write to a local staging directory that is
copied to the URI when the stage succeeds (pyarrow's filesystems: S3, GCS, local). A failed stage
uploads nothing, so the URI never holds a half-written run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from diversens.errors import UserError

SCHEMES = ("s3://", "gs://", "gcs://", "file://")


def is_uri(location: str) -> bool:
    return location.startswith(SCHEMES)


@contextlib.contextmanager
def output_dir(location: str) -> Iterator[Path]:
    """A local directory to write into; for a URI, uploaded there after the block succeeds."""
    if not is_uri(location):
        yield Path(location)
        return
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(location)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad URI
        raise UserError(f"output {location}: not a usable URI ({e})") from None
    staging = Path(tempfile.mkdtemp(prefix="diversens-out-"))
    try:
        yield staging
        fs.create_dir(root, recursive=True)
        pafs.copy_files(str(staging), root, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
