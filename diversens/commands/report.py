"""`diversens report RUN_DIR`: rebuild every table and plot of a finished run from its outputs,
with no Ray and no model; `--artifacts DEST` first copies the run's artifacts (diversens.artifacts)
and rebuilds them there."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from diversens import config
from diversens.commands.common import check_output, run_options
from diversens.commands.options import ReportOptions
from diversens.errors import UserError
from diversens.io import read_summary
from diversens.storage import is_uri

HELP = "rebuild a finished run's tables and plots from its outputs, or copy its artifacts"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description=f"{HELP}. Rebuilds the selection report (+ PNGs) from pairs/scored, the "
        "pairs files and run_summary.json; train/<strategy>/train_log.csv/.png from "
        "train_log.json; eval's CSV tables, eval_report.md and its PNGs from eval/outputs.parquet "
        "and the config in eval_summary.json. Stages the run did not reach are skipped; one it "
        "left unfinished is an error. No Ray is started and no model loaded.",
    )
    p.add_argument("run", metavar="RUN_DIR",
                   help="a finished run's output: the -o of pipeline, generate-pairs, train or "
                   "eval")  # fmt: skip
    config.add_arguments(p, ReportOptions, group="run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    source = Path(args.run)
    if is_uri(args.run):
        raise UserError(f"{args.run}: a URI; copy the run here first (e.g. aws s3 sync)")
    if not source.is_dir():
        raise UserError(f"{args.run}: no such directory; give a run's output directory")
    opts = run_options(args, ReportOptions)
    found = stages(source)
    out = source
    if opts.artifacts:
        from diversens.artifacts import copy_artifacts

        count, size = copy_artifacts(source, Path(opts.artifacts))
        print(f"copied {count} files ({size / 1e6:.1f} MB) to {opts.artifacts}")
        source = out = Path(opts.artifacts)
    elif opts.output:
        check_output(opts.output, "dir")
        out = Path(opts.output)
    for stage, rebuild in found:
        path = rebuild(source / stage, out / stage)
        if path is not None:
            print(f"rebuilt {path}")


def stages(run: Path) -> list[tuple[Path, Callable[[Path, Path], Path | None]]]:
    """Each finished stage of the run, as its directory (relative to the run) and its job's
    rebuild function: found by its summary, in the run itself (one stage's -o) or in the
    pipeline's layout, later rounds' pairs and training (round-<r>/) included."""
    from diversens.jobs import evaluate, generate_pairs  # imported, not run: no Ray, no model
    from diversens.training import trainer

    rebuilders = {
        generate_pairs.SUMMARY: generate_pairs.rebuild_report,
        trainer.SUMMARY: trainer.rebuild_logs,
        evaluate.SUMMARY: evaluate.rebuild_report,
    }
    rounds = sorted((p.relative_to(run) for p in run.glob("round-*") if p.is_dir()),
                    key=lambda p: (len(p.name), p.name))  # round-10 after round-9  # fmt: skip
    dirs = [Path(".")]
    for r in [Path("."), *rounds]:
        trained = sorted(p.relative_to(run) for p in (run / r / "train").glob("*") if p.is_dir())
        dirs += [r / "pairs", *trained]
    dirs.append(Path("eval"))
    found = [(d, name) for d in dirs for name in rebuilders if (run / d / name).is_file()]
    if not found:
        raise UserError(f"{run}: no finished stage to report (no {', '.join(rebuilders)} in it, "
                        "nor in pairs/, train/<strategy>/ (also under round-<r>/) or "
                        "eval/)")  # fmt: skip
    for d, name in found:  # an unfinished stage fails here, before anything is written
        read_summary(run / d / name)
    return [(d, rebuilders[name]) for d, name in found]
