"""`diversens generate`: sample k candidates per prompt on a Ray engine pool → candidates Parquet.

Prompts come from a user file (JSONL/Parquet with `prompt` or `messages`) or a built-in split
(`--prompts.split train|eval`). Connects to the Ray cluster at --ray_address / $RAY_ADDRESS when
given, else starts a local one. Progress is Ray Data's progress bars; the output is written
atomically in input order, and a rerun resumes from the chunks kept in OUT.parts/
(diversens.jobs.generate).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from diversens import config
from diversens.commands.common import add_prompts_argument, add_run_options, load, run_options
from diversens.commands.step import Needs, Step, run_step
from diversens.config import config_hash, redacted
from diversens.jobs.config import GenerateConfig
from diversens.nodes import Demand
from diversens.prompts import read_prompts
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import Output, is_uri, split_location

if TYPE_CHECKING:
    import pandas as pd

HELP = "sample k candidate responses per prompt (sequential prompting) into a Parquet file"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help=HELP,
        description=f"{HELP}. Reads the prompts and sampling sections of a generate or "
        "pipeline config (pairs.prompts, pairs.sampling).",
    )  # fmt: skip
    add_prompts_argument(p, "prompts")
    p.add_argument(
        "--config", type=config.expand_path, help="YAML file with GenerateConfig sections"
    )
    add_run_options(p, "candidates .parquet file to write")
    config.add_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    opts = run_options(args)
    run_step(GenerateStep(load(GenerateConfig, args, "pairs"), opts.output), opts)


@dataclass
class GenerateStep(Step):
    """Prompts → k candidates each, into one Parquet file; its side files go beside it."""

    name = "generate"
    kind = "parquet"
    cfg: GenerateConfig
    output: str  # the file: `run` writes it and its side files in the folder it is in
    prompts: pd.DataFrame | None = field(default=None, init=False)

    def check(self) -> None:
        check_engine_available(self.cfg.sampling)
        self.prompts = read_prompts(self.cfg.prompts)

    def needs(self, output: str) -> Needs:
        stem = stem_of(output)
        beside = [f"{stem}.parts/", f"{stem}.quarantine.jsonl", f"{stem}.log"]
        return Needs([self.cfg.sampling.model], [self.cfg.prompts.file], layout=beside)

    def verify(self, output: str) -> None:
        check_token_budget(self.cfg.sampling)

    def gpus(self) -> dict[str, float]:
        return {"sampling.num_gpus_per_actor": self.cfg.sampling.gpus_per_actor()}

    def pools(self) -> dict[str, list[Demand]]:
        return {self.name: [Demand.of("sampling", self.cfg.sampling.pool())]}

    def fingerprint(self) -> str:
        return config_hash(self.cfg.sampling.identity())

    def log_file(self, output: str) -> Path | None:
        return None if is_uri(output) else Path(output).with_name(stem_of(output) + ".log")

    def run(self, out: Output) -> dict:
        from diversens.jobs import generate

        name = split_location(self.output)[1]
        stem = name.removesuffix(".parquet")
        done = generate.run(self.prompts, self.cfg.sampling, out.local / name,
                            parts=out.at(stem + ".parts"))  # fmt: skip
        out.publish(name)
        out.publish(done["quarantine_file"].name)
        return done

    def lines(self, summary: dict, output: str) -> list[str]:
        chunks, k = summary["chunks"], self.cfg.sampling.num_samples_per_prompt
        return [
            f"wrote {summary['prompts']} prompts x {k} candidates to {redacted(output)} "
            f"({summary['truncated']} truncated at their token cap); quarantined prompts: "
            f"{summary['quarantined'] or 'none'} ({summary['quarantine_file'].name}); "
            f"chunks: {chunks['written']} sampled, {chunks['reused']} reused "
            f"({stem_of(output)}.parts/)"
        ]


def stem_of(output: str) -> str:
    """The output file's name without .parquet: its side files' names start with it."""
    return split_location(output)[1].removesuffix(".parquet")
