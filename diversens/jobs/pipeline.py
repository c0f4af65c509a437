"""What the pipeline's steps share under one output (docs/design.md §4): where each round's
pairs and tuned models are, DPO on a round's pairs, and the models the eval compares.

Each step publishes its outputs as soon as it is done (diversens.storage.Output), so a failure
later in the run loses nothing an earlier step made, and a rerun resumes from them. Tuned models
are handed on at their final location (a URI on a cluster, never the driver's staging dir), so
every node can load them (a later round's engines, the eval's) and chunk keys stay the same
across reruns. Teacher → student: round 1 samples pairs with one model (`pairs.sampling.model`)
and trains another (`train.model`); the eval base is always the model that was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diversens import storage
from diversens.errors import UserError
from diversens.evaluation.rounds import round_suffix
from diversens.io import write_parquet
from diversens.jobs.config import PipelineConfig, round_dir
from diversens.jobs.generate_pairs import pairs_file
from diversens.models import TUNED_MODEL_FILES
from diversens.storage import Output

SUMMARY = "pipeline_summary.json"
log = logging.getLogger(__name__)


def round_out(root: Output, r: int) -> Output:
    """Round r's part of the output: its pairs/ and train/ (jobs.config.round_dir)."""
    return root.sub(*round_dir(r)) if r > 1 else root


def train_all(cfg: PipelineConfig, root: Output, r: int = 1) -> tuple[dict, dict[str, str]]:
    """Round r's DPO runs: one per train strategy and seed (`PipelineConfig.trained`; after
    round 1, the round's config has rounds_strategy's first seed only), each published when
    done. Returns ({label: run}, {label: why it was skipped}). With `equal_pairs` every run
    takes the same number of pairs; with `rounds_mix_pairs` a later round's run takes every
    earlier round's pairs too. Checkpoints go under the output's root for every round."""
    from diversens.training.trainer import train

    out, main = round_out(root, r), cfg.pairs.selection.strategy
    names = {s: pairs_file(Path(), s, main).name for s in cfg.train_strategies}
    done, skipped = {}, {}
    with pairs_files(out, names.values()) as local:
        counts = {s: pq.read_metadata(local[n]).num_rows for s, n in names.items()}
        cap = min([n for n in counts.values() if n], default=0) if cfg.equal_pairs else None
        for label, strategy, seed in cfg.trained():
            if counts[strategy] == 0:
                skipped[label + round_suffix(r)] = "no pairs selected"
                log.warning("train %s (round %d): skipped, no pairs selected", label, r)
                continue
            train_out = out.sub("train", label)
            path = local[names[strategy]]
            if cap is not None:
                path = first_pairs(path, cap, train_out.local / "pairs.parquet")
            if r > 1 and cfg.rounds_mix_pairs:
                path = earlier_pairs_too(cfg, root, r, path, train_out.local / "pairs.parquet")
            n = pq.read_metadata(path).num_rows
            log.info("train %s (round %d): DPO on %d pairs, seed %d", label, r, n, seed)
            tcfg = dataclasses.replace(cfg.train, name=f"dpo-{label}{round_suffix(r)}", seed=seed)
            run = train(str(path), tcfg, train_out, checkpoint_root=root.location)
            train_out.publish()
            done[label] = {"pairs": n, "seed": seed, **run["final"],
                           "phases_s": run.get("phases_s")}  # fmt: skip
    return done, skipped


def earlier_pairs_too(cfg: PipelineConfig, root: Output, r: int, path: Path, out: Path) -> Path:
    """Round r's pairs of rounds_strategy after those of rounds 1..r-1, written to `out`."""
    name = pairs_file(Path(), cfg.rounds_strategy, cfg.pairs.selection.strategy).name
    tables = []
    for k in range(1, r):
        with pairs_files(round_out(root, k), [name]) as local:
            tables.append(pq.read_table(local[name]))
    tables.append(pq.read_table(path))
    return write_once(pa.concat_tables(tables, promote_options="default"), out)


def balanced_first(prompts: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first `n` prompts taken in turn from each task (a task that runs out leaves its turn
    to the others), in their order; all of them when `n` is 0 or not smaller."""
    if not n or n >= len(prompts):
        return prompts
    turn = prompts.groupby("task", sort=False).cumcount().to_numpy()
    task = pd.factorize(prompts["task"])[0]
    keep = np.lexsort((task, turn))[:n]
    return prompts.iloc[np.sort(keep)]


def tuned_models(cfg: PipelineConfig, root: Output) -> dict[str, str]:
    """{label: location} of every tuned model at the output: round 1's per strategy and seed,
    then each later round's (`<rounds_strategy>@r<r>`)."""
    found = {label: tuned_model(root, label) for label, _, _ in cfg.trained()}
    for r, label in cfg.round_labels():
        found[label] = tuned_model(round_out(root, r), cfg.rounds_strategy)
    return {label: where for label, where in found.items() if where}


def eval_models(cfg: PipelineConfig, root: Output) -> list[str]:
    """The eval's `models`: the base (the model round 1 trained), then every tuned model."""
    tuned = tuned_models(cfg, root)
    return [f"base={cfg.train.model}", *(f"{label}={p}" for label, p in tuned.items())]


def tuned_model(out: Output, label: str) -> str | None:
    """Where a training run's tuned model is (an adapter is merged when loaded)."""
    for sub, marker in TUNED_MODEL_FILES:
        if storage.is_file(out.at("train", label, sub, marker)):
            return out.at("train", label, sub)
    return None


@contextlib.contextmanager
def pairs_files(out: Output, names):
    """Local paths of the pairs files `names` of OUT/pairs: the ones this run wrote, else (a
    run of later stages only) copies of the ones an earlier run published."""
    with contextlib.ExitStack() as stack:
        local = {}
        for name in names:
            path = out.local / "pairs" / name
            if not path.exists() and out.staged:
                path = stack.enter_context(storage.local_copy(out.at("pairs", name)))
            if not path.exists():
                raise UserError(f"{path}: no such file; run the generate-pairs stage first")
            local[name] = path
        yield local


def first_pairs(path: Path, n: int, out: Path) -> Path:
    """The first `n` pairs of a pairs file (BalancedTopN writes them best first, balanced over
    tasks and length buckets, so a prefix is itself balanced), written to `out`."""
    return write_once(pq.read_table(path).slice(0, n), out)


def write_once(table: pa.Table, out: Path) -> Path:
    """`table` at `out`, left as it is when a rerun made the same (its files stay untouched)."""
    if not (out.exists() and pq.read_table(out).equals(table)):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(table, out)
    return out
