"""Task compliance of candidates: whether each response follows its task's format
(docs/design.md §10).

The rules are the tasks' own (`diversens.prompts.compliance_issue`): cheap, deterministic checks
over the text and the prompt's `meta`, with the quality config's values as fallbacks. The quality
scorer uses them to lower a non-compliant candidate's quality (lenient mode) and the validity
stage to reject it (strict mode).
"""

from __future__ import annotations

import json

from diversens.prompts import compliance_issue
from diversens.scoring.config import QualityConfig


def parse_meta(meta) -> dict:
    if isinstance(meta, dict):
        return meta
    if isinstance(meta, str) and meta:
        return json.loads(meta)
    return {}


def candidate_issues(row, cfg: QualityConfig) -> list[str | None]:
    """The compliance issue (None: compliant) of each candidate of a candidates row (a tuple
    from `DataFrame.itertuples`; `meta` is optional)."""
    meta = parse_meta(getattr(row, "meta", None))
    return [compliance_issue(text, row.task, meta, cfg) for text in row.responses]
