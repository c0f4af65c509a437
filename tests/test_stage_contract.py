"""The stage contract: declared inputs and outputs are checked on the first batch."""

import pandas as pd
import pytest

from diversens.stage import CHUNK, Stage


class AddsLength(Stage):
    requires = ("text",)
    adds = ("length",)

    def __init__(self, forget: bool = False):
        self.forget = forget

    def process(self, batch):
        return batch if self.forget else batch.assign(length=batch.text.str.len())


def test_missing_input_column_is_named():
    with pytest.raises(KeyError, match=r"AddsLength needs column\(s\) \['text'\]"):
        AddsLength()(pd.DataFrame({"other": ["a"]}))


def test_a_stage_that_does_not_add_what_it_declares_fails_at_once():
    with pytest.raises(RuntimeError, match=r"AddsLength declares \['length'\]"):
        AddsLength(forget=True)(pd.DataFrame({"text": ["a"]}))


def test_chunks_are_processed_apart_and_outputs_checked():
    batch = pd.DataFrame({"text": ["a", "bb", "ccc"], CHUNK: ["x", "y", "x"]})
    out = AddsLength()(batch)
    assert sorted(out.length) == [1, 2, 3] and len(out) == 3
