"""The eval job: sample the held-out split from each model, score, compute ΔDD, write a report.

Eval prompts repeated to one sample count k (independent samples: every candidate is a first
turn) → an engine actor pool per model, unioned → the pair job's scoring pools → one row per
output.
Then task scores (DAT, PGT), the decile map from the base model's outputs, per-output deciles and
ΔDD with bootstrap intervals per model, task and measure.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from diversens import config, measures
from diversens.config import config_hash
from diversens.errors import UserError
from diversens.evaluation.config import EvalConfig
from diversens.evaluation.report import OUTPUT_COLUMNS, write_tables
from diversens.evaluation.tables import rank
from diversens.evaluation.task_scores import GloVe, score_dat
from diversens.io import read_parquet, read_summary, write_parquet, write_summary
from diversens.jobs import quarantine
from diversens.jobs.chunks import CHUNK, PartStore, passes, plan_chunks, run_chunks
from diversens.measures.semantic import Embedder
from diversens.prompts import eval_prompts
from diversens.prompts.tasks.dat import dat_words
from diversens.scoring.measure import MeasureStage

log = logging.getLogger(__name__)
SUMMARY = "eval_summary.json"
RUN_SEP = "\x1f"  # joins a model label and a sampling seed while sampling


def per_output_columns(measured: tuple[str, ...]) -> tuple[str, ...]:
    """Candidate-list columns exploded to one row per output."""
    return ("responses", "finish_reason", "n_tokens", *measured, "quality", "valid",
            "reject_reason")  # fmt: skip


def replicate(prompts: pd.DataFrame, num_samples: dict[str, int]) -> tuple[pd.DataFrame, int]:
    """Prompts repeated so every task gets its sample count with one k for all: k = gcd of the
    counts, a prompt of a task with n samples appears n/k times as `<prompt_id>#<copy>`; seeds
    derive from the prompt id, so the copies sample independently."""
    counts = {t: num_samples[t] for t in prompts.task.unique()}
    k = math.gcd(*counts.values())
    copies = prompts.task.map(counts) // k
    out = prompts.loc[prompts.index.repeat(copies)].copy()
    out["source_prompt_id"] = out.prompt_id
    out["prompt_id"] = out.prompt_id + "#" + out.groupby(level=0).cumcount().astype(str)
    return out.reset_index(drop=True), k


def sample_and_score(
    prompts: pd.DataFrame, cfg: EvalConfig, store: PartStore, out_dir: Path
) -> tuple[pd.DataFrame, dict]:
    """One row per output of every model on `prompts`, with all measures, and the run's counts:
    chunks (planned, reused, written) and quarantined prompts by reason (they are listed in
    out_dir/quarantine.jsonl).

    Chunks already in `store` (an interrupted earlier run with the same config) are reused.
    Runs (a model at a seed) go in passes of as many as the cluster can sample at once (one on
    2 cores; all of them on an unbounded autoscaler). A pass's generation is one Ray Data run (an
    engine pool per model run, unioned) and is materialised before scoring starts: scoring pools
    alive beside engine pools still waiting for CPUs would hold them, so on a small machine the
    last engines could never start. Then one embedder pool and one quality pool score the pass,
    and its parts are written before the next pass starts: a stopped eval loses one pass at most.
    """
    rows, k = replicate(prompts, cfg.num_samples)
    plans, scores = {}, [cfg.scoring.measure, cfg.scoring.quality, cfg.per_output_measures]
    for label, model, seed in cfg.model_runs():
        scfg = dataclasses.replace(
            cfg.sampling, model=model, seed=seed, num_samples_per_prompt=k, num_first_turn=k
        )
        run = f"{label}{RUN_SEP}{seed}"  # one model at one seed
        fingerprint = config_hash([label, scfg.identity(), *scores])
        plans[run] = (scfg, plan_chunks(rows.assign(model_label=run), scfg.prompts_per_chunk,
                                        fingerprint))  # fmt: skip

    from diversens.jobs.dataflow import (
        generate_candidates,
        pools_at_once,
        prompts_dataset,
        score_candidates,
        union,
    )

    numbers = itertools.count(1)

    def build(todo: pd.DataFrame):
        runs = [run for run in plans if (todo.model_label == run).any()]
        log.info("eval: pass %d of %d: %s", next(numbers), num_passes,
                 ", ".join(describe_run(run) for run in runs))  # fmt: skip
        branches = [
            generate_candidates(prompts_dataset(todo[todo.model_label == run], scfg), scfg)
            for run in runs
            for scfg in [plans[run][0]]
        ]
        ds = union(branches).materialize()
        return score_candidates(ds, cfg.scoring, cfg.sampling.prompts_per_chunk,
                                cfg.per_output_measures)  # fmt: skip

    planned = pd.concat([plan for _, plan in plans.values()], ignore_index=True)
    todo = store.pending(planned)
    per_pass = pools_at_once(next(iter(plans.values()))[0].pool())  # every run's pool alike
    num_passes = sum(1 for _ in passes(todo, "model_label", per_pass))
    log.info("eval: %d models x %d prompts x %d samples, %d of %d chunks to sample and score "
             "in %d pass(es)", len(plans), len(rows), k, todo[CHUNK].nunique(),
             planned[CHUNK].nunique(), num_passes)  # fmt: skip
    kept, chunks, quarantined = run_chunks(store, planned, build, out_dir / quarantine.FILE,
                                           by="model_label", per_pass=per_pass)  # fmt: skip
    if kept.num_rows == 0 and len(planned):
        why = ", ".join(f"{code}: {n}" for code, n in quarantined.items())
        raise UserError(f"every prompt was quarantined ({why}); see {out_dir / quarantine.FILE}")
    columns = per_output_columns(cfg.per_output_measures)
    per_output = kept.to_pandas().explode(list(columns), ignore_index=True)
    per_output = per_output.rename(columns={"responses": "response", "model": "model_path"})
    run = per_output.pop("model_label").str.rpartition(RUN_SEP)
    per_output["model"], per_output["seed"] = run[0], run[2].astype("int64")
    numeric = [*cfg.per_output_measures, "quality"]
    per_output[numeric] = per_output[numeric].astype(float)
    keep = ["model", "seed", "model_path", "source_prompt_id", "prompt_id", "task", "response"]
    counts = {"chunks": chunks, "prompts_quarantined": quarantined}
    return per_output[keep + list(columns[1:])].reset_index(drop=True), counts


def describe_run(run: str) -> str:
    """A model run's label (`<label><RUN_SEP><seed>`) as people read it: "base (seed 1)"."""
    label, _, seed = run.rpartition(RUN_SEP)
    return f"{label} (seed {seed})"


def driver_embedder(cfg: EvalConfig) -> Embedder | None:
    """The sentence embedder the driver needs (DAT words without GloVe, across-sample measures
    such as Vendi), loaded once for both, on whatever device the driver has:
    `scoring.measure.device` is the embedder pool's (a GPU on a worker node), and a cluster's
    head has none."""
    if cfg.glove_path and not measures.needs_embedder(cfg.across_sample_measures):
        return None
    m = cfg.scoring.measure
    return Embedder(m.embedder, device=None, batch_size=m.embed_batch_size)  # None: auto


def add_task_scores(outputs: pd.DataFrame, cfg: EvalConfig, embedder: Embedder | None):
    """DAT score columns (NaN outside DAT): GloVe vectors of the words, else the embedder's."""
    out = outputs.assign(dat_score=np.nan, dat_words=np.nan, dat_invalid=np.nan)
    dat = out.task == "dat"
    if dat.any():
        if cfg.glove_path:
            # Load only the words the answers use: a full GloVe file is gigabytes in memory.
            vocab = {w for t in out.loc[dat, "response"] for w in dat_words(t)[0]}
            vectors = GloVe(cfg.glove_path, vocabulary=vocab)
            scores = score_dat(out.loc[dat, "response"], vectors, known=vectors.known)
        else:
            scores = score_dat(out.loc[dat, "response"], embedder.encode)
        for name, values in scores.items():
            out.loc[dat, name] = values
    return out


def add_across_sample_measures(outputs: pd.DataFrame, cfg: EvalConfig, embedder: Embedder | None):
    """Distinct-n, Vendi and the other across-sample measures, on the same footing for every
    task and model: each (model, seed, prompt)'s samples, in prompt_id order, split into
    disjoint subsets of `across_sample_size` (`subset`: 0, 1, ...; the remainder of a prompt
    with more samples is in no subset, NaN; a prompt with fewer is one subset), each output
    carrying its subset's value. Computed here, on the driver, once every sample exists."""
    if not cfg.across_sample_measures:
        return outputs
    keys = ["model", "seed", "source_prompt_id"]
    outputs = outputs.drop(columns=[*cfg.across_sample_measures, "subset"], errors="ignore")
    order = outputs.sort_values([*keys, "prompt_id"], kind="stable")
    position = order.groupby(keys, sort=False).cumcount()
    count = order.groupby(keys, sort=False).prompt_id.transform("size")
    size = cfg.across_sample_size
    subset = (position // size).where(position < count // size * size).where(count >= size, 0)
    outputs = outputs.assign(subset=subset)  # aligned on the index
    inside = outputs[outputs.subset.notna()]
    group = inside[keys].astype(str).agg("\x1f".join, axis=1) + "\x1f" + inside.subset.astype(str)
    mcfg = dataclasses.replace(cfg.scoring.measure, text_field="response", group_field="group")
    scored = MeasureStage(mcfg, cfg.across_sample_measures, embedder)(inside.assign(group=group))
    return outputs.join(scored[list(cfg.across_sample_measures)])


def run(cfg: EvalConfig, out_dir: Path, parts: str | Path | None = None) -> dict:
    """Sample, score and compare every model; writes outputs.parquet, decile_map.csv,
    eval_summary.csv, delta_dd.csv, length_change.csv, quality_change.csv, across_samples.csv,
    verdicts.csv, eval_report.md (+ PNGs) and eval_summary.json.
    Scored chunks go to `parts` (default out_dir/parts): a rerun resumes from them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary(out_dir / SUMMARY, {"models": dict(cfg.labelled_models())}, complete=False)
    prompts = eval_prompts()
    store = PartStore(parts or out_dir / "parts")
    outputs, counts = sample_and_score(prompts, cfg, store, out_dir)
    embedder = driver_embedder(cfg)
    outputs = add_across_sample_measures(add_task_scores(outputs, cfg, embedder), cfg, embedder)

    outputs, dmap = rank(outputs, cfg)
    write_parquet(pa.Table.from_pandas(outputs, preserve_index=False), out_dir / "outputs.parquet")
    tables = write_tables(out_dir, outputs, dmap, cfg)
    result = {
        "base": tables["base"],
        "models": dict(cfg.labelled_models()),
        "task_weights": tables["task_weights"],
        "delta_dd_all": tables["delta_dd_all"],
        "length_change_all": tables["length_change_all"],
        "quality_change_all": tables["quality_change_all"],
        **({"rounds": tables["rounds"]} if "rounds" in tables else {}),
        **counts,
        "report": tables["report"],
        "config": cfg,  # what `diversens report` rebuilds the tables with
    }
    write_summary(out_dir / SUMMARY, result)
    return result


def rebuild_report(run_dir: Path, out_dir: Path) -> Path:
    """The tables and report of the finished eval at run_dir, rebuilt into out_dir from its
    outputs.parquet and the config in its summary (`diversens report`); returns the report.
    A run from before eval seeds (`noise_seeds`) is read as `from_noise_seeds` says."""
    path = run_dir / SUMMARY
    summary = read_summary(path, "config")
    stored = summary.get("config")
    legacy = isinstance(stored, dict) and "noise_seeds" in stored
    if legacy:
        summary = {**summary, "config": seeds_of_noise_seeds(stored)}
    cfg = config.from_summary(EvalConfig, summary, path)
    columns = [*OUTPUT_COLUMNS, *cfg.dd_measures, *cfg.across_sample_measures]
    added = ("seed", "subset") if legacy else ()  # what from_noise_seeds and the subsets add
    outputs = read_parquet(run_dir / "outputs.parquet", [c for c in columns if c not in added])
    outputs = outputs.to_pandas()
    if legacy:
        outputs = from_noise_seeds(outputs, cfg)
        outputs = add_across_sample_measures(outputs, cfg, driver_embedder(cfg))
    outputs, dmap = rank(outputs, cfg)
    return Path(write_tables(out_dir, outputs, dmap, cfg)["report"])


def seeds_of_noise_seeds(stored: dict) -> dict:
    """An eval config from before eval seeds: the base at `sampling.seed` was the reference,
    and its noise seeds are the eval seeds."""
    stored = dict(stored)
    noise = stored.pop("noise_seeds") or []
    map_seed = (stored.get("sampling") or {}).get("seed", 0)
    return {**stored, "map_seeds": [map_seed], "seeds": noise or [map_seed + 1]}


def from_noise_seeds(outputs: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    """Its outputs: `<base>@seed<S>` rows are the base at seed S; every other model was sampled
    at the reference's seed (the report says so: not like-for-like)."""
    label = outputs.model.str.rpartition(f"{cfg.base}@seed")
    noise = (label[0] == "") & (label[1] != "")
    seed = np.where(noise, pd.to_numeric(label[2].where(noise), errors="coerce"), cfg.map_seeds[0])
    return outputs.assign(model=outputs.model.where(~noise, cfg.base), seed=seed.astype("int64"))
