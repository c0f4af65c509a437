"""Prompts the engine could not take (SampleStage's `quarantine` column): split off, written
to a side file with their reasons, and counted by reason code in the run summary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from diversens.io import atomic_path

FILE = "quarantine.jsonl"


def split(rows: pa.Table, side_file: Path) -> tuple[pa.Table, dict[str, int]]:
    """Write the quarantined rows to `side_file` (always, so no stale file survives a rerun);
    return the other rows without the `quarantine` column, and counts by reason code."""
    held = pc.invert(pc.is_null(rows["quarantine"]))
    quarantined = rows.filter(held).select(["prompt_id", "task", "quarantine", "messages"])
    with atomic_path(side_file) as tmp:
        lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in quarantined.to_pylist())
        tmp.write_text("".join(lines), encoding="utf-8")
    # A reason reads "<code>: <detail>"; details (token counts, messages) vary per prompt.
    codes = Counter(r.split(":")[0] for r in quarantined["quarantine"].to_pylist())
    kept = rows.filter(pc.invert(held)).drop_columns(["quarantine"])
    return kept, dict(sorted(codes.items()))
