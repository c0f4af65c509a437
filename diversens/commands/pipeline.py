"""`diversens pipeline`: generate pairs → DPO per strategy → evaluate, in one Ray job."""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config, console
from diversens.commands.common import (
    add_prompts_argument,
    add_run_options,
    checkpoint_layout,
    checkpoint_option,
    connect_ray,
    load,
    preflight,
    run_options,
)
from diversens.commands.evaluate import LAYOUT as EVAL_LAYOUT
from diversens.commands.evaluate import fingerprint as eval_fingerprint
from diversens.commands.generate_pairs import layout as pairs_layout
from diversens.commands.train import LAYOUT as TRAIN_LAYOUT
from diversens.config import config_hash, redacted
from diversens.errors import UserError
from diversens.evaluation.task_scores import check_glove
from diversens.jobs.config import PipelineConfig
from diversens.jobs.generate_pairs import pairs_file, scored_fingerprint
from diversens.jobs.pipeline import SUMMARY
from diversens.output_lock import Claim
from diversens.prompts import read_prompts
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import is_file, is_uri, join, output_dir
from diversens.training.config import check_dpo_args, check_lora_targets

HELP = "the whole loop: preference pairs, DPO for each strategy, evaluation against the base"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help=HELP,
        description=f"{HELP}. Writes OUT/pairs/ (see generate-pairs), OUT/train/<strategy>/ "
        "(model/, train_log.*), OUT/eval/ (eval_report.md ...) and OUT/pipeline_summary.json. "
        "The same config file (sections pairs, train, eval) also drives the stage commands.",
    )
    add_prompts_argument(p, "pairs.prompts")
    add_run_options(p)
    p.add_argument(
        "--config", type=config.expand_path, help="YAML file with PipelineConfig sections"
    )
    config.add_arguments(p, PipelineConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    cfg, opts = load(PipelineConfig, args), run_options(args)
    stages = cfg.stages
    if "generate-pairs" in stages:
        check_engine_available(cfg.pairs.sampling, "pairs.sampling.")
    if "eval" in stages:
        check_engine_available(cfg.eval.sampling, "eval.sampling.")
    prompts = read_prompts(cfg.pairs.prompts, "train") if "generate-pairs" in stages else None
    models = [*cfg.pairs.models(), cfg.train.model, *cfg.eval.scoring.models()]
    trains = "train" in stages
    preflight(models, opts.output, inputs=[cfg.pairs.prompts.file, cfg.eval.glove_path],
              stores=[cfg.train.checkpoints(opts.output)] if trains else [],
              layout=layout(cfg))  # fmt: skip
    if "generate-pairs" in stages:
        check_token_budget(cfg.pairs.sampling, "pairs.sampling.")
    if "eval" in stages:
        check_token_budget(cfg.eval.sampling, "eval.sampling.")
        check_glove(cfg.eval.glove_path, "eval.glove_path")
    if trains:
        check_dpo_args(cfg.train.dpo_args, "train.dpo_args")
        check_lora_targets(cfg.train, "train.lora_target_modules")
    if trains and "generate-pairs" not in stages:
        check_earlier_pairs(cfg, opts.output)
    if "eval" in stages and not trains:
        check_earlier_models(cfg, opts.output)
    gpus = {
        "generate-pairs": cfg.pairs.gpus("pairs."),
        "train": {"train.use_gpu": float(cfg.train.use_gpu)},
        "eval": cfg.eval.gpus("eval."),
    }
    connect_ray(
        opts,
        {k: v for s in stages for k, v in gpus[s].items()},
        log_file=console.run_log(opts.output),
        worker_paths=checkpoint_option(cfg.train, opts.output) if trains else None,
        stages=cfg.demands(),
        claim=Claim(opts.output, "dir", "pipeline", fingerprint(cfg)),
    )

    from diversens.evaluation.report import console_lines
    from diversens.jobs import pipeline

    with output_dir(opts.output) as out:
        summary = pipeline.run(prompts, cfg, out)
    where = redacted(opts.output).rstrip("/")
    if "train" in stages:
        trained = ", ".join(summary["tuned_models"]) or "none"
        why = "; ".join(f"{s}: {reason}" for s, reason in summary["skipped"].items())
        print(f"tuned models: {trained}" + (f" (skipped {why})" if why else ""))
    if "eval" in summary:
        print("\n".join(console_lines(summary["eval"])))
        print(f"report: {where}/eval/eval_report.md")
    times = ", ".join(f"{stage} {s / 60:.1f}" for stage, s in summary["wall_s"].items())
    print(f"minutes per stage: {times}; summary: {where}/pipeline_summary.json")


def layout(cfg: PipelineConfig) -> list[str]:
    """What the stages to run write in the output directory ("name/": a directory)."""
    paths = [SUMMARY]
    if "generate-pairs" in cfg.stages:
        paths += [f"pairs/{p}" for p in pairs_layout(cfg.pairs)]
    if "train" in cfg.stages:
        labels = [label for label, _, _ in cfg.trained()]
        paths += [f"train/{label}/{p}" for label in labels for p in TRAIN_LAYOUT]
        paths += checkpoint_layout(cfg.train, [f"dpo-{label}" for label in labels])
    if "eval" in cfg.stages:
        paths += [f"eval/{p}" for p in EVAL_LAYOUT]
    return paths


def fingerprint(cfg: PipelineConfig) -> str:
    """What decides the pairs and the eval outputs, whichever stages run (a later stage reads
    the pairs an earlier run left); the train stage checks its own settings (claim_run)."""
    return config_hash([scored_fingerprint(cfg.pairs), eval_fingerprint(cfg.eval)])


def check_earlier_pairs(cfg: PipelineConfig, output: str) -> None:
    """Training without the pairs stage reads the pairs an earlier run wrote at the output."""
    main = cfg.pairs.selection.strategy
    for strategy in cfg.train_strategies:
        where = join(output, "pairs", pairs_file(Path(), strategy, main).name)
        if not is_file(where if is_uri(where) else str(Path(where).absolute())):
            raise UserError(
                f"{redacted(where)}: no such file; the train stage reads the pairs of an earlier "
                "run at the same output: run the generate-pairs stage first"
            )


def check_earlier_models(cfg: PipelineConfig, output: str) -> None:
    """Evaluating without the train stage compares the base with the tuned models an earlier
    run wrote at the output: at least one must be there (a merged model or a LoRA adapter)."""
    from diversens.jobs.pipeline import TUNED_MODELS

    def local(where: str) -> str:
        return where if is_uri(where) else str(Path(where).absolute())

    for label, _, _ in cfg.trained():
        for sub, marker in TUNED_MODELS:
            if is_file(local(join(output, "train", label, sub, marker))):
                return
    where = redacted(join(output, "train"))
    raise UserError(
        f"{where}: no tuned model of {', '.join(cfg.train_strategies)} (<strategy>/model or "
        "/adapter); the eval stage compares an earlier run's tuned models at the same output "
        "with the base: run the train stage first, or `diversens eval --models` for others"
    )
