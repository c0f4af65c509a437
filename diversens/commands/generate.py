"""`diversens generate`: sample k candidates per prompt on a Ray engine pool → candidates Parquet.

Prompts come from a user file (JSONL/Parquet with `prompt` or `messages`) or a built-in split
(`--split train|eval`). Connects to the Ray cluster at --ray-address / $RAY_ADDRESS when given,
else starts a local one. Progress is Ray Data's progress bars; the output is written atomically
in input order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa

from diversens import config, io
from diversens.commands.common import add_prompt_arguments, connect_ray, preflight, read_prompts
from diversens.jobs import quarantine
from diversens.jobs.chunks import CHUNK
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import check_engine_available

HELP = "sample k candidate responses per prompt (sequential prompting) into a Parquet file"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help=HELP, description=f"{HELP}.")
    add_prompt_arguments(p)
    p.add_argument("-o", "--output", required=True, help="candidates .parquet file to write")
    p.add_argument("--config", type=Path, help="YAML file with SamplingConfig fields")
    config.add_arguments(p, SamplingConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diversens.jobs.config import PipelineConfig

    cfg = config.load(SamplingConfig, args.config, args, "pairs.sampling", whole=PipelineConfig)
    check_engine_available(cfg)
    prompts = read_prompts(args)
    preflight([cfg.model], args.output, kind="parquet", inputs=[args.prompts])
    output = Path(args.output)

    connect_ray(
        args.ray_address,
        {"num_gpus_per_actor": cfg.gpus_per_actor()},
        log_file=output.with_name(output.stem + ".log"),
    )

    from diversens.jobs.dataflow import generate_candidates, prompts_dataset

    ds = generate_candidates(prompts_dataset(prompts, cfg), cfg)
    batches = ds.iter_batches(batch_format="pyarrow", batch_size=None)
    table = pa.concat_tables(batches, promote_options="default")
    # Ray Data does not keep row order; write rows in the order of the prompts.
    position = {pid: i for i, pid in enumerate(prompts["prompt_id"])}
    order = sorted(range(table.num_rows), key=lambda r: position[table["prompt_id"][r].as_py()])
    table = table.take(pa.array(order, type=pa.int64())).drop_columns([CHUNK])
    side_file = output.with_name(output.stem + ".quarantine.jsonl")
    table, held = quarantine.split(table, side_file)
    io.write_parquet(table, output)
    truncated = sum(sum(t) for t in table["truncated"].to_pylist())
    k = cfg.num_samples_per_prompt
    print(
        f"wrote {table.num_rows} prompts x {k} candidates to {output} "
        f"({truncated} truncated at max_new_tokens={cfg.max_new_tokens}); "
        f"quarantined prompts: {held or 'none'} ({side_file.name})"
    )
