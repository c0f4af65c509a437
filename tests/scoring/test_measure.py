"""MeasureStage: every measure a run asks for, in one callable (one actor pool), over flat or
candidates rows; the embedder is loaded only when a measure needs it."""

import numpy as np
import pandas as pd
import pytest

from diversens import measures
from diversens.scoring.measure import MeasureConfig, MeasureStage

ROWS = pd.DataFrame({
    "prompt_id": ["p1", "p2"],
    "task": ["cwt", "aut"],
    "responses": [["A fox ran. The sky was red.", "One."], ["1. Hat\n2. Cup", "1. Pen\n2. Ink"]],
})  # fmt: skip
CFG = MeasureConfig(text_field="responses")
WORDS_ONLY = measures.resolve(["ttr", "maas"])  # diverse-ns-lite's measures


def test_words_only_measures_load_no_embedder_and_add_no_embedding_columns():
    stage = MeasureStage(CFG, WORDS_ONLY)
    out = stage(ROWS)
    assert stage.embedder is None
    assert all(measures.MEASURES[m].needs == "text" for m in WORDS_ONLY)
    assert set(WORDS_ONLY) <= set(out.columns) and "dsi" not in out.columns
    assert out["n_words"].tolist() == [[7.0, 1.0], [4.0, 4.0]]  # numbers are words


def test_flat_rows_grouped_by_prompt_equal_candidates_rows():
    flat = ROWS.explode("responses", ignore_index=True).rename(columns={"responses": "response"})
    flat = flat.iloc[[2, 0, 3, 1]]  # groups interleaved: the stage regroups them
    got = MeasureStage(MeasureConfig(), WORDS_ONLY)(flat)
    want = MeasureStage(CFG, WORDS_ONLY)(ROWS).explode(list(WORDS_ONLY), ignore_index=True)
    for name in WORDS_ONLY:
        np.testing.assert_allclose(
            got[name].to_numpy(float), want[name].to_numpy(float)[[2, 0, 3, 1]]
        )
    assert got.index.tolist() == flat.index.tolist()


def test_a_samples_measure_gives_each_response_its_groups_value(monkeypatch):
    """A toy across-sample measure, registered in the test: the stage repeats its per-group
    value over the group's responses, in either row shape."""
    toy = measures.Measure("toy_count", "responses in the group", lambda t: t.sizes * 1.0,
                           scope="samples", ranks_dd=False)  # fmt: skip
    monkeypatch.setitem(measures.MEASURES, "toy_count", toy)
    out = MeasureStage(CFG, ("toy_count",))(ROWS)
    assert out["toy_count"].tolist() == [[2.0, 2.0], [2.0, 2.0]]
    flat = ROWS.explode("responses", ignore_index=True).rename(columns={"responses": "response"})
    flat = flat.iloc[:3]
    assert MeasureStage(MeasureConfig(), ("toy_count",))(flat)["toy_count"].tolist() == [2, 2, 1]


@pytest.mark.slow
def test_default_measures_load_the_embedder_once_and_compute_every_default():
    stage = MeasureStage(CFG)
    out = stage(ROWS)
    assert stage.embedder is not None
    defaults = measures.names(lambda m: m.default)
    assert set(defaults) <= set(out.columns)
    assert np.isfinite(out["dsi"][0][0]) and np.isnan(out["dsi"][0][1])  # one sentence: no DSI
