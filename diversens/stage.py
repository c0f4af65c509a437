"""The contract every pipeline stage follows (docs/design.md §3).

A stage is a callable class: `__init__` loads what is heavy, `__call__(batch) -> batch` maps a
pandas batch to a pandas batch without side effects. It names the columns it needs and adds, and
checks both on the first batch: a wrong input fails with the column's name, not a KeyError deep
inside, and a stage that does not add what it declares fails at once, not in a later stage.
Who runs it (plain call, Ray Data actor pool) is decided elsewhere.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

CHUNK = "chunk"  # column carrying a row's chunk key through the stages (diversens.jobs.chunks)


class Stage:
    requires: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    _checked: bool = False
    _checked_out: bool = False

    def required_columns(self) -> tuple[str, ...]:
        """Columns this instance needs (may depend on config, e.g. a chosen text field)."""
        return self.requires

    def check(self, batch: pd.DataFrame) -> None:
        if self._checked:
            return
        missing = [c for c in self.required_columns() if c not in batch.columns]
        if missing:
            have = ", ".join(map(str, batch.columns))
            raise KeyError(f"{type(self).__name__} needs column(s) {missing}; batch has: {have}")
        self._checked = True

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Process the batch one chunk at a time: a row's values never depend on which chunks
        Ray Data happened to put in its batch."""
        self.check(batch)
        if CHUNK not in batch or batch[CHUNK].nunique() <= 1:
            return self.check_output(self.process(batch))
        parts = [self.process(part) for _, part in batch.groupby(CHUNK, sort=False)]
        return self.check_output(pd.concat(parts, ignore_index=True))

    def check_output(self, out: pd.DataFrame) -> pd.DataFrame:
        if not self._checked_out:
            missing = [c for c in self.adds if c not in out.columns]
            if missing:
                raise RuntimeError(f"{type(self).__name__} declares {missing} but did not add them")
            self._checked_out = True
        return out

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError
