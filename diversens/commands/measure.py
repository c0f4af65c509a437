"""`diversens measure FILE`: add length, lexical and semantic measures to a file of responses."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from diversens import config, console, io, measures
from diversens.commands.common import load, preflight, run_options
from diversens.commands.options import MeasureOptions
from diversens.errors import UserError
from diversens.scoring.measure import MeasureConfig, MeasureStage
from diversens.storage import join, read_local, split_location

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
    rows = read_local(lambda local: measure_file(local, cfg, names, output, opts), args.file)
    print(f"wrote {rows} rows to {output}")


def measure_file(path: Path, cfg: MeasureConfig, names: tuple[str, ...], output: str,
                 opts: MeasureOptions) -> int:  # fmt: skip
    """Stream the local file at `path` through the measures into `output`, a chunk at a time
    (memory holds one chunk, whatever the file's size); returns the rows written."""
    steps = console.steps_to_console()
    scan = Scan.of(path, cfg, READ_ROWS)
    fields = scan.schema.empty_table()
    io.require_field(fields, path, cfg.text_field, "; choose one with --text_field")
    clash = [m for m in names if m in scan.schema.names]
    if clash:
        raise UserError(
            f"{path}: field {clash[0]!r} has the name of a measure this command adds; "
            "rename or drop it"
        )
    if scan.bad:
        raise UserError(f"{path}: {scan.bad}")
    if scan.flat and cfg.group_field and cfg.group_field not in scan.schema.names:
        io.require_field(fields, path, cfg.group_field,
                         "; choose one with --group_field, or --group_field '' for no "
                         "across-candidate distance")  # fmt: skip
    loads = f"; loading the embedder {cfg.embedder}" if measures.needs_embedder(names) else ""
    steps.info("measure: %s rows to do%s", f"{scan.rows:,}", loads)
    if (widest := scan.widest()) > opts.rows_per_chunk:
        steps.info("measure: the rows of one %s are spread over up to %s rows of %s, and are "
                   "measured together; sorted by %s, it would be measured in smaller chunks",
                   cfg.group_field, f"{widest:,}", path, cfg.group_field)  # fmt: skip
    stage = MeasureStage(cfg, names)
    schema = _output_schema(scan.schema, names, scan.flat)
    progress = console.Progress("measure", scan.rows)
    columns = [c for c in dict.fromkeys((cfg.text_field, cfg.task_field, cfg.group_field))
               if c in scan.schema.names]  # fmt: skip
    tables = io.iter_tables(path, READ_ROWS, scan.schema)
    with io.parquet_writer(output, schema) as write:
        for chunk in chunks(tables, scan.ends, opts.rows_per_chunk, progress.every_s):
            values = stage(chunk.select(columns).to_pandas())
            for name in names:
                field = schema.field(name)
                chunk = chunk.append_column(field, pa.array(values[name], field.type,
                                                            from_pandas=True))  # fmt: skip
            write(chunk)
            progress.add(chunk.num_rows)
    return scan.rows


def check_device(device: str | None) -> None:
    """A CUDA device for a model loaded in this process needs CUDA here."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"option --device {device!r}: no CUDA device on this machine")


READ_ROWS = 1024  # rows the file is read by
FIRST_CHUNK = 16  # rows of the first chunk: its progress line comes within seconds


@dataclass
class Scan:
    """What one pass over the file finds, holding no text: its fields, its rows, whether a row
    holds one response or a list, what is wrong with the first row whose text is neither (or
    not what the first row's is), and `ends`, the rows a chunk may end after (no group of rows
    sharing `group_field` continues past them)."""

    schema: pa.Schema
    rows: int
    flat: bool
    bad: str | None
    ends: np.ndarray  # ascending exclusive row ends; the last is `rows`

    @classmethod
    def of(cls, path: Path, cfg: MeasureConfig, read_rows: int) -> Scan:
        schema, rows, kind, bad, keys, codes = None, 0, None, None, {}, []
        for table in io.iter_tables(path, read_rows):
            schema = table.schema if schema is None else _unify(schema, table, path, rows)
            for i, text in enumerate(_values(table, cfg.text_field), start=rows + 1):
                this = _kind(text)
                kind = kind or this
                if bad is None and (this is None or this != kind):
                    bad = f"row {i}: field {cfg.text_field!r} " + (
                        "must be a string or list of strings" if this is None
                        else f"is a {this}, earlier rows hold a {kind}")  # fmt: skip
            if cfg.group_field:
                group = _values(table, cfg.group_field)
                codes.append(np.array([keys.setdefault(str(k), len(keys)) for k in group]))
            rows += table.num_rows
        flat = kind != "list"
        ends = np.arange(1, rows + 1)
        if flat and keys:  # a chunk ends only where every group begun in it has ended
            code = np.concatenate(codes).astype(np.int64)
            last = np.zeros(len(keys), np.int64)
            np.maximum.at(last, code, np.arange(rows))
            reach = np.maximum.accumulate(last[code])
            ends = np.flatnonzero(reach == np.arange(rows)) + 1
        return cls(schema, rows, flat, bad, ends)

    def widest(self) -> int:
        """The most rows between two places a chunk may end."""
        return int(np.diff(self.ends, prepend=0).max(initial=0))


def _values(table: pa.Table, name: str) -> list:
    """A column's values, None in every row of a table without it."""
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def _kind(text) -> str | None:
    if isinstance(text, str):
        return "string"
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return "list"
    return None


def _unify(schema: pa.Schema, table: pa.Table, path: Path, before: int) -> pa.Schema:
    """The types of the rows so far and of `table` (its first row is row `before` + 1): a
    field empty so far takes the type it has later; two types of one field are an error."""
    try:
        return pa.unify_schemas([schema, table.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for field in table.schema:
            if field.name in schema.names:
                try:
                    pa.unify_schemas([pa.schema([schema.field(field.name)]), pa.schema([field])],
                                     promote_options="permissive")  # fmt: skip
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    raise UserError(
                        f"{path}: field {field.name!r} holds {field.type} in rows {before + 1:,}"
                        f"-{before + table.num_rows:,} but {schema.field(field.name).type} in "
                        "earlier rows; give a field one type"
                    ) from None
        raise


def _output_schema(schema: pa.Schema, names: tuple[str, ...], flat: bool) -> pa.Schema:
    """The input's fields, then a float per measure (a list of them for rows of candidates)."""
    value = pa.float64() if flat else pa.list_(pa.float64())
    return pa.schema([*schema, *(pa.field(name, value) for name in names)])


def chunks(tables: Iterable[pa.Table], ends: np.ndarray, most: int, target_s: float,
           first: int = FIRST_CHUNK, clock=time.monotonic) -> Iterator[pa.Table]:  # fmt: skip
    """The rows of `tables` as consecutive chunks, each ending at one of `ends`, reading only
    as far as the chunk asked for. The first has about `first` rows; then each is sized from the
    last one's pace to take about `target_s` (the progress step), at most `most` rows, so a
    line comes soon and then steadily, whether a row takes a millisecond or seconds."""
    tables = iter(tables)
    held: list[pa.Table] = []
    start, size = 0, min(first, most)
    while start < (ends[-1] if len(ends) else 0):
        stop = int(ends[min(np.searchsorted(ends, start + size), len(ends) - 1)])
        while sum(t.num_rows for t in held) < stop - start:
            held.append(next(tables))
        rows = pa.concat_tables(held)
        rest = rows.slice(stop - start)
        held = [rest] if rest.num_rows else []
        began = clock()
        yield rows.slice(0, stop - start)
        pace = (stop - start) / max(clock() - began, 1e-3)
        size = max(1, min(most, int(pace * target_s)))
        start = stop
