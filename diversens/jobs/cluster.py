"""What the joined Ray cluster has now and what its autoscaler may add: the checks that refuse a
run before it waits forever (GPUs it can never get) or fails late (a local checkpoint path on
several nodes) read it.

The autoscaler's node types come from the cluster config it reports to the GCS (autoscaler v2,
KubeRay), or else from the config file the head's v1 autoscaler runs with (`ray up` clusters,
Ray's fake multi-node provider), found on its command line: a driver on the head (`ray job
submit`) sees it. Elsewhere (Ray Client) the limits are unknown and only what runs now counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import ray
import yaml

from diversens import nodes

RESOURCES = ("CPU", "GPU", "memory")


def autoscaler() -> nodes.Cluster | None:
    """The autoscaler's node types (max nodes -1: unbounded), or None if unknown. Autoscaler v2
    reports no head type nor worker limit of all types together: they are left out."""
    from ray._private.state import state

    source = "the Ray cluster's autoscaler"
    config = state.get_cluster_config()
    if config is not None and config.node_group_configs:
        return nodes.Cluster(tuple(nodes.NodeType(g.name, dict(g.resources), g.max_count)
                                   for g in config.node_group_configs), source)  # fmt: skip
    path = _v1_autoscaling_config()
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    return nodes.parse(data, f"{source} ({path})")


def node_types() -> list[tuple[dict[str, float], int]] | None:
    """(resources, max nodes; -1 = unbounded) per autoscaler node type, or None if unknown."""
    found = autoscaler()
    return None if found is None else [(t.resources, t.max_workers) for t in found.types]


def _v1_autoscaling_config() -> Path | None:
    """The config file of the autoscaler serving this cluster: the monitor process whose GCS
    port is ours (another Ray cluster on the machine has its own port and its own limits)."""
    port = ray.get_runtime_context().gcs_address.rpartition(":")[2]
    for proc in psutil.process_iter(["cmdline"]):
        args = dict(a.partition("=")[::2] for a in proc.info["cmdline"] or [] if "=" in a)
        if "--autoscaling-config" in args and args.get("--gcs-address", "").endswith(f":{port}"):
            path = Path(args["--autoscaling-config"]).expanduser()
            return path if path.is_file() else None
    return None


def capacity() -> dict[str, float]:
    """CPUs, GPUs and memory (bytes) the cluster has, or can have at most once its autoscaler
    adds nodes (the larger of the two)."""
    now = ray.cluster_resources()
    most = {r: float(now.get(r, 0.0)) for r in RESOURCES}
    for resources, count in node_types() or []:
        for r in RESOURCES:
            if resources.get(r):
                grow = float("inf") if count < 0 else count * float(resources[r])
                most[r] = max(most[r], float(now.get(r, 0.0)) + grow)
    return most


def largest_node() -> dict[str, float]:
    """The most CPUs, GPUs and memory one node has, among the nodes now and the node types
    the autoscaler may add: an actor asking for more can never be placed."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    nodes += [types for types, count in node_types() or [] if count != 0]
    return {r: max([float(n.get(r, 0.0)) for n in nodes], default=0.0) for r in RESOURCES}


def can_span_nodes() -> bool:
    """More than one node now, or an autoscaler that may add worker nodes."""
    if sum(1 for n in ray.nodes() if n.get("Alive")) > 1:
        return True
    return any(count != 0 for _, count in node_types() or [])
