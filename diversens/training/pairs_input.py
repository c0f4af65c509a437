"""Checking a pairs file on the driver, before any Ray worker starts (docs/design.md §6).

A TRL DPO dataset has `prompt`, `chosen` and `rejected`, each either a string ("standard") or a
list of {role, content} messages ("conversational"); `diversens generate-pairs` writes the latter.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from diversens.errors import UserError
from diversens.io import read_table, require_field
from diversens.prompts.loading import ROLES

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
    field present and of an accepted type, at least one row, every row a usable pair
    (`check_pair`). Errors name the file, row and field."""
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
    pairs = table.select(list(PAIR_FIELDS))
    for row, rec in enumerate(pairs.to_pylist(), start=1):
        check_pair(rec, kinds, f"{path}: row {row}")
    return pairs


def check_pair(rec: dict, kinds: dict[str, str], where: str) -> None:
    """One pair as a TRL DPO example: no side empty or blank, messages with known roles, and a
    chosen that differs from the rejected (identical sides carry no preference: DPO's loss
    stays at log 2 and the run learns nothing)."""
    texts = {}
    for name in PAIR_FIELDS:
        value = rec[name]
        if kinds[name] == "conversational":
            for j, m in enumerate(value or []):
                if m.get("role") not in ROLES:
                    raise UserError(
                        f"{where}: field '{name}[{j}].role': {m.get('role')!r} is not one of "
                        f"{ROLES}"
                    )
            value = "\n".join(str(m.get("content") or "") for m in value or [])
        if not (value or "").strip():
            raise UserError(f"{where}: field {name!r} is empty")
        texts[name] = value.strip()
    if texts["chosen"] == texts["rejected"]:
        raise UserError(
            f"{where}: fields 'chosen' and 'rejected' are the same text: no preference to learn"
        )
