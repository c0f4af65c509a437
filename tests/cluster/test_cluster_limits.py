"""The autoscaler limits a run is checked against are this cluster's, not another one's."""

from types import SimpleNamespace

import pytest
import yaml

from diversens.jobs import cluster


def monitor(gcs: str, config) -> SimpleNamespace:
    args = ["python", "-u", "monitor.py", f"--gcs-address={gcs}", f"--autoscaling-config={config}"]
    return SimpleNamespace(info={"cmdline": args})


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Two Ray clusters' autoscalers on one machine; this driver is joined to the one on 6380."""
    configs = {}
    for port, gpus in ((6379, 8), (6380, 2)):
        path = tmp_path / f"autoscale-{port}.yaml"
        nodes = {
            "head": {"resources": {"CPU": 2}},
            "gpu": {"resources": {"GPU": gpus}, "max_workers": 1},
        }
        path.write_text(yaml.safe_dump({"head_node_type": "head", "available_node_types": nodes}))
        configs[port] = path
    procs = [SimpleNamespace(info={"cmdline": None}), monitor("10.0.0.5:6379", configs[6379]),
             monitor("10.0.0.5:6380", configs[6380])]  # fmt: skip
    monkeypatch.setattr(cluster.psutil, "process_iter", lambda attrs: iter(procs))
    context = SimpleNamespace(gcs_address="10.0.0.5:6380")
    monkeypatch.setattr(cluster.ray, "get_runtime_context", lambda: context)
    return configs, context


def test_the_autoscaler_of_the_joined_cluster_is_the_one_read(machine):
    configs, context = machine
    assert cluster._v1_autoscaling_config() == configs[6380]
    context.gcs_address = "10.0.0.5:6379"
    assert cluster._v1_autoscaling_config() == configs[6379]


def test_an_autoscaler_of_another_cluster_is_not_read(machine):
    _, context = machine
    context.gcs_address = "10.0.0.5:7000"
    assert cluster._v1_autoscaling_config() is None


def test_largest_node_is_the_biggest_single_node_not_the_total(machine, monkeypatch):
    """A pool asking 4 GPUs per actor fits no node of a cluster of 2-GPU nodes, even though the
    cluster may have 8 in all: it is refused instead of waiting for a node that never comes."""
    from ray._private.state import state

    monkeypatch.setattr(state, "get_cluster_config", lambda: None)
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"GPU": 16}}]
    monkeypatch.setattr(cluster.ray, "nodes", lambda: nodes)
    assert cluster.largest_node() == {"CPU": 2.0, "GPU": 2.0, "memory": 0.0}  # joined: 6380


def test_the_joined_clusters_node_types_are_what_its_pools_must_fit(machine, monkeypatch):
    """Without --cluster, a run's pools are checked against the joined cluster's autoscaler
    config (here 6380's: one 2-GPU node at most), named by type, the head starting none."""
    from ray._private.state import state

    from diversens import nodes
    from diversens.errors import UserError
    from diversens.pools import Pool

    monkeypatch.setattr(state, "get_cluster_config", lambda: None)
    found = cluster.autoscaler()
    assert {t.name: t.max_workers for t in found.types} == {"head": 0, "gpu": 1}
    engines = nodes.Demand.of("sampling", Pool(1, 2, 0, 1, batch_size=4))
    assert nodes.check({"generate": [engines]}, found) == {"generate": {"gpu": 1}}
    more = nodes.Demand.of("sampling", Pool(1, 3, 0, 1, batch_size=4))
    with pytest.raises(UserError, match="gpu 1 of 1 nodes.*lower sampling.max_actors"):
        nodes.check({"generate": [more]}, found)


@pytest.mark.parametrize(
    ("types", "pool", "expected"),
    [
        ([], dict(num_cpus=2, memory_gib=5), 1),  # 2 cores, 16 GiB: one 2-CPU engine at a time
        ([], dict(num_cpus=1, memory_gib=5), 2),
        ([], dict(num_cpus=1, memory_gib=10), 1),  # memory binds first
        ([], dict(num_cpus=4, memory_gib=0), 1),  # too big: still one pass each, not none
        ([({"GPU": 2}, 3)], dict(num_cpus=0, num_gpus=1), 6),  # 3 nodes the autoscaler may add
        ([({"GPU": 2}, -1)], dict(num_cpus=0, num_gpus=1), 0),  # unbounded: all runs at once
        ([], dict(num_cpus=0, memory_gib=0), 0),  # asks nothing: all at once
    ],
)
def test_eval_passes_are_as_many_engine_pools_as_the_cluster_can_hold(
    monkeypatch, types, pool, expected
):
    from diversens.jobs.dataflow import pools_at_once
    from diversens.pools import Pool

    now = {"CPU": 2.0, "memory": 16.0 * 2**30}
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: now)
    monkeypatch.setattr(cluster, "node_types", lambda: types)
    spec = {"num_cpus": 0, "num_gpus": 0, "memory_gib": 0, **pool}
    assert pools_at_once(Pool(1, 1, batch_size=8, **spec)) == expected
    if expected > 1:  # a pool's min_actors all start at once: twice the actors, half the pools
        assert pools_at_once(Pool(2, 2, batch_size=8, **spec)) == expected // 2
