"""Every Ray Data composition of the project, in one place.

The stages are plain callables over pandas batches (sampling, measures, quality, selection) and
know nothing of Ray; their resources are Ray-free `Pool` specs (diversens.pools). This module
turns both into `map_batches` calls. It never calls `ray.init` nor touches the global
`DataContext`: the caller connects (and `bound_waits`, for the CLI edge, is the one exception).

Waits are bounded: a pool whose nodes never come fails the step once nothing has moved for the
run's start timeout (Ray Data's no-progress guard, `execution_no_progress_timeout_s`, which every
dataset copies from the `DataContext` it was made under), and `stall_error` turns Ray's message
into one line naming the pool and what it asked for.

Batches: every operator takes `Pool.batch_size` rows, the chunk size, so a batch is one chunk
of prompts (diversens.jobs.chunks), and `Stage.__call__` processes the chunks of a batch one by
one, so a row never depends on which chunk shared its batch.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import warnings
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import ray.data
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from diversens.config import config_hash
from diversens.errors import UserError
from diversens.jobs import cluster, quarantine
from diversens.jobs.chunks import CHUNK, PartStore, chunk_frames, plan_chunks
from diversens.pools import START_TIMEOUT_OPTION, TRAIN_START_TIMEOUT_ENV, Pool, pool_start_error
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import check_engine_available
from diversens.sampling.stage import SampleStage
from diversens.scoring.config import QualityConfig, ScoringConfig
from diversens.scoring.measure import MeasureStage
from diversens.scoring.quality import QualityStage
from diversens.scoring.validity import ValidityStage
from diversens.selection.rules import SelectionConfig, SelectionStats
from diversens.selection.stage import SelectStage
from diversens.selection.topn import BalancedTopN
from diversens.storage import is_uri

T = TypeVar("T")


def check_pools_fit(pools: dict[str, Pool]) -> None:
    """Pools that stream into each other hold their actors at once: if their smallest sizes do
    not fit the cluster together, the ones started first starve the others and the run hangs.
    Fail instead, naming the options."""
    have = cluster.capacity()
    have["memory"] /= 2**30
    for resource, attr, unit in (("CPU", "num_cpus", " CPUs"), ("GPU", "num_gpus", " GPUs"),
                                 ("memory", "memory_gib", " GiB of memory")):  # fmt: skip
        need = {name: p.min_actors * getattr(p, attr) for name, p in pools.items()}
        if sum(need.values()) > have[resource] + 1e-9:
            parts = " + ".join(f"{name} {n:g}" for name, n in need.items() if n)
            option = "memory_gib_per_actor" if resource == "memory" else f"{attr}_per_actor"
            raise UserError(
                f"the actor pools need {sum(need.values()):g}{unit} at once ({parts}: "
                f"min_actors x {option}) but the Ray cluster has {have[resource]:.4g}; "
                f"lower {option} or min_actors of these pools"
            )


def pools_at_once(pool: Pool) -> int:
    """How many pools of `pool`'s shape, each at its min_actors, the cluster holds at once, the
    nodes its autoscaler may add included: at least 1; 0 for no bound (an unbounded autoscaler,
    or a pool that asks for nothing)."""
    have = cluster.capacity()
    need = {r: pool.min_actors * n for r, n in pool.resources().items() if n}
    fits = min((have[r] / n for r, n in need.items()), default=math.inf)
    return 0 if math.isinf(fits) else max(1, math.floor(fits + 1e-9))


# Ray Data's operator name of each pool `map_pool` made -> (the pool's name, its spec), for
# `stall_error`: Ray's timeout message names operators only.
_POOLS: dict[str, dict[tuple[str, Pool], None]] = {}


def bound_waits(start_timeout_s: float) -> None:
    """CLI edge only, after connecting: the run's start timeout, for Ray Data (the no-progress
    guard of every dataset made from now on: a pool that cannot start moves nothing) and for Ray
    Train (its worker group's placement-group wait, read from the driver's environment at `fit`).
    """
    ray.data.DataContext.get_current().execution_no_progress_timeout_s = start_timeout_s
    os.environ[TRAIN_START_TIMEOUT_ENV] = f"{start_timeout_s:g}"


def map_pool(
    ds: ray.data.Dataset, stage_cls: type, kwargs: dict, pool: Pool, name: str | None = None
) -> ray.data.Dataset:
    """`stage_cls(**kwargs)` held by an actor pool of `pool`'s shape; `name` (default: the
    class's) is how errors call the pool."""
    specs = _POOLS.setdefault(f"MapBatches({stage_cls.__name__})", {})
    specs[(name or stage_cls.__name__, pool)] = None
    threads = pool.concurrent_batches > 1  # the stage shares its model between the calls
    compute = ActorPoolStrategy(min_size=pool.min_actors, max_size=pool.max_actors,
                                max_tasks_in_flight_per_actor=pool.max_tasks_in_flight,
                                max_concurrent_calls_per_actor=pool.concurrent_batches,
                                enable_true_multi_threading=threads)  # fmt: skip
    remote = {}
    if pool.max_restarts is not None:  # Ray Data's default restarts and retries without limit
        remote = {"max_restarts": pool.max_restarts, "max_task_retries": pool.max_restarts}
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for actor restarts yet; the deprecation is about that.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(
            stage_cls,
            fn_constructor_kwargs=kwargs,
            batch_size=pool.batch_size,
            batch_format="pandas",
            compute=compute,
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
            memory=int(pool.memory_gib * 2**30) or None,
            **remote,
        )


def prompts_dataset(prompts: pd.DataFrame, cfg: SamplingConfig) -> ray.data.Dataset:
    """A Dataset of the prompts, one block per chunk (diversens.jobs.chunks): planned here,
    `prompts_per_chunk` rows each, unless the table already has a `chunk` column."""
    if CHUNK not in prompts:
        prompts = plan_chunks(prompts, cfg.prompts_per_chunk, config_hash(cfg.identity()))
    return ray.data.from_pandas(chunk_frames(prompts))


def generate_candidates(
    ds: ray.data.Dataset, cfg: SamplingConfig, stage_cls: type[SampleStage] = SampleStage
) -> ray.data.Dataset:
    """prompts → candidates (one row per prompt, k responses), lazily, on an engine actor pool.
    `stage_cls` lets a subclass of SampleStage run instead (tests, custom post-processing)."""
    check_engine_available(cfg)
    check_pools_fit({"sampling": cfg.pool()})  # a pool that can never start would wait forever
    return map_pool(ds, stage_cls, {"cfg": cfg}, cfg.pool(), "sampling")


def score_candidates(
    ds: ray.data.Dataset,
    scoring: ScoringConfig,
    batch_size: int,
    measures: tuple[str, ...],
) -> ray.data.Dataset:
    """candidates → scored candidates, lazily: the `measures` (one callable, so one pool; it
    loads the embedder only if one of them needs it) on the embedder pool, then quality on the
    quality pool, then validity in plain tasks."""
    pools = scoring.pools(batch_size)
    kwargs = {"cfg": scoring.measure, "names": measures}
    ds = map_pool(ds, MeasureStage, kwargs, pools["embed_pool"], "scoring.embed_pool")
    ds = map_pool(ds, QualityStage, {"cfg": scoring.quality}, pools["quality_pool"],
                  "scoring.quality_pool")  # fmt: skip
    # Validity is a few string checks a chunk: its tasks reserve no CPU. With one (Ray Data's
    # default) they waited while the pools held every CPU (1 + 0.5 + 0.5 on 2 cores, the demo's
    # 2 + 0 + 0), i.e. until sampling ended, and no chunk's part was written before then.
    return ds.map_batches(validity_batch, fn_kwargs={"cfg": scoring.quality},
                          batch_size=batch_size, batch_format="pandas", num_cpus=0)  # fmt: skip


def validity_batch(batch: pd.DataFrame, cfg: QualityConfig) -> pd.DataFrame:
    return ValidityStage(cfg)(batch)


def union(branches: list[ray.data.Dataset]) -> ray.data.Dataset:
    return branches[0].union(*branches[1:]) if len(branches) > 1 else branches[0]


def select_batch(
    batch: pd.DataFrame, cfgs: list[SelectionConfig], stats: SelectionStats
) -> pd.DataFrame:
    """Every strategy's pair row (or drop reason) for each prompt row of the batch."""
    return pd.concat([SelectStage(cfg, stats)(batch) for cfg in cfgs], ignore_index=True)


def part_tasks(location: str, tasks: int) -> dict:
    """`map_batches` arguments of the `tasks` tasks that read a run's parts at `location`. Plain
    tasks, which Ray Data retries when their node goes (an idle GPU node the autoscaler removes;
    an actor's loss would fail the step), on any node when every node reaches the parts (a URI,
    or one node); else on the driver's node, whose disk holds them (as Ray Data's reads of
    local:// paths), reserving no CPU (a cluster's head has none to give, cluster.yaml) and at
    most one task per core at once."""
    if is_uri(location) or not cluster.can_span_nodes():
        return {}
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    return {"num_cpus": 0, "compute": TaskPoolStrategy(size=min(os.cpu_count() or 1, tasks)),
            "label_selector": here}  # fmt: skip


def read_parts(batch: pa.Table, location: str) -> pa.Table:
    """The kept rows (quarantined prompts left out) of the parts whose keys are in `batch`."""
    tables = PartStore(location).iter_parts(batch["key"].to_pylist())
    rows = pa.concat_tables(tables, promote_options="permissive").drop_columns([CHUNK])
    return quarantine.kept(rows)


def select_parts(
    location: str, keys: list[str], cfgs: list[SelectionConfig], stats: SelectionStats,
    parts_per_block: int,
) -> dict[str, BalancedTopN]:  # fmt: skip
    """Stream the kept rows of the parts `keys` at `location` once through every strategy's
    selection stage into each strategy's balanced top-N: tasks read `parts_per_block` parts
    each and select (`part_tasks`); only their pair rows and drop reasons reach the driver, a
    batch at a time."""
    blocks = -(-len(keys) // parts_per_block)
    where = part_tasks(location, blocks)
    ds = ray.data.from_items([{"key": k} for k in keys], override_num_blocks=blocks)
    ds = ds.map_batches(read_parts, fn_kwargs={"location": location}, batch_size=None,
                        batch_format="pyarrow", **where)  # fmt: skip
    ds = ds.map_batches(select_batch, fn_kwargs={"cfgs": cfgs, "stats": stats},
                        batch_format="pandas", **where)  # fmt: skip
    tops = {cfg.strategy: BalancedTopN(cfg) for cfg in cfgs}
    for batch in ds.iter_batches(batch_format="pandas"):
        for strategy, rows in batch.groupby("strategy", sort=False):
            tops[strategy].add(rows)
    return tops


def in_one_task(fn: Callable[..., T], parts_at: str, **kwargs) -> T:
    """`fn(**kwargs)`, computed in one task placed like those that read the parts at `parts_at`
    (`part_tasks`): for what needs all of a run's parts at once, kept off the driver."""
    ds = ray.data.from_items([{"call": 0}]).map_batches(
        _pickled_call, fn_kwargs={"fn": fn, "kwargs": kwargs}, batch_format="pyarrow",
        **part_tasks(parts_at, 1),
    )  # fmt: skip
    return pickle.loads(ds.take_all()[0]["value"])


def _pickled_call(batch: pa.Table, fn: Callable, kwargs: dict) -> pa.Table:
    return pa.table({"value": [pickle.dumps(fn(**kwargs))]})


def stall_error(error: BaseException) -> UserError | None:
    """One line for Ray Data's no-progress timeout (`ExecutionTimeoutError`, in `error` or its
    cause chain), else None: the pool that ran nothing, by the name `map_pool` was given, with
    what one actor asks for, whether any node of the cluster has room for one, and the option.
    Ray lists the operators still running, upstream first; the first pool in that list with no
    finished task and no node to run on is the one that could not start."""
    from ray.data.exceptions import ExecutionTimeoutError

    seen = error
    while seen is not None and not isinstance(seen, ExecutionTimeoutError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    text = str(seen)
    timeout = re.search(r"\(timeout: ([\d.]+)s\)", text)
    timeout_s = float(timeout.group(1)) if timeout else float("nan")
    idle = [op for op, finished in
            re.findall(r"^\s+- (.+?): \d+ active task\(s\), (\d+) finished", text, re.M)
            if finished == "0"]  # fmt: skip
    pools = [spec for op in idle for key, specs in _POOLS.items() if key in op for spec in specs]
    if pools:
        nodes = _node_resources()
        for name, pool in pools:
            if nodes is not None and not _fits_any(pool.resources(), nodes):
                return UserError(pool_start_error(name, pool, timeout_s, placeable=False))
        name, pool = pools[0]
        placeable = None if nodes is None else True
        return UserError(pool_start_error(name, pool, timeout_s, placeable))
    running = ", ".join(idle) or "none"
    return UserError(
        f"a Ray Data step made no progress for {timeout_s:g} s ({START_TIMEOUT_OPTION}; steps "
        f"that ran nothing: {running}); raise {START_TIMEOUT_OPTION} if the cluster needs longer "
        "to start its nodes"
    )


def _node_resources() -> list[dict[str, float]] | None:
    """Total resources of each alive node, or None when Ray cannot tell."""
    if not ray.is_initialized():
        return None
    try:
        return [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    except Exception:  # noqa: BLE001 - a lost connection only costs the diagnosis
        return None


def _fits_any(need: dict[str, float], nodes: list[dict[str, float]]) -> bool:
    return any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items() if v) for node in nodes)
