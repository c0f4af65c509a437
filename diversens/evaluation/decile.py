"""Diversity Decile (DD): diversity judged against the base model at the same length.

From the reference outputs (the base model at the map seeds), per task: word-count buckets (as
many quantile buckets as the base can fill with `min_per_bucket` outputs each, up to
`num_buckets`: `length_edges_of`), then per (task, bucket) the nine decile edges of each
diversity measure — the decile map. Any output gets the decile (1–10) of its measure within
its own task and length bucket; every bucket holds base outputs, and the first and last are
open-ended, so an output shorter or longer than all of the base's is ranked in the nearest
populated bucket instead of being lost. Ties take mid-ranks (a value equal to several edges sits
in the middle of them), so a measure that is often tied (TTR 1.0 on short answers) can still
register change. DD is the mean decile and ΔDD = DD(model) −
DD(base). A model that only writes shorter text lands in shorter buckets and is compared with the
base's short outputs there, so its raw TTR gain does not show up as ΔDD.

Intervals: diversens.evaluation.bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DECILE_QS = np.arange(10, 100, 10)  # the nine interior edges


@dataclass(frozen=True)
class DecileMap:
    """Length-bucket edges per task and decile edges per (task, bucket, measure)."""

    length_edges: dict[str, np.ndarray]  # task -> interior word-count edges, (B-1,)
    edges: pd.DataFrame  # rows: task, bucket, measure, n_base, d10 ... d90
    bucket_counts: dict[str, np.ndarray]  # task -> base outputs per length bucket, (B,)

    @classmethod
    def fit(
        cls, base: pd.DataFrame, measures: list[str], num_buckets: int = 4, min_per_bucket: int = 1
    ) -> DecileMap:
        """base: one row per output with `task`, `n_words` and the measure columns."""
        length_edges, counts, rows = {}, {}, []
        for task, df in base.groupby("task", sort=True):
            lengths = df["n_words"].to_numpy(dtype=float)
            length_edges[task] = length_edges_of(lengths, num_buckets, max(min_per_bucket, 1))
            buckets = bucket_of(lengths, length_edges[task])
            counts[task] = np.bincount(buckets, minlength=len(length_edges[task]) + 1)
            for b in range(len(length_edges[task]) + 1):
                in_bucket = df[buckets == b]
                rows += [{"task": task, "bucket": b, **_edges(in_bucket, m)} for m in measures]
        return cls(length_edges, pd.DataFrame(rows), counts)

    def deciles(self, outputs: pd.DataFrame, measure: str) -> np.ndarray:
        """Decile 1–10 of each output's `measure` at its own task and length; NaN if unknown."""
        out = np.full(len(outputs), np.nan)
        table = self.edges[self.edges.measure == measure].set_index(["task", "bucket"])
        cols = [f"d{q}" for q in DECILE_QS]
        for task, df in outputs.groupby("task", sort=False):
            if task not in self.length_edges:
                continue
            buckets = bucket_of(df["n_words"].to_numpy(), self.length_edges[task])
            values = df[measure].to_numpy(dtype=float)
            pos = outputs.index.get_indexer(df.index)
            for b in np.unique(buckets):
                edges = table.loc[(task, b), cols].to_numpy(dtype=float)
                sel = (buckets == b) & np.isfinite(values)
                if np.isnan(edges).any():
                    continue
                # Mid-rank: 1 + edges below the value + half the edges equal to it.
                below = np.searchsorted(edges, values[sel], side="left")
                at_most = np.searchsorted(edges, values[sel], side="right")
                out[pos[sel]] = 1 + (below + at_most) / 2
        return out

    def buckets_frame(self) -> pd.DataFrame:
        """Per task: the length buckets used (word-count edges) and the base outputs in each."""
        return pd.DataFrame([{"task": t, "buckets": len(c),
                              "edges (words)": _joined(self.length_edges[t]),
                              "base outputs per bucket": " ".join(str(int(n)) for n in c)}
                             for t, c in self.bucket_counts.items()])  # fmt: skip

    def to_frame(self) -> pd.DataFrame:
        """The decile map as one table (saved as CSV beside the report)."""
        lengths = pd.DataFrame(
            [
                {"task": t, "length_edges": _joined(v)}
                for t, v in self.length_edges.items()
            ]  # fmt: skip
        )
        return self.edges.merge(lengths, on="task")


def _joined(edges: np.ndarray) -> str:
    return " ".join(f"{e:g}" for e in edges)


def _edges(df: pd.DataFrame, measure: str) -> dict:
    v = df[measure].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    d = np.percentile(v, DECILE_QS) if v.size else np.full(len(DECILE_QS), np.nan)
    named = {f"d{q}": e for q, e in zip(DECILE_QS, d, strict=True)}
    return {"measure": measure, "n_base": v.size, **named}


def length_edges_of(lengths: np.ndarray, num_buckets: int, min_count: int) -> np.ndarray:
    """Interior edges of a task's length buckets: the most quantile buckets, up to
    `num_buckets`, that the base fills with `min_count` outputs each (`merge_thin_buckets` for
    ties), else the most even split in two that does, and one bucket only where no split leaves
    `min_count` on both sides (fewer than twice the minimum, or lengths too tied to split)."""
    lengths = np.asarray(lengths, dtype=float)
    for b in range(min(num_buckets, len(lengths) // min_count), 2, -1):
        edges = np.unique(np.percentile(lengths, np.linspace(0, 100, b + 1)[1:-1]))
        edges = merge_thin_buckets(lengths, edges, min_count)
        if len(edges) >= 2:
            return edges
    if num_buckets < 2:
        return np.zeros(0)
    cuts = np.unique(lengths)[1:]  # an edge puts the lengths equal to it in the upper bucket
    below = np.searchsorted(np.sort(lengths), cuts, side="left")
    smaller = np.minimum(below, len(lengths) - below)
    if not len(cuts) or smaller.max() < min_count:
        return np.zeros(0)
    return cuts[[int(np.argmax(smaller))]].astype(float)


def merge_thin_buckets(lengths: np.ndarray, edges: np.ndarray, min_count: int) -> np.ndarray:
    """Drop edges until every bucket holds at least `min_count` of `lengths` (or one bucket is
    left): the thinnest bucket merges into its thinner neighbour. Many equal shortest lengths
    otherwise leave bucket 0 empty (the edge equals them and they fall above it)."""
    edges = list(edges)
    while edges:
        counts = np.bincount(bucket_of(lengths, np.asarray(edges)), minlength=len(edges) + 1)
        b = int(np.argmin(counts))
        if counts[b] >= min_count:
            break
        if b == 0 or (b < len(edges) and counts[b + 1] < counts[b - 1]):
            del edges[b]  # merge with the bucket above: drop the edge between them
        else:
            del edges[b - 1]  # merge with the bucket below
    return np.asarray(edges, dtype=float)


def bucket_of(n_words: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket index of each length; values on an edge go to the upper bucket."""
    return np.searchsorted(edges, n_words, side="right")
