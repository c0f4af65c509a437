"""cluster.yaml passes Ray's own cluster-config validation (schema + node-type checks); a first
`ray up` can pull the private image (ECR login on the host, an instance profile that may read ECR,
created before `ray up`); ray_jobs/runtime_env.py forwards HF_TOKEN to the job."""

import copy
import fnmatch
import json
import os
import subprocess
import sys
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
    assert any("580" in c for c in cluster["worker_setup_commands"])


def test_a_broken_key_fails_validation(cluster):
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_1x"]["min_worker"] = 0  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared(broken))


def granted(policy: dict, action: str, resource: str = "*") -> bool:
    """Whether an Allow statement of an IAM policy matches action and resource (wildcards)."""
    for st in policy["Statement"]:
        actions, resources = st["Action"], st.get("Resource", "*")
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if st["Effect"] == "Allow" and any(fnmatch.fnmatchcase(action, a) for a in actions):
            if any(fnmatch.fnmatchcase(resource, r) for r in resources):
                return True
    return False


def test_the_host_logs_in_to_the_images_ecr_registry_before_the_pull(cluster):
    # Ray pulls docker.image on the host after initialization_commands (updater.py), so a
    # private ECR image needs a Docker login there first, in the registry's region.
    registry = cluster["docker"]["image"].split("/")[0]
    assert registry.endswith(".amazonaws.com") and ".dkr.ecr." in registry
    region = registry.split(".")[3]
    assert region == cluster["provider"]["region"]
    logins = [c for c in cluster["initialization_commands"] if "docker login" in c]
    assert len(logins) == 1
    assert f"ecr get-login-password --region {region}" in logins[0]
    assert logins[0].rstrip().endswith(f"--password-stdin {registry}")


@pytest.fixture
def aws_config(monkeypatch):
    """Ray's AWS bootstrap module; where boto3 is not installed (the CPU venv), with stand-ins
    for the boto3/botocore names it imports, dropped again afterwards."""
    import importlib
    import importlib.util
    from types import ModuleType
    from unittest.mock import MagicMock

    if importlib.util.find_spec("boto3") is None:
        for name in ("boto3", "boto3.exceptions", "boto3.resources", "boto3.resources.base",
                     "botocore", "botocore.client", "botocore.config"):  # fmt: skip
            module = ModuleType(name)
            module.__getattr__ = lambda attr: MagicMock(name=attr)
            module.__version__ = "1.40.0"  # config.py asserts boto3 >= 1.4.8
            monkeypatch.setitem(sys.modules, name, module)
        for name in [m for m in sys.modules if m.startswith("ray.autoscaler._private.aws")]:
            monkeypatch.delitem(sys.modules, name)
        yield importlib.import_module("ray.autoscaler._private.aws.config")
        for name in [m for m in sys.modules if m.startswith("ray.autoscaler._private.aws")]:
            monkeypatch.delitem(sys.modules, name, raising=False)
    else:
        yield importlib.import_module("ray.autoscaler._private.aws.config")


def test_every_node_has_the_instance_profile_made_before_ray_up(cluster, aws_config, monkeypatch):
    profiles = {name: node["node_config"].get("IamInstanceProfile")
                for name, node in cluster["available_node_types"].items()}  # fmt: skip
    assert all(p == {"Name": "diversens-ray"} for p in profiles.values()), profiles

    # Named on the head's node type, Ray creates no role of its own and calls no AWS API.
    def no_aws(*args, **kwargs):
        raise AssertionError("Ray would create its own IAM role")

    monkeypatch.setattr(aws_config, "_client", no_aws)
    monkeypatch.setattr(aws_config, "_resource", no_aws)
    config = prepared(cluster)
    assert aws_config._configure_iam_role(config) is config
    # The one-time commands of docs/cluster.md create that profile from the committed policy files.
    readme = (ROOT / "docs" / "cluster.md").read_text()
    for part in ("--instance-profile-name diversens-ray --role-name diversens-ray",
                 "file://cluster/diversens-ray-trust.json",
                 "file://cluster/diversens-ray-policy.json"):  # fmt: skip
        assert part in readme


def test_the_profiles_policy_pulls_the_image_and_launches_workers():
    trust = json.loads((ROOT / "cluster" / "diversens-ray-trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    policy = json.loads((ROOT / "cluster" / "diversens-ray-policy.json").read_text())
    repo = "arn:aws:ecr:us-west-2:123456789012:repository/diversens-gpu"
    assert granted(policy, "ecr:GetAuthorizationToken")
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                   "ecr:BatchGetImage"):  # fmt: skip
        assert granted(policy, action, repo), action
    for action in ("ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeInstances",
                   "ec2:TerminateInstances"):  # fmt: skip
        assert granted(policy, action), action
    # The head launches workers with its own profile: PassRole on that role, and the AMI named
    # by a public SSM parameter (EC2 resolves it with the caller's permissions).
    assert granted(policy, "iam:PassRole", "arn:aws:iam::123456789012:role/diversens-ray")
    assert not granted(policy, "iam:PassRole", "arn:aws:iam::123456789012:role/admin")
    ami = "arn:aws:ssm:us-west-2::parameter/aws/service/deeplearning/ami/x86_64/base-oss"
    assert granted(policy, "ssm:GetParameters", ami)
    assert granted(policy, "s3:PutObject", "arn:aws:s3:::my-bucket/diversens/run1/pairs.parquet")


def runtime_env_json(hf_token: str | None) -> tuple[dict, list[str]]:
    """ray_jobs/runtime_env.py's output, and the modules of Ray or torch it imported."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    if hf_token is not None:
        env["HF_TOKEN"] = hf_token
    # Runs the script as `python ray_jobs/runtime_env.py` would; lists what it imported at exit.
    wrapper = (
        "import atexit, json, runpy, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(\n"
        "    m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))), file=sys.stderr))\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, "ray_jobs/runtime_env.py"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return json.loads(proc.stdout), json.loads(proc.stderr.splitlines()[-1])


def test_runtime_env_json_forwards_hf_token_only_when_set():
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
    from ray.runtime_env import RuntimeEnv

    shipped = yaml.safe_load((ROOT / "ray_jobs" / "runtime_env.yaml").read_text())
    with_token, imported = runtime_env_json("hf_test_token")
    assert imported == []  # runnable where only PyYAML is installed
    assert with_token == {**shipped, "env_vars": {"HF_TOKEN": "hf_test_token"}}
    without, _ = runtime_env_json(None)
    assert without == shipped and "env_vars" not in without
    assert runtime_env_json("")[0] == shipped
    # What `ray job submit --working-dir . --runtime-env-json "$(...)"` sends, and Ray accepts.
    sent = parse_runtime_env_args(runtime_env_json=json.dumps(with_token), working_dir=".")
    assert sent["env_vars"] == {"HF_TOKEN": "hf_test_token"} and sent["excludes"]
    assert RuntimeEnv(**sent).env_vars() == {"HF_TOKEN": "hf_test_token"}
