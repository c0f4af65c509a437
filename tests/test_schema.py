"""The tables' column names and Arrow types (docs/design.md §6), and the check jobs run before
writing."""

import pyarrow as pa
import pytest

from diversens import schema
from diversens.sampling.stage import SampleStage
from diversens.scoring.quality import QualityStage
from diversens.scoring.validity import ValidityStage
from diversens.selection.stage import SelectStage


def pairs_table(**override) -> pa.Table:
    chosen = [{"role": "assistant", "content": "a"}]
    row = {"prompt_id": "p", "task": "dat", "prompt": [{"role": "user", "content": "q"}],
           "chosen": chosen, "rejected": chosen, "length_bucket": "0-49",
           "strategy": "diverse-ns", "margin": 0.5,
           **{f"{s}_{m}": 1.0 for m in schema.PAIR_MEASURES for s in ("chosen", "rejected")}}  # fmt: skip
    return pa.Table.from_pylist([{**row, **override}])


def test_stages_declare_their_columns_from_the_schema():
    assert SampleStage.requires == schema.names(schema.PROMPT)
    assert SampleStage.adds == schema.names(schema.CANDIDATE, schema.QUARANTINE)
    assert QualityStage.adds == schema.names(schema.QUALITY)
    assert ValidityStage.adds == schema.names(schema.VALIDITY)
    assert SelectStage.adds[:-1] == schema.names(schema.PAIR)


def test_a_pairs_table_as_pandas_writes_it_passes():
    table = pa.Table.from_pandas(pairs_table().to_pandas())  # large_string, as pandas gives
    schema.check(table.schema, "pairs", schema.PAIR)


def test_a_column_of_nulls_passes_and_a_wrong_type_is_named():
    schema.check(pairs_table(length_bucket=None).schema, "pairs", schema.PAIR)
    with pytest.raises(ValueError, match=r"pairs: column 'margin' is string, expected double"):
        schema.check(pairs_table(margin="big").schema, "pairs", schema.PAIR)
    with pytest.raises(ValueError, match=r"column 'chosen' is string"):
        schema.check(pairs_table(chosen="a").schema, "pairs", schema.PAIR)


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match=r"column 'strategy' is missing"):
        schema.check(pairs_table().drop_columns(["strategy"]).schema, "pairs", schema.PAIR)
