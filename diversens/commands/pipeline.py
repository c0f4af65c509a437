"""`diversens pipeline`: generate pairs → DPO per strategy → evaluate, in one Ray job."""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config
from diversens.commands.common import add_prompt_arguments, connect_ray, read_prompts
from diversens.models import resolve_model
from diversens.pipeline import PipelineConfig
from diversens.sampling.engines import check_engine_available

HELP = "the whole loop: preference pairs, DPO for each strategy, evaluation against the base"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help=HELP,
        description=f"{HELP}. Writes OUT/pairs/ (see generate-pairs), OUT/train/<strategy>/ "
        "(model/, train_log.*), OUT/eval/ (eval_report.md ...) and OUT/pipeline_summary.json. "
        "The same config file (sections pairs, train, eval) also drives the stage commands.",
    )
    add_prompt_arguments(p, default_split="train")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--config", type=Path, help="YAML file with PipelineConfig sections")
    config.add_arguments(p, PipelineConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    cfg = config.load(PipelineConfig, args.config, args)
    check_engine_available(cfg.pairs.sampling)
    resolve_model(cfg.train.model)
    prompts = read_prompts(args) if "generate-pairs" in cfg.stages else None
    connect_ray(args.ray_address)

    from diversens import pipeline

    summary = pipeline.run(prompts, cfg, args.output)
    if "eval" in summary:
        print(f"report: {summary['eval']['report']}")
    print(f"summary: {args.output / 'pipeline_summary.json'}")
