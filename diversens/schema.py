"""The tables between the steps (docs/design.md §6): column names and Arrow types, in one place.

One row per prompt until pairs: per-candidate values are lists of length k. Stages declare what
they need and add from these groups (`diversens.stage`), and jobs check a table's types against
them before writing it (`check`), so a stage that emits the wrong type fails where it does, not
in a later reader.
"""

from __future__ import annotations

import pyarrow as pa

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _per_candidate(tp: pa.DataType) -> pa.DataType:
    return pa.list_(tp)


PROMPT = {"prompt_id": pa.string(), "task": pa.string(), "messages": MESSAGES}
CANDIDATE = {
    "responses": _per_candidate(pa.string()),
    "turn": _per_candidate(pa.int64()),  # 1: first answer; 2: "a different answer" follow-up
    "parent": _per_candidate(pa.int64()),
    "finish_reason": _per_candidate(pa.string()),
    "n_tokens": _per_candidate(pa.int64()),
    "truncated": _per_candidate(pa.bool_()),
    "engine": pa.string(),
    "model": pa.string(),
    "sampling": pa.string(),  # JSON of the sampling parameters
    "config_hash": pa.string(),
}
# Why the engine could not take a prompt (null: fine); such rows go to a side file, and the
# column is dropped from the rows that are kept (diversens.jobs.quarantine).
QUARANTINE = {"quarantine": pa.string()}


def measures(names) -> dict[str, pa.DataType]:
    """A float per candidate for each measure a run computes (`diversens.measures`)."""
    return {m: _per_candidate(pa.float64()) for m in names}


QUALITY = {"quality": _per_candidate(pa.float64())}
VALIDITY = {
    "reject_reason": _per_candidate(pa.string()),  # null: valid
    "valid": _per_candidate(pa.bool_()),
}
# Both sides of every pair carry the same measures whatever the strategy ranked by, so reports
# compare strategies on one footing.
PAIR_MEASURES = ("n_words", "entropy", "ttr", "maas", "dsi", "quality")
PAIR = {
    "prompt_id": pa.string(),
    "task": pa.string(),
    "prompt": MESSAGES,
    "chosen": MESSAGES,
    "rejected": MESSAGES,
    **{f"{side}_{m}": pa.float64() for m in PAIR_MEASURES for side in ("chosen", "rejected")},
    "length_bucket": pa.string(),
    "strategy": pa.string(),
    "margin": pa.float64(),
}


def names(*groups: dict[str, pa.DataType]) -> tuple[str, ...]:
    return tuple(name for group in groups for name in group)


def _plain(tp: pa.DataType) -> pa.DataType:
    """The type with large_* variants made plain (pandas writes large_string)."""
    if pa.types.is_large_string(tp):
        return pa.string()
    if pa.types.is_list(tp) or pa.types.is_large_list(tp):
        return pa.list_(_plain(tp.value_type))
    if pa.types.is_struct(tp):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in tp])
    return tp


def _fits(have: pa.DataType, want: pa.DataType) -> bool:
    """`have` is `want`, or a column of nulls only (Arrow types those as null), or holds nulls
    where `want` holds values (a list of nulls)."""
    have, want = _plain(have), _plain(want)
    if have == want or pa.types.is_null(have):
        return True
    if pa.types.is_list(have) and pa.types.is_list(want):
        return _fits(have.value_type, want.value_type)
    return False


def check(schema: pa.Schema, where: str, *groups: dict[str, pa.DataType]) -> None:
    """Every column of `groups` is in `schema` with its type; else a ValueError naming it."""
    for name, want in ((n, t) for g in groups for n, t in g.items()):
        if name not in schema.names:
            raise ValueError(
                f"{where}: column {name!r} is missing (has: {', '.join(schema.names)})"
            )
        have = schema.field(name).type
        if not _fits(have, want):
            raise ValueError(f"{where}: column {name!r} is {have}, expected {want}")
