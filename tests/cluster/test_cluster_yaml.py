"""cluster.yaml passes Ray's own cluster-config validation (schema + node-type checks)."""

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def prepared(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(config))


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_is_valid(cluster):
    from ray.autoscaler._private.util import validate_config

    validate_config(prepared(cluster))


def test_gpu_workers_autoscale_from_zero_in_the_baked_image(cluster):
    import ray

    types = cluster["available_node_types"]
    gpu_types = {k: v for k, v in types.items() if k != "head"}
    assert gpu_types and all(v["min_workers"] == 0 for v in gpu_types.values())
    assert "GPU" not in types["head"]["resources"]
    # The image is ./Dockerfile's (FROM the pinned Ray's GPU image), so setup installs nothing.
    assert not cluster["docker"]["image"].startswith("rayproject/")
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in (ROOT / "Dockerfile").read_text()
    setup = [*cluster["setup_commands"], *cluster["worker_setup_commands"]]
    assert not any("pip install" in c for c in setup)


def test_every_node_boots_a_current_dlami_and_workers_reach_s3(cluster):
    # Ray's default AMI (DLAMI v71, Ubuntu 18.04) has a driver too old for CUDA 13 torch.
    for name, node in cluster["available_node_types"].items():
        image = node["node_config"]["ImageId"]
        assert image.startswith("resolve:ssm:/aws/service/deeplearning/ami/"), name
        if name != "head":  # Ray gives its IAM profile to the head only
            assert node["node_config"]["IamInstanceProfile"], name
    assert any("580" in c for c in cluster["worker_setup_commands"])


def test_a_broken_key_fails_validation(cluster):
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_1x"]["min_worker"] = 0  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared(broken))
