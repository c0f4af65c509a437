"""`diversens eval`: sample the held-out eval split from each model and compare length-aware
diversity (ΔDD) against the base model."""

from __future__ import annotations

import argparse

from diversens import config, console
from diversens.commands.common import add_run_options, connect_ray, load, preflight, run_options
from diversens.config import config_hash, redacted
from diversens.evaluation.config import EvalConfig, check_split_paths
from diversens.evaluation.task_scores import check_glove
from diversens.jobs import quarantine
from diversens.jobs.evaluate import SUMMARY
from diversens.output_lock import Claim
from diversens.sampling.engines import check_engine_available, check_token_budget
from diversens.storage import output_dir

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
    cfg, opts = load(EvalConfig, args, "eval"), run_options(args)
    check_engine_available(cfg.sampling)
    check_split_paths(cfg.models)
    models = [m for _, m in cfg.labelled_models()]
    preflight([*models, *cfg.scoring.models()], opts.output,
              inputs=[cfg.glove_path], layout=LAYOUT)  # fmt: skip
    check_token_budget(cfg.sampling)
    check_glove(cfg.glove_path)
    connect_ray(opts, cfg.gpus(), log_file=console.run_log(opts.output),
                stages=cfg.demands(len(cfg.model_runs())),
                claim=Claim(opts.output, "dir", "eval", fingerprint(cfg)))  # fmt: skip

    from diversens.evaluation.report import console_lines
    from diversens.jobs import evaluate as job

    with output_dir(opts.output) as out:
        result = job.run(cfg, out.local, parts=out.at("parts"))
        out.publish()
    print("\n".join(console_lines(result)))
    print(f"report: {redacted(opts.output)}/eval_report.md")


def fingerprint(cfg: EvalConfig) -> str:
    """What decides every model's outputs but the model and seed (the job sets those, and the
    sample count, per model run; the chunk keys add them): a rerun with more models or seeds
    resumes, one with other sampling or scoring settings does not."""
    per_run = ("model", "seed", "num_samples_per_prompt", "num_first_turn")
    sampling = {k: v for k, v in cfg.sampling.identity().items() if k not in per_run}
    scores = [cfg.scoring.measure, cfg.scoring.quality, cfg.per_output_measures]
    return config_hash([sampling, cfg.num_samples, *scores])
