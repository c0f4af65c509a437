"""Actor-pool resources as plain data (no Ray import): what a config says, what Ray Data gets.

`PoolConfig` is the user-facing section of a model-holding pool (embedder, quality model);
`Pool` is the resolved spec that `diversens.jobs.dataflow` turns into `map_batches` arguments. Every
pool carries a batch size: Ray Data refuses a GPU pool without one, and here it is the chunk
size, so a batch is one chunk of prompts (diversens.jobs.chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class PoolConfig:
    """Resources of one model-holding actor pool (the stage never knows who runs it)."""

    min_actors: int = field(default=1, metadata={"help": "actor pool minimum size"})
    max_actors: int = field(default=1, metadata={"help": "actor pool maximum size"})
    num_gpus_per_actor: float = field(
        default=0.0, metadata={"help": "GPUs per actor (fractions share one GPU)"}
    )
    num_cpus_per_actor: float = field(
        default=0.5,
        metadata={
            "help": "CPUs per actor (half by default: a scoring model waits on the engines most "
            "of the time, and the engine and both scoring pools then fit 2 cores together)"
        },
    )

    memory_gib_per_actor: float = field(
        default=2.0,
        metadata={
            "help": "RAM in GiB Ray reserves per actor, so it never packs more actors on a node "
            "than fit (the bundled embedder and fluency model use ~1.7 GiB; 0: none)"
        },
    )

    def __post_init__(self):
        if not 1 <= self.min_actors <= self.max_actors:
            raise ValueError("need 1 <= min_actors <= max_actors")
        if self.num_gpus_per_actor < 0 or self.num_cpus_per_actor < 0:
            raise ValueError("GPUs/CPUs per actor must be >= 0")
        if not 0 <= self.memory_gib_per_actor < float("inf"):
            raise ValueError("memory_gib_per_actor must be a number >= 0")

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
