"""Diversity Decile (DD): diversity judged against the base model at the same length.

From the base model's outputs, per task: word-count buckets (quantiles of base lengths, thin
buckets merged into a neighbour until each holds `min_per_bucket` base outputs), then per (task,
bucket) the nine decile edges of each diversity measure — the decile map. Any output gets the
decile (1–10) of its measure within its own task and length bucket; every bucket holds base
outputs, and the first and last are open-ended, so an output shorter or longer than all of the
base's is ranked in the nearest populated bucket instead of being lost. Ties take mid-ranks (a
value equal to several edges sits in the middle of them), so a measure that is often tied (TTR
1.0 on short answers) can still register change. DD is the mean decile and ΔDD = DD(model) −
DD(base). A model that only writes shorter text lands in shorter buckets and is compared with the
base's short outputs there, so its raw TTR gain does not show up as ΔDD.

Intervals: the samples of one prompt are not independent, so the bootstrap resamples prompts
within each task (the same draw for the model and the base), then the outputs within each drawn
prompt (so a task of one prompt still has an interval).
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
    def fit(
        cls, base: pd.DataFrame, measures: list[str], num_buckets: int = 4, min_per_bucket: int = 1
    ) -> DecileMap:
        """base: one row per output with `task`, `n_words` and the measure columns."""
        length_edges, rows = {}, []
        for task, df in base.groupby("task", sort=True):
            lengths = df["n_words"].to_numpy(dtype=float)
            qs = np.linspace(0, 100, num_buckets + 1)[1:-1]
            edges = np.unique(np.percentile(lengths, qs))
            length_edges[task] = merge_thin_buckets(lengths, edges, max(min_per_bucket, 1))
            buckets = bucket_of(lengths, length_edges[task])
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
                # Mid-rank: 1 + edges below the value + half the edges equal to it.
                below = np.searchsorted(edges, values[sel], side="left")
                at_most = np.searchsorted(edges, values[sel], side="right")
                out[pos[sel]] = 1 + (below + at_most) / 2
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


def delta_dd(
    model: pd.DataFrame,
    base: pd.DataFrame,
    column: str,
    num_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """ΔDD = mean decile of the model's outputs − the base's, with a percentile interval from a
    two-stage bootstrap (`task`, `prompt` columns; NaN deciles left out): per task, draw as many
    prompts as it has, with replacement and the same prompts for both sides; then, within each
    drawn prompt, draw its outputs with replacement. Outputs of one prompt are not independent
    (the first stage carries that), and a task with one prompt (DAT, PGT: one prompt x 100
    samples) still gets an interval from its outputs (the second stage)."""
    sides = [df.loc[np.isfinite(df[column].to_numpy(float)), ["task", "prompt", column]]
             for df in (model, base)]  # fmt: skip
    if any(df.empty for df in sides):
        return (np.nan, np.nan, np.nan)
    delta = float(sides[0][column].mean() - sides[1][column].mean())
    rng = np.random.default_rng(seed)
    sums, counts = np.zeros((2, num_boot)), np.zeros((2, num_boot))
    tasks = sorted(set(sides[0].task) | set(sides[1].task))
    for task in tasks:
        groups = [{p: g[column].to_numpy(float) for p, g in df[df.task == task].groupby("prompt")}
                  for df in sides]  # fmt: skip
        prompts = sorted(set(groups[0]) | set(groups[1]))
        draws = rng.integers(0, len(prompts), (num_boot, len(prompts)))  # (B, P) stage 1
        for i, prompt in enumerate(prompts):
            times = (draws == i).sum(axis=1)  # (B,) copies of this prompt in each draw
            for side, group in enumerate(groups):
                values = group.get(prompt)
                if values is None:
                    continue
                sums[side] += _resampled_sums(values, times, rng)
                counts[side] += times * len(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = sums[0] / counts[0] - sums[1] / counts[1]
    boot = boot[np.isfinite(boot)]
    alpha = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [alpha, 100 - alpha])
    return delta, float(lo), float(hi)


def _resampled_sums(values: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) for each draw, the sum over `times[b]` copies of the prompt, each its outputs drawn
    again with replacement (stage 2)."""
    total = int(times.sum())
    copies = values[rng.integers(0, len(values), (total, len(values)))].sum(axis=1)  # (total,)
    owner = np.repeat(np.arange(len(times)), times)  # which draw each copy belongs to
    return np.bincount(owner, weights=copies, minlength=len(times))
