"""`diversens pipeline`: generate pairs → DPO per strategy → evaluate, in one Ray job."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from diversens import config
from diversens.commands.common import (
    add_prompts_argument,
    add_run_options,
    checkpoint_layout,
    load,
    run_options,
)
from diversens.commands.evaluate import EvalChecks
from diversens.commands.evaluate import fingerprint as eval_fingerprint
from diversens.commands.generate_pairs import PairsStep
from diversens.commands.step import Needs, Step, run_step
from diversens.commands.train import LAYOUT as TRAIN_LAYOUT
from diversens.commands.train import TrainChecks
from diversens.config import config_hash, redacted
from diversens.errors import UserError
from diversens.jobs.config import STAGES, PipelineConfig
from diversens.jobs.generate_pairs import pairs_file, scored_fingerprint
from diversens.jobs.pipeline import SUMMARY
from diversens.nodes import Demand
from diversens.storage import Output, is_file, is_uri, join

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
    run_step(PipelineStep(load(PipelineConfig, args)), run_options(args))


def steps(cfg: PipelineConfig) -> list[Step]:
    """The steps `cfg.stages` selects, in the order they run, each with its section's options."""
    every = {"generate-pairs": PairsStep(cfg.pairs, "pairs.", "pairs/"),
             "train": PipelineTrain(cfg.train, "train.", pipeline=cfg),
             "eval": PipelineEval(cfg.eval, "eval.", "eval/", pipeline=cfg)}  # fmt: skip
    return [every[stage] for stage in STAGES if stage in cfg.stages]


@dataclass
class PipelineStep(Step):
    """The selected steps under one output, in one Ray job: each declares its own checks,
    pools and paths; this one adds OUT/pipeline_summary.json and the lines at the end."""

    name = "pipeline"
    cfg: PipelineConfig
    steps: list[Step] = field(init=False)

    def __post_init__(self):
        self.steps = steps(self.cfg)

    def check(self) -> None:
        for step in self.steps:
            step.check()

    def needs(self, output: str) -> Needs:
        return sum((step.needs(output) for step in self.steps), Needs(layout=[SUMMARY]))

    def verify(self, output: str) -> None:
        for step in self.steps:
            step.verify(output)

    def gpus(self) -> dict[str, float]:
        return {k: v for step in self.steps for k, v in step.gpus().items()}

    def pools(self) -> dict[str, list[Demand]]:
        return {k: v for step in self.steps for k, v in step.pools().items()}

    def worker_paths(self, output: str) -> dict[str, str]:
        return {k: v for step in self.steps for k, v in step.worker_paths(output).items()}

    def fingerprint(self) -> str:
        """What decides the pairs and the eval outputs, whichever stages run (a later stage
        reads the pairs an earlier run left); the train stage checks its own settings
        (claim_run)."""
        return config_hash([scored_fingerprint(self.cfg.pairs), eval_fingerprint(self.cfg.eval)])

    def run(self, out: Output) -> dict:
        from diversens.jobs import pipeline

        pairs = [step for step in self.steps if isinstance(step, PairsStep)]
        return pipeline.run(pairs[0].prompts if pairs else None, self.cfg, out)

    def lines(self, summary: dict, output: str) -> list[str]:
        from diversens.evaluation.report import console_lines

        where, lines = redacted(output).rstrip("/"), []
        if "train" in self.cfg.stages:
            trained = ", ".join(summary["tuned_models"]) or "none"
            why = "; ".join(f"{s}: {reason}" for s, reason in summary["skipped"].items())
            lines.append(f"tuned models: {trained}" + (f" (skipped {why})" if why else ""))
        if "eval" in summary:
            lines += [*console_lines(summary["eval"]), f"report: {where}/eval/eval_report.md"]
        times = ", ".join(f"{stage} {s / 60:.1f}" for stage, s in summary["wall_s"].items())
        return [*lines, f"minutes per stage: {times}; summary: {where}/pipeline_summary.json"]


@dataclass
class PipelineTrain(TrainChecks):
    """One DPO run per (strategy, seed) on the pairs under OUT/pairs: this run's, or, without
    the generate-pairs stage, an earlier run's."""

    pipeline: PipelineConfig = field(kw_only=True)

    def needs(self, output: str) -> Needs:
        labels = [label for label, _, _ in self.pipeline.trained()]
        layout = [f"train/{label}/{p}" for label in labels for p in TRAIN_LAYOUT]
        layout += checkpoint_layout(self.cfg, [f"dpo-{label}" for label in labels])
        return Needs([self.cfg.model], stores=[self.cfg.checkpoints(output)], layout=layout)

    def verify(self, output: str) -> None:
        super().verify(output)
        if "generate-pairs" not in self.pipeline.stages:
            check_earlier_pairs(self.pipeline, output)


@dataclass
class PipelineEval(EvalChecks):
    """The base (`train.model`) against the tuned models under OUT/train: this run's, or,
    without the train stage, an earlier run's."""

    pipeline: PipelineConfig = field(kw_only=True)

    def models(self) -> list[str]:
        return [self.pipeline.train.model]

    def runs(self) -> int:
        return self.pipeline.eval_runs()

    def verify(self, output: str) -> None:
        super().verify(output)
        if "train" not in self.pipeline.stages:
            check_earlier_models(self.pipeline, output)


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
