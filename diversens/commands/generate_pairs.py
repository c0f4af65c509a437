"""`diversens generate-pairs`: prompts → candidates → scores → length-matched DPO pairs."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from diversens import config
from diversens.commands.common import add_prompts_argument, add_run_options, load, run_options
from diversens.commands.step import Needs, Step, run_step
from diversens.config import redacted
from diversens.jobs import quarantine
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import SUMMARY, pairs_file, scored_fingerprint
from diversens.nodes import Demand
from diversens.prompts import read_prompts
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import Output

if TYPE_CHECKING:
    import pandas as pd

HELP = "sample, score and select length-matched preference pairs (Diverse-NS) on Ray"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"
log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate-pairs",
        help=HELP,
        description=f"{HELP}. Writes OUT/pairs.parquet (a TRL DPO dataset), "
        "OUT/pairs_<strategy>.parquet for the compared strategies, OUT/scored/ (all candidates "
        "with their measures), OUT/selection_report.md with PNG plots, OUT/run_summary.json.",
    )
    add_prompts_argument(p, "prompts")
    add_run_options(p)
    p.add_argument(
        "--config", type=config.expand_path, help="YAML file with GeneratePairsConfig sections"
    )
    config.add_arguments(p, GeneratePairsConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_step(PairsStep(load(GeneratePairsConfig, args, "pairs")), run_options(args))


@dataclass
class PairsStep(Step):
    """Prompts → candidates → scores → pairs; in a pipeline, under `where` ("pairs/")."""

    name = "generate-pairs"
    cfg: GeneratePairsConfig
    prefix: str = ""
    where: str = ""
    prompts: pd.DataFrame | None = field(default=None, init=False)

    def check(self) -> None:
        check_engine_available(self.cfg.sampling, f"{self.prefix}sampling.")
        self.prompts = read_prompts(self.cfg.prompts, default_split="train")

    def needs(self, output: str) -> Needs:
        paths = [f"{self.where}{p}" for p in layout(self.cfg)]
        return Needs(self.cfg.models(), [self.cfg.prompts.file], layout=paths)

    def verify(self, output: str) -> None:
        check_token_budget(self.cfg.sampling, f"{self.prefix}sampling.")

    def gpus(self) -> dict[str, float]:
        return self.cfg.gpus(self.prefix)

    def pools(self) -> dict[str, list[Demand]]:
        return {self.name: self.cfg.demands(self.prefix)}

    def fingerprint(self) -> str:
        return scored_fingerprint(self.cfg)

    def run(self, out: Output) -> dict:
        from diversens.jobs import generate_pairs

        out = self.part(out)
        if done := generate_pairs.finished_run(self.prompts, self.cfg, out.location):
            log.info("generate-pairs: done earlier at %s (same config and prompts): not run "
                     "again", redacted(out.location))  # fmt: skip
            return done
        summary = generate_pairs.run(self.prompts, self.cfg, out.local, parts=out.at("parts"))
        out.publish()
        return summary

    def record(self, summary: dict, result: dict) -> None:
        keep = ("pairs", "yield", "chunks", "prompts_quarantined", "prompts_without_pair",
                "report", "done_earlier")  # fmt: skip
        summary["pairs"] = {k: result[k] for k in keep if k in result}

    def lines(self, summary: dict, output: str) -> list[str]:
        main, chunks = self.cfg.selection.strategy, summary["chunks"]
        return [
            f"{summary['pairs'][main]} {main} pairs from {summary['prompts']} prompts → "
            f"{redacted(output)}/pairs.parquet; report: selection_report.md beside it",
            f"chunks: {chunks['reused']} of {chunks['chunks']} reused from an earlier run; "
            f"quarantined prompts: {summary['prompts_quarantined'] or 'none'} (quarantine.jsonl)",
        ]


def layout(cfg: GeneratePairsConfig) -> list[str]:
    """What the job writes in its output directory ("name/": a directory)."""
    pairs = [pairs_file(Path(), s, cfg.selection.strategy).name for s in cfg.strategies]
    return ["parts/", "scored/", SUMMARY, quarantine.FILE, "selection_report.md", *pairs]
