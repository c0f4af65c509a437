"""Reading user files (JSONL / Parquet) with errors that name the file, row and field, and
writing outputs atomically (temporary name in the same dir, then rename)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from diversens import storage
from diversens.errors import UserError

log = logging.getLogger(__name__)

SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet)")
    return fmt


GZIP_MAGIC = b"\x1f\x8b"
# A lone UTF-16 surrogate escape (\ud800-\udfff): json.loads accepts it, Arrow and UTF-8 do not.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_input_file(path: str | Path) -> None:
    """The input exists and is a regular file (not a directory, FIFO or device); at a URI, an
    object."""
    if storage.is_uri(path):
        storage.check_file(str(path))
        return
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: not a regular file (a pipe or device); give a file")


def read_table(path: str | Path) -> pa.Table:
    """Read a JSONL or Parquet file (local or at a URI) into Arrow; malformed content is a
    one-line UserError."""
    if storage.is_uri(path):
        return storage.read_local(read_table, path)
    path = Path(path)
    if file_format(path) == "parquet":
        return read_parquet(path)
    numbered = list(read_jsonl_rows(path))
    try:
        return pa.Table.from_pylist([row for _, row in numbered])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _mixed_types(numbered, path) from None


def read_parquet(
    path: Path, required: Iterable[str] = (), columns: Iterable[str] | None = None
) -> pa.Table:
    """A local Parquet file, or a directory of them (a run's scored/), with the `required`
    fields (and of the others only `columns`, where given); a missing or damaged one is a
    one-line UserError."""
    required = tuple(required)
    if not path.is_dir():
        check_input_file(path)
    try:
        first = min(path.glob("*.parquet"), default=path) if path.is_dir() else path
        names = pq.read_schema(first).names
        # Arrow reads a file with a column twice, then fails at the first look-up by name.
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise UserError(f"{path}: column {twice[0]!r} appears twice; a column name must be "
                            "unique (which one is meant?)")  # fmt: skip
        wanted = None if columns is None else [n for n in dict.fromkeys([*required, *columns])
                                               if n in names]  # fmt: skip
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowInvalid, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable Parquet file ({reason})") from None
    for name in required:
        require_field(table, path, name)
    return table


def iter_tables(path: Path, rows: int, schema: pa.Schema | None = None) -> Iterator[pa.Table]:
    """A local JSONL or Parquet file as consecutive tables of at most `rows` rows, each read
    when the caller asks for it: memory holds one table, whatever the file's size. At least one
    table, empty for a file without rows. `schema`: the types of the JSONL rows (else each
    table's own); errors name the file and row, as `read_table`'s."""
    if file_format(path) == "parquet":
        yield from _parquet_tables(path, rows)
        return
    batch: list[tuple[int, dict]] = []
    yielded = False
    for numbered in read_jsonl_rows(path):
        batch.append(numbered)
        if len(batch) == rows:
            yield _jsonl_table(batch, path, schema)
            batch, yielded = [], True
    if batch or not yielded:
        yield _jsonl_table(batch, path, schema)


def _jsonl_table(numbered: list[tuple[int, dict]], path: Path, schema: pa.Schema | None):
    try:
        return pa.Table.from_pylist([row for _, row in numbered], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _mixed_types(numbered, path) from None


def _parquet_tables(path: Path, rows: int) -> Iterator[pa.Table]:
    check_input_file(path)
    try:
        reader = pq.ParquetFile(path)
        names = reader.schema_arrow.names
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise UserError(f"{path}: column {twice[0]!r} appears twice; a column name must be "
                            "unique (which one is meant?)")  # fmt: skip
        batches = reader.iter_batches(batch_size=rows)
        yielded = False
        while (batch := next(batches, None)) is not None:
            yield pa.Table.from_batches([batch])
            yielded = True
        if not yielded:
            yield reader.schema_arrow.empty_table()
    except (pa.ArrowInvalid, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable Parquet file ({reason})") from None


def _mixed_types(numbered: list[tuple[int, dict]], path: Path) -> UserError:
    """Name the first row whose field has another JSON type than that field's first value."""
    first: dict[str, type] = {}
    for lineno, row in numbered:
        for key, value in row.items():
            if value is None:
                continue
            kind = first.setdefault(key, type(value))
            if type(value) is not kind:
                return UserError(
                    f"{path}: row {lineno}: field {key!r} is {type(value).__name__}, "
                    f"earlier rows have {kind.__name__}"
                )
    return UserError(f"{path}: rows cannot form one table (mixed nested types)")


class DuplicateKey(ValueError):
    """A JSON object with a key twice (`json` would keep the last value)."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} given twice")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for `json.loads` that refuses a key given twice in one object."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def read_jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line. A UTF-8 byte-order mark (files saved on
    Windows) is skipped; gzip data, bytes that are not UTF-8, JSON nested too deep for the
    parser, lone surrogate escapes and a key given twice in an object are one-line errors."""
    check_input_file(path)
    with open(path, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            raise UserError(f"{path}: gzip-compressed; decompress it first (gunzip)")
        f.seek(0)
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: row {lineno}: not UTF-8 (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=unique_keys)
            except DuplicateKey as e:
                raise UserError(f"{path}: row {lineno}: key {e.key!r} given twice") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path}: row {lineno}: malformed JSON ({e.msg})") from None
            except RecursionError:
                raise UserError(f"{path}: row {lineno}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}: row {lineno}: expected a JSON object")
            if SURROGATE_ESCAPE.search(raw):
                _check_unicode(row, f"{path}: row {lineno}")
            yield lineno, row


def _check_unicode(row: dict, where: str) -> None:
    """Name the field holding a lone surrogate (a pair of escapes decodes to one character)."""
    for key, value in row.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"{where}: field {key!r}: holds a lone surrogate escape (\\ud800-\\udfff), "
                "not valid Unicode"
            ) from None


def require_field(table: pa.Table, path: str | Path, name: str, hint: str = "") -> None:
    """A missing field names the file, the field and the fields that are there."""
    if name not in table.column_names:
        have = ", ".join(table.column_names) or "none"
        raise UserError(f"{path}: no field {name!r} (fields: {have}){hint}")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.
    A store's fault while it is written (a full disk, no permission: `storage.fault`) is one
    line naming `final`; the temporary file is removed."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as e:
        raise storage.StorageError.at(final, storage.reason(e)) from None
    os.close(fd)
    try:
        with storage.faults(final):
            yield Path(tmp)
            os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(final: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; it becomes `final` only if the block succeeds.

    `replace=False` is for outputs several processes may build at once (a cache): the first one
    renamed into place wins and the others' identical copies are dropped.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as e:
        raise storage.StorageError.at(final, storage.reason(e)) from None
    try:
        with storage.faults(final):
            yield tmp
            if replace and final.exists():
                shutil.rmtree(final)
            try:
                tmp.rename(final)
            except OSError:
                if replace or not final.exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_png(fig, path: str | Path) -> None:
    """Write a matplotlib Figure as PNG atomically (Figure objects need no pyplot backend)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def write_summary(path: str | Path, summary: dict, complete: bool = True) -> None:
    """A run's summary JSON (secrets masked), written atomically with a `complete` flag: a job
    writes it with False before it writes any final output and with True after the last one, so
    outputs an interrupted run left behind never pass for a finished run's."""
    from diversens.config import redacted

    body = {"complete": complete, **redacted(summary)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")


def read_json(path: Path) -> object:
    """A local JSON file; a missing or damaged one is a one-line UserError."""
    check_input_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{path}: not readable JSON ({e})") from None


def read_summary(path: Path, *keys: str) -> dict:
    """A finished stage's summary (`write_summary`), holding `keys`; one that is missing,
    damaged, lacks a key or was left by an unfinished stage is a one-line UserError."""
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise UserError(f"{path}: not a run summary (expected a JSON object)")
    if summary.get("complete") is not True:
        raise UserError(f"{path}: the stage did not finish (not marked complete); rerun it first")
    for key in keys:
        if key not in summary:
            raise UserError(f"{path}: no entry {key!r} (written by an older diversens?); rerun "
                            "the stage to have it")  # fmt: skip
    return summary


def earlier_summary(where: str, then: str) -> dict[str, Any] | None:
    """The summary an earlier run left at `where` (a local path or URI), or None where there is
    none; one cut short or overwritten with garbage is set aside as .damaged with one warning
    saying what happens `then`, and counts as none."""
    if storage.file_type(where) != storage.pafs.FileType.File:
        return None
    try:
        summary = json.loads(storage.read_text(where))
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        fs, path = storage.filesystem(where)
        with storage.faults(where):
            fs.move(path, path + ".damaged")
        log.warning("damaged summary set aside, %s: %s.damaged (%s)", then, where,
                    str(e).splitlines()[0][:120])  # fmt: skip
        return None
    return summary


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Atomically: renamed into place locally; at a URI one object, which stores publish whole."""
    if storage.is_uri(path):
        with storage.open_output(str(path)) as f:
            pq.write_table(table, f)
        return
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@contextlib.contextmanager
def parquet_writer(path: str | Path, schema: pa.Schema) -> Iterator[Callable[[pa.Table], None]]:
    """A Parquet file written table by table (memory holds one), as atomically as
    `write_parquet`: it appears at `path` only once the block ends without error; for a URI it
    is built in a local temporary file and then uploaded."""
    if not storage.is_uri(path):
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            yield writer.write_table
        return
    with tempfile.TemporaryDirectory(prefix="diversens-out-") as tmp:
        local = Path(tmp) / storage.split_location(path)[1]
        with pq.ParquetWriter(local, schema) as writer:
            yield writer.write_table
        storage.upload(local, str(path))
