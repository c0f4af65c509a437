"""Actor-pool resources as plain data (no Ray import): what a config says, what Ray Data gets.

`PoolConfig` is the user-facing section of a model-holding pool (embedder, quality model);
`Pool` is the resolved spec that `diversens.jobs.dataflow` turns into `map_batches` arguments. Every
pool carries a batch size: Ray Data refuses a GPU pool without one, and here it is the chunk
size, so a batch is one chunk of prompts (diversens.jobs.chunks).

A pool, or a training worker group, whose nodes never come (no quota for the node type, a node
whose setup fails) must not wait forever: `START_TIMEOUT_OPTION` bounds the wait, and the
messages below name what asked for which resources when it runs out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from diversens.ranges import check_ranges

# GPU nodes of an autoscaling cluster boot from zero: instance start, image pull, Ray start, and
# the model download of the first actor take 5-15 minutes on the clouds; twice the slow end
# leaves room, and it is also Ray Data's own default for a run that makes no progress.
DEFAULT_START_TIMEOUT_S = 1800.0
START_TIMEOUT_OPTION = "--start_timeout_s"
# Ray Train V2 reads it in its controller (which the driver's environment reaches at `fit`).
TRAIN_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


@dataclass(frozen=True)
class Pool:
    """One actor pool: size bounds, resources per actor, rows per batch, fault handling."""

    min_actors: int
    max_actors: int
    num_cpus: float
    num_gpus: float
    batch_size: int
    memory_gib: float = 0.0  # RAM Ray reserves per actor (0: none)
    max_restarts: int | None = None  # None: Ray Data's default (restart without limit)
    max_tasks_in_flight: int | None = None  # None: Ray Data's default
    concurrent_batches: int = 1  # batches one actor runs at once (threads sharing its model)

    def resources(self) -> dict[str, float]:
        """What one actor asks Ray for, in Ray's names (memory in bytes)."""
        return {"CPU": self.num_cpus, "GPU": self.num_gpus, "memory": self.memory_gib * 2**30}


@dataclass
class PoolConfig:
    """Resources of one model-holding actor pool (the stage never knows who runs it)."""

    min_actors: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "actor pool minimum size"}
    )
    max_actors: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "actor pool maximum size"}
    )
    num_gpus_per_actor: float = field(
        default=0.0,
        metadata={"range": "[0, inf)", "help": "GPUs per actor (fractions share one GPU)"},
    )
    num_cpus_per_actor: float = field(
        default=0.5,
        metadata={
            "range": "[0, inf)",
            "help": "CPUs per actor (half by default: a scoring model waits on the engines most "
            "of the time, and the engine and both scoring pools then fit 2 cores together)",
        },
    )

    memory_gib_per_actor: float = field(
        default=2.0,
        metadata={
            "range": "[0, inf)",
            "help": "RAM in GiB Ray reserves per actor, so it never packs more actors on a node "
            "than fit (the bundled embedder and fluency model use ~1.7 GiB; 0: none)",
        },
    )

    def __post_init__(self):
        check_ranges(self)
        if self.min_actors > self.max_actors:
            raise ValueError("need 1 <= min_actors <= max_actors")

    def check_device(self, device: str | None, option: str) -> None:
        """A CUDA device needs a GPU share: Ray hides GPUs from actors that reserve none."""
        if device and device.startswith("cuda") and self.num_gpus_per_actor == 0:
            raise ValueError(
                f"{option} {device!r} needs num_gpus_per_actor > 0 in its pool: Ray hides GPUs "
                "from actors that reserve none"
            )

    def pool(self, batch_size: int) -> Pool:
        return Pool(self.min_actors, self.max_actors, self.num_cpus_per_actor,
                    self.num_gpus_per_actor, batch_size, self.memory_gib_per_actor)  # fmt: skip


def describe(resources: dict[str, float]) -> str:
    """`{"CPU": 2, "GPU": 1, "memory": 2**32}` as "2 CPUs, 1 GPU, 4 GiB of memory"."""
    parts = []
    for name, amount in resources.items():
        if not amount:
            continue
        if name == "memory":
            parts.append(f"{amount / 2**30:g} GiB of memory")
        elif name in ("CPU", "GPU"):
            parts.append(f"{amount:g} {name}{'s' if amount != 1 else ''}")
        else:
            parts.append(f"{amount:g} {name}")
    return ", ".join(parts) or "no resources"


def pool_start_error(name: str, pool: Pool, timeout_s: float, placeable: bool | None) -> str:
    """The line for an actor pool that ran nothing within the start timeout; `placeable`: does
    any node of the cluster now have room for one actor (None: unknown)."""
    why = {False: "no node of the Ray cluster has room for one",
           True: "nothing else in the step moved either",
           None: "nothing moved"}[placeable]  # fmt: skip
    return (
        f"the {name} actor pool did not start within {timeout_s:g} s ({START_TIMEOUT_OPTION}): "
        f"it asks for {pool.min_actors} actor(s) of {describe(pool.resources())} each, and "
        f"{why}; check that nodes with these resources can start (quota, node setup) and "
        f"retry, or raise {START_TIMEOUT_OPTION} if they take longer to boot"
    )


def worker_group_start_error(
    num_workers: int, resources: dict[str, float], timeout_s: float, where: str = ""
) -> str:
    """The line for a Ray Train worker group whose placement group was not placed in time."""
    return (
        f"the training worker group did not start within {timeout_s:g} s "
        f"({START_TIMEOUT_OPTION}): it asks for {num_workers} worker(s) of "
        f"{describe(resources)} each{where}, and the Ray cluster could not place them; check "
        "that nodes with these resources can start (quota, node setup) and retry, lower "
        f"train.num_workers, or raise {START_TIMEOUT_OPTION} if the nodes take longer to boot"
    )


def train_start_timeout_s() -> float:
    """The training worker group's start timeout: as the CLI edge set it, else the default."""
    return float(os.environ.get(TRAIN_START_TIMEOUT_ENV) or DEFAULT_START_TIMEOUT_S)


def worker_group_failure(
    failure: BaseException, num_workers: int, resources: dict[str, float], timeout_s: float,
    accelerator_type: str | None = None,
) -> str | None:  # fmt: skip
    """The line for Ray Train's failure to start the worker group (the `controller_failure` of
    its ControllerError), or None for another failure. By class name: Ray keeps these classes in
    a private module."""
    kind = type(failure).__name__
    where = f" on {accelerator_type} GPUs" if accelerator_type else ""
    if kind == "WorkerGroupStartupTimeoutError":
        return worker_group_start_error(num_workers, resources, timeout_s, where)
    if kind == "InsufficientClusterResourcesError":
        return (
            f"the training worker group asks for {num_workers} worker(s) of "
            f"{describe(resources)} each{where}, more than this Ray cluster can ever have (its "
            "autoscaler's node types at their largest counts); lower train.num_workers or what "
            "each worker asks for"
        )
    return None


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """`os.environ[name] = value` for the duration of the block, then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
