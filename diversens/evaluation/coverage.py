"""How often the eval's 95% intervals exclude 0 when there is nothing to find: null comparisons
(both sides from the same model) run through the eval's own tables.

Null datasets from a run's base outputs: every pair of its sampling seeds (the first the
reference, the second the eval side: one seed a side, as the eval's defaults), every split of
its seeds into two groups (several seeds a side, which the bootstrap resamples), and random
within-prompt splits of all of its outputs pooled over seeds. Each is ranked and tabled exactly
as an eval is (`tables.rank`, the ΔDD, length, quality and across-sample tables); an interval
that excludes 0 on a null dataset is a false exclusion. benchmarks/bench_coverage.py runs it on
real outputs; a test runs it on synthetic outputs whose truth is known.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from diversens.evaluation.config import EvalConfig
from diversens.evaluation.tables import (
    across_sample_table,
    delta_dd_table,
    length_change_table,
    quality_change_table,
    rank,
)

NULL = "null"  # the label of the eval side in a null dataset


def seed_pairs(base: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(name, dataset) for every pair of the base's seeds: the first as the reference (seed 0),
    the second as the eval side (model NULL at seed 1)."""
    out = []
    for a, b in itertools.combinations(sorted(int(s) for s in base.seed.unique()), 2):
        ref = base[base.seed == a].assign(model="base", seed=0)
        other = base[base.seed == b].assign(model=NULL, seed=1)
        out.append((f"seeds {a}/{b}", pd.concat([ref, other], ignore_index=True)))
    return out


def seed_groups(base: pd.DataFrame, size: int) -> list[tuple[str, pd.DataFrame]]:
    """(name, dataset) for every choice of `size` of the base's seeds as the reference and
    `size` others as the eval side (model NULL), each keeping its seeds."""
    seeds = sorted(int(s) for s in base.seed.unique())
    out = []
    for ref in itertools.combinations(seeds, size):
        rest = [s for s in seeds if s not in ref]
        for other in itertools.combinations(rest, size):
            if size * 2 == len(seeds) and other < ref:
                continue  # with all seeds used, each split once
            data = pd.concat(
                [
                    base[base.seed.isin(ref)].assign(model="base"),
                    base[base.seed.isin(other)].assign(model=NULL),
                ],
                ignore_index=True,
            )
            out.append((f"seeds {list(ref)}/{list(other)}", data))
    return out


def random_splits(base: pd.DataFrame, num: int, seed: int = 0) -> list[tuple[str, pd.DataFrame]]:
    """(name, dataset) for `num` random splits of each prompt's outputs, pooled over seeds, in
    two halves: the reference and the eval side. Their across-sample values are those of the
    subsets they were sampled in, so the across-sample tables are left to seed pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        side = np.zeros(len(base), dtype=bool)
        for rows in base.groupby("source_prompt_id").indices.values():
            side[rng.permutation(rows)[: len(rows) // 2]] = True
        df = base.assign(model=np.where(side, NULL, "base"), seed=side.astype("int64"))
        out.append((f"split {i}", df))
    return out


def null_tables(data: pd.DataFrame, cfg: EvalConfig, across: bool) -> pd.DataFrame:
    """One row per interval of the null comparison: measure, task, delta, ci_low, ci_high."""
    seeds = [sorted(int(s) for s in data.loc[data.model == m, "seed"].unique())
             for m in ("base", NULL)]  # fmt: skip
    cfg = dataclasses.replace(cfg, models=["base=x", f"{NULL}=x"], map_seeds=seeds[0],
                              seeds=seeds[1])  # fmt: skip
    ranked, _ = rank(data.reset_index(drop=True), cfg)
    frames = [delta_dd_table(ranked, cfg).rename(columns={"delta_dd": "delta"})]
    lengths = length_change_table(ranked, cfg)
    for t, col in ((lengths, "delta_words"), (quality_change_table(ranked, cfg), "delta_quality")):
        frames.append(t.rename(columns={col: "delta"}).assign(measure=col.removeprefix("delta_")))
    if across:
        frames.append(across_sample_table(ranked, cfg, lengths))
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows.model == NULL]  # the base's own reference row, were it there, is not a test
    return rows[["measure", "task", "delta", "ci_low", "ci_high"]]


def coverage(datasets: list[tuple[str, pd.DataFrame]], cfg: EvalConfig, across: bool):
    """(per measure: intervals, how many exclude 0 and the share; every interval)."""
    rows = pd.concat([null_tables(df, cfg, across).assign(dataset=name) for name, df in datasets],
                     ignore_index=True)  # fmt: skip
    rows["excludes_0"] = (rows.ci_low > 0) | (rows.ci_high < 0)
    table = rows.groupby("measure", sort=False).excludes_0.agg(intervals="size", excluding="sum")
    table["share"] = table.excluding / table.intervals
    return table.reset_index(), rows
