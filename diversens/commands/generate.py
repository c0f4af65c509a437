"""`diversens generate`: sample k candidates per prompt on a Ray engine pool → candidates Parquet.

Prompts come from a user file (JSONL/Parquet with `prompt` or `messages`) or a built-in split
(`--split train|eval`). Connects to the Ray cluster at --ray-address / $RAY_ADDRESS when given,
else starts a local one. Progress is Ray Data's progress bars; the output is written atomically
in input order, and a rerun resumes from the chunks kept in OUT.parts/ (diversens.jobs.generate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config
from diversens.commands.common import add_prompt_arguments, connect_ray, preflight, read_prompts
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

    from diversens.jobs import generate

    done = generate.run(prompts, cfg, output)
    chunks = done["chunks"]
    print(
        f"wrote {done['prompts']} prompts x {cfg.num_samples_per_prompt} candidates to {output} "
        f"({done['truncated']} truncated at max_new_tokens={cfg.max_new_tokens}); "
        f"quarantined prompts: {done['quarantined'] or 'none'} ({done['quarantine_file'].name}); "
        f"chunks: {chunks['written']} sampled, {chunks['reused']} reused "
        f"({generate.parts_dir(output).name}/)"
    )
