"""`diversens train`: DPO fine-tuning of a model on a pairs file, on Ray Train.

Design: docs/design.md §12.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from diversens import config, console
from diversens.commands.common import (
    add_run_options,
    checkpoint_layout,
    checkpoint_option,
    load,
    run_options,
)
from diversens.commands.step import Needs, Step, run_step
from diversens.config import redacted
from diversens.nodes import Demand
from diversens.storage import Output
from diversens.training.config import TrainConfig, check_dpo_args, check_lora_targets
from diversens.training.pairs_input import read_pairs
from diversens.training.trainer import SUMMARY

# What a run writes in its output directory ("name/": a directory), checkpoints aside.
LAYOUT = ("model/", SUMMARY, "train_log.csv", "train_log.json", "train_log.png")
HELP = "DPO fine-tuning on the pairs with Ray Train, TRL and DeepSpeed ZeRO"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "rerun the same command to resume from the last checkpoint"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help=HELP,
        description=f"{HELP}. Writes OUT/model (a plain HF model dir, LoRA merged), "
        "OUT/train_log.csv/.json/.png (loss, reward margin, chosen/rejected rewards per step), "
        "OUT/train_summary.json, OUT/logs/tensorboard with --dpo_args report_to=tensorboard, "
        "and Ray Train checkpoints under storage_path "
        "(default OUT/checkpoints). Rerunning with the same --name and storage resumes from the "
        "latest checkpoint.",
    )
    p.add_argument(
        "pairs",
        type=config.expand_path,
        help="pairs file (.parquet or .jsonl, a path or URI) with prompt, chosen, rejected",
    )
    add_run_options(p, "output directory")
    p.add_argument("--config", type=config.expand_path, help="YAML file with TrainConfig fields")
    config.add_arguments(p, TrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_step(TrainStep(load(TrainConfig, args, "train"), pairs=args.pairs), run_options(args))


@dataclass
class TrainChecks(Step):
    """What every DPO step checks and asks for, alone or in a pipeline (`prefix` "train.")."""

    name = "train"
    cfg: TrainConfig
    prefix: str = ""
    where: str = ""

    def check(self) -> None:
        check_dpo_args(self.cfg.dpo_args, f"{self.prefix}dpo_args")

    def verify(self, output: str) -> None:
        check_lora_targets(self.cfg, f"{self.prefix}lora_target_modules")

    def gpus(self) -> dict[str, float]:
        return {f"{self.prefix}use_gpu": float(self.cfg.use_gpu)}

    def pools(self) -> dict[str, list[Demand]]:
        return {self.name: [self.cfg.demand(self.prefix)]}

    def worker_paths(self, output: str) -> dict[str, str]:
        return checkpoint_option(self.cfg, output)


@dataclass
class TrainStep(TrainChecks):
    """DPO on one pairs file into one output (the trainer checks its settings: claim_run)."""

    pairs: str = ""
    rows: int = field(default=0, init=False)

    def check(self) -> None:
        self.rows = read_pairs(self.pairs).num_rows  # fail on a bad file before Ray starts
        super().check()

    def needs(self, output: str) -> Needs:
        return Needs([self.cfg.model], [self.pairs], [self.cfg.checkpoints(output)],
                     [*LAYOUT, *checkpoint_layout(self.cfg, [self.cfg.name])])  # fmt: skip

    def run(self, out: Output) -> dict:
        from diversens.training.trainer import train

        console.steps_to_console().info(
            "train: DPO on %s pairs, %d worker(s); they start, load the model and prepare the "
            "pairs (progress follows)", f"{self.rows:,}", self.cfg.num_workers)  # fmt: skip
        summary = train(self.pairs, self.cfg, out)
        out.publish()
        return summary

    def lines(self, summary: dict, output: str) -> list[str]:
        final, board = summary["final"], summary["tensorboard"]
        return [
            f"trained {summary['global_step']} steps on {summary['num_pairs']} pairs "
            f"(loss {final.get('loss', float('nan')):.4f}, reward margin "
            f"{final.get('rewards/margins', float('nan')):.4f}) → "
            f"{redacted(summary['model_dir'])}; log: {redacted(summary['logs']['png'])}"
            + (f"; tensorboard: {redacted(board)}" if board else "")
        ]
