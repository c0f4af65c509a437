"""The whole Diverse-NS loop as one job: generate pairs → DPO per strategy → evaluate
(docs/design.md §4).

Each stage can be run alone (`stages`), reading what an earlier run wrote under the same output.
Each stage publishes its outputs as soon as it is done (diversens.storage.Output), so a failure
later in the run loses nothing an earlier stage made, and a rerun resumes from them. Tuned models
are handed to eval at their final location (a URI on a cluster, never the driver's staging dir),
so every node can load them and the eval's chunk keys stay the same across reruns.
Teacher → student: sample pairs with one model (`pairs.sampling.model`) and train another
(`train.model`); the eval base is always the model that was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from diversens import storage
from diversens.errors import UserError
from diversens.io import write_parquet, write_summary
from diversens.jobs import evaluate as eval_job
from diversens.jobs import generate_pairs
from diversens.jobs.config import PipelineConfig
from diversens.jobs.generate_pairs import pairs_file
from diversens.models import ADAPTER_CONFIG
from diversens.storage import Output

SUMMARY = "pipeline_summary.json"
log = logging.getLogger(__name__)


def run(prompts: pd.DataFrame | None, cfg: PipelineConfig, out: Output) -> dict:
    """Run the chosen stages; OUT/pairs, OUT/train/<strategy>, OUT/eval; returns the summary."""
    summary = {"stages": cfg.stages, "wall_s": {}}
    _write_summary(out, summary, complete=False)
    clock = time.perf_counter()
    if "generate-pairs" in cfg.stages:
        pairs = generate_pairs.run(prompts, cfg.pairs, out.local / "pairs",
                                   parts=out.at("pairs", "parts"))  # fmt: skip
        out.publish("pairs")
        keep = ("pairs", "yield", "chunks", "prompts_quarantined", "prompts_without_pair", "report")
        summary["pairs"] = {k: pairs[k] for k in keep}
        summary["wall_s"]["generate-pairs"] = round(time.perf_counter() - clock, 1)

    tuned, skipped = {}, {}
    if "train" in cfg.stages:
        clock = time.perf_counter()
        summary["train"] = train_all(cfg, out, skipped)
        summary["wall_s"]["train"] = round(time.perf_counter() - clock, 1)
    for label, _, _ in cfg.trained():
        if where := tuned_model(out, label):
            tuned[label] = where
    summary["tuned_models"], summary["skipped"] = tuned, skipped
    _write_summary(out, summary, complete=False)

    if "eval" in cfg.stages:
        clock = time.perf_counter()
        models = [f"base={cfg.train.model}", *(f"{s}={p}" for s, p in tuned.items())]
        ecfg = dataclasses.replace(cfg.eval, models=models)
        result = eval_job.run(ecfg, out.local / "eval", parts=out.at("eval", "parts"))
        out.publish("eval")
        summary["eval"] = {k: result[k] for k in ("base", "delta_dd_all", "length_change_all",
                                                  "quality_change_all", "report")}  # fmt: skip
        summary["wall_s"]["eval"] = round(time.perf_counter() - clock, 1)
    _write_summary(out, summary)
    return summary


def train_all(cfg: PipelineConfig, out: Output, skipped: dict[str, str]) -> dict[str, dict]:
    """One DPO run per train strategy and seed (`PipelineConfig.trained`), each published when
    done; strategies without pairs are recorded in `skipped`. With `equal_pairs` every run
    takes the same number of pairs."""
    from diversens.training.trainer import train

    main = cfg.pairs.selection.strategy
    names = {s: pairs_file(out.local / "pairs", s, main).name for s in cfg.train_strategies}
    done = {}
    with pairs_files(out, names.values()) as local:
        counts = {s: pq.read_metadata(local[n]).num_rows for s, n in names.items()}
        cap = min([n for n in counts.values() if n], default=0) if cfg.equal_pairs else None
        for label, strategy, seed in cfg.trained():
            if counts[strategy] == 0:
                skipped[label] = "no pairs selected"
                log.warning("train %s: skipped, no pairs selected", label)
                continue
            train_out = out.sub("train", label)
            path = local[names[strategy]]
            if cap is not None:
                path = first_pairs(path, cap, train_out.local / "pairs.parquet")
            n = cap or counts[strategy]
            log.info("train %s: DPO on %d pairs, seed %d", label, n, seed)
            tcfg = dataclasses.replace(cfg.train, name=f"dpo-{label}", seed=seed)
            run = train(str(path), tcfg, train_out, checkpoint_root=out.location)
            train_out.publish()
            done[label] = {"pairs": n, "seed": seed, **run["final"],
                           "phases_s": run.get("phases_s")}  # fmt: skip
    return done


# A strategy's tuned model under OUT/train/<strategy>/, and the file that marks it: its merged
# weights, else (a copy of a study's artifacts, which keep no weights) its LoRA adapter.
TUNED_MODELS = (("model", "config.json"), ("adapter", ADAPTER_CONFIG))


def tuned_model(out: Output, label: str) -> str | None:
    """Where a training run's tuned model is (an adapter is merged when loaded)."""
    for sub, marker in TUNED_MODELS:
        if storage.is_file(out.at("train", label, sub, marker)):
            return out.at("train", label, sub)
    return None


def _write_summary(out: Output, summary: dict, complete: bool = True) -> None:
    write_summary(out.local / SUMMARY, summary, complete=complete)
    out.publish(SUMMARY)


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
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(pq.read_table(path).slice(0, n), out)
    return out
