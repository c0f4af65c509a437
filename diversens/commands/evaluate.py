"""`diversens eval`: sample the held-out eval split from each model and compare length-aware
diversity (ΔDD) against the base model."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from diversens import config
from diversens.commands.common import add_run_options, load, run_options
from diversens.commands.step import Needs, Step, run_step
from diversens.config import config_hash, redacted
from diversens.evaluation.config import EvalConfig, check_split_paths
from diversens.evaluation.task_scores import check_glove
from diversens.jobs import quarantine
from diversens.jobs.evaluate import SUMMARY
from diversens.nodes import Demand
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import Output

# What the job writes in its output directory ("name/": a directory).
LAYOUT = ("parts/", SUMMARY, "outputs.parquet", quarantine.FILE, "eval_report.md")
HELP = "evaluate models on DAT, PGT, AUT and CWT; ΔDD against the base model; report"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help=HELP,
        description=f"{HELP}. Writes OUT/eval_report.md with PNG plots, OUT/outputs.parquet "
        "(every output with its measures and deciles), OUT/decile_map.csv, OUT/delta_dd.csv, "
        "OUT/eval_summary.csv and OUT/eval_summary.json.",
    )
    add_run_options(p)
    p.add_argument("--config", type=config.expand_path, help="YAML file with EvalConfig fields")
    config.add_arguments(p, EvalConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_step(EvalStep(load(EvalConfig, args, "eval")), run_options(args))


@dataclass
class EvalChecks(Step):
    """What every eval checks and asks for, alone or in a pipeline (`prefix` "eval.", under
    `where` "eval/"); `models()` are the models it compares, `runs()` its sampling passes."""

    name = "eval"
    cfg: EvalConfig
    prefix: str = ""
    where: str = ""

    def models(self) -> list[str]:
        return [m for _, m in self.cfg.labelled_models()]

    def runs(self) -> int:
        return len(self.cfg.model_runs())

    def check(self) -> None:
        check_engine_available(self.cfg.sampling, f"{self.prefix}sampling.")

    def needs(self, output: str) -> Needs:
        return Needs([*self.models(), *self.cfg.scoring.models()], [self.cfg.glove_path],
                     layout=[f"{self.where}{p}" for p in LAYOUT])  # fmt: skip

    def verify(self, output: str) -> None:
        check_token_budget(self.cfg.sampling, f"{self.prefix}sampling.")
        check_glove(self.cfg.glove_path, f"{self.prefix}glove_path")

    def gpus(self) -> dict[str, float]:
        return self.cfg.gpus(self.prefix)

    def pools(self) -> dict[str, list[Demand]]:
        return self.cfg.demands(self.runs(), self.prefix)

    def fingerprint(self) -> str:
        return fingerprint(self.cfg)


class EvalStep(EvalChecks):
    """The models of `--models` against the first of them, into one output."""

    def check(self) -> None:
        super().check()
        check_split_paths(self.cfg.models)

    def run(self, out: Output) -> dict:
        from diversens.jobs import evaluate as job

        result = job.run(self.cfg, out.local, parts=out.at("parts"))
        out.publish()
        return result

    def lines(self, summary: dict, output: str) -> list[str]:
        from diversens.evaluation.report import console_lines

        return [*console_lines(summary), f"report: {redacted(output)}/eval_report.md"]


def fingerprint(cfg: EvalConfig) -> str:
    """What decides every model's outputs but the model and seed (the job sets those, and the
    sample count, per model run; the chunk keys add them): a rerun with more models or seeds
    resumes, one with other sampling or scoring settings does not."""
    per_run = ("model", "seed", "num_samples_per_prompt", "num_first_turn")
    sampling = {k: v for k, v in cfg.sampling.identity().items() if k not in per_run}
    scores = [cfg.scoring.measure, cfg.scoring.quality, cfg.per_output_measures]
    return config_hash([sampling, cfg.num_samples, *scores])
