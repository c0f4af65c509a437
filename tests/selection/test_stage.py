"""Streaming selection stage and the global balanced top-N."""

import numpy as np
import pandas as pd
import pytest

from diversens.selection.report import length_correlations
from diversens.selection.rules import SelectionConfig, SelectionStats
from diversens.selection.stage import SelectStage, length_bucket
from diversens.selection.topn import BalancedTopN, bucket_start


def scored_rows(n: int, seed: int = 0, k: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        base = int(rng.integers(10, 260))
        words = base + rng.integers(-6, 7, size=k)
        rows.append(
            {
                "prompt_id": f"p{p:05d}",
                "task": ["dat", "pgt", "aut", "cwt"][p % 4],
                "messages": [{"role": "user", "content": f"prompt {p}"}],
                "responses": [f"response {p}-{i}" for i in range(k)],
                "n_words": words.tolist(),
                "valid": (rng.random(k) > 0.1).tolist(),
                "quality": rng.random(k).tolist(),
                "entropy": rng.normal(6, 1, k).tolist(),
                "dsi": rng.random(k).tolist(),
            }
        )
    return pd.DataFrame(rows)


STATS = SelectionStats.from_columns({"quality": np.random.default_rng(1).random(1000)})


def run(df: pd.DataFrame, cfg: SelectionConfig, batch: int = 17) -> BalancedTopN:
    stage, top = SelectStage(cfg, STATS), BalancedTopN(cfg)
    for start in range(0, len(df), batch):
        top.add(stage(df.iloc[start : start + batch]))
    return top


def test_stage_emits_one_row_per_prompt_with_reason_or_pair():
    df = scored_rows(50)
    out = SelectStage(SelectionConfig(), STATS)(df)
    assert len(out) == 50 and list(out.prompt_id) == list(df.prompt_id)
    pairs = out[out.drop_reason.isna()]
    assert len(pairs) > 10
    assert (pairs.chosen_dsi > pairs.rejected_dsi).all()
    assert (pairs.chosen_entropy > pairs.rejected_entropy).all()
    assert pairs.chosen_ttr.isna().all()  # not in the input: NaN, not made up
    assert out[out.drop_reason.notna()].chosen.isna().all()


def test_missing_measure_column_is_named():
    df = scored_rows(3).drop(columns="dsi")
    with pytest.raises(KeyError, match="dsi"):
        SelectStage(SelectionConfig(), STATS)(df)


def test_same_seed_same_pairs_whatever_the_batching_and_order():
    df = scored_rows(400)
    cfg = SelectionConfig(num_pairs=60, seed=3)
    a = run(df, cfg, batch=17).result()
    b = run(df.sample(frac=1, random_state=5), cfg, batch=50).result()
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert len(a) == 60 and a.prompt_id.is_unique


def test_random_strategy_depends_on_seed():
    df = scored_rows(200)
    a = run(df, SelectionConfig(strategy="random", num_pairs=50, seed=1)).result()
    b = run(df, SelectionConfig(strategy="random", num_pairs=50, seed=2)).result()
    assert list(a.prompt_id) != list(b.prompt_id) or list(a.chosen) != list(b.chosen)


def test_every_prompt_is_accounted_for():
    df = scored_rows(300)
    cfg = SelectionConfig(num_pairs=40)
    top = run(df, cfg)
    counts = top.drop_counts()
    assert len(top.result()) + sum(counts.values()) == 300
    assert counts["no_admissible_pair"] > 0 and counts["not_in_top_n"] > 0


def test_balanced_over_tasks_and_buckets():
    df = scored_rows(800)
    top = run(df, SelectionConfig(num_pairs=80))
    pairs = top.result()
    per_cell = pairs.groupby(["task", "length_bucket"]).size()
    available = {cell: len(h) for cell, h in top.cells.items()}
    # round-robin: a cell gets fewer than the largest share only when it ran out of pairs
    for cell, n in per_cell.items():
        assert n >= per_cell.max() - 1 or n == available[cell]
    assert set(pairs.task) == {"dat", "pgt", "aut", "cwt"}


def test_tasks_are_balanced_before_length_buckets():
    """A task with more length buckets gets no more pairs than the others."""
    rows = []
    for task, words in (("aut", [10, 60, 120, 250]), ("dat", [10])):
        for n in range(40):
            w = words[n % len(words)]
            rows.append({"prompt_id": f"{task}{n}", "task": task, "length_bucket":
                         length_bucket(w, [0, 50, 100, 200]), "margin": float(n),
                         "drop_reason": None})  # fmt: skip
    top = BalancedTopN(SelectionConfig(num_pairs=20))
    top.add(pd.DataFrame(rows))
    assert top.result().task.value_counts().to_dict() == {"aut": 10, "dat": 10}


def test_random_pairs_are_ranked_by_seeded_key_not_margin():
    """Cut to half, the random baseline keeps pairs whatever their diversity margin."""
    rows = [{"prompt_id": f"p{n}", "task": "cwt", "length_bucket": "0-49", "margin": float(n),
             "drop_reason": None} for n in range(400)]  # fmt: skip
    kept = {}
    for strategy in ("random", "diverse-ns"):
        top = BalancedTopN(SelectionConfig(strategy=strategy, num_pairs=100))
        top.add(pd.DataFrame(rows))
        kept[strategy] = top.result().margin
    assert kept["diverse-ns"].min() == 300  # the 100 largest margins
    assert 100 < kept["random"].mean() < 300  # not the largest: about the middle of 0..399
    assert kept["random"].lt(200).sum() > 30


def test_bucket_labels_sort_by_words():
    assert sorted(["100-199", "50-99", "200+", "0-49"], key=bucket_start) == [
        "0-49", "50-99", "100-199", "200+",
    ]  # fmt: skip


def test_length_bucket_labels():
    edges = [0, 50, 100, 200]
    assert [length_bucket(w, edges) for w in (0, 49, 50, 199, 200, 5000)] == [
        "0-49", "0-49", "50-99", "100-199", "200+", "200+",
    ]  # fmt: skip


@pytest.mark.parametrize("measure", ["mattr", "mtld", "hdd"])
def test_every_lexical_measure_the_config_accepts_ranks_pairs(measure):
    df = scored_rows(40)
    df[measure] = [np.random.default_rng(i).random(4).tolist() for i in range(len(df))]
    cfg = SelectionConfig(lexical_measure=measure, num_pairs=40)
    pairs = run(df, cfg).result()
    assert len(pairs) > 0
    by_id = df.set_index("prompt_id")
    for p in pairs.itertuples():  # chosen more diverse on the measure asked for
        row = by_id.loc[p.prompt_id]
        values = dict(zip(row.responses, row[measure], strict=True))
        assert values[p.chosen[0]["content"]] > values[p.rejected[0]["content"]]


def test_length_correlations_find_a_planted_length_bias():
    """TTR falls with length by construction, entropy rises, DSI does not depend on it."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(120):
        words = rng.integers(10, 300, 4)
        rows.append({"prompt_id": f"p{p}", "n_words": words.tolist(), "valid": [True] * 4,
                     "ttr": (1 / np.sqrt(words) + rng.normal(0, 0.01, 4)).tolist(),
                     "entropy": np.log2(words).tolist(), "dsi": rng.random(4).tolist()})  # fmt: skip
    table = length_correlations(pd.DataFrame(rows), num_boot=200).set_index("measure")
    assert table.loc["ttr", "ci_high"] < -0.8 and table.loc["entropy", "ci_low"] > 0.9
    assert table.loc["dsi", "ci_low"] < 0 < table.loc["dsi", "ci_high"]
    assert table.loc["ttr", "candidates"] == 480


@pytest.mark.parametrize("strategy", ["random", "quality", "diverse-no-length"])
def test_candidates_with_the_same_text_are_never_paired(strategy):
    df = scored_rows(30)
    df["responses"] = [["same", "same ", "same", "other"] for _ in range(len(df))]
    pairs = run(df, SelectionConfig(strategy=strategy, num_pairs=30)).result()
    for p in pairs.itertuples():
        assert p.chosen[0]["content"].strip() != p.rejected[0]["content"].strip()


def test_one_pass_over_every_strategy_equals_one_pass_each():
    from diversens.jobs.dataflow import select_batch

    df = scored_rows(120, seed=4)
    cfgs = [SelectionConfig(strategy=s, num_pairs=20) for s in ("diverse-ns", "random", "quality")]
    tops = {c.strategy: BalancedTopN(c) for c in cfgs}
    for start in range(0, len(df), 17):
        out = select_batch(df.iloc[start : start + 17], cfgs, STATS)
        for strategy, rows in out.groupby("strategy", sort=False):
            tops[strategy].add(rows)
    for c in cfgs:
        alone = run(df, c)
        pd.testing.assert_frame_equal(tops[c.strategy].result(), alone.result())
        assert tops[c.strategy].drop_counts() == alone.drop_counts()


def test_rows_without_a_pair_hold_none_not_nan():
    """Ray Data converts batches with plain pa.array: a NaN among strings or lists would make
    it pickle the whole column."""
    import pyarrow as pa

    out = SelectStage(SelectionConfig(), STATS)(scored_rows(40, seed=2))
    assert out.drop_reason.notna().any() and out.drop_reason.isna().any()
    for col in ("chosen", "rejected", "length_bucket", "drop_reason"):
        assert not pa.types.is_null(pa.array(out[col].tolist()).type)


def test_length_correlation_of_a_measure_without_values_is_nan_without_warnings():
    import warnings

    df = scored_rows(30, seed=3).assign(dsi=lambda d: [[np.nan] * 4] * len(d))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "All-NaN slice" reached the run log before
        table = length_correlations(df, num_boot=50).set_index("measure")
    assert np.isnan(table.loc["dsi", ["spearman_rho", "ci_low", "ci_high"]].astype(float)).all()
    assert table.loc["dsi", "candidates"] == 0 and np.isfinite(table.loc["entropy", "ci_low"])
