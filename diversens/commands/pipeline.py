"""`diversens pipeline`: generate pairs → DPO per strategy → evaluate, in one Ray job."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
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
from diversens.evaluation.rounds import round_suffix
from diversens.io import write_summary
from diversens.jobs.config import STAGES, PipelineConfig, round_dir
from diversens.jobs.generate_pairs import pairs_file, scored_fingerprint
from diversens.jobs.pipeline import SUMMARY, round_out
from diversens.nodes import Demand
from diversens.storage import Output, is_file, is_uri, join

HELP = "the whole loop: preference pairs, DPO for each strategy, evaluation against the base"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"
log = logging.getLogger(__name__)


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
    """Round 1's steps and the eval, as `cfg.stages` selects them, in the order they run, each
    with its section's options (rounds after the first: `round_steps`)."""
    last = [PipelineEval(cfg.eval, "eval.", "eval/", pipeline=cfg)] if "eval" in cfg.stages else []
    return [*round_steps(cfg, 1), *last]


def round_steps(cfg: PipelineConfig, r: int, model: str = "") -> list[Step]:
    """Round r's generate-pairs and train steps that `cfg.stages` selects; after round 1 with
    `cfg.for_round(r, model)`, `model` being round r-1's tuned model."""
    rcfg = cfg if r == 1 else cfg.for_round(r, model)
    where = "".join(f"{part}/" for part in round_dir(r))
    every = {
        "generate-pairs": PairsStep(rcfg.pairs, "pairs.", f"{where}pairs/"),
        "train": PipelineTrain(rcfg.train, "train.", where, pipeline=rcfg, round=r),
    }
    return [every[stage] for stage in STAGES if stage in every and stage in cfg.stages]


def model_of_round(cfg: PipelineConfig, root: Output, r: int) -> str:
    """Where round r's merged model of rounds_strategy will be under the output."""
    return round_out(root, r).at("train", cfg.rounds_strategy, "model")


@dataclass
class PipelineStep(Step):
    """The selected steps under one output, in one Ray job, round by round, then the eval:
    each declares its own checks, pools and paths (a later round's are round 1's, at its own
    paths); this one adds OUT/pipeline_summary.json and the lines at the end."""

    name = "pipeline"
    cfg: PipelineConfig
    steps: list[Step] = field(init=False)

    def __post_init__(self):
        self.steps = steps(self.cfg)

    def later_rounds(self, output: str) -> list[Step]:
        """The steps of rounds after the first, for their paths (their checks are round 1's)."""
        root, rounds = Output(output, Path(output)), range(2, self.cfg.rounds + 1)
        models = {r: model_of_round(self.cfg, root, r - 1) for r in rounds}
        return [step for r in rounds for step in round_steps(self.cfg, r, models[r])]

    def check(self) -> None:
        for step in self.steps:
            step.check()

    def needs(self, output: str) -> Needs:
        needs = sum((step.needs(output) for step in self.steps), Needs(layout=[SUMMARY]))
        for step in self.later_rounds(output):  # their models are made on the way
            needs.layout += step.needs(output).layout
        return needs

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
        (claim_run). Not `rounds`: more rounds extend a finished run."""
        return config_hash([scored_fingerprint(self.cfg.pairs), eval_fingerprint(self.cfg.eval)])

    def run(self, out: Output) -> dict:
        from diversens.jobs.pipeline import tuned_models

        summary = {"stages": self.cfg.stages, "rounds": self.cfg.rounds, "wall_s": {}}
        for r in range(1, self.cfg.rounds + 1):
            round_summary = summary if r == 1 else summary.setdefault(f"round-{r}", {})
            for step in self.round(r, summary, round_summary):
                self.timed(step, out, summary, round_summary, "" if r == 1 else f"round-{r} ")
            summary["tuned_models"] = tuned_models(self.cfg, out)
            if r < self.cfg.rounds and not self.round_model(r, summary):
                break
        for step in self.steps:
            if isinstance(step, PipelineEval):
                self.timed(step, out, summary, summary, "")
        write_pipeline_summary(out, summary)
        return summary

    def round(self, r: int, summary: dict, round_summary: dict) -> list[Step]:
        """Round r's steps; after round 1 from round r-1's model of rounds_strategy (merged
        weights, or an adapter, merged where loaded), on round 1's prompts (rounds_num_prompts
        of them), whose checks hold for them: the same sections, the same prompts."""
        if r == 1:
            return [step for step in self.steps if not isinstance(step, PipelineEval)]
        from diversens.jobs.pipeline import balanced_first

        model = summary["tuned_models"][self.cfg.rounds_strategy + round_suffix(r - 1)]
        round_summary["sampled_with"] = model
        later = round_steps(self.cfg, r, model)
        for step in later:
            if isinstance(step, PairsStep):
                first = next(s.prompts for s in self.steps if isinstance(s, PairsStep))
                step.prompts = balanced_first(first, self.cfg.rounds_num_prompts)
        return later

    def round_model(self, r: int, summary: dict) -> bool:
        """Whether round r made the model round r+1 samples with; the rounds stop if not."""
        label = self.cfg.rounds_strategy + round_suffix(r)
        if label in summary["tuned_models"]:
            return True
        summary["rounds_stopped"] = f"round {r} made no {label} model to sample round {r + 1}"
        log.warning("pipeline: %s", summary["rounds_stopped"])
        return False

    def timed(self, step: Step, out: Output, summary: dict, part: dict, round_name: str) -> None:
        write_pipeline_summary(out, summary, complete=False)
        clock = time.perf_counter()
        step.record(part, step.run(out))
        summary["wall_s"][round_name + step.name] = round(time.perf_counter() - clock, 1)

    def lines(self, summary: dict, output: str) -> list[str]:
        from diversens.evaluation.report import console_lines

        where, lines = redacted(output).rstrip("/"), []
        if "train" in self.cfg.stages:
            trained = ", ".join(summary["tuned_models"]) or "none"
            later = range(2, self.cfg.rounds + 1)
            rounds = [summary, *(summary.get(f"round-{r}", {}) for r in later)]
            why = "; ".join(f"{label}: {reason}" for part in rounds
                            for label, reason in part.get("skipped", {}).items())  # fmt: skip
            lines.append(f"tuned models: {trained}" + (f" (skipped {why})" if why else ""))
        if stopped := summary.get("rounds_stopped"):
            lines.append(f"rounds stopped: {stopped}")
        if "eval" in summary:
            lines += [*console_lines(summary["eval"]), f"report: {where}/eval/eval_report.md"]
        times = ", ".join(f"{stage} {s / 60:.1f}" for stage, s in summary["wall_s"].items())
        return [*lines, f"minutes per stage: {times}; summary: {where}/pipeline_summary.json"]


def write_pipeline_summary(out: Output, summary: dict, complete: bool = True) -> None:
    write_summary(out.local / SUMMARY, summary, complete=complete)
    out.publish(SUMMARY)


@dataclass
class PipelineTrain(TrainChecks):
    """Round r's DPO runs, one per (strategy, seed) (after round 1: rounds_strategy's only), on
    the round's pairs: this run's, or, without the generate-pairs stage, an earlier run's."""

    pipeline: PipelineConfig = field(kw_only=True)
    round: int = field(default=1, kw_only=True)

    def needs(self, output: str) -> Needs:
        labels = [label for label, _, _ in self.pipeline.trained()]
        layout = [f"{self.where}train/{label}/{p}" for label in labels for p in TRAIN_LAYOUT]
        names = [f"dpo-{label}{round_suffix(self.round)}" for label in labels]
        layout += checkpoint_layout(self.cfg, names)
        return Needs([self.cfg.model], stores=[self.cfg.checkpoints(output)], layout=layout)

    def verify(self, output: str) -> None:
        super().verify(output)
        if "generate-pairs" not in self.pipeline.stages:
            check_earlier_pairs(self.pipeline, output)

    def run(self, out: Output) -> dict:
        from diversens.jobs.pipeline import train_all

        runs, skipped = train_all(self.pipeline, out, self.round)
        return {"runs": runs, "skipped": skipped}

    def record(self, summary: dict, result: dict) -> None:
        summary["train"], summary["skipped"] = result["runs"], result["skipped"]


@dataclass
class PipelineEval(EvalChecks):
    """The base (`train.model`) against the tuned models under OUT/train (and every later
    round's): this run's, or, without the train stage, an earlier run's."""

    pipeline: PipelineConfig = field(kw_only=True)

    def models(self) -> list[str]:
        return [self.pipeline.train.model]

    def runs(self) -> int:
        return self.pipeline.eval_runs()

    def verify(self, output: str) -> None:
        super().verify(output)
        if "train" not in self.pipeline.stages:
            check_earlier_models(self.pipeline, output)

    def run(self, out: Output) -> dict:
        from diversens.jobs import evaluate as eval_job
        from diversens.jobs.pipeline import eval_models

        cfg = dataclasses.replace(self.cfg, models=eval_models(self.pipeline, out))
        result = eval_job.run(cfg, out.local / "eval", parts=out.at("eval", "parts"))
        out.publish("eval")
        return result

    def record(self, summary: dict, result: dict) -> None:
        keep = ("base", "delta_dd_all", "length_change_all", "quality_change_all", "rounds",
                "report")  # fmt: skip
        summary["eval"] = {k: result[k] for k in keep if k in result}


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
    from diversens.models import TUNED_MODEL_FILES

    def local(where: str) -> str:
        return where if is_uri(where) else str(Path(where).absolute())

    for label, _, _ in cfg.trained():
        for sub, marker in TUNED_MODEL_FILES:
            if is_file(local(join(output, "train", label, sub, marker))):
                return
    where = redacted(join(output, "train"))
    raise UserError(
        f"{where}: no tuned model of {', '.join(cfg.train_strategies)} (<strategy>/model or "
        "/adapter); the eval stage compares an earlier run's tuned models at the same output "
        "with the base: run the train stage first, or `diversens eval --models` for others"
    )
