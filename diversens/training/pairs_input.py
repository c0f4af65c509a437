"""Checking a pairs file on the driver, before any Ray worker starts (DESIGN.md §3).

A TRL DPO dataset has `prompt`, `chosen` and `rejected`, each either a string ("standard") or a
list of {role, content} messages ("conversational"); `diversens generate-pairs` writes the latter.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from diversens.errors import UserError
from diversens.io import read_table, require_field

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def _kind(tp: pa.DataType) -> str | None:
    """'standard' for strings, 'conversational' for list<struct<role, content, ...>>, else None."""
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        return "standard"
    if pa.types.is_list(tp) or pa.types.is_large_list(tp):
        item = tp.value_type
        if pa.types.is_struct(item) and {"role", "content"} <= {f.name for f in item}:
            return "conversational"
    return None


def read_pairs(path: str | Path) -> pa.Table:
    """The `prompt`/`chosen`/`rejected` columns of a JSONL/Parquet pairs file, checked: every
    field present and of an accepted type, none empty, at least one row. Errors name the file,
    row and field."""
    table = read_table(path)
    for name in PAIR_FIELDS:
        require_field(table, path, name, hint=" — a DPO pairs file needs prompt, chosen, rejected")
    if table.num_rows == 0:
        raise UserError(f"{path}: no pairs (0 rows)")
    kinds = {}
    for name in PAIR_FIELDS:
        tp = table.schema.field(name).type
        kinds[name] = _kind(tp)
        if kinds[name] is None:
            raise UserError(
                f"{path}: field {name!r} has type {tp}; expected a string or a list of "
                "{role, content} messages"
            )
    if kinds["chosen"] != kinds["rejected"]:
        raise UserError(f"{path}: fields 'chosen' and 'rejected' must have the same type")
    for name in PAIR_FIELDS:
        column = table.column(name)
        empty = pc.is_null(column)
        if kinds[name] == "conversational":
            empty = pc.or_(empty, pc.equal(pc.list_value_length(column), 0))
        else:
            empty = pc.or_(empty, pc.equal(pc.utf8_length(column), 0))
        if pc.any(empty).as_py():
            row = pc.index(empty, True).as_py() + 1
            raise UserError(f"{path}: row {row}: field {name!r} is empty")
    return table.select(list(PAIR_FIELDS))
