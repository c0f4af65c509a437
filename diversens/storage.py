"""Inputs and outputs at a local path or a cloud URI (s3://, gs://, file://).

On a cluster, nodes share nothing but object storage (docs/design.md §15), so every command takes
the same URIs for what it reads and writes, through pyarrow's filesystems (S3 honours
$AWS_ENDPOINT_URL, so an S3-compatible server works too):
- an input file at a URI is read from a local copy (`local_copy`);
- a model at a URI is copied once per node into the model cache (diversens.models);
- a run's outputs are written to a local directory, or for a URI to a local staging directory,
  and each stage publishes its part as soon as it is done (`Output.publish`): a later stage's
  failure loses nothing an earlier stage made. Resumable parts (diversens.jobs.chunks) and Ray
  Train checkpoints go to the URI directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pyarrow.fs as pafs

from diversens.config import redacted
from diversens.errors import UserError

SCHEMES = ("s3://", "gs://", "gcs://", "file://")
T = TypeVar("T")
# What the machine or the store, not the program, gets wrong (by errno): a full disk or quota, a
# file too large, a read-only or failing filesystem, permission lost.
FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
                errno.EPERM}  # fmt: skip
FULL_BYTES = 64 << 20  # a local disk with less free space than this is full


class StorageError(UserError):
    """A store that failed under a run (a full disk or quota, a server gone, a bucket deleted,
    permission lost): one line naming it (exit code 2). What was written whole stays, so the
    rerun resumes from it."""

    @classmethod
    def at(cls, location: str | Path, why: str, doing: str = "write output") -> StorageError:
        return cls(f"{redacted(str(location))}: cannot {doing} ({why})")


def fault(
    error: BaseException, *locations: str | Path, doing: str = "write output"
) -> StorageError | None:
    """`error` as one line naming the store at fault, if a store is: an OSError of FAULT_ERRNOS;
    any OSError without an errno while a store at a URI of `locations` is used (pyarrow's S3
    and GCS errors: a server gone, a bucket deleted); or any error while the disk of a local
    one is full (torch and safetensors report a full disk without an errno). None for any
    other error (a bug keeps its traceback) and for a user's mistake (a UserError)."""
    if isinstance(error, UserError):
        return error if isinstance(error, StorageError) else None
    local = [str(x) for x in locations if not is_uri(x)]
    full = next((x for x in local if disk_full(x)), None)
    if isinstance(error, OSError) and error.errno in FAULT_ERRNOS:
        where = full or next(iter(locations), None) or error.filename or "storage"
        return StorageError.at(where, reason(error), doing)
    uri = next((x for x in locations if is_uri(x)), None)
    if isinstance(error, OSError) and error.errno is None and uri is not None:
        return StorageError.at(uri, reason(error), doing)
    if full is not None:
        return StorageError.at(full, os.strerror(errno.ENOSPC), doing)
    return None


@contextlib.contextmanager
def faults(*locations: str | Path, doing: str = "write output") -> Iterator[None]:
    """Errors of the block that are a store's fault (`fault`) as its one-line StorageError."""
    try:
        yield
    except Exception as e:
        error = fault(e, *locations, doing=doing)
        if error is None:
            raise
        raise error from None


def disk_full(location: str | Path) -> bool:
    """The local disk holding `location` (or its nearest existing parent) is full."""
    path = Path(location).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < FULL_BYTES
    except OSError:
        return False


def is_uri(location: str | Path) -> bool:
    return str(location).startswith(SCHEMES)


def join(location: str, *parts: str) -> str:
    """`location`/parts, for a local path or a URI alike."""
    return "/".join([str(location).rstrip("/"), *parts])


def split_location(location: str | Path) -> tuple[str, str]:
    """(folder, file name) of a file's local path or URI."""
    if is_uri(location):
        folder, _, name = str(location).rstrip("/").rpartition("/")
        return folder, name
    path = Path(location)
    return str(path.parent), path.name


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path in it for a local path or a URI."""
    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad URI
        raise UserError(f"{redacted(location)}: not a usable URI ({e})") from None


def file_type(location: str) -> pafs.FileType:
    """What is at `location` (NotFound, File, Directory); an unreachable store is one line."""
    fs, path = filesystem(location)
    try:
        return fs.get_file_info(path).type
    except OSError as e:
        raise UserError(f"{redacted(location)}: cannot read ({reason(e)})") from None


def is_file(location: str) -> bool:
    return file_type(location) == pafs.FileType.File


def check_file(location: str) -> None:
    """There is a file (an object) at the URI `location`."""
    kind = file_type(location)
    if kind == pafs.FileType.NotFound:
        raise UserError(f"{redacted(location)}: no such file")
    if kind != pafs.FileType.File:
        raise UserError(f"{redacted(location)}: is a directory, not a file")


def read_text(location: str) -> str:
    fs, path = filesystem(location)
    with faults(location, doing="read"), fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local file with the content of the input file `location` (the file itself if local)."""
    if not is_uri(location):
        yield Path(location)
        return
    check_file(location)
    with tempfile.TemporaryDirectory(prefix="diversens-in-") as tmp:
        local = Path(tmp) / split_location(location)[1]
        download(location, local)
        yield local


def read_local(read: Callable[[Path], T], location: str | Path) -> T:
    """`read(path)` on a local copy of `location`; its errors name `location`, not the copy."""
    if not is_uri(location):
        return read(Path(location))
    with local_copy(str(location)) as local:
        try:
            return read(local)
        except UserError as e:
            raise UserError(str(e).replace(str(local), redacted(str(location)))) from None


def download(location: str, dest: Path) -> None:
    """Copy the file or directory at `location` to the local `dest`."""
    fs, path = filesystem(location)
    with faults(location, dest, doing="copy"):
        pafs.copy_files(path, str(dest), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip


def upload(local: Path, location: str) -> None:
    """Copy a local file or directory to `location` (a local path or a URI)."""
    fs, root = filesystem(location)
    try:
        if local.is_dir():
            fs.create_dir(root, recursive=True)
        else:
            fs.create_dir(str(PurePosixPath(root).parent), recursive=True)
        pafs.copy_files(str(local), root, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)  # fmt: skip
    except OSError as e:
        raise StorageError.at(location, reason(e)) from None


def replace_dir(local: Path, location: str) -> None:
    """Upload a directory to `location`, first removing what an earlier run left there."""
    fs, root = filesystem(location)
    try:
        fs.delete_dir_contents(root, missing_dir_ok=True)
    except OSError as e:
        raise StorageError.at(location, reason(e)) from None
    upload(local, location)


@contextlib.contextmanager
def open_output(location: str) -> Iterator[pafs.NativeFile]:
    """A stream writing one object at the URI `location` (object stores publish it whole); the
    store's faults while it is written are one line naming it."""
    fs, path = filesystem(location)
    with faults(location):
        fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
        with fs.open_output_stream(path) as f:
            yield f


def write_text(location: str, text: str) -> None:
    with open_output(location) as f:
        f.write(text.encode("utf-8"))


def check_writable(location: str) -> None:
    """Write and remove a probe object under `location`: a missing bucket or a store without
    write access fails here, before any work, not when the first stage publishes."""
    fs, root = filesystem(location)
    probe = f"{root.rstrip('/')}/.diversens-write-check-{uuid.uuid4().hex[:8]}"
    try:
        if isinstance(fs, pafs.LocalFileSystem):  # file://: a new run dir (object stores have none)
            fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except OSError as e:
        why = reason(e)
        if "NO_SUCH_BUCKET" in str(e) or "NoSuchBucket" in str(e):
            why = f"no bucket {root.split('/')[0]!r} there; create it first"
        raise UserError(f"output {redacted(location)}: cannot write there ({why})") from None


def reason(e: OSError) -> str:
    """Why an OSError happened, in a few words: its errno's text; of an object store's error a
    bucket that is not there, or its code and message ("NETWORK_CONNECTION during PutObject
    operation: ..."), without the key and request id around them."""
    if e.errno is not None:
        return os.strerror(e.errno)
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if bucket := re.search(r"in bucket '([^']+)': AWS Error NO_SUCH_BUCKET|^Bucket '([^']+)' "
                           "not found", text):  # fmt: skip
        return f"no bucket {bucket.group(1) or bucket.group(2)!r} there"
    aws = re.search(r"AWS Error (.+?)(?: \(Request ID: [^)]*\))?$", text)
    return aws.group(1) if aws else text


@dataclass(frozen=True)
class Output:
    """Where a run writes: `local` is the directory stages write into; `location` is where the
    user asked for it (the same directory, or a URI that `publish` copies each part to)."""

    location: str
    local: Path

    @property
    def staged(self) -> bool:
        return is_uri(self.location)

    def at(self, *parts: str) -> str:
        """The final location of a part: a URI, or an absolute path under the local output
        (Ray workers run in other working directories)."""
        if self.staged:
            return join(self.location, *parts)
        return str(self.local.absolute().joinpath(*parts))  # `~`: expanded at parse time

    def sub(self, *parts: str) -> Output:
        return Output(self.at(*parts), self.local.joinpath(*parts))

    def publish(self, *parts: str) -> None:
        """Copy a finished part (a file or directory under `local`) to its final location."""
        if self.staged and self.local.joinpath(*parts).exists():
            upload(self.local.joinpath(*parts), self.at(*parts))


@contextlib.contextmanager
def output_dir(location: str) -> Iterator[Output]:
    """The run's Output; for a URI a staging directory, removed at the end (what the stages
    published is at the URI; what they had not yet published was not finished)."""
    if not is_uri(location):  # absolute: Ray workers run in other working directories
        yield Output(str(location), Path(location).expanduser().absolute())
        return
    filesystem(location)  # a malformed URI fails before any work
    staging = Path(tempfile.mkdtemp(prefix="diversens-out-"))
    try:
        yield Output(location.rstrip("/"), staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
