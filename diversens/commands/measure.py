"""`diversens measure FILE`: add length, lexical and semantic measures to a file of responses."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pyarrow as pa

from diversens import config, console, io, measures
from diversens.commands.common import load, preflight, run_options
from diversens.commands.options import MeasureOptions
from diversens.errors import UserError
from diversens.scoring.measure import MeasureConfig, MeasureStage
from diversens.storage import join, split_location

HELP = "add length, lexical, semantic and across-sample diversity"
# What an interrupted run (Ctrl-C, SIGTERM) leaves, on its one line (diversens.cli).
ON_INTERRUPT = "nothing was written; rerunning measures every row again"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help=HELP,
        description=f"{HELP} columns to a JSONL or Parquet file of responses; writes Parquet. "
        "The text column may hold one response per row, or a list of candidates per row. "
        "Across-sample measures (distinct-n, Vendi) take the rows sharing group_field, or a row's "
        f"candidates, as one prompt's samples. Measures: {', '.join(measures.names())}.",
    )
    p.add_argument("file", type=config.expand_path, help="input .jsonl or .parquet (a path or URI)")
    p.add_argument(
        "--config", type=config.expand_path,
        help="YAML file with MeasureConfig fields, or a pipeline config (reads pairs.measure)",
    )  # fmt: skip
    config.add_arguments(p, MeasureOptions, group="run")
    config.add_arguments(p, MeasureConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    steps = console.steps_to_console()
    cfg = load(MeasureConfig, args, "pairs.scoring.measure")
    opts = run_options(args, MeasureOptions)
    output = opts.output
    if output is None:
        folder, name = split_location(args.file)
        output = join(folder, name.rpartition(".")[0] + ".measured.parquet")
    names = cfg.resolve(measures.names(lambda m: m.default))
    embedder = [cfg.embedder] if measures.needs_embedder(names) else []
    preflight(embedder, output, kind="parquet", inputs=[args.file])
    check_device(cfg.device)
    table = io.read_table(args.file)
    io.require_field(table, args.file, cfg.text_field, "; choose one with --text_field")
    clash = [m for m in names if m in table.column_names]
    if clash:
        raise UserError(
            f"{args.file}: field {clash[0]!r} has the name of a measure this command adds; "
            "rename or drop it"
        )
    df = table.to_pandas()
    _check_texts(df[cfg.text_field], args.file, cfg.text_field)
    flat = len(df) == 0 or isinstance(df[cfg.text_field].iloc[0], str)
    if flat and cfg.group_field and cfg.group_field not in df:
        io.require_field(table, args.file, cfg.group_field,
                         "; choose one with --group_field, or --group_field '' for no "
                         "across-candidate distance")  # fmt: skip

    chunks = _chunks(df, cfg.group_field, opts.rows_per_chunk)
    loads = f"; loading the embedder {cfg.embedder}" if embedder else ""
    steps.info("measure: %s rows to do in %d chunk%s%s", f"{len(df):,}", len(chunks),
               "s" * (len(chunks) != 1), loads)  # fmt: skip
    stage = MeasureStage(cfg, names)
    progress = console.Progress("measure", len(df))
    parts = []
    for idx in chunks:
        parts.append(stage(df.iloc[idx]))
        progress.add(len(idx))
    result = pd.concat(parts).loc[df.index] if parts else stage(df)
    io.write_parquet(pa.Table.from_pandas(result, preserve_index=False), output)
    print(f"wrote {len(result)} rows to {output}")


def check_device(device: str | None) -> None:
    """A CUDA device for a model loaded in this process needs CUDA here."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"option --device {device!r}: no CUDA device on this machine")


def _check_texts(col: pd.Series, path: str, name: str) -> None:
    for i, v in enumerate(col, start=1):
        ok = isinstance(v, str) or (
            isinstance(v, (list, np.ndarray)) and all(isinstance(t, str) for t in v)
        )
        if not ok:
            raise UserError(f"{path}: row {i}: field {name!r} must be a string or list of strings")


def _chunks(df: pd.DataFrame, group_field: str, size: int) -> list[np.ndarray]:
    """Row-index chunks of about `size`; rows of one group never straddle two chunks."""
    if group_field not in df:
        return [np.arange(i, min(i + size, len(df))) for i in range(0, len(df), size)]
    order = np.argsort(df[group_field].astype(str).to_numpy(), kind="stable")
    keys = df[group_field].astype(str).to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    chunks, begin = [], 0
    for s in starts[1:]:
        if s - begin >= size:
            chunks.append(order[begin:s])
            begin = s
    if begin < len(order):
        chunks.append(order[begin:])
    return chunks
