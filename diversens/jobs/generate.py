"""The generate job: prompts → k candidates each on the engine pool → one Parquet file.

Ray Data does not keep row order, so rows are written in the order of the prompts; prompts the
engine cannot take go to a quarantine side file beside the output.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from diversens import io, schema
from diversens.jobs import quarantine
from diversens.jobs.chunks import CHUNK
from diversens.jobs.dataflow import generate_candidates, prompts_dataset
from diversens.sampling.config import SamplingConfig


def run(prompts: pd.DataFrame, cfg: SamplingConfig, output: Path) -> dict:
    """Write the candidates to `output` and return what was written."""
    ds = generate_candidates(prompts_dataset(prompts, cfg), cfg)
    batches = ds.iter_batches(batch_format="pyarrow", batch_size=None)
    table = pa.concat_tables(batches, promote_options="default")
    position = {pid: i for i, pid in enumerate(prompts["prompt_id"])}
    order = sorted(range(table.num_rows), key=lambda r: position[table["prompt_id"][r].as_py()])
    table = table.take(pa.array(order, type=pa.int64())).drop_columns([CHUNK])
    side_file = output.with_name(output.stem + ".quarantine.jsonl")
    table, held = quarantine.split(table, side_file)
    schema.check(table.schema, "candidates", schema.PROMPT, schema.CANDIDATE)
    io.write_parquet(table, output)
    truncated = sum(sum(t) for t in table["truncated"].to_pylist())
    return {"prompts": table.num_rows, "truncated": truncated, "quarantined": held,
            "quarantine_file": side_file}  # fmt: skip
