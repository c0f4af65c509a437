"""Validity: which candidates may take part in selection and evaluation (docs/design.md §10).

`ValidityStage` adds per-candidate `valid` and `reject_reason` (null: valid). A candidate is
invalid when it is empty, breaks its task's format (strict mode), was truncated by the token
limit, or has a non-finite value of a measure in `check_measures` or of its quality. The first
reason in that order is kept. It runs after the measures and quality, whose columns it
reads, and loads nothing: a plain task, not an actor pool.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from diversens import schema
from diversens.scoring.compliance import candidate_issues
from diversens.scoring.config import QualityConfig
from diversens.stage import Stage


class ValidityStage(Stage):
    """Adds per-candidate `valid` and `reject_reason` to scored candidates rows."""

    requires = ("task", "responses", "finish_reason", "quality")
    adds = schema.names(schema.VALIDITY)

    def __init__(self, cfg: QualityConfig | None = None):
        self.cfg = cfg or QualityConfig()

    def required_columns(self) -> tuple[str, ...]:
        return self.requires + tuple(self.cfg.check_measures)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        reasons = [self._reasons(row) for row in batch.itertuples()]
        return batch.assign(
            reject_reason=reasons, valid=[[r is None for r in rs] for rs in reasons]
        )

    def _reasons(self, row) -> list[str | None]:
        """The reject reason of each candidate of one row (None: valid)."""
        lenient = not self.cfg.strict_compliance
        columns = [(m, getattr(row, m)) for m in self.cfg.check_measures]
        columns.append(("quality", row.quality))
        reasons = []
        for j, issue in enumerate(candidate_issues(row, self.cfg)):
            reason = None if lenient and issue != "empty" else issue
            if reason is None and row.finish_reason[j] == "length":
                reason = "truncated"
            if reason is None:
                bad = [name for name, values in columns if not np.isfinite(float(values[j]))]
                reason = f"{bad[0]}_not_finite" if bad else None
            reasons.append(reason)
        return reasons
