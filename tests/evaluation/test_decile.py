"""Diversity Decile: zero against itself, positive when more diverse at equal length, not fooled
by outputs that are merely shorter; every output ranked, ties at mid-rank, and intervals that
account for outputs clustering by prompt."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diversens.evaluation.bootstrap import compare
from diversens.evaluation.decile import DecileMap, bucket_of, length_edges_of
from diversens.measures.lexical import lexical_measures


def delta_dd(model, base, column, **kw):
    """(delta, ci_low, ci_high) over all tasks (equal weights)."""
    return compare(model, base, column, **kw)["all"]


def outputs(n: int, lengths: tuple[int, int], zipf: float, seed: int, task: str = "cwt"):
    """n texts with uniform lengths and a Zipf(zipf) word distribution (lower = more diverse)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    p = 1 / np.arange(1, 3001) ** zipf
    lens = rng.integers(*lengths, size=n)
    tokens = [list(rng.choice(vocab, size=k, p=p / p.sum())) for k in lens]
    m = lexical_measures(tokens)
    return pd.DataFrame({"task": task, "prompt": [f"{task}{i % 20}" for i in range(n)],
                         "n_words": m["n_words"], "ttr": m["ttr"], "mattr": m["mattr"]})  # fmt: skip


@pytest.fixture(scope="module")
def base():
    return pd.concat([outputs(600, (40, 300), 1.1, 0), outputs(300, (5, 60), 1.1, 1, "dat")])


def dd(dmap, df, measure="ttr"):
    """df with its deciles of `measure` in column "d"."""
    df = df.reset_index(drop=True)
    return df.assign(d=dmap.deciles(df, measure))


def test_base_against_itself_is_zero(base):
    dmap = DecileMap.fit(base, ["ttr"])
    d = dd(dmap, base)
    delta, lo, hi = delta_dd(d, d, "d")
    assert delta == 0.0 and lo < 0.0 < hi and hi - lo < 1.0
    assert np.nanmin(d.d) == 1 and np.nanmax(d.d) == 10
    assert abs(np.nanmean(d.d) - 5.5) < 0.2  # deciles of the base itself are ~uniform


def test_more_diverse_at_same_length_is_positive(base):
    dmap = DecileMap.fit(base, ["ttr", "mattr"])
    diverse = pd.concat([outputs(600, (40, 300), 0.9, 2), outputs(300, (5, 60), 0.9, 3, "dat")])
    for m in ("ttr", "mattr"):
        delta, lo, hi = delta_dd(dd(dmap, diverse, m), dd(dmap, base, m), "d", seed=1)
        assert delta > 1.0 and lo > 0, m


def test_only_shorter_raises_ttr_but_not_dd(base):
    dmap = DecileMap.fit(base, ["ttr"], num_buckets=8)
    shorter = outputs(600, (40, 120), 1.1, 4)
    cwt = base[base.task == "cwt"]
    assert shorter.ttr.mean() > cwt.ttr.mean() + 0.08  # raw TTR says "more diverse"
    delta, lo, hi = delta_dd(dd(dmap, shorter), dd(dmap, cwt), "d", seed=2)
    assert abs(delta) < 0.5 and lo < 0.3  # DD does not


def test_unknown_task_and_nan_measures_get_no_decile(base):
    dmap = DecileMap.fit(base, ["ttr"])
    odd = pd.DataFrame({"task": ["pgt", "cwt"], "n_words": [10, 100], "ttr": [0.5, np.nan]})
    assert np.isnan(dmap.deciles(odd, "ttr")).all()


def test_decile_map_table_has_edges_per_bucket(base):
    table = DecileMap.fit(base, ["ttr"], num_buckets=3).to_frame()
    assert set(table.task) == {"cwt", "dat"} and set(table.bucket) == {0, 1, 2}
    edges = table[[f"d{q}" for q in range(10, 100, 10)]].to_numpy()
    assert (np.diff(edges, axis=1) >= 0).all()


def test_outputs_shorter_than_every_base_output_still_get_a_decile():
    """Base lengths [20]*60 + [21]*20 + [22]*20: the first quartile edge equals the shortest
    length, so bucket 0 held no base output and shorter tuned outputs got no decile."""
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"task": "dat", "n_words": [20] * 60 + [21] * 20 + [22] * 20,
                         "ttr": rng.uniform(0.5, 1, 100)})  # fmt: skip
    dmap = DecileMap.fit(base, ["ttr"], num_buckets=4, min_per_bucket=10)
    tuned = pd.DataFrame({"task": "dat", "n_words": [12, 15, 19, 40], "ttr": [0.6, 0.7, 0.8, 0.9]})
    assert np.isfinite(dmap.deciles(tuned, "ttr")).all()
    counts = np.bincount(np.searchsorted(dmap.length_edges["dat"], base.n_words, side="right"))
    assert counts.min() >= 10  # every bucket holds enough base outputs


def test_ties_take_mid_ranks():
    """TTR = 1.0 for most short answers: a tied value sits in the middle of the tied edges
    instead of the lowest decile, so more answers at 1.0 raise DD."""
    base = pd.DataFrame({"task": "pgt", "n_words": 5, "ttr": [0.6] * 40 + [1.0] * 60})
    dmap = DecileMap.fit(base, ["ttr"], num_buckets=1)
    assert dmap.bucket_counts["pgt"].tolist() == [100]
    d = dmap.deciles(pd.DataFrame({"task": "pgt", "n_words": [5, 5], "ttr": [1.0, 0.6]}), "ttr")
    edges = np.percentile(base.ttr, range(10, 100, 10))
    below, at = (edges < 1.0).sum(), (edges == 1.0).sum()
    assert d[0] == 1 + below + at / 2 and d[0] > d[1]
    assert abs(dmap.deciles(base, "ttr").mean() - 5.5) < 0.6


def test_prompt_cluster_bootstrap_covers_zero_under_the_null():
    """Model and base drawn alike, outputs sharing a strong per-prompt effect (15 prompts x 10,
    as AUT): the 95% interval must cover 0 about 95% of the time. Resampling outputs as if
    independent covered it only ~66% of the time in the issue's simulation."""
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(200):
        effect = rng.normal(0, 2, 15)  # the prompt decides much of an output's decile
        sides = [pd.DataFrame({"task": "aut", "prompt": np.repeat(np.arange(15), 10),
                               "d": np.repeat(effect, 10) + rng.normal(0, 1, 150)})
                 for _ in range(2)]  # fmt: skip
        # Base and model answer the same prompts, whose effect they share; add independent
        # per-prompt noise to the model so the null still varies between draws.
        sides[0]["d"] += np.repeat(rng.normal(0, 1, 15), 10)
        _, lo, hi = delta_dd(sides[0], sides[1], "d", num_boot=300, seed=int(rng.integers(1e9)))
        covered.append(lo <= 0 <= hi)
    assert 0.88 <= np.mean(covered) <= 0.995, np.mean(covered)


def test_a_task_of_one_prompt_still_gets_an_interval():
    """DAT and PGT are one prompt x 100 samples: resampling prompts alone would give a zero-width
    interval; the second stage resamples the outputs."""
    rng = np.random.default_rng(3)

    def one_prompt(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {"task": "dat", "prompt": "dat0", "d": rng.integers(1, 11, 100) + shift}
        )

    delta, lo, hi = delta_dd(one_prompt(1.0), one_prompt(0.0), "d", seed=4)
    assert lo < delta < hi and 0.5 < hi - lo < 3


def test_cwt_like_lengths_get_three_buckets_not_one():
    """The study's CWT: 70 reference outputs, quantile edges near 50/80/135 words and 20 asked
    per bucket. Merging thin quartiles used to leave one bucket (no length control)."""
    rng = np.random.default_rng(5)
    lengths = np.round(rng.lognormal(np.log(85), 0.55, 70))
    edges = length_edges_of(lengths, 4, 20)
    counts = np.bincount(bucket_of(lengths, edges))
    assert len(counts) == 3 and counts.min() >= 20


def _splittable(lengths: np.ndarray, m: int) -> bool:
    """Some edge leaves at least m lengths on each side."""
    return any(min((lengths < e).sum(), (lengths >= e).sum()) >= m for e in np.unique(lengths))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=200), st.integers(1, 8),
       st.integers(1, 40))  # fmt: skip
def test_length_buckets_are_full_and_never_one_where_two_fit(lengths, num_buckets, minimum):
    lengths = np.asarray(lengths, dtype=float)
    edges = length_edges_of(lengths, num_buckets, minimum)
    counts = np.bincount(bucket_of(lengths, edges), minlength=len(edges) + 1)
    assert len(counts) <= num_buckets
    assert len(counts) == 1 or counts.min() >= minimum
    if num_buckets >= 2 and _splittable(lengths, minimum):
        assert len(counts) >= 2
    if len(np.unique(lengths)) == len(lengths):  # untied: as many as the minimum allows
        assert len(counts) >= min(num_buckets, len(lengths) // minimum) - 1


def test_all_tasks_weigh_equally_whatever_their_output_counts():
    """100 outputs of a one-prompt task and 10 of another: "all" is the mean of the two
    tasks' deltas, not the mean over outputs."""
    rng = np.random.default_rng(2)

    def side(shift_a, shift_b):
        return pd.concat([
            pd.DataFrame({"task": "dat", "prompt": "d", "x": rng.normal(shift_a, 1, 100)}),
            pd.DataFrame({"task": "aut", "prompt": np.arange(10) % 5, "x": rng.normal(shift_b, 1, 10)}),
        ])  # fmt: skip

    model, ref = side(1.0, 3.0), side(0.0, 0.0)
    out = compare(model, ref, "x", num_boot=200)
    assert np.isclose(out["all"][0], (out["dat"][0] + out["aut"][0]) / 2)
    assert out["all"][1] < out["all"][0] < out["all"][2]


def test_training_runs_that_disagree_widen_the_interval():
    """Two training runs with opposite shifts: resampling runs shows the uncertainty that
    pooling their outputs as one run hides."""
    rng = np.random.default_rng(8)
    prompts = np.repeat(np.arange(15), 10)
    ref = pd.DataFrame({"task": "aut", "prompt": prompts, "x": rng.normal(0, 1, 150)})
    runs = pd.concat([pd.DataFrame({"task": "aut", "prompt": prompts, "run": r,
                                    "x": rng.normal(shift, 1, 150)})
                      for r, shift in (("a", 1.5), ("a@s1", -0.5))])  # fmt: skip
    pooled = compare(runs.drop(columns="run"), ref, "x", num_boot=400)["aut"]
    by_run = compare(runs, ref, "x", num_boot=400)["aut"]
    assert np.isclose(pooled[0], by_run[0])
    assert by_run[2] - by_run[1] > 2 * (pooled[2] - pooled[1])
