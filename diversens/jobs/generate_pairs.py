"""The generate-pairs job: prompts → candidates → scores → pairs, on Ray Data
(docs/design.md §4, §11).

Two passes over the data, both streaming:
1. prompts → engine actor pool → measures actor pool (lexical, and semantic with the embedder)
   → quality actor pool → scored candidates Parquet (one row per prompt, docs/design.md §6);
2. run-level reference values (measure spreads, quality percentiles) from the scored columns, then
   per strategy: scored rows → `SelectStage` (streaming map_batches) → `BalancedTopN` on the driver.
Selection needs run-level percentiles, which exist only once every candidate is scored: hence the
scored Parquet between the passes (it is an output users want anyway).

The first pass is resumable (diversens.jobs.chunks): scored chunks are kept as parts, and a
rerun with the same config scores only the chunks still missing, then rebuilds everything after.
Prompts the engine cannot take are quarantined (quarantine.jsonl) and counted in the summary.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diversens import config, measures, schema
from diversens.config import config_hash
from diversens.errors import UserError
from diversens.io import atomic_dir, read_parquet, read_summary, write_parquet, write_summary
from diversens.jobs import quarantine
from diversens.jobs.chunks import CHUNK, PartStore, plan_chunks, run_chunks
from diversens.jobs.config import GeneratePairsConfig
from diversens.sampling.stage import SampleStage
from diversens.selection.report import PAIR_COLUMNS, SCORED_COLUMNS, write_selection_report
from diversens.selection.rules import SelectionStats

log = logging.getLogger(__name__)
SCORED_ROWS_PER_FILE = 4096  # prompt rows per scored/ file (and row group)
SUMMARY = "run_summary.json"


def scored_fingerprint(cfg: GeneratePairsConfig) -> str:
    """What decides the scored rows: sampling, the measures' settings and which are computed,
    quality."""
    measures = [cfg.scoring.measure, cfg.scoring.quality, cfg.measures]
    return config_hash([cfg.sampling.identity(), *measures])


def write_scored(table: pa.Table, final: Path) -> None:
    """The scored rows as a Parquet directory, written under a temporary name then swapped in."""
    with atomic_dir(final) as tmp:
        # Zero-padded names in plan order: readers list files by name, so rows keep their order.
        for n, start in enumerate(range(0, max(table.num_rows, 1), SCORED_ROWS_PER_FILE)):
            pq.write_table(table.slice(start, SCORED_ROWS_PER_FILE), tmp / f"part-{n:05d}.parquet")


def valid_measures(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Quality and every diversity measure of the valid candidates of the whole run, flat, and
    the task of each."""
    rankable = measures.names(lambda m: m.ranks_candidates and m.name in table.column_names)
    names = ["quality", *rankable]
    valid = np.asarray(pa.compute.list_flatten(table["valid"]), dtype=bool)
    sizes = pa.compute.list_value_length(table["valid"]).to_numpy()
    tasks = np.repeat(table["task"].to_numpy(zero_copy_only=False), sizes)[valid]
    columns = {n: np.asarray(pa.compute.list_flatten(table[n]), dtype=float)[valid] for n in names}
    return columns, tasks.astype(str)


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
        select,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = {
        "config_hash": config_hash(cfg),
        "generator_model": cfg.sampling.model,
        "embedder_model": cfg.scoring.measure.embedder if cfg.needs_embedder else None,
    }
    write_summary(out_dir / SUMMARY, {**stamp, "prompts": len(prompts)}, complete=False)
    store = PartStore(parts or out_dir / "parts")
    planned = plan_chunks(prompts, cfg.sampling.prompts_per_chunk, scored_fingerprint(cfg))

    size = cfg.sampling.prompts_per_chunk
    check_pools_fit({"sampling": cfg.sampling.pool(), **cfg.scoring.pools(size)})

    def build(rows: pd.DataFrame):
        ds = generate_candidates(prompts_dataset(rows, cfg.sampling), cfg.sampling, stage_cls)
        return score_candidates(ds, cfg.scoring, size, cfg.measures)

    todo = store.pending(planned)
    log.info("generate-pairs: %d prompts x %d candidates, %d of %d chunks to sample and score",
             len(prompts), cfg.sampling.num_samples_per_prompt, todo[CHUNK].nunique(),
             planned[CHUNK].nunique())  # fmt: skip
    scored, chunks, quarantined = run_chunks(store, planned, build, out_dir / quarantine.FILE)
    if scored.num_rows == 0:
        why = ", ".join(f"{code}: {n}" for code, n in quarantined.items())
        raise UserError(f"every prompt was quarantined ({why}); see {out_dir / quarantine.FILE}")
    scored_dir = out_dir / "scored"
    schema.check(scored.schema, "scored rows", schema.PROMPT, schema.CANDIDATE,
                 schema.measures(cfg.measures), schema.QUALITY, schema.VALIDITY)  # fmt: skip
    write_scored(scored, scored_dir)

    columns, tasks = valid_measures(scored)
    stats = SelectionStats.from_columns(columns, tasks)
    missing = {m: int((~np.isfinite(v)).sum()) for m, v in columns.items()}
    cfgs = [cfg.selection_for(s) for s in cfg.strategies]
    pairs, drops = {}, {}
    for strategy, top in select(scored, cfgs, stats, SCORED_ROWS_PER_FILE).items():
        pairs[strategy] = top.result().assign(**stamp)
        drops[strategy] = top.drop_counts()
        table = pa.Table.from_pandas(pairs[strategy], preserve_index=False)
        schema.check(table.schema, f"{strategy} pairs", schema.PAIR)
        write_parquet(table, pairs_file(out_dir, strategy, cfg.selection.strategy))

    counts = {s: len(p) for s, p in pairs.items()}
    report = write_selection_report(out_dir, scored, pairs, drops, prompts=len(prompts),
                                    quarantined=sum(quarantined.values()))  # fmt: skip
    log.info("generate-pairs: pairs per strategy (per 100 prompts, per 100k tokens): %s",
             ", ".join(f"{s} {y['pairs']} ({y['per_100_prompts']:.1f}, {y['per_100k_tokens']:.1f})"
                       for s, y in report["yield"]["strategies"].items()))  # fmt: skip
    summary = {
        **stamp,
        "prompts": len(prompts),
        "prompts_quarantined": quarantined,
        "candidates": int(scored.num_rows * cfg.sampling.num_samples_per_prompt),
        "candidates_rejected": report["candidates_rejected"],
        "length_correlation": report["length_correlation"],
        # Valid, but without a finite value (DSI of a one-segment answer): such a candidate
        # takes part only in the strategies that do not rank by that measure.
        "valid_candidates_without": {m: n for m, n in missing.items() if n},
        "pairs": counts,
        "prompts_without_pair": drops,
        "yield": report["yield"],
        "chunks": chunks,
        "report": report["report"],
        "config": cfg,
    }
    write_summary(out_dir / SUMMARY, summary)
    return summary


def rebuild_report(run_dir: Path, out_dir: Path) -> Path:
    """The selection report of the finished job at run_dir, rebuilt into out_dir from the
    scored rows, pairs files and summary it wrote (`diversens report`); returns its path."""
    path = run_dir / SUMMARY
    summary = read_summary(path, "config", "prompts", "prompts_quarantined",
                           "prompts_without_pair")  # fmt: skip
    cfg = config.from_summary(GeneratePairsConfig, summary, path)
    scored = read_parquet(run_dir / "scored", SCORED_COLUMNS)
    main = cfg.selection.strategy
    pairs = {s: read_parquet(pairs_file(run_dir, s, main), PAIR_COLUMNS).to_pandas()
             for s in cfg.strategies}  # fmt: skip
    drops, quarantined = summary["prompts_without_pair"], summary["prompts_quarantined"]
    report = write_selection_report(out_dir, scored, pairs, drops, prompts=summary["prompts"],
                                    quarantined=sum(quarantined.values()))  # fmt: skip
    return Path(report["report"])
