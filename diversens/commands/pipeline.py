"""`diversens pipeline`: generate pairs → DPO per strategy → evaluate, in one Ray job."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from diversens import config, console
from diversens.commands.common import (
    add_prompt_arguments,
    checkpoint_path,
    connect_ray,
    preflight,
    read_prompts,
)
from diversens.config import redacted
from diversens.jobs.config import PipelineConfig
from diversens.sampling.engines import check_engine_available
from diversens.storage import durable_root, is_uri, output_dir

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
    p.add_argument(
        "-o", "--output", required=True, help="output directory or URI (s3://, gs://, file://)"
    )
    p.add_argument("--config", type=Path, help="YAML file with PipelineConfig sections")
    config.add_arguments(p, PipelineConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    cfg = with_checkpoints_beside(config.load(PipelineConfig, args.config, args), args.output)
    check_engine_available(cfg.pairs.sampling)
    prompts = read_prompts(args) if "generate-pairs" in cfg.stages else None
    models = [*cfg.pairs.models(), cfg.train.model]
    preflight(models, args.output, inputs=[args.prompts, cfg.eval.glove_path])
    gpus = {
        "generate-pairs": cfg.pairs.gpus("pairs."),
        "train": {"train.use_gpu": float(cfg.train.use_gpu)},
        "eval": cfg.eval.gpus("eval."),
    }
    connect_ray(
        args.ray_address,
        {k: v for s in cfg.stages for k, v in gpus[s].items()},
        log_file=console.run_log(args.output),
        worker_paths=checkpoint_path(cfg.train.storage_path, args.output)
        if "train" in cfg.stages
        else None,
    )

    from diversens.jobs import pipeline

    with output_dir(args.output) as out:
        summary = pipeline.run(prompts, cfg, out, parts_root=durable_root(args.output))
    where = redacted(args.output).rstrip("/")
    if "train" in cfg.stages:
        trained = ", ".join(summary["tuned_models"]) or "none"
        why = "; ".join(f"{s}: {reason}" for s, reason in summary["skipped"].items())
        print(f"tuned models: {trained}" + (f" (skipped {why})" if why else ""))
    if "eval" in summary:
        print(f"ΔDD vs base (all tasks): {summary['eval']['delta_dd_all']}")
        print(f"report: {where}/eval/eval_report.md")
    print(f"summary: {where}/pipeline_summary.json")


def with_checkpoints_beside(cfg: PipelineConfig, output: str) -> PipelineConfig:
    """With a URI output, checkpoints go to OUTPUT/checkpoints there too, so a rerun resumes."""
    if not is_uri(output) or cfg.train.storage_path:
        return cfg
    train = dataclasses.replace(cfg.train, storage_path=f"{output.rstrip('/')}/checkpoints")
    return dataclasses.replace(cfg, train=train)
