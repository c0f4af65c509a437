"""Reading user files (JSONL / Parquet) with errors that name the file, row and field, and
writing outputs atomically (temporary name in the same dir, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from diversens.errors import UserError

SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet)")
    return fmt


def read_table(path: str | Path) -> pa.Table:
    """Read a JSONL or Parquet file into Arrow; malformed content is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if file_format(path) == "parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    numbered = list(read_jsonl_rows(path))
    try:
        return pa.Table.from_pylist([row for _, row in numbered])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _mixed_types(numbered, path) from None


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


def read_jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: row {lineno}: not UTF-8 (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}: row {lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}: row {lineno}: expected a JSON object")
            yield lineno, row


def require_field(table: pa.Table, path: str | Path, name: str, hint: str = "") -> None:
    """A missing field names the file, the field and the fields that are there."""
    if name not in table.column_names:
        have = ", ".join(table.column_names) or "none"
        raise UserError(f"{path}: no field {name!r} (fields: {have}){hint}")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as e:
        raise UserError(f"{final}: cannot write output ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_png(fig, path: str | Path) -> None:
    """Write a matplotlib Figure as PNG atomically (Figure objects need no pyplot backend)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
