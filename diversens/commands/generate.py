"""`diversens generate`: sample k candidates per prompt on a Ray engine pool → candidates Parquet.

Prompts come from a user file (JSONL/Parquet with `prompt` or `messages`) or a built-in split
(`--prompts.split train|eval`). Connects to the Ray cluster at --ray_address / $RAY_ADDRESS when
given, else starts a local one. Progress is Ray Data's progress bars; the output is written
atomically in input order, and a rerun resumes from the chunks kept in OUT.parts/
(diversens.jobs.generate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config
from diversens.commands.common import (
    add_prompts_argument,
    add_run_options,
    connect_ray,
    load,
    preflight,
    run_options,
)
from diversens.config import config_hash, redacted
from diversens.jobs.config import GenerateConfig
from diversens.nodes import Demand
from diversens.output_lock import Claim
from diversens.prompts import read_prompts
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import is_uri, output_dir, split_location

HELP = "sample k candidate responses per prompt (sequential prompting) into a Parquet file"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help=HELP,
        description=f"{HELP}. Reads the prompts and sampling sections of a generate or "
        "pipeline config (pairs.prompts, pairs.sampling).",
    )  # fmt: skip
    add_prompts_argument(p, "prompts")
    p.add_argument(
        "--config", type=config.expand_path, help="YAML file with GenerateConfig sections"
    )
    add_run_options(p, "candidates .parquet file to write")
    config.add_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    cfg, opts = load(GenerateConfig, args, "pairs"), run_options(args)
    check_engine_available(cfg.sampling)
    prompts = read_prompts(cfg.prompts)
    folder, name = split_location(opts.output)
    stem = name.removesuffix(".parquet")
    beside = [f"{stem}.parts/", f"{stem}.quarantine.jsonl", f"{stem}.log"]
    preflight([cfg.sampling.model], opts.output, kind="parquet", inputs=[cfg.prompts.file],
              layout=beside)  # fmt: skip
    check_token_budget(cfg.sampling)
    connect_ray(
        opts,
        {"sampling.num_gpus_per_actor": cfg.sampling.gpus_per_actor()},
        log_file=None if is_uri(opts.output) else Path(opts.output).with_name(stem + ".log"),
        stages={"generate": [Demand.of("sampling", cfg.sampling.pool())]},
        claim=Claim(opts.output, "parquet", "generate", config_hash(cfg.sampling.identity())),
    )

    from diversens.jobs import generate

    with output_dir(folder) as out:  # the folder of the file: side files go beside it
        done = generate.run(prompts, cfg.sampling, out.local / name, parts=out.at(stem + ".parts"))
        out.publish(name)
        out.publish(done["quarantine_file"].name)
    chunks, k = done["chunks"], cfg.sampling.num_samples_per_prompt
    print(
        f"wrote {done['prompts']} prompts x {k} candidates to {redacted(opts.output)} "
        f"({done['truncated']} truncated at their token cap); "
        f"quarantined prompts: {done['quarantined'] or 'none'} ({done['quarantine_file'].name}); "
        f"chunks: {chunks['written']} sampled, {chunks['reused']} reused "
        f"({stem}.parts/)"
    )
