"""Resumable runs: a chunk of prompts is the unit of work, from the engine to one Parquet part.

A run plans its prompts into chunks of `size` consecutive rows. A chunk is one Ray Data block,
hence one batch in every stage (`map_batches(batch_size=None)`): the scorers see the same
batches run to run, and a chunk sampled again gives the same rows where its engine does
(diversens.sampling.engines: all but vLLM on GPU without `sampling.reproducible`). The driver
gathers the rows coming out of the pipeline by chunk and writes each complete chunk to
`<dir>/<key>.parquet` atomically (temporary name, then rename).

A chunk's key hashes the run's fingerprint (everything that decides its rows: configs, model
ids) with the chunk's prompt ids. A rerun with the same config finds the parts already written
and runs only the missing chunks; a changed config gives new keys, so nothing stale is reused.
Rows come back from Ray Data in any order; `read` returns them in plan order. A chunk whose
stage raised is never written: the run fails, and its rerun starts from that chunk. A part
that does not read back whole (a truncated or corrupt file, a disk that filled up) is renamed to
`<key>.parquet.damaged` on the rerun, with one line saying so, and its chunk is redone.
`run_chunks` is a job's whole first pass over a plan: fill, read, set aside quarantined prompts.
A pass that must not hold the whole run reads the parts one at a time instead (`iter_parts`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from diversens.io import write_parquet
from diversens.jobs import quarantine
from diversens.stage import CHUNK
from diversens.storage import faults, filesystem

log = logging.getLogger(__name__)
DAMAGED = ".damaged"
T = TypeVar("T")


def plan_chunks(prompts: pd.DataFrame, size: int, fingerprint: str) -> pd.DataFrame:
    """`prompts` plus a `chunk` column: runs of `size` consecutive rows, keyed by content."""
    ids = prompts["prompt_id"].astype(str).tolist()
    keys = []
    for start in range(0, len(ids), size):
        members = ids[start : start + size]
        blob = "\x1f".join([fingerprint, *members]).encode()
        keys += [hashlib.sha256(blob).hexdigest()[:20]] * len(members)
    return prompts.assign(**{CHUNK: keys}).reset_index(drop=True)


def chunk_frames(planned: pd.DataFrame) -> list[pd.DataFrame]:
    """One frame per chunk, in plan order (one Ray Data block each)."""
    return [g for _, g in planned.groupby(CHUNK, sort=False)]


class PartStore:
    """The parts of one run's output, one Parquet file per chunk, in a local directory or at a
    URI (s3://, gs://): parts go there as they are written, so a rerun on another machine
    resumes too. Local parts are renamed into place; object stores publish an object whole. A
    store that fails under the run (a full disk, a server gone, a bucket deleted) is one line
    naming it (`storage.faults`); the parts already written stay for the rerun."""

    def __init__(self, location: str | Path):
        self.location = str(location)
        self.fs, self.root = filesystem(self.location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}.parquet"

    def done(self) -> set[str]:
        """Keys of the parts written so far (temporary files start with '.')."""
        with faults(self.location, doing="read"):
            found = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        names = (Path(f.path).name for f in found if f.type == pafs.FileType.File)
        return {n.removesuffix(".parquet") for n in names
                if n.endswith(".parquet") and not n.startswith(".")}  # fmt: skip

    def pending(self, planned: pd.DataFrame) -> pd.DataFrame:
        """The planned rows whose chunk has no part yet."""
        return planned[~planned[CHUNK].isin(self.done())]

    def write(self, key: str, table: pa.Table) -> None:
        if self.local:
            write_parquet(table, self.path(key))
            return
        with faults(self.location):
            self.fs.create_dir(self.root, recursive=True)
            pq.write_table(table, self.path(key), filesystem=self.fs)

    def sink(self, planned: pd.DataFrame) -> PartSink:
        members = planned.groupby(CHUNK, sort=False)["prompt_id"].agg(list).to_dict()
        return PartSink(self, members)

    def set_aside_damaged(self, planned: pd.DataFrame) -> list[str]:
        """Parts of `planned` that do not read back whole with their chunk's row count, renamed
        to `<key>.parquet.damaged` (out of `done`, so their chunks are redone), with one log
        line; returns the new names."""
        members = planned.groupby(CHUNK, sort=False).size().to_dict()
        damaged = []
        for key in sorted(set(members) & self.done()):
            with faults(self.location, doing="read"):  # the store failing is not a damaged part
                data = self._read_bytes(key)
            try:
                rows = pq.read_table(pa.BufferReader(data)).num_rows
                problem = None if rows == members[key] else f"{rows} rows, {members[key]} planned"
            except (OSError, ValueError, pa.ArrowException) as e:  # truncated, not Parquet
                problem = str(e).splitlines()[0] if str(e) else type(e).__name__
            if problem is not None:
                with faults(self.location):
                    self.fs.move(self.path(key), self.path(key) + DAMAGED)
                damaged.append((f"{Path(self.path(key)).name}{DAMAGED}", problem))
        if damaged:
            names = "; ".join(f"{name} ({problem[:120]})" for name, problem in damaged)
            log.warning("%d damaged chunk%s set aside and redone: %s in %s", len(damaged),
                        "s" * (len(damaged) > 1), names, self.location)  # fmt: skip
        return [name for name, _ in damaged]

    def _read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key)) as f:
            return f.read()

    def fill(
        self, planned: pd.DataFrame, build, by: str | None = None, per_pass: int = 0
    ) -> dict[str, int]:
        """Run `build(rows) -> ray.data.Dataset` on the rows of the chunks not written yet (or
        damaged: `set_aside_damaged`) and write their parts; returns chunk counts (planned,
        reused from an earlier run, written). With `by` and `per_pass` > 0 the rows go in
        passes of `per_pass` values of column `by` (in plan order; a value's rows must be whole
        chunks), each built and written before the next: a build that writes nothing until its
        end (the eval materialises its samples) then loses at most one pass when stopped."""
        self.set_aside_damaged(planned)
        todo = self.pending(planned)
        chunks = planned[CHUNK].nunique()
        sink = self.sink(todo)
        for rows in passes(todo, by, per_pass):
            sink.consume(build(rows).iter_batches(batch_size=None, batch_format="pyarrow"))
        return {"chunks": chunks, "reused": chunks - todo[CHUNK].nunique(), "written": sink.written}

    def read(self, planned: pd.DataFrame) -> pa.Table:
        """Every planned chunk's rows, in plan order; a missing part is an error (run it first)."""
        keys = list(dict.fromkeys(planned[CHUNK]))
        missing = set(keys) - self.done()
        if missing:
            raise RuntimeError(f"{self.location}: {len(missing)} chunk(s) have no part yet")
        return pa.concat_tables(self.iter_parts(keys), promote_options="permissive")

    def iter_parts(
        self, keys: Iterable[str], columns: list[str] | None = None
    ) -> Iterator[pa.Table]:
        """The parts of `keys` (their `columns`), one table each, in order: a pass over a run
        that holds one part at a time, the next few read ahead (an object store answers each
        read after tens of milliseconds)."""

        def read(key: str) -> pa.Table:
            return pq.read_table(self.path(key), columns=columns, filesystem=self.fs)

        return _read_ahead(read, keys, self.location)

    def schema(self, keys: Iterable[str]) -> pa.Schema:
        """The schema `read` gives the parts of `keys` (Arrow types an all-null column as null):
        theirs unified, from the files' footers."""
        schemas = _read_ahead(lambda k: pq.read_schema(self.path(k), filesystem=self.fs), keys,
                              self.location)  # fmt: skip
        return functools.reduce(lambda a, b: pa.unify_schemas([a, b], promote_options="permissive"),
                                schemas)  # fmt: skip


def passes(rows: pd.DataFrame, by: str | None, per_pass: int) -> Iterator[pd.DataFrame]:
    """`rows` in passes of `per_pass` values of column `by`, in order of first appearance; one
    pass of all rows without them (none for no rows)."""
    if not len(rows):
        return
    if by is None or per_pass <= 0:
        yield rows
        return
    values = list(dict.fromkeys(rows[by]))
    for start in range(0, len(values), per_pass):
        yield rows[rows[by].isin(values[start : start + per_pass])]


def _read_ahead(
    read: Callable[[str], T], keys: Iterable[str], location: str, depth: int = 8
) -> Iterator[T]:
    """`read(key)` for each key, in order, at most `depth` in flight in threads; the faults of
    the store at `location` are one line naming it."""

    def result(future: Future) -> T:
        with faults(location, doing="read"):
            return future.result()

    with ThreadPoolExecutor(depth) as pool:
        pending: deque = deque()
        for key in keys:
            pending.append(pool.submit(read, key))
            if len(pending) > depth:
                yield result(pending.popleft())
        while pending:
            yield result(pending.popleft())


class PartSink:
    """Driver side of a run: buffers rows by chunk, writes a chunk once all its rows are in,
    in the plan's row order."""

    def __init__(self, store: PartStore, members: dict[str, list[str]]):
        self.store, self.members = store, members
        self.buffered: dict[str, list[pa.Table]] = defaultdict(list)
        self.written = 0

    def add(self, batch: pa.Table) -> None:
        for key in pc.unique(batch[CHUNK]).to_pylist():
            self.buffered[key].append(batch.filter(pc.equal(batch[CHUNK], key)))
            have = sum(t.num_rows for t in self.buffered[key])
            want = self.members[key]
            if have > len(want):
                raise RuntimeError(f"chunk {key}: {have} rows, expected {len(want)}")
            if have == len(want):
                rows = pa.concat_tables(self.buffered.pop(key), promote_options="permissive")
                order = pc.index_in(pa.array(want), value_set=rows["prompt_id"])
                self.store.write(key, rows.take(order))
                self.written += 1

    def consume(self, batches: Iterable[pa.Table]) -> None:
        """Write every chunk of `batches`; rows of an incomplete chunk are an error at the end."""
        for batch in batches:
            self.add(batch)
        if self.buffered:
            short = {k: sum(t.num_rows for t in v) for k, v in self.buffered.items()}
            raise RuntimeError(f"incomplete chunks after the run (rows seen): {short}")


def run_chunks(
    store: PartStore, planned: pd.DataFrame, build: Callable, side_file: Path, **passes
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Build the chunks of `planned` missing from `store` (`PartStore.fill`, in `passes` if
    given: its `by` and `per_pass`), read every chunk in plan order and write the quarantined
    prompts to `side_file`. Returns the other rows, without the chunk and quarantine columns, the
    chunk counts, and the quarantined prompts by reason."""
    chunks = store.fill(planned, build, **passes)
    rows, quarantined = quarantine.split(store.read(planned).drop_columns([CHUNK]), side_file)
    return rows, chunks, quarantined
