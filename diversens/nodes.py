"""Node types of a Ray cluster, and the nodes its autoscaler starts for a stage's actors: the
check that a run's pools fit the node types at their `max_workers`, and the nodes `diversens
plan` prices.

The pools of a stage run at once (generate-pairs: engines, embedders and quality scorers; eval:
an engine pool per model run, then the scorers), each grown to `max_actors`, so they must fit
together. `pack` places them as Ray's v1 autoscaler does
(ray/autoscaler/_private/resource_demand_scheduler.py): an actor goes on a started node with
room, else the autoscaler starts a node of the type its utilisation scorer ranks first among
those that hold the actor and are below their `max_workers` (and the cluster below its own). A
type at its limit is skipped, so an actor that fits nowhere else lands on a bigger type.

Approximations: actors come largest first (the autoscaler's bin-packing order) and the scorer
ranks the types for one actor at a time, as Ray Data grows a pool by a few actors within what
the cluster has; for one actor it prefers the type the actor fills most, the smallest that holds
it (several actors pending at once can tip it to a larger type). Only CPUs, GPUs and custom
resources (`accelerator_type:...`) count: a cluster.yaml leaves memory to the instance type.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from diversens.config import read_yaml
from diversens.errors import UserError
from diversens.pools import Pool, describe

EPS = 1e-9  # fractions of a GPU (10 x 0.1) add up with rounding
ACCELERATOR = "accelerator_type:"  # a node type's GPU model, as Ray names the resource


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]
    max_workers: int  # nodes the autoscaler may start; -1: no limit


@dataclass(frozen=True)
class Cluster:
    """An autoscaler's node types; `source` is how messages name them."""

    types: tuple[NodeType, ...]
    source: str
    head: str | None = None  # the head's node type: one node, up already
    max_workers: int = -1  # worker nodes of all types together; -1: no limit


@dataclass(frozen=True)
class Demand:
    """`copies` x `count` actors of `resources` each, running at once: `name` is the pool as
    options spell it, `option` sets `count`, `size_option` what one actor asks for."""

    name: str
    count: int
    resources: dict[str, float]
    option: str
    size_option: str
    copies: int = 1  # pools of this shape at once (eval: one per model run)

    @classmethod
    def of(cls, name: str, pool: Pool, copies: int = 1) -> Demand:
        """A pool at its largest (memory left out: see the module's docstring)."""
        return cls(name, pool.max_actors, {"CPU": pool.num_cpus, "GPU": pool.num_gpus},
                   f"{name}.max_actors", f"{name}.num_gpus_per_actor", copies)  # fmt: skip

    @property
    def need(self) -> dict[str, float]:
        return {k: v for k, v in self.resources.items() if v > 0}


def read(path: str | Path, option: str = "--cluster") -> Cluster:
    """The node types of a Ray cluster launcher config (cluster.yaml) that `option` names."""
    if not Path(path).is_file():
        raise UserError(f"option {option} {path}: no such file; give a Ray cluster launcher "
                        "config (cluster.yaml)")  # fmt: skip
    cluster = parse(read_yaml(path), f"{path} ({option})")
    if cluster.head not in {t.name for t in cluster.types}:
        raise UserError(f"{cluster.source}: head_node_type names none of available_node_types")
    return cluster


def parse(data: dict, source: str) -> Cluster:
    """A launcher config's node types as Ray fills them in: a type's max_workers defaults to
    the global one, and the head's type starts no node."""
    head = data.get("head_node_type")
    try:
        limit = int(data.get("max_workers", -1))
        types = tuple(
            NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                     0 if name == head else int(spec.get("max_workers", limit)))
            for name, spec in (data.get("available_node_types") or {}).items()
        )  # fmt: skip
    except (AttributeError, TypeError, ValueError) as e:
        raise UserError(f"{source}: not a Ray cluster launcher config ({e})") from None
    return Cluster(types, source, head, limit)


def check(stages: dict[str, list[Demand]], cluster: Cluster) -> dict[str, dict[str, int]]:
    """Nodes per type each stage starts; a UserError naming the pool and its option where a
    stage's pools do not fit."""
    return {stage: pack(demands, cluster, stage) for stage, demands in stages.items()}


def pack(demands: list[Demand], cluster: Cluster, stage: str) -> dict[str, int]:
    """The nodes of each type the autoscaler starts for `demands` at once (not the head)."""
    free = [dict(t.resources) for t in cluster.types if t.name == cluster.head]  # nodes up
    started: Counter[str] = Counter()
    actors = [d for d in demands for _ in range(d.copies * d.count) if d.need]
    actors.sort(key=lambda d: (len(d.need), sum(d.need.values())), reverse=True)
    placed: Counter[str] = Counter()
    for d in actors:
        node = next((f for f in free if fits(f, d.need)), None)
        if node is None:
            kind = choose(cluster, started, d.need)
            if kind is None:
                raise UserError(no_room(d, placed[d.name], cluster, started, stage, demands))
            started[kind.name] += 1
            node = dict(kind.resources)
            free.append(node)
        for k, v in d.need.items():
            node[k] -= v
        placed[d.name] += 1
    return dict(started)


def fits(node: dict[str, float], need: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) + EPS >= v for k, v in need.items())


def choose(cluster: Cluster, started: Counter, need: dict[str, float]) -> NodeType | None:
    """The node type the autoscaler starts for one actor, or None if it can start none."""
    if 0 <= cluster.max_workers <= sum(started.values()):
        return None
    ranked = [(score(t.resources, need), t.name, t) for t in cluster.types
              if t.name != cluster.head and fits(t.resources, need)
              and (t.max_workers < 0 or started[t.name] < t.max_workers)]  # fmt: skip
    ranked = [r for r in ranked if r[0] is not None]
    return max(ranked, key=lambda r: r[:2])[2] if ranked else None


def score(node: dict[str, float], need: dict[str, float]) -> tuple | None:
    """Ray's `_resource_based_utilization_scorer` for one actor: a GPU type only for GPU work,
    then the most of the type's resource kinds used, then the least used kind's use, then the
    mean use, a kind's use being amount x (share used)^3 over the kinds a node has >= 1 of.
    Ties go to the name that sorts last, as in Ray."""
    sized = {k: v for k, v in node.items() if v >= 1}
    if not sized:
        return None
    use = [v * (need.get(k, 0.0) / v) ** 3 for k, v in sized.items()]
    gpu_ok = node.get("GPU", 0) <= 0 or "GPU" in need
    return (gpu_ok, sum(1 for k in sized if k in need), min(use), sum(use) / len(use))


def no_room(d: Demand, placed: int, cluster: Cluster, started: Counter, stage: str,
            demands: list[Demand]) -> str:  # fmt: skip
    """The line for an actor of `d` that no node holds and no node type may be started for."""
    shown = {k: v for k, v in d.need.items() if not k.startswith(ACCELERATOR)}
    kinds = [k.removeprefix(ACCELERATOR) for k in d.need if k.startswith(ACCELERATOR)]
    each = f"{d.copies * d.count} x ({describe(shown)}{''.join(f', a {k} node' for k in kinds)})"
    if d.copies > 1:
        each += f" ({d.copies} pools at once, one per model run)"
    if not any(fits(t.resources, d.need) for t in cluster.types):
        return (f"{d.name}: {each}, but no node type of {cluster.source} has that much for "
                f"one; lower {d.size_option}")  # fmt: skip
    limits = [f"{t.name} {started[t.name]} of {t.max_workers}" for t in cluster.types
              if t.name != cluster.head and t.max_workers >= 0]  # fmt: skip
    if cluster.max_workers >= 0:
        limits.append(f"all types {sum(started.values())} of {cluster.max_workers}")
    beside = f", beside the {stage} stage's other pools," if len(demands) > 1 else ""
    return (
        f"{d.name}: {each}{beside} do not fit the node types of {cluster.source} at their "
        f"max_workers ({', '.join(limits)} nodes): they hold {placed}; lower {d.option}, or "
        "raise max_workers of a node type that holds them"
    )
