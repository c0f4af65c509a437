"""The global step of selection, on the driver: the best `num_pairs` pairs, balanced.

`BalancedTopN` keeps at most `num_pairs` rows per (task, length bucket) cell in bounded heaps, so
memory does not grow with the number of prompts, then deals pairs round-robin across tasks first
and, within a task, across its length buckets, so a task with more buckets gets no more pairs.
Best first means the largest diversity margin, except for a strategy whose order is "seeded"
(`random`): its pairs are ranked by a seeded key, as keeping the largest margins would turn the
random baseline into a diversity-selected one.
"""

from __future__ import annotations

import heapq
from collections import Counter

import numpy as np
import pandas as pd

from diversens.selection.rules import STRATEGIES, SelectionConfig, prompt_key
from diversens.selection.stage import PAIR_COLUMNS


def bucket_start(label: str) -> int:
    """The lower word edge of a bucket label ('50-99' → 50, '200+' → 200): labels sort as
    numbers, not as strings ('100-199' before '50-99')."""
    return int(label.split("-")[0].rstrip("+"))


def _interleave(queues: list[list]) -> list:
    """One from each queue in turn: [[a1, a2], [b1]] → [a1, b1, a2]."""
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _detached(row: dict) -> dict:
    """The row with its list values copied: pandas made each a view of one array holding its
    whole batch's lists, which a kept row would keep alive (memory growing with rows seen)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()}


class BalancedTopN:
    """Keep the best `num_pairs` pairs, balanced over (task, length bucket), deterministically.

    Each cell keeps a min-heap of at most `num_pairs` entries ordered by (margin, tie key), so the
    driver holds O(cells × num_pairs) rows however many prompts stream past.
    """

    def __init__(self, cfg: SelectionConfig):
        self.cfg = cfg
        self.order = STRATEGIES[cfg.strategy].order
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
            rank = key if self.order == "seeded" else row["margin"]
            entry = (rank, key, row["prompt_id"])
            if len(heap) < self.cfg.num_pairs:
                heapq.heappush(heap, (*entry, _detached(row)))
            elif entry > heap[0][:3]:
                heapq.heapreplace(heap, (*entry, _detached(row)))

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
