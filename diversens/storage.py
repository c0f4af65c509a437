"""Outputs to a local directory or a cloud URI (s3://, gs://, file://).

Stages write to a local directory; for a URI they write to a local staging directory that is
copied to the URI when the stage succeeds (pyarrow's filesystems: S3, GCS, local). A failed stage
uploads nothing, so the URI never holds a half-written run; only the resumable parts
(diversens.jobs.chunks) go to the URI as they are written, each one whole.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from diversens.config import redacted
from diversens.errors import UserError

SCHEMES = ("s3://", "gs://", "gcs://", "file://")


def is_uri(location: str) -> bool:
    return location.startswith(SCHEMES)


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path in it for a local path or a URI."""
    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad URI
        raise UserError(f"output {redacted(location)}: not a usable URI ({e})") from None


def durable_root(location: str) -> str | None:
    """Where a run's parts go when its output is staged: the URI itself, so parts written before
    a crash survive it (None for a local output, whose parts live in it directly)."""
    return location.rstrip("/") if is_uri(location) else None


@contextlib.contextmanager
def output_dir(location: str) -> Iterator[Path]:
    """A local directory to write into; for a URI, uploaded there after the block succeeds."""
    if not is_uri(location):
        yield Path(location)
        return
    fs, root = filesystem(location)
    staging = Path(tempfile.mkdtemp(prefix="diversens-out-"))
    try:
        yield staging
        fs.create_dir(root, recursive=True)
        pafs.copy_files(str(staging), root, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
