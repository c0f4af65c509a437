"""Checking a pairs file on the driver, before any Ray worker starts (docs/design.md §6).

A TRL DPO dataset has `prompt`, `chosen` and `rejected`, each either a string ("standard") or a
list of {role, content} messages ("conversational"), all three in one format: TRL joins a prompt
and its answer (`prompt + chosen`), which for a list and a string fails in the workers.
`diversens generate-pairs` writes conversational pairs; a file that mixes the two formats is made
conversational, each string becoming one message (a prompt the user's, an answer the
assistant's), as a chat template reads it. The texts stay as given.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from diversens.errors import UserError, shown
from diversens.io import read_table, require_field
from diversens.prompts.loading import ROLES, shown_empty
from diversens.text import as_read

PAIR_FIELDS = ("prompt", "chosen", "rejected")
ROLE_OF = {"prompt": "user", "chosen": "assistant", "rejected": "assistant"}  # of a plain string


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
    (`check_pair`), all fields in one format (`one_format`). Errors name the file, row and
    field."""
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
    pairs = table.select(list(PAIR_FIELDS))
    for row, rec in enumerate(pairs.to_pylist(), start=1):
        check_pair(rec, kinds, f"{path}: row {row}")
    return one_format(pairs, kinds)


def one_format(pairs: pa.Table, kinds: dict[str, str]) -> pa.Table:
    """`pairs` with its fields in one format: where any is conversational, each string of a
    standard field becomes one message of `ROLE_OF` that field."""
    if "conversational" not in kinds.values():
        return pairs
    for name in (n for n, kind in kinds.items() if kind == "standard"):
        role = ROLE_OF[name]
        messages = [[{"role": role, "content": text}] for text in pairs[name].to_pylist()]
        pairs = pairs.set_column(pairs.schema.get_field_index(name), name, pa.array(messages))
    return pairs


def check_pair(rec: dict, kinds: dict[str, str], where: str) -> None:
    """One pair as a TRL DPO example: no side empty or blank, messages with known roles, and a
    chosen that differs from the rejected (identical sides carry no preference: DPO's loss
    stays at log 2 and the run learns nothing). Empty and identical are judged as a reader
    sees the texts (`as_read`): only invisible characters is empty, and NFC and NFD of one
    text are the same text."""
    texts = {}
    for name in PAIR_FIELDS:
        value = rec[name]
        if kinds[name] == "conversational":
            for j, m in enumerate(value or []):
                if m.get("role") not in ROLES:
                    raise UserError(
                        f"{where}: field '{name}[{j}].role': {shown(m.get('role'))} is not one of "
                        f"{ROLES}"
                    )
            value = "\n".join(str(m.get("content") or "") for m in value or [])
        texts[name] = as_read(value or "")
        if not texts[name]:
            given = f": {shown_empty(value)}" if value else ""
            raise UserError(f"{where}: field {name!r} is empty{given}")
    if texts["chosen"] == texts["rejected"]:
        raise UserError(
            f"{where}: fields 'chosen' and 'rejected' are the same text as a reader sees it "
            "(Unicode form, invisible characters and spacing aside): no preference to learn"
        )
