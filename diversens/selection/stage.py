"""From scored candidate rows to the DPO pairs table (DESIGN.md §3, §5).

`SelectStage` is the streaming step (one prompt row in → one row out: a pair, or the reason there is
none), run by Ray Data's `map_batches`. `BalancedTopN` is the global step on the driver: it keeps at
most `num_pairs` rows per (task, length bucket) cell in bounded heaps, so memory does not grow with
the number of prompts, then deals pairs round-robin across tasks first and, within a task,
across its length buckets, so a task with more buckets gets no more pairs. Best first means the
largest diversity margin, except for `random`, whose pairs are ranked by a seeded key: keeping
the largest margins would turn the random baseline into a diversity-selected one.
"""

from __future__ import annotations

import heapq
from collections import Counter

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
        return self.requires + tuple(self.cfg.measures)

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


def bucket_start(label: str) -> int:
    """The lower word edge of a bucket label ('50-99' → 50, '200+' → 200): labels sort as
    numbers, not as strings ('100-199' before '50-99')."""
    return int(label.split("-")[0].rstrip("+"))


def _interleave(queues: list[list]) -> list:
    """One from each queue in turn: [[a1, a2], [b1]] → [a1, b1, a2]."""
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


class BalancedTopN:
    """Keep the best `num_pairs` pairs, balanced over (task, length bucket), deterministically.

    Each cell keeps a min-heap of at most `num_pairs` entries ordered by (margin, tie key), so the
    driver holds O(cells × num_pairs) rows however many prompts stream past.
    """

    def __init__(self, cfg: SelectionConfig):
        self.cfg = cfg
        self.cells: dict[tuple[str, str], list] = {}
        self.dropped: Counter[str] = Counter()
        self.seen = 0

    def add(self, batch: pd.DataFrame) -> None:
        self.seen += len(batch)
        dropped = batch["drop_reason"].notna().to_numpy()
        self.dropped.update(batch["drop_reason"].to_numpy()[dropped].tolist())
        for row in batch.iloc[np.flatnonzero(~dropped)].to_dict("records"):
            heap = self.cells.setdefault((row["task"], row["length_bucket"]), [])
            key = -prompt_key(self.cfg.seed, row["prompt_id"])
            rank = key if self.cfg.strategy == "random" else row["margin"]
            entry = (rank, key, row["prompt_id"], row)
            if len(heap) < self.cfg.num_pairs:
                heapq.heappush(heap, entry)
            elif entry[:3] > heap[0][:3]:
                heapq.heapreplace(heap, entry)

    def result(self) -> pd.DataFrame:
        """Round-robin over tasks (sorted by name); each task's turn takes its next pair from its
        length buckets in turn (in word order), best first within a bucket; until num_pairs."""
        tasks: dict[str, list[list]] = {}
        for task, bucket in sorted(self.cells, key=lambda c: (c[0], bucket_start(c[1]))):
            best_first = sorted(self.cells[(task, bucket)], key=lambda e: e[:3], reverse=True)
            tasks.setdefault(task, []).append(best_first)
        queues = [_interleave(buckets) for buckets in tasks.values()]
        picked: list[dict] = []
        for depth in range(max(map(len, queues), default=0)):
            for q in queues:
                if depth < len(q) and len(picked) < self.cfg.num_pairs:
                    picked.append(q[depth][3])
        return pd.DataFrame(picked, columns=list(PAIR_COLUMNS)).drop(columns="drop_reason")

    def drop_counts(self) -> dict[str, int]:
        """Prompts without a pair, by reason, plus pairs cut by the global top-N."""
        pairs_seen = self.seen - sum(self.dropped.values())
        kept = min(sum(len(h) for h in self.cells.values()), self.cfg.num_pairs)
        return dict(sorted({**self.dropped, "not_in_top_n": pairs_seen - kept}.items()))
