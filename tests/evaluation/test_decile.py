"""Diversity Decile: zero against itself, positive when more diverse at equal length, and not
fooled by outputs that are merely shorter."""

import numpy as np
import pandas as pd
import pytest

from diversens.evaluation.decile import DecileMap, delta_dd
from diversens.metrics.lexical import lexical_measures


def outputs(n: int, lengths: tuple[int, int], zipf: float, seed: int, task: str = "cwt"):
    """n texts with uniform lengths and a Zipf(zipf) word distribution (lower = more diverse)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    p = 1 / np.arange(1, 3001) ** zipf
    lens = rng.integers(*lengths, size=n)
    tokens = [list(rng.choice(vocab, size=k, p=p / p.sum())) for k in lens]
    m = lexical_measures(tokens)
    return pd.DataFrame(
        {"task": task, "n_words": m["n_words"], "ttr": m["ttr"], "mattr": m["mattr"]}
    )


@pytest.fixture(scope="module")
def base():
    return pd.concat([outputs(600, (40, 300), 1.1, 0), outputs(300, (5, 60), 1.1, 1, "dat")])


def dd(dmap, df, measure="ttr"):
    return dmap.deciles(df.reset_index(drop=True), measure)


def test_base_against_itself_is_zero(base):
    dmap = DecileMap.fit(base, ["ttr"])
    d = dd(dmap, base)
    delta, lo, hi = delta_dd(d, d)
    assert delta == 0.0 and lo <= 0.0 <= hi
    assert np.nanmin(d) == 1 and np.nanmax(d) == 10
    assert abs(np.nanmean(d) - 5.5) < 0.2  # deciles of the base itself are ~uniform


def test_more_diverse_at_same_length_is_positive(base):
    dmap = DecileMap.fit(base, ["ttr", "mattr"])
    diverse = pd.concat([outputs(600, (40, 300), 0.9, 2), outputs(300, (5, 60), 0.9, 3, "dat")])
    for m in ("ttr", "mattr"):
        delta, lo, hi = delta_dd(dd(dmap, diverse, m), dd(dmap, base, m), seed=1)
        assert delta > 1.0 and lo > 0, m


def test_only_shorter_raises_ttr_but_not_dd(base):
    dmap = DecileMap.fit(base, ["ttr"], num_buckets=8)
    shorter = outputs(600, (40, 120), 1.1, 4)
    cwt = base[base.task == "cwt"]
    assert shorter.ttr.mean() > cwt.ttr.mean() + 0.08  # raw TTR says "more diverse"
    delta, lo, hi = delta_dd(dd(dmap, shorter), dd(dmap, cwt), seed=2)
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
