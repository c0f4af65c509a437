"""`diversens train`: DPO fine-tuning of a model on a pairs file, on Ray Train.

Design: docs/design.md §12.
"""

from __future__ import annotations

import argparse

from diversens import config, console
from diversens.commands.common import (
    add_run_options,
    checkpoint_layout,
    checkpoint_option,
    connect_ray,
    load,
    preflight,
    run_options,
)
from diversens.config import redacted
from diversens.output_lock import Claim
from diversens.storage import output_dir
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
    cfg, opts = load(TrainConfig, args, "train"), run_options(args)
    pairs = read_pairs(args.pairs).num_rows  # fail on a bad file before Ray starts
    check_dpo_args(cfg.dpo_args)
    preflight([cfg.model], opts.output, inputs=[args.pairs], stores=[cfg.checkpoints(opts.output)],
              layout=[*LAYOUT, *checkpoint_layout(cfg, [cfg.name])])  # fmt: skip
    check_lora_targets(cfg)
    connect_ray(
        opts,
        {"use_gpu": float(cfg.use_gpu)},
        log_file=console.run_log(opts.output),
        worker_paths=checkpoint_option(cfg, opts.output),
        stages={"train": [cfg.demand()]},
        claim=Claim(opts.output, "dir", "train"),  # the trainer checks its settings (claim_run)
    )

    from diversens.training.trainer import train

    console.steps_to_console().info(
        "train: DPO on %s pairs, %d worker(s); they start, load the model and prepare the pairs "
        "(progress follows)", f"{pairs:,}", cfg.num_workers)  # fmt: skip
    with output_dir(opts.output) as out:
        summary = train(args.pairs, cfg, out)
        out.publish()
    final = summary["final"]
    print(
        f"trained {summary['global_step']} steps on {summary['num_pairs']} pairs "
        f"(loss {final.get('loss', float('nan')):.4f}, reward margin "
        f"{final.get('rewards/margins', float('nan')):.4f}) → {redacted(summary['model_dir'])}; "
        f"log: {redacted(summary['logs']['png'])}"
        + (f"; tensorboard: {redacted(summary['tensorboard'])}" if summary["tensorboard"] else "")
    )
