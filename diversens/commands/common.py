"""Options and steps several commands share: the run options, preflight checks, joining Ray."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs

from diversens import config, nodes, output_lock
from diversens.commands.options import RunOptions
from diversens.config import redacted
from diversens.errors import UserError
from diversens.io import check_input_file
from diversens.models import check_model
from diversens.storage import check_writable, file_type, is_uri, join, split_location
from diversens.training.config import TrainConfig

T = TypeVar("T")


def add_prompts_argument(p: argparse.ArgumentParser, section: str) -> None:
    """The optional PROMPTS argument, the same option as `--SECTION.file`."""
    p.add_argument(f"cfg:{section}.file", nargs="?", metavar="PROMPTS", default=argparse.SUPPRESS,
                   help=f"prompt file (.jsonl or .parquet); same as --{section}.file")  # fmt: skip


def add_run_options(p: argparse.ArgumentParser, output_help: str | None = None) -> None:
    config.add_arguments(p, RunOptions, group="run", help={"output": output_help or ""})


def run_options(args: argparse.Namespace, cls: type[T] = RunOptions) -> T:
    """The run options the command line gave (`cls`: the command's dataclass of them)."""
    return config.from_dict(cls, config.overrides_from_args(args, "run"))


def load(cls: type[T], args: argparse.Namespace, section: str | None = None) -> T:
    """The command's config from --config and its options; `section` names its part of a
    pipeline config file."""
    from diversens.jobs.config import PipelineConfig

    whole = PipelineConfig if section else None
    return config.load(cls, args.config, config.overrides_from_args(args), section, whole)


def preflight(
    models: list[str | None],
    output: str | Path | None = None,
    kind: str = "dir",
    inputs: Iterable[str | Path | None] = (),
    stores: Iterable[str] = (),
    layout: Iterable[str] = (),
) -> None:
    """Fail on a user's mistake before Ray starts: an input file that is not there, a model that
    does not resolve (missing path, no config.json, missing package, a hub id gated or missing
    for this token), an output that cannot be written or would harm the run's inputs (see
    `check_output`), a path the run writes at its output (`layout`, see `check_layout`) taken
    by something of the other kind, or a storage URI (`stores`: checkpoints) that cannot be
    written. Nothing is created at the output before these checks pass."""
    inputs = [i for i in inputs if i is not None]
    for path in inputs:
        check_input_file(path)
    if output is not None:
        check_output(output, kind, [Path(i) for i in inputs if not is_uri(i)])
        check_layout(str(output), kind, layout)
    for name in dict.fromkeys(m for m in models if m):
        check_model(name)
    uris = [*stores, *([str(output)] if output is not None else [])]
    for uri in dict.fromkeys(u for u in uris if is_uri(u)):
        check_writable(uri if kind == "dir" or uri != str(output) else uri.rpartition("/")[0])
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
    out, cwd = Path(text).resolve(), Path.cwd().resolve()  # `~`: expanded at parse time
    sources = [Path(i).resolve() for i in inputs]
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


def check_layout(output: str, kind: str, layout: Iterable[str]) -> None:
    """Nothing at the output is in the way of what the run creates there: the output itself,
    each path of `layout` (relative to the output directory, or to the folder of an output
    file; "name/" for a directory) and every folder above them is missing or of that kind. A
    directory's run also writes logs/ (a local one) and the lock record (diversens.output_lock).
    At a URI the folders above the output count too: an object where a prefix is needed."""
    base = output if kind == "dir" else split_location(output)[0]
    lock = output_lock.record_location(output, kind).removeprefix(base.rstrip("/") + "/")
    paths = [lock, *(["logs/"] if kind == "dir" and not is_uri(output) else []), *layout]
    wanted: dict[str, bool] = {}  # location: whether the run makes a directory there
    if is_uri(output):
        scheme, _, rest = output.partition("://")
        parts = rest.rstrip("/").split("/")
        wanted.update({f"{scheme}://{'/'.join(parts[:n])}": True for n in range(2, len(parts))})
    wanted[output.rstrip("/")] = kind == "dir"
    for path in paths:
        parts = path.rstrip("/").split("/")
        for n in range(1, len(parts) + 1):
            wanted[join(base, *parts[:n])] = n < len(parts) or path.endswith("/")
    for where, folder in wanted.items():
        found = file_type(where)
        if folder and found == pafs.FileType.File:
            what = "an object" if is_uri(where) else "a file"
            clash = f"is {what}, where this run makes a directory"
        elif not folder and found == pafs.FileType.Directory:
            clash = "is a directory, where this run writes a file"
        else:
            continue
        raise UserError(f"output {redacted(output)}: {redacted(where)} {clash}; move it away or "
                        "name another output")  # fmt: skip


def connect_ray(
    opts: RunOptions,
    gpus: dict[str, float] | None = None,
    log_file: Path | None = None,
    worker_paths: dict[str, str] | None = None,
    stages: dict[str, list[nodes.Demand]] | None = None,
    claim: output_lock.Claim | None = None,
) -> None:
    """Join the cluster at `opts.ray_address` (or $RAY_ADDRESS), else start a local Ray; the
    CLI edge only.

    `stages` maps each step to the pools it runs at once, which must fit the node types at
    their max_workers (diversens.nodes): those of `opts.cluster`, checked before Ray starts,
    else those the joined cluster's autoscaler reports, if any.

    `gpus` maps options to the GPUs they request per actor or worker; a request the cluster
    cannot meet now nor after autoscaling is a UserError instead of a job waiting forever.
    `worker_paths` maps options to paths Ray workers write (training checkpoints): a local path
    on a cluster that has or may autoscale to several nodes is a UserError too, before any GPU
    is asked for (Ray Train would refuse it only once its workers are up).
    The console keeps step lines and warnings; the details go to `log_file` and, when this
    call is the one that connects, the workers' output to workers.log beside it
    (diversens.console). Both open only once the checks pass, so a refused run leaves nothing
    at its output. No actor pool or training worker group waits longer than
    `opts.start_timeout_s` to start (a node type that cannot start is not waited for forever).
    `claim`: the run's lock on its output (diversens.output_lock), taken before Ray starts (a
    second run into the output stops here), and its work recorded once every check passed.
    """
    if opts.cluster and stages:
        nodes.check(stages, nodes.read(opts.cluster))
    if claim is not None:
        output_lock.hold(claim)
    import ray

    from diversens import console
    from diversens.jobs import local_ray

    console.quiet()
    started = not ray.is_initialized()
    if started:
        option = "--ray_address" if opts.ray_address else "$RAY_ADDRESS"
        address = opts.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            address = check_reachable(address, option)
        own, groups = contextlib.nullcontext({}), contextlib.nullcontext()
        if address in (None, "local"):
            local_ray.prepare()  # a temp dir that fits Ray's sockets; dead runs' daemons ended
            own = local_ray.own_addresses()  # its workers never look up another run's Ray
            groups = local_ray.own_process_groups()  # a signal to the run's group: the run's
        try:
            with groups, own as init_args:
                ray.init(address=address, include_dashboard=False if address is None else None,
                         **init_args)  # fmt: skip
        except ConnectionError as e:  # a cluster that answered the probe, then failed to join
            where = f"option {option} {address}" if address else "a local Ray"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{where}: could not join the Ray cluster ({reason})") from None
        local_ray.watch_started()  # a Ray this run started ends with it, even on SIGKILL
        console.reclaim_sigterm()  # SIGTERM like Ctrl-C again, over Ray's and its core worker's
        console.workers_to(None)  # worker output never on the console; into workers.log below
    from diversens.jobs.dataflow import bound_waits

    bound_waits(opts.start_timeout_s)
    wanted = {k: v for k, v in (gpus or {}).items() if v > 0}
    if wanted:
        from diversens.jobs import cluster

        have, node = cluster.capacity()["GPU"], cluster.largest_node()["GPU"]
        option, need = max(wanted.items(), key=lambda kv: kv[1])
        if need > have:
            raise UserError(
                f"option {option}={need:g} asks for GPUs, but the Ray cluster has {have:g} "
                "(now, or at most after autoscaling); set it to 0 or join a GPU cluster "
                "with --ray_address"
            )
        if need > node:
            raise UserError(
                f"option {option}={need:g} asks for GPUs on one node, but no node of the Ray "
                f"cluster (nor any node type its autoscaler may add) has more than {node:g}"
            )
    if stages and not opts.cluster:
        from diversens.jobs import cluster

        if (live := cluster.autoscaler()) is not None:
            nodes.check(stages, live)
    check_shared(worker_paths or {})
    output_lock.begin_work()
    if log_file is not None:
        console.log_to(log_file)
        console.native_notices_to(log_file)  # Ray's core worker's notices: to the file too
        workers = console.workers_to(log_file.with_name("workers.log")) if started else None
        node = getattr(ray._private.worker, "_global_node", None)
        where = node.get_logs_dir_path() if node else "Ray's session logs on the head node"
        log = logging.getLogger("diversens")
        log.info("Ray's own logs (raylet, GCS, each worker): %s", where, extra=console.FILE_ONLY)
        log.info(
            "details: %s%s", log_file, f", engine and trainer output: {workers}" if workers else ""
        )


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


def checkpoint_option(cfg: TrainConfig, output: str) -> dict[str, str]:
    """The option behind the path Ray Train checkpoints go to, and that path."""
    option = "train.storage_path" if cfg.storage_path else "-o/--output"
    return {option: cfg.checkpoints(output)}


def checkpoint_layout(cfg: TrainConfig, names: Iterable[str]) -> list[str]:
    """The checkpoint directories of the runs `names` in the output directory: none where
    `train.storage_path` puts them elsewhere."""
    return [] if cfg.storage_path else [f"checkpoints/{name}/" for name in names]


def check_reachable(address: str, option: str, timeout_s: float = 3.0) -> str:
    """The address to join, checked within a few seconds to be a Ray cluster: `ray.init` would
    otherwise retry an unreachable GCS for minutes, or join whatever listens there and fail
    ~20 s later. "auto" is looked up as Ray does (a cluster `ray start` recorded, else a GCS
    process on this machine); a HOST:PORT (or ray://HOST:PORT) must answer on TCP and then a
    Ray RPC (the GCS's, or the Ray client server's for ray://). Returns the address to pass to
    `ray.init` ("auto" resolved); `option` says where it came from."""
    if address == "local":
        return address
    if address == "auto":
        from ray._private import services

        try:
            found = services.canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as e:
            reason = str(e).split(". ")[0].strip() or type(e).__name__
            raise UserError(
                f"option {option} auto: no Ray cluster to join on this machine ({reason}); "
                "give HOST:PORT of a running cluster"
            ) from None
        check_answers(found, option, f"auto, found {found}", timeout_s)
        return found
    check_answers(address, option, address, timeout_s)
    return address


def check_answers(address: str, option: str, shown: str, timeout_s: float) -> None:
    client = address.startswith("ray://")
    host, sep, port = address.split("://", 1)[-1].rpartition(":")  # any scheme (ray://) off
    if not sep or not port.isdigit():
        raise UserError(f"option {option} {shown!r}: expected HOST:PORT (or ray://HOST:PORT)")
    where = f"option {option} {shown}"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"{where}: no Ray cluster answers there ({reason})") from None
    failed = ray_rpc_error(f"{host}:{port}", client, timeout_s)
    if failed:
        raise UserError(f"{where}: {failed}")


def ray_rpc_error(target: str, client: bool, timeout_s: float) -> str | None:
    """Why a Ray GCS (or, `client`, a Ray client server) does not answer one RPC at `target`
    within `timeout_s`; None when it does. A cluster with token authentication that refuses
    the bare RPC is asked again with this machine's token (`auth_token`); if it takes it, this
    process joins in token mode (as `RAY_AUTH_MODE=token` would), else that is the reason."""
    failed = _ray_rpc(target, client, timeout_s, ())
    if failed is None:
        return None
    if failed != "UNAUTHENTICATED":
        kind = "Ray client server (ray://, port 10001)" if client else "Ray cluster's GCS"
        return f"something listens there, but not a {kind} ({failed})"
    token = auth_token()
    bearer = (("authorization", f"Bearer {token}"),)
    if token and _ray_rpc(target, client, timeout_s, bearer) is None:
        os.environ["RAY_AUTH_MODE"] = "token"  # ray.init then sends the token it finds
        return None
    source = "$RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else "the token file"
    if token:
        return f"a Ray cluster with token authentication refuses {source}"
    return "a Ray cluster with token authentication, and no token here: set RAY_AUTH_TOKEN"


def auth_token() -> str | None:
    """The token Ray's token mode would send: $RAY_AUTH_TOKEN, else the file at
    $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _ray_rpc(target: str, client: bool, timeout_s: float, metadata: tuple) -> str | None:
    """One Ray RPC to `target`; None if answered, "UNAUTHENTICATED" if refused for want of a
    token, else why not."""
    import grpc

    channel = grpc.insecure_channel(target)
    try:
        if client:
            from ray.core.generated import ray_client_pb2 as pb
            from ray.core.generated import ray_client_pb2_grpc as rpc

            request = pb.ClusterInfoRequest(type=pb.ClusterInfoType.PING)
            rpc.RayletDriverStub(channel).ClusterInfo(request, timeout=timeout_s, metadata=metadata)
        else:
            from ray.core.generated import gcs_service_pb2 as pb
            from ray.core.generated import gcs_service_pb2_grpc as rpc

            rpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                pb.GetClusterIdRequest(), timeout=timeout_s, metadata=metadata
            )
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            return "UNAUTHENTICATED"
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no Ray answer within {timeout_s:g} s"
        detail = (e.details() or "").split(":")[0].strip()
        return f"a Ray request got {e.code().name}" + (f": {detail}" if detail else "")
    finally:
        channel.close()
    return None
