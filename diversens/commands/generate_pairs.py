"""`diversens generate-pairs`: prompts → candidates → scores → length-matched DPO pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from diversens import config, console
from diversens.commands.common import (
    add_prompts_argument,
    add_run_options,
    connect_ray,
    load,
    preflight,
    run_options,
)
from diversens.config import redacted
from diversens.jobs import quarantine
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import SUMMARY, pairs_file, scored_fingerprint
from diversens.output_lock import Claim
from diversens.prompts import read_prompts
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import output_dir

HELP = "sample, score and select length-matched preference pairs (Diverse-NS) on Ray"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume"


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
    cfg, opts = load(GeneratePairsConfig, args, "pairs"), run_options(args)
    check_engine_available(cfg.sampling)
    prompts = read_prompts(cfg.prompts, default_split="train")
    preflight(cfg.models(), opts.output, inputs=[cfg.prompts.file], layout=layout(cfg))
    check_token_budget(cfg.sampling)
    claim = Claim(opts.output, "dir", "generate-pairs", scored_fingerprint(cfg))
    connect_ray(opts, cfg.gpus(), log_file=console.run_log(opts.output),
                stages={"generate-pairs": cfg.demands()}, claim=claim)  # fmt: skip

    from diversens.jobs import generate_pairs

    with output_dir(opts.output) as out:
        summary = generate_pairs.run(prompts, cfg, out.local, parts=out.at("parts"))
        out.publish()
    main = cfg.selection.strategy
    print(
        f"{summary['pairs'][main]} {main} pairs from {summary['prompts']} prompts → "
        f"{redacted(opts.output)}/pairs.parquet; report: selection_report.md beside it"
    )
    chunks, held = summary["chunks"], summary["prompts_quarantined"]
    print(f"chunks: {chunks['reused']} of {chunks['chunks']} reused from an earlier run; "
          f"quarantined prompts: {held or 'none'} (quarantine.jsonl)")  # fmt: skip


def layout(cfg: GeneratePairsConfig) -> list[str]:
    """What the job writes in its output directory ("name/": a directory)."""
    pairs = [pairs_file(Path(), s, cfg.selection.strategy).name for s in cfg.strategies]
    return ["parts/", "scored/", SUMMARY, quarantine.FILE, "selection_report.md", *pairs]
