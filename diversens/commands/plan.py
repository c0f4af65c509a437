"""`diversens plan`: what a pipeline config will cost on the cluster, before running it."""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config

HELP = "GPU-hours, memory per GPU, wall time and cost per stage of a pipeline config"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from diversens.jobs.config import PipelineConfig

    p = sub.add_parser(
        "plan",
        help=HELP,
        description=f"{HELP}, computed from the config (its `plan` section holds the "
        "assumptions: throughputs, MFU, node types and prices); prints Markdown.",
    )
    p.add_argument("--config", type=Path, help="YAML file with PipelineConfig sections")
    config.add_arguments(p, PipelineConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diversens.commands.common import load
    from diversens.jobs.config import PipelineConfig
    from diversens.plan import render

    cfg = load(PipelineConfig, args)
    print(render(cfg, cfg.plan), end="")
