"""Diversity Decile (DD): diversity judged against the base model at the same length.

From the base model's outputs, per task: word-count buckets (quantiles of base lengths), then per
(task, bucket) the nine decile edges of each diversity measure — the decile map. Any output gets
the decile (1–10) of its measure within its own task and length bucket; DD is the mean decile and
ΔDD = DD(model) − DD(base). A model that only writes shorter text lands in shorter buckets and is
compared with the base's short outputs there, so its raw TTR gain does not show up as ΔDD.
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
    edges: pd.DataFrame  # rows: task, bucket, measure, d10 ... d90

    @classmethod
    def fit(cls, base: pd.DataFrame, measures: list[str], num_buckets: int = 4) -> DecileMap:
        """base: one row per output with `task`, `n_words` and the measure columns."""
        length_edges, rows = {}, []
        for task, df in base.groupby("task", sort=True):
            qs = np.linspace(0, 100, num_buckets + 1)[1:-1]
            length_edges[task] = np.unique(np.percentile(df["n_words"], qs))
            buckets = bucket_of(df["n_words"].to_numpy(), length_edges[task])
            for b in range(len(length_edges[task]) + 1):
                in_bucket = df[buckets == b]
                rows += [{"task": task, "bucket": b, **_edges(in_bucket, m)} for m in measures]
        return cls(length_edges, pd.DataFrame(rows))

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
                # 1 + edges strictly below the value; ties at an edge go to the lower decile.
                out[pos[sel]] = 1 + np.searchsorted(edges, values[sel], side="left")
        return out

    def to_frame(self) -> pd.DataFrame:
        """The decile map as one table (saved as CSV beside the report)."""
        lengths = pd.DataFrame(
            [
                {"task": t, "length_edges": " ".join(f"{e:g}" for e in v)}
                for t, v in self.length_edges.items()
            ]  # fmt: skip
        )
        return self.edges.merge(lengths, on="task")


def _edges(df: pd.DataFrame, measure: str) -> dict:
    v = df[measure].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    d = np.percentile(v, DECILE_QS) if v.size else np.full(len(DECILE_QS), np.nan)
    named = {f"d{q}": e for q, e in zip(DECILE_QS, d, strict=True)}
    return {"measure": measure, "n_base": v.size, **named}


def bucket_of(n_words: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket index of each length; values on an edge go to the upper bucket."""
    return np.searchsorted(edges, n_words, side="right")


def delta_dd(
    model: np.ndarray, base: np.ndarray, num_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """ΔDD = mean(model deciles) − mean(base deciles) with a percentile bootstrap interval.

    Outputs are resampled independently within each model (they are independent samples).
    """
    model, base = model[np.isfinite(model)], base[np.isfinite(base)]
    if not model.size or not base.size:
        return (np.nan, np.nan, np.nan)
    delta = float(model.mean() - base.mean())
    rng = np.random.default_rng(seed)
    boot = model[rng.integers(0, model.size, (num_boot, model.size))].mean(1) - base[
        rng.integers(0, base.size, (num_boot, base.size))
    ].mean(1)
    alpha = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [alpha, 100 - alpha])
    return delta, float(lo), float(hi)
