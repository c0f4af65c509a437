"""The generate-pairs job: prompts → candidates → scores → pairs, on Ray Data
(docs/design.md §4, §11).

Two passes over the data, both streaming:
1. prompts → engine actor pool → measures actor pool (lexical, and semantic with the embedder)
   → quality actor pool → scored candidates Parquet (one row per prompt, docs/design.md §6);
2. over the parts (`select_pairs`): scored/ a part at a time; run-level reference values
   (measure spreads, quality percentiles) in one task; then scored rows → every strategy's
   `SelectStage` in tasks → pair rows → `BalancedTopN` on the driver. The driver's memory does
   not grow with the number of prompts.
Selection needs run-level percentiles, which exist only once every candidate is scored: hence the
scored parts between the passes (and scored/, an output users want anyway).

The first pass is resumable (diversens.jobs.chunks): scored chunks are kept as parts, and a
rerun with the same config scores only the chunks still missing, then rebuilds everything after.
Prompts the engine cannot take are quarantined (quarantine.jsonl) and counted in the summary.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diversens import config, measures, schema, storage
from diversens.config import config_hash
from diversens.errors import UserError
from diversens.io import (
    atomic_dir,
    earlier_summary,
    read_parquet,
    read_summary,
    write_parquet,
    write_summary,
)
from diversens.jobs import quarantine
from diversens.jobs.chunks import CHUNK, PartStore, plan_chunks
from diversens.jobs.config import GeneratePairsConfig
from diversens.sampling.stage import SampleStage
from diversens.selection.report import PAIR_COLUMNS, write_selection_report
from diversens.selection.rules import SelectionStats

log = logging.getLogger(__name__)
SCORED_ROWS_PER_FILE = 4096  # prompt rows per scored/ file (and row group)
SUMMARY = "run_summary.json"


def scored_fingerprint(cfg: GeneratePairsConfig) -> str:
    """What decides the scored rows: sampling, the measures' settings and which are computed,
    quality."""
    measures = [cfg.scoring.measure, cfg.scoring.quality, cfg.measures]
    return config_hash([cfg.sampling.identity(), *measures])


def write_scored(tables: Iterable[pa.Table], final: Path) -> int:
    """The rows of `tables`, in order, as a Parquet directory of SCORED_ROWS_PER_FILE rows a file,
    written under a temporary name then swapped in, holding at most a file's rows and a table;
    returns the rows written."""
    with atomic_dir(final) as tmp:
        # Zero-padded names in plan order: readers list files by name, so rows keep their order.
        names = (tmp / f"part-{n:05d}.parquet" for n in itertools.count())
        held, rows = None, 0
        for table in tables:
            held = table if held is None else pa.concat_tables([held, table])
            rows += table.num_rows
            while held.num_rows >= SCORED_ROWS_PER_FILE:
                pq.write_table(held.slice(0, SCORED_ROWS_PER_FILE), next(names))
                held = held.slice(SCORED_ROWS_PER_FILE)
        if held is not None and (held.num_rows or not rows):  # no rows: one empty file
            pq.write_table(held, next(names))
    return rows


def ranked_columns(names: Iterable[str]) -> list[str]:
    """Quality and every measure that can rank candidates, of the columns `names`."""
    names = set(names)
    return ["quality", *measures.names(lambda m: m.ranks_candidates and m.name in names)]


def valid_measures(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Quality and every diversity measure of the valid candidates of `table`, flat, and the
    task of each."""
    valid = np.asarray(pa.compute.list_flatten(table["valid"]), dtype=bool)
    sizes = pa.compute.list_value_length(table["valid"]).to_numpy()
    tasks = np.repeat(table["task"].to_numpy(zero_copy_only=False), sizes)[valid]
    columns = {n: np.asarray(pa.compute.list_flatten(table[n]), dtype=float)[valid]
               for n in ranked_columns(table.column_names)}  # fmt: skip
    return columns, tasks.astype(str)


def run_level_stats(
    location: str, keys: list[str], names: list[str]
) -> tuple[SelectionStats, dict[str, int]]:
    """`SelectionStats` of the kept rows of the parts `keys` at `location` (with columns
    `names`), and the valid candidates without a finite value, per measure.

    Exact percentiles need every value: the job runs this in a task (dataflow.in_one_task),
    which holds the valid candidates' quality and ranked measures, 8 bytes a value (~100 MB a
    measure at 1M prompts x 12), read a part at a time; the driver holds none of it."""
    wanted = ["task", "valid", "quarantine", *ranked_columns(names)]
    store = PartStore(location)
    parts = [valid_measures(quarantine.kept(t)) for t in store.iter_parts(keys, wanted)]
    columns = {n: np.concatenate([c[n] for c, _ in parts]) for n in parts[0][0]}
    tasks = np.concatenate([t for _, t in parts])
    del parts
    missing = {m: int((~np.isfinite(v)).sum()) for m, v in columns.items()}
    return SelectionStats.from_columns(columns, tasks), missing


def split_parts(
    store: PartStore, keys: list[str], cfg: GeneratePairsConfig, out_dir: Path
) -> tuple[int, dict[str, int], list[str]]:
    """The parts of `keys` in plan order, one at a time: quarantined prompts to
    quarantine.jsonl, the other rows (checked first) to scored/. Returns the rows kept, the
    quarantined prompts by reason code and the parts' columns."""
    target = store.schema(keys)  # what reading every part at once would give, as `read` does
    schema.check(target, "scored rows", schema.PROMPT, schema.CANDIDATE,
                 schema.measures(cfg.measures), schema.QUALITY, schema.VALIDITY)  # fmt: skip
    side_file = quarantine.SideFile(out_dir / quarantine.FILE)

    def kept():
        n = 0
        with side_file:
            for part in store.iter_parts(keys):
                rows = side_file.split(part.cast(target).drop_columns([CHUNK]))
                n += rows.num_rows
                yield rows
        if n == 0:  # raised inside write_scored: no scored/, but the side file is in place
            why = ", ".join(f"{code}: {count}" for code, count in side_file.counts().items())
            raise UserError(f"every prompt was quarantined ({why}); see {side_file.path}")

    rows = write_scored(kept(), out_dir / "scored")
    return rows, side_file.counts(), target.names


def pairs_file(out_dir: Path, strategy: str, main_strategy: str) -> Path:
    """pairs.parquet for the job's strategy, pairs_<strategy>.parquet for the compared ones."""
    return out_dir / ("pairs.parquet" if strategy == main_strategy else f"pairs_{strategy}.parquet")


def run(
    prompts: pd.DataFrame,
    cfg: GeneratePairsConfig,
    out_dir: Path,
    parts: str | Path | None = None,
    stage_cls: type[SampleStage] = SampleStage,
) -> dict:
    """The whole job. Writes scored/, quarantine.jsonl, pairs.parquet, pairs_<strategy>.parquet,
    the selection report and run_summary.json into out_dir; returns the summary.

    Scored chunks go to `parts` (default out_dir/parts) as they finish: a rerun with the same
    config samples only the chunks missing there. `stage_cls` runs a subclass of SampleStage.
    """
    from diversens.jobs.dataflow import (
        check_pools_fit,
        generate_candidates,
        prompts_dataset,
        score_candidates,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = {
        "config_hash": config_hash(cfg),
        "generator_model": cfg.sampling.model,
        "embedder_model": cfg.scoring.measure.embedder if cfg.needs_embedder else None,
    }
    write_summary(out_dir / SUMMARY, {**stamp, "prompts": len(prompts)}, complete=False)
    store = PartStore(parts or out_dir / "parts")
    planned = planned_chunks(prompts, cfg)

    size = cfg.sampling.prompts_per_chunk
    check_pools_fit({"sampling": cfg.sampling.pool(), **cfg.scoring.pools(size)})

    def build(rows: pd.DataFrame):
        ds = generate_candidates(prompts_dataset(rows, cfg.sampling), cfg.sampling, stage_cls)
        return score_candidates(ds, cfg.scoring, size, cfg.measures)

    todo = store.pending(planned)
    log.info("generate-pairs: %d prompts x %d candidates, %d of %d chunks to sample and score",
             len(prompts), cfg.sampling.num_samples_per_prompt, todo[CHUNK].nunique(),
             planned[CHUNK].nunique())  # fmt: skip
    chunks = store.fill(planned, build)
    keys = list(dict.fromkeys(planned[CHUNK]))
    summary = {**stamp, "prompts": len(prompts),
               **select_pairs(store, keys, cfg, out_dir, stamp, len(prompts)),
               "chunks": chunks, "plan": config_hash(keys), "config": cfg}  # fmt: skip
    write_summary(out_dir / SUMMARY, summary)
    return summary


def planned_chunks(prompts: pd.DataFrame, cfg: GeneratePairsConfig) -> pd.DataFrame:
    return plan_chunks(prompts, cfg.sampling.prompts_per_chunk, scored_fingerprint(cfg))


def finished_run(prompts: pd.DataFrame, cfg: GeneratePairsConfig, run_at: str) -> dict | None:
    """The summary of a run that finished at `run_at` with this config and these prompts: such
    a run is not run again (a later round's rerun does not redo this one); its chunks count as
    reused. Its config is read back with today's defaults for options added since (they change
    no row), and a summary without a chunk plan (written before rounds: a study's committed
    pairs) is checked by its prompts, those of scored/ and quarantine.jsonl beside it."""
    done = earlier_summary(storage.join(run_at, SUMMARY), "the step runs again from its chunks")
    if not (done and done.get("complete") and config_hash(stored_config(done)) == config_hash(cfg)):
        return None
    if "plan" in done:
        same = done["plan"] == config_hash(list(dict.fromkeys(planned_chunks(prompts, cfg)[CHUNK])))
    else:
        same = prompt_ids(run_at) == set(prompts.prompt_id)
    if not same:
        return None
    n = done["chunks"]["chunks"]
    return {**done, "chunks": {"chunks": n, "reused": n, "written": 0}, "done_earlier": True}


def stored_config(summary: dict) -> GeneratePairsConfig | None:
    """The config a run summary records, with today's defaults for options it lacks."""
    try:
        return config.from_dict(GeneratePairsConfig, summary["config"])
    except (KeyError, TypeError, ValueError, UserError):  # none, or not one of today's
        return None


def prompt_ids(run_at: str) -> set[str]:
    """The prompts a finished run at `run_at` sampled: scored/'s and the quarantined ones."""
    fs, path = storage.filesystem(storage.join(run_at, "scored"))
    ids = set(pq.read_table(path, columns=["prompt_id"], filesystem=fs).column(0).to_pylist())
    side = storage.join(run_at, quarantine.FILE)
    if storage.is_file(side):
        ids |= {json.loads(line)["prompt_id"] for line in storage.read_text(side).splitlines()}
    return ids


def select_pairs(
    store: PartStore, keys: list[str], cfg: GeneratePairsConfig, out_dir: Path, stamp: dict,
    prompts: int,
) -> dict:  # fmt: skip
    """The second pass, over the parts of `keys` (every chunk of the plan, in order), in driver
    memory that does not grow with them: scored/ and quarantine.jsonl a part at a time
    (`split_parts`), the run-level statistics in one task (`run_level_stats`), every
    strategy's selection in tasks with only their pair rows reaching the driver's
    `BalancedTopN`s, then the pairs files and the report. Returns the run summary's entries."""
    from diversens.jobs.dataflow import in_one_task, select_parts

    rows, quarantined, names = split_parts(store, keys, cfg, out_dir)
    stats, missing = in_one_task(run_level_stats, store.location, location=store.location,
                                 keys=keys, names=names)  # fmt: skip
    cfgs = [cfg.selection_for(s) for s in cfg.strategies]
    per_block = max(1, SCORED_ROWS_PER_FILE // cfg.sampling.prompts_per_chunk)
    pairs, drops = {}, {}
    for strategy, top in select_parts(store.location, keys, cfgs, stats, per_block).items():
        pairs[strategy] = top.result().assign(**stamp)
        drops[strategy] = top.drop_counts()
        table = pa.Table.from_pandas(pairs[strategy], preserve_index=False)
        schema.check(table.schema, f"{strategy} pairs", schema.PAIR)
        write_parquet(table, pairs_file(out_dir, strategy, cfg.selection.strategy))
    del top  # its kept rows (cells x num_pairs), not needed by the report

    counts = {s: len(p) for s, p in pairs.items()}
    report = write_selection_report(out_dir, out_dir / "scored", pairs, drops, prompts=prompts,
                                    quarantined=sum(quarantined.values()))  # fmt: skip
    log.info("generate-pairs: pairs per strategy (per 100 prompts, per 100k tokens): %s",
             ", ".join(f"{s} {y['pairs']} ({y['per_100_prompts']:.1f}, {y['per_100k_tokens']:.1f})"
                       for s, y in report["yield"]["strategies"].items()))  # fmt: skip
    return {
        "prompts_quarantined": quarantined,
        "candidates": rows * cfg.sampling.num_samples_per_prompt,
        "candidates_rejected": report["candidates_rejected"],
        "length_correlation": report["length_correlation"],
        # Valid, but without a finite value (DSI of a one-segment answer): such a candidate
        # takes part only in the strategies that do not rank by that measure.
        "valid_candidates_without": {m: n for m, n in missing.items() if n},
        "pairs": counts,
        "prompts_without_pair": drops,
        "yield": report["yield"],
        "report": report["report"],
    }


def rebuild_report(run_dir: Path, out_dir: Path) -> Path:
    """The selection report of the finished job at run_dir, rebuilt into out_dir from the
    scored rows, pairs files and summary it wrote (`diversens report`); returns its path."""
    path = run_dir / SUMMARY
    summary = read_summary(path, "config", "prompts", "prompts_quarantined",
                           "prompts_without_pair")  # fmt: skip
    cfg = config.from_summary(GeneratePairsConfig, summary, path)
    main = cfg.selection.strategy
    pairs = {s: read_parquet(pairs_file(run_dir, s, main), PAIR_COLUMNS).to_pandas()
             for s in cfg.strategies}  # fmt: skip
    drops, quarantined = summary["prompts_without_pair"], summary["prompts_quarantined"]
    report = write_selection_report(out_dir, run_dir / "scored", pairs, drops,
                                    prompts=summary["prompts"],
                                    quarantined=sum(quarantined.values()))  # fmt: skip
    return Path(report["report"])
