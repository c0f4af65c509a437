"""A stage's pools, at max_actors, are placed on the node types as the autoscaler would: a run
whose pools do not fit the node types at their max_workers is refused in one line naming the
pool and the option, and the paper's run fits cluster.yaml on the node types it is priced on."""

from pathlib import Path

import pytest

from diversens import config, nodes
from diversens.errors import UserError
from diversens.jobs.config import PipelineConfig
from diversens.nodes import Cluster, Demand, NodeType, pack
from diversens.pools import Pool

ROOT = Path(__file__).resolve().parents[1]
GPU_1X = {"CPU": 8, "GPU": 1, "accelerator_type:A10G": 1}
GPU_8X = {"CPU": 96, "GPU": 8, "accelerator_type:A100": 1}


def cluster(one: int = 8, eight: int = 2, total: int = -1) -> Cluster:
    """cluster.yaml's shape: a head that takes no actors, 1-GPU and 8-GPU worker types."""
    types = (NodeType("head", {"CPU": 0}, 0), NodeType("gpu_1x", GPU_1X, one),
             NodeType("gpu_8x", GPU_8X, eight))  # fmt: skip
    return Cluster(types, "test.yaml (--cluster)", "head", total)


def pool(name: str, actors: int, gpus: float, cpus: float = 1.0) -> Demand:
    return Demand.of(name, Pool(1, actors, cpus, gpus, batch_size=8))


def test_a_stages_pools_fit_together_on_the_smallest_type_that_holds_them():
    # 8 one-GPU engines + 4 one-GPU scorers need 12 one-GPU slots at once.
    stage = [pool("pairs.sampling", 8, 1), pool("pairs.scoring.quality_pool", 4, 1, 0.5)]
    assert pack(stage, cluster(one=12), "generate-pairs") == {"gpu_1x": 12}


def test_a_type_at_max_workers_sends_the_rest_to_a_bigger_type():
    stage = [pool("pairs.sampling", 8, 1), pool("pairs.scoring.quality_pool", 4, 1, 0.5)]
    assert pack(stage, cluster(one=8), "generate-pairs") == {"gpu_1x": 8, "gpu_8x": 1}


def test_pools_that_do_not_fit_name_the_pool_and_its_option():
    stage = [pool("pairs.sampling", 8, 1), pool("pairs.scoring.quality_pool", 4, 1, 0.5)]
    with pytest.raises(UserError) as e:
        pack(stage, cluster(one=8, eight=0), "generate-pairs")
    line = str(e.value)
    assert line.startswith("pairs.scoring.quality_pool: 4 x (0.5 CPUs, 1 GPU), beside the ")
    assert "lower pairs.scoring.quality_pool.max_actors" in line and "\n" not in line
    assert "gpu_1x 8 of 8" in line and "test.yaml (--cluster)" in line


def test_the_clusters_own_max_workers_counts_too():
    with pytest.raises(UserError, match=r"all types 3 of 3 nodes\): they hold 3; lower e\.max_"):
        pack([pool("e", 4, 1)], cluster(total=3), "generate")


def test_an_actor_bigger_than_every_node_type_names_what_it_asks_for():
    with pytest.raises(UserError, match="no node type of test.yaml .* lower e.num_gpus_per_actor"):
        pack([pool("e", 1, 16)], cluster(), "generate")


def test_fractional_gpus_pack_on_one_node():
    assert pack([pool("embed", 4, 0.25, 0.5)], cluster(), "s") == {"gpu_1x": 1}
    assert pack([pool("embed", 5, 0.25, 0.5)], cluster(), "s") == {"gpu_1x": 2}
    assert pack([pool("tenth", 10, 0.1, 0.5)], cluster(), "s") == {"gpu_1x": 1}  # no rounding
    # Beside one-GPU actors an embedder holds a node of its own; several share it.
    stage = [pool("embed", 2, 0.25, 0.5), pool("engine", 3, 1)]
    assert pack(stage, cluster(), "s") == {"gpu_1x": 4}


def test_the_autoscalers_scorer_prefers_the_type_an_actor_fills_most():
    # One 4-GPU actor: gpu_8x is the only type that holds it.
    assert pack([pool("tp4", 2, 4)], cluster(), "s") == {"gpu_8x": 1}
    # A CPU-only actor goes to a node type without GPUs when there is one.
    cpu = NodeType("cpu", {"CPU": 16}, 4)
    mixed = Cluster((*cluster().types, cpu), "x", "head")
    assert pack([pool("embed", 3, 0, 4)], mixed, "s") == {"cpu": 1}
    assert nodes.score(GPU_1X, {"CPU": 1, "GPU": 1}) > nodes.score(GPU_8X, {"CPU": 1, "GPU": 1})


def test_the_head_holds_actors_where_it_has_room():
    roomy = Cluster((NodeType("head", {"CPU": 4}, 0), NodeType("w", {"CPU": 4}, 1)), "x", "head")
    assert pack([pool("p", 2, 0, 2)], roomy, "s") == {}
    assert pack([pool("p", 3, 0, 2)], roomy, "s") == {"w": 1}


def test_a_launcher_config_is_read_as_ray_fills_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_workers: 5\nhead_node_type: h\navailable_node_types:\n"
                    "  h: {resources: {CPU: 2}}\n  w: {resources: {GPU: 1}}\n")  # fmt: skip
    c = nodes.read(path)
    assert {t.name: t.max_workers for t in c.types} == {"h": 0, "w": 5}  # the global default
    assert c.head == "h" and c.max_workers == 5
    with pytest.raises(UserError, match=r"option --cluster .*nope.yaml: no such file"):
        nodes.read(tmp_path / "nope.yaml")


def test_the_paper_run_fits_cluster_yaml_on_the_types_it_is_priced_on():
    """Every step of configs/paper.yaml on cluster.yaml: sampling, scoring and eval on gpu_1x
    only (diversens plan prices them at g5 rates), DPO on one gpu_8x."""
    from diversens.commands.pipeline import PipelineStep

    cfg = config.load(PipelineConfig, ROOT / "configs" / "paper.yaml", None)
    placed = nodes.check(PipelineStep(cfg).pools(), nodes.read(ROOT / "cluster.yaml"))
    assert placed["train"] == {"gpu_8x": 1}
    assert set(placed) == {"generate-pairs", "train", "eval sampling", "eval scoring"}
    for step in ("generate-pairs", "eval sampling", "eval scoring"):
        assert set(placed[step]) == {"gpu_1x"}, (step, placed[step])


def test_a_run_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """--cluster is read and checked before Ray is joined or started."""
    import ray

    from diversens.commands.common import connect_ray
    from diversens.commands.options import RunOptions

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    path = tmp_path / "small.yaml"
    path.write_text("head_node_type: h\navailable_node_types:\n  h: {resources: {CPU: 0}}\n"
                    "  g: {resources: {CPU: 8, GPU: 1}, max_workers: 2}\n")  # fmt: skip
    opts = RunOptions(output=str(tmp_path / "out"), cluster=str(path))
    with pytest.raises(
        UserError, match=r"^pairs\.sampling: 3 x \(1 CPU, 1 GPU\) .* pairs\.sampling\.max"
    ):
        connect_ray(opts, stages={"generate-pairs": [pool("pairs.sampling", 3, 1)]})
