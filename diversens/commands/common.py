"""Options and steps several commands share: where prompts come from, how Ray is joined."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from diversens.errors import UserError
from diversens.io import check_input_file
from diversens.models import resolve_model
from diversens.prompts import build_prompts, load_prompts
from diversens.storage import is_uri

# The train split's finite families hold at most ~400 items per task; beyond this bound only CWT
# triples grow, and building a million prompts takes seconds and GBs before anything runs.
MAX_PROMPTS_PER_TASK = 100_000


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
    add_ray_argument(p)


def add_ray_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else local)")


def read_prompts(args: argparse.Namespace) -> pd.DataFrame:
    """Prompts from the user's file or a built-in split (exactly one of the two)."""
    if args.prompts is not None and args.split is not None:
        raise UserError("give either a PROMPTS file or --split train|eval, not both")
    split = args.split or args.default_split
    if args.prompts is not None:
        prompts = load_prompts(args.prompts)
    elif split is not None:
        if not 1 <= args.num_prompts_per_task <= MAX_PROMPTS_PER_TASK:
            raise UserError(
                f"option --num-prompts-per-task must be in [1, {MAX_PROMPTS_PER_TASK}], "
                f"got {args.num_prompts_per_task}"
            )
        prompts = build_prompts(split, args.num_prompts_per_task, args.prompt_seed)
    else:
        raise UserError("give either a PROMPTS file or --split train|eval (exactly one)")
    if args.limit is not None:
        if args.limit < 1:
            raise UserError(f"option --limit must be >= 1, got {args.limit}")
        prompts = prompts.iloc[: args.limit]
    return prompts


def preflight(
    models: list[str | None],
    output: str | Path | None = None,
    kind: str = "dir",
    inputs: Iterable[Path | None] = (),
) -> None:
    """Fail on a user's mistake before Ray starts: an input file that is not there, a model that
    does not resolve (missing path, no config.json, missing package), or an output that cannot
    be written or would harm the run's inputs (see `check_output`)."""
    inputs = [Path(i) for i in inputs if i is not None]
    for path in inputs:
        check_input_file(path)
    if output is not None:
        check_output(output, kind, inputs)
    for name in models:
        if name:
            resolve_model(name)
    if output is None or is_uri(str(output)):
        return
    out = Path(output) if kind == "dir" else Path(output).parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"output {output}: cannot write there ({e.strerror})") from None


def check_output(output: str | Path, kind: str, inputs: Iterable[Path] = ()) -> None:
    """An output (`kind` "dir", or "parquet" for one file) is never empty, the current directory
    or above it, a path of the other kind, an input of the same run, nor a directory holding
    one (the run would write over or beside the user's data)."""
    text = str(output)
    if not text.strip():
        raise UserError("option -o/--output: empty path; name the output")
    if is_uri(text):
        return
    out, cwd = Path(text).expanduser().resolve(), Path.cwd().resolve()
    sources = [Path(i).expanduser().resolve() for i in inputs]
    if kind == "dir":
        if out == cwd or out in cwd.parents:
            raise UserError(
                f"output {text}: is the current directory or above it; name a directory for "
                "this run's outputs (e.g. out/run1)"
            )
        if out.exists() and not out.is_dir():
            raise UserError(f"output {text}: exists and is not a directory")
        for src in sources:
            if out == src or out in src.parents:
                raise UserError(f"output {text}: holds the input {src}; write outputs elsewhere")
        return
    if out.is_dir():
        raise UserError(f"output {text}: is a directory; name a .{kind} file")
    if out.suffix.lower() != f".{kind}":
        raise UserError(f"output {text}: must end in .{kind} (the output is {kind.title()})")
    if out in sources:
        raise UserError(f"output {text}: is the input file; choose another path")


def connect_ray(
    address: str | None,
    gpus: dict[str, float] | None = None,
    log_file: Path | None = None,
    worker_paths: dict[str, str] | None = None,
) -> None:
    """Join the given (or $RAY_ADDRESS) cluster, else start a local Ray; the CLI edge only.

    `gpus` maps options to the GPUs they request per actor or worker; a request the cluster
    cannot meet now nor after autoscaling is a UserError instead of a job waiting forever.
    `worker_paths` maps options to paths Ray workers write (training checkpoints): a local path
    on a cluster that has or may autoscale to several nodes is a UserError too, before any GPU
    is asked for (Ray Train would refuse it only once its workers are up).
    The console keeps step lines and warnings; the details go to `log_file` (diversens.console),
    started only once the checks pass, so a refused run leaves nothing at its output.
    """
    import ray

    from diversens import console

    console.quiet()
    if not ray.is_initialized():
        option = "--ray-address" if address else "$RAY_ADDRESS"
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            check_reachable(address, option)
        ray.init(address=address, include_dashboard=False if address is None else None,
                 log_to_driver=False)  # fmt: skip
    wanted = {k: v for k, v in (gpus or {}).items() if v > 0}
    if wanted:
        from diversens.jobs import cluster

        have = cluster.capacity()["GPU"]
        option, need = max(wanted.items(), key=lambda kv: kv[1])
        if need > have:
            raise UserError(
                f"option {option}={need:g} asks for GPUs, but the Ray cluster has {have:g} "
                "(now, or at most after autoscaling); set it to 0 or join a GPU cluster "
                "with --ray-address"
            )
    check_shared(worker_paths or {})
    if log_file is not None:
        console.log_to(log_file)
        node = getattr(ray._private.worker, "_global_node", None)
        where = node.get_logs_dir_path() if node else "Ray's session logs on the head node"
        log = logging.getLogger("diversens")
        log.debug("engine, trainer and other Ray worker logs: %s", where)
        log.info("details: %s", log_file)


def check_shared(worker_paths: dict[str, str]) -> None:
    local = {k: v for k, v in worker_paths.items() if v and not is_uri(str(v))}
    if not local:
        return
    from diversens.jobs import cluster

    if cluster.can_span_nodes():
        option, path = next(iter(local.items()))
        raise UserError(
            f"option {option} {path}: a local path, but this Ray cluster has (or may autoscale "
            "to) several nodes, and Ray Train workers on the others cannot reach it; give "
            "s3://... or gs://..., or file:///... for a filesystem every node mounts"
        )


def checkpoint_path(storage_path: str | None, output: str) -> dict[str, str]:
    """The option and path Ray Train checkpoints go to (default: beside the output)."""
    if storage_path:
        return {"train.storage_path": storage_path}
    return {"-o/--output": f"{str(output).rstrip('/')}/checkpoints"}


def check_reachable(address: str, option: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT address (with or without a scheme such as ray://) answers on TCP: `ray.init`
    would otherwise retry an unreachable GCS for minutes. "auto" and "local" are Ray's own
    look-ups."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")  # any scheme (ray://) off
    if not sep or not port.isdigit():
        raise UserError(f"option {option} {address!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        message = f"option {option} {address}: no Ray cluster answers there ({reason})"
        raise UserError(message) from None
