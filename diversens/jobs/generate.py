"""The generate job: prompts → k candidates each on the engine pool → one Parquet file.

Resumable like generate-pairs (diversens.jobs.chunks): finished chunks are kept as parts in
`OUT.parts/` beside the output, and a rerun with the same sampling config samples only the chunks
missing there. Rows are written in the order of the prompts; prompts the engine cannot take go
to a quarantine side file beside the output.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from diversens import io, schema
from diversens.config import config_hash
from diversens.errors import UserError
from diversens.jobs.chunks import PartStore, plan_chunks, run_chunks
from diversens.jobs.dataflow import generate_candidates, prompts_dataset
from diversens.sampling.config import SamplingConfig


def parts_dir(output: Path) -> Path:
    return output.with_name(output.stem + ".parts")


def run(prompts: pd.DataFrame, cfg: SamplingConfig, output: Path, parts: str | None = None) -> dict:
    """Write the candidates to `output` and return what was written; finished chunks are kept
    at `parts` (default OUT.parts/ beside the output; a URI for a staged output)."""
    store = PartStore(parts or parts_dir(output))
    planned = plan_chunks(prompts, cfg.prompts_per_chunk, config_hash(cfg.identity()))
    side_file = output.with_name(output.stem + ".quarantine.jsonl")
    table, chunks, held = run_chunks(
        store, planned, lambda rows: generate_candidates(prompts_dataset(rows, cfg), cfg), side_file
    )
    if table.num_rows == 0 and len(prompts):
        why = ", ".join(f"{code}: {n}" for code, n in held.items())
        raise UserError(f"every prompt was quarantined ({why}); see {side_file}")
    schema.check(table.schema, "candidates", schema.PROMPT, schema.CANDIDATE)
    io.write_parquet(table, output)
    truncated = sum(sum(t) for t in table["truncated"].to_pylist())
    return {"prompts": table.num_rows, "truncated": truncated, "quarantined": held,
            "quarantine_file": side_file, "chunks": chunks}  # fmt: skip
