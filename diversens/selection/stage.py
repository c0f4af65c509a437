"""From scored candidate rows to the DPO pairs table (docs/design.md §6, §11).

`SelectStage` is the streaming step (one prompt row in → one row out: a pair, or the reason there is
none), run by Ray Data's `map_batches`; the global cut on the driver is `selection.topn`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from diversens import schema
from diversens.selection.rules import (
    Candidates,
    Pair,
    SelectionConfig,
    SelectionStats,
    prompt_key,
    select_pair,
)
from diversens.stage import Stage

PAIR_MEASURES = schema.PAIR_MEASURES
PAIR_COLUMNS = (*schema.names(schema.PAIR), "drop_reason")


class SelectStage(Stage):
    """Scored prompt rows → one row each: a pair (drop_reason None) or a drop reason."""

    requires = (*schema.names(schema.PROMPT), "responses", "n_words", "valid", "quality")
    adds = PAIR_COLUMNS

    def __init__(self, cfg: SelectionConfig, stats: SelectionStats):
        self.cfg, self.stats = cfg, stats

    def required_columns(self) -> tuple[str, ...]:
        return self.requires + tuple(self.cfg.required_measures)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = [self._select_row(row) for row in batch.itertuples(index=False)]
        out = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
        # None, not NaN, where a prompt has no pair: Ray Data's Arrow conversion refuses NaN
        # among strings or lists (it would pickle the whole column instead).
        for col in ("prompt", "chosen", "rejected", "length_bucket", "drop_reason"):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        return out

    def _select_row(self, row) -> dict:
        cfg = self.cfg
        k = len(row.responses)
        arrays = {
            m: np.asarray(getattr(row, m), dtype=float) if hasattr(row, m) else np.full(k, np.nan)
            for m in dict.fromkeys([*PAIR_MEASURES, *cfg.measures])  # the ranked ones too
        }
        arrays["quality"] = self.stats.quality_rank(arrays["quality"], row.task)
        cands = Candidates(
            n_words=arrays["n_words"],
            valid=np.asarray(row.valid, dtype=bool) & first_of_its_text(row.responses),
            quality=arrays["quality"],
            diversity={m: arrays[m] for m in cfg.measures},
        )
        result = select_pair(cands, cfg, self.stats, prompt_key(cfg.seed, row.prompt_id))
        out = {"prompt_id": row.prompt_id, "task": row.task, "prompt": list(row.messages)}
        if not isinstance(result, Pair):
            return {**out, "strategy": cfg.strategy, "drop_reason": result}
        i, j = result.chosen, result.rejected
        responses = list(row.responses)
        return {
            **out,
            "chosen": [{"role": "assistant", "content": responses[i]}],
            "rejected": [{"role": "assistant", "content": responses[j]}],
            **{f"chosen_{m}": float(arrays[m][i]) for m in PAIR_MEASURES},
            **{f"rejected_{m}": float(arrays[m][j]) for m in PAIR_MEASURES},
            "length_bucket": length_bucket(cands.n_words[i], cfg.length_buckets),
            "strategy": cfg.strategy,
            "margin": result.margin,
            "drop_reason": None,
        }


def first_of_its_text(responses) -> np.ndarray:
    """(k,) False for a candidate whose text (stripped) an earlier one already has: a pair of
    equal texts carries no preference, and DPO refuses it."""
    texts = [str(r).strip() for r in responses]
    return np.array([texts.index(t) == i for i, t in enumerate(texts)], dtype=bool)


def length_bucket(n_words: float, edges: list[int]) -> str:
    """Label of the word-count bucket: '0-49', …, '200+'."""
    k = int(np.searchsorted(edges, n_words, side="right")) - 1
    return f"{edges[k]}+" if k == len(edges) - 1 else f"{edges[k]}-{edges[k + 1] - 1}"
