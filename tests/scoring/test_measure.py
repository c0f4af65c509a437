"""MeasureStage: the lexical and semantic measures in one callable (one actor pool runs both)."""

import numpy as np
import pandas as pd
import pytest

from diversens.scoring.measure import (
    LEXICAL,
    LexicalStage,
    MeasureConfig,
    MeasureStage,
    SemanticStage,
)

ROWS = pd.DataFrame({
    "task": ["cwt", "aut"],
    "responses": [["A fox ran. The sky was red.", "One."], ["1. Hat\n2. Cup", "1. Pen\n2. Ink"]],
})  # fmt: skip
CFG = MeasureConfig(text_field="responses")


def test_without_semantic_adds_lexical_and_nan_semantic_columns():
    out = MeasureStage(CFG, semantic=False)(ROWS)
    expected = LexicalStage(CFG)(ROWS)
    pd.testing.assert_frame_equal(out[list(LEXICAL)], expected[list(LEXICAL)])
    assert all(np.isnan(v) for row in out["dsi"] for v in row)
    assert all(np.isnan(v) for row in out["div_across"] for v in row)


@pytest.mark.slow
def test_with_semantic_equals_the_two_stages_in_a_row():
    out = MeasureStage(CFG)(ROWS)
    expected = SemanticStage(CFG)(LexicalStage(CFG)(ROWS))
    pd.testing.assert_frame_equal(out, expected)
    assert np.isfinite(out["dsi"][0][0]) and np.isnan(out["dsi"][0][1])  # one sentence: no DSI
