"""`diversens plan`: what a pipeline config will cost on the cluster, before running it."""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config
from diversens.commands.options import PlanOptions

HELP = "GPU-hours, memory per GPU, wall time and cost per stage of a pipeline config"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "nothing was written"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from diversens.jobs.config import PipelineConfig

    p = sub.add_parser(
        "plan",
        help=HELP,
        description=f"{HELP}, computed from the config (its `plan` section holds the "
        "assumptions: throughputs, MFU, prices per node type) and the node types of --cluster, "
        "on which it places each stage's actors as the autoscaler would; prints Markdown. With "
        "--plan.measured RUN_DIR, "
        "the wall time per stage on this machine instead, from the rates a pilot (a small "
        "finished pipeline run of the same settings) measured.",
    )
    p.add_argument(
        "--config", type=config.expand_path, help="YAML file with PipelineConfig sections"
    )
    config.add_arguments(p, PlanOptions, group="run")
    config.add_arguments(p, PipelineConfig, title="pipeline")  # its `plan` section is one too
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diversens import nodes
    from diversens.commands.common import load, run_options
    from diversens.jobs.config import PipelineConfig
    from diversens.plan import check_finite, figures, render

    cfg, opts = load(PipelineConfig, args), run_options(args, PlanOptions)
    if cfg.plan.measured:
        from diversens import pilot
        from diversens.prompts import read_prompts

        n = len(read_prompts(cfg.pairs.prompts, "train"))
        rates = pilot.Rates.from_run(Path(cfg.plan.measured))
        check_finite(cfg, lambda c: pilot.figures(c, n, rates))
        print(pilot.render(cfg, n, rates), end="")
        return
    cluster = nodes.read(opts.cluster)
    check_finite(cfg, lambda c: figures(c, c.plan, cluster))
    print(render(cfg, cfg.plan, cluster), end="")
