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


def test_gpu_workers_autoscale_from_zero_with_matching_ray_image(cluster):
    import ray

    gpu_types = {k: v for k, v in cluster["available_node_types"].items() if k != "head"}
    assert gpu_types and all(v["min_workers"] == 0 for v in gpu_types.values())
    assert f"ray:{ray.__version__}-" in cluster["docker"]["image"]
    assert any("[gpu]" in c for c in cluster["setup_commands"])


def test_a_broken_key_fails_validation(cluster):
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_1x"]["min_worker"] = 0  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared(broken))
