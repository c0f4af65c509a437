"""Options and steps several commands share: where prompts come from, how Ray is joined."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from diversens.errors import UserError
from diversens.models import resolve_model
from diversens.prompts import build_prompts, load_prompts
from diversens.storage import is_uri


def add_prompt_arguments(p: argparse.ArgumentParser, default_split: str | None = None) -> None:
    """PROMPTS file or --split; `default_split` is used when neither is given."""
    p.add_argument("prompts", nargs="?", type=Path, help="prompt file (.jsonl or .parquet)")
    split_help = "built-in prompt split" + (f" (default: {default_split})" if default_split else "")
    p.add_argument("--split", choices=("train", "eval"), help=split_help)
    p.set_defaults(default_split=default_split)
    p.add_argument(
        "--num-prompts-per-task", type=int, default=250, help="train split: prompts per task"
    )
    p.add_argument("--prompt-seed", type=int, default=0, help="train split: seed drawing items")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else local)")


def read_prompts(args: argparse.Namespace) -> pd.DataFrame:
    """Prompts from the user's file or a built-in split (exactly one of the two)."""
    if args.prompts is not None and args.split is not None:
        raise UserError("give either a PROMPTS file or --split train|eval, not both")
    split = args.split or args.default_split
    if args.prompts is not None:
        prompts = load_prompts(args.prompts)
    elif split is not None:
        if args.num_prompts_per_task < 1:
            raise UserError("option --num-prompts-per-task must be >= 1")
        prompts = build_prompts(split, args.num_prompts_per_task, args.prompt_seed)
    else:
        raise UserError("give either a PROMPTS file or --split train|eval (exactly one)")
    if args.limit is not None:
        if args.limit < 1:
            raise UserError(f"option --limit must be >= 1, got {args.limit}")
        prompts = prompts.iloc[: args.limit]
    return prompts


def preflight(models: list[str | None], output: str | Path | None = None) -> None:
    """Fail on a user's mistake before Ray starts: a model that does not resolve (missing path,
    missing package) or an output directory that cannot be written."""
    for name in models:
        if name:
            resolve_model(name)
    if output is None or is_uri(str(output)):
        return
    out = Path(output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"output {out}: cannot write there ({e.strerror})") from None


def quality_model(q) -> str | None:
    """The model a QualityConfig's scorer loads (None for compliance only)."""
    return {"offline": q.reference_model, "reward-model": q.reward_model}.get(q.scorer)


def generate_pairs_models(cfg) -> list[str | None]:
    """Every model a GeneratePairsConfig will load."""
    embedder = cfg.measure.embedder if cfg.needs_embedder else None
    return [cfg.sampling.model, embedder, quality_model(cfg.quality)]


def pool_gpus(cfg, prefix: str = "") -> dict[str, float]:
    """GPUs per actor of each pool of a config with sampling, embed_pool and quality_pool."""
    gpus = {f"{prefix}sampling.num_gpus_per_actor": cfg.sampling.gpus_per_actor()}
    for pool in ("embed_pool", "quality_pool"):
        gpus[f"{prefix}{pool}.num_gpus_per_actor"] = getattr(cfg, pool).num_gpus_per_actor
    return gpus


def connect_ray(
    address: str | None, gpus: dict[str, float] | None = None, log_file: Path | None = None
) -> None:
    """Join the given (or $RAY_ADDRESS) cluster, else start a local Ray; the CLI edge only.

    `gpus` maps options to the GPUs they request per actor or worker; a request the cluster
    cannot meet now nor after autoscaling is a UserError instead of a job waiting forever.
    The console keeps step lines and warnings; the details go to `log_file` (diversens.console),
    started only once the checks pass, so a refused run leaves nothing at its output.
    """
    import ray

    from diversens import console

    console.quiet()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False if address is None else None,
                 log_to_driver=False)  # fmt: skip
    wanted = {k: v for k, v in (gpus or {}).items() if v > 0}
    if wanted:
        from diversens.dataflow import cluster_capacity

        have = cluster_capacity()["GPU"]
        option, need = max(wanted.items(), key=lambda kv: kv[1])
        if need > have:
            raise UserError(
                f"option {option}={need:g} asks for GPUs, but the Ray cluster has {have:g} "
                "(now, or at most after autoscaling); set it to 0 or join a GPU cluster "
                "with --ray-address"
            )
    if log_file is not None:
        console.log_to(log_file)
        node = getattr(ray._private.worker, "_global_node", None)
        where = node.get_logs_dir_path() if node else "Ray's session logs on the head node"
        log = logging.getLogger("diversens")
        log.debug("engine, trainer and other Ray worker logs: %s", where)
        log.info("details: %s", log_file)
