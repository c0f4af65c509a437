"""Prompts the engine could not take (SampleStage's `quarantine` column): split off, written
to a side file with their reasons, and counted by reason code in the run summary; `SideFile`
does it a table at a time, for a pass over a run's parts."""

from __future__ import annotations

import contextlib
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
    with SideFile(side_file) as held:
        rest = held.split(rows)
    return rest, held.counts()


def kept(rows: pa.Table) -> pa.Table:
    """The rows not quarantined, without the `quarantine` column."""
    return rows.filter(pc.is_null(rows["quarantine"])).drop_columns(["quarantine"])


class SideFile:
    """`split` over a run's tables one at a time: the quarantined rows of each are appended to
    the side file, which is in place (rewritten whole) once the `with` block ends without
    error; `counts` by reason code."""

    def __init__(self, path: Path):
        self.path = path
        self.codes: Counter[str] = Counter()

    def __enter__(self) -> SideFile:
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(tmp.open("w", encoding="utf-8"))
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def split(self, rows: pa.Table) -> pa.Table:
        """`kept(rows)`; the others to the file."""
        held = pc.invert(pc.is_null(rows["quarantine"]))
        quarantined = rows.filter(held).select(["prompt_id", "task", "quarantine", "messages"])
        self._file.writelines(json.dumps(r, ensure_ascii=False) + "\n"
                              for r in quarantined.to_pylist())  # fmt: skip
        # A reason reads "<code>: <detail>"; details (token counts, messages) vary per prompt.
        self.codes.update(r.split(":")[0] for r in quarantined["quarantine"].to_pylist())
        return kept(rows)

    def counts(self) -> dict[str, int]:
        return dict(sorted(self.codes.items()))
