"""The whole Diverse-NS loop as one job: generate pairs → DPO per strategy → evaluate (§1).

Each stage can be run alone (`stages`), reading what an earlier run wrote under the same output
directory. Teacher → student: sample pairs with one model (`pairs.sampling.model`) and train
another (`train.model`); the eval base is always the model that was trained.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from diversens.io import write_parquet, write_summary
from diversens.jobs import evaluate as eval_job
from diversens.jobs import generate_pairs
from diversens.jobs.config import PipelineConfig
from diversens.jobs.generate_pairs import pairs_file

SUMMARY = "pipeline_summary.json"
log = logging.getLogger(__name__)


def run(
    prompts: pd.DataFrame | None,
    cfg: PipelineConfig,
    out_dir: Path,
    parts_root: str | None = None,
) -> dict:
    """Run the chosen stages; OUT/pairs, OUT/train/<strategy>, OUT/eval; returns the summary.
    Resumable parts go under `parts_root` (a URI when out_dir is a staging dir) or out_dir."""
    root = parts_root or str(out_dir)
    from diversens.training.trainer import train

    out_dir.mkdir(parents=True, exist_ok=True)
    pairs_dir, summary = out_dir / "pairs", {"stages": cfg.stages}
    write_summary(out_dir / SUMMARY, summary, complete=False)
    if "generate-pairs" in cfg.stages:
        pairs = generate_pairs.run(prompts, cfg.pairs, pairs_dir, parts=f"{root}/pairs/parts")
        summary["pairs"] = {
            k: pairs[k] for k in ("pairs", "prompts_quarantined", "prompts_without_pair", "report")
        }

    tuned, skipped = {}, {}
    main = cfg.pairs.selection.strategy
    paths = {s: pairs_file(pairs_dir, s, main) for s in cfg.train_strategies}
    training = "train" in cfg.stages
    counts = {s: pq.read_metadata(p).num_rows for s, p in paths.items()} if training else {}
    cap = min([n for n in counts.values() if n], default=0) if cfg.equal_pairs else None
    for strategy, path in paths.items():
        train_dir = out_dir / "train" / strategy
        if training:
            if counts[strategy] == 0:
                skipped[strategy] = "no pairs selected"
                log.warning("train %s: skipped, no pairs selected", strategy)
                continue
            if cap is not None:
                path = first_pairs(path, cap, train_dir / "pairs.parquet")
            n = cap or counts[strategy]
            log.info("train %s: DPO on %d pairs", strategy, n)
            tcfg = dataclasses.replace(cfg.train, name=f"dpo-{strategy}")
            final = train(path, tcfg, train_dir, checkpoint_root=root)["final"]
            summary.setdefault("train", {})[strategy] = {"pairs": n, **final}
        if (train_dir / "model" / "config.json").exists():
            tuned[strategy] = str(train_dir / "model")
    summary["tuned_models"], summary["skipped"] = tuned, skipped

    if "eval" in cfg.stages:
        models = [f"base={cfg.train.model}", *(f"{s}={p}" for s, p in tuned.items())]
        ecfg = dataclasses.replace(cfg.eval, models=models)
        result = eval_job.run(ecfg, out_dir / "eval", parts=f"{root}/eval/parts")
        summary["eval"] = {k: result[k] for k in ("base", "delta_dd_all", "length_change_all",
                                                  "report")}  # fmt: skip
    write_summary(out_dir / SUMMARY, summary)
    return summary


def first_pairs(path: Path, n: int, out: Path) -> Path:
    """The first `n` pairs of a pairs file (BalancedTopN writes them best first, balanced over
    tasks and length buckets, so a prefix is itself balanced), written to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(pq.read_table(path).slice(0, n), out)
    return out
