"""Scale from zero on Ray's fake multi-node provider (`AutoscalingCluster`): a head without
GPUs, a GPU worker type with min_workers 0 and logical GPUs. A generate-pairs run whose engine
pool asks for a GPU makes the autoscaler start a worker node, finishes with the same rows as on
one node, and the idle worker is released afterwards. Training there with a local output is
refused in one line before any GPU is asked for."""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROMPTS = ROOT / "tests" / "data" / "job_prompts.jsonl"
CONFIG = ROOT / "tests" / "data" / "autoscale_config.yaml"
FAKE_CLUSTER = ROOT / "tests" / "data" / "fake_cluster.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # Ray 2.60 turns token auth on for new clusters: a token made for these tests only.
    token = tmp_path_factory.mktemp("auth") / "token"
    token.write_text(secrets.token_hex(32))
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_ADDRESS": "auto"}  # fmt: skip


def generate_pairs(out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "diversens"), "generate-pairs", str(PROMPTS), "--config", str(CONFIG),
         "-o", str(out), *extra],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip


def generate_pairs_watching_gpu_nodes(out: Path, env: dict) -> tuple:
    """generate-pairs, listing the cluster's GPU nodes every few seconds while it runs: with an
    idle timeout of 12 s the autoscaler may add one and remove it between two looks, and the
    state API does not always still list a removed node once the run is over."""
    logs = out.parent / f"{out.name}.stdout", out.parent / f"{out.name}.stderr"
    argv = [str(BIN / "diversens"), "generate-pairs", str(PROMPTS), "--config", str(CONFIG),
            "-o", str(out)]  # fmt: skip
    seen: dict[str, dict] = {}
    with logs[0].open("w") as stdout, logs[1].open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, env=env)
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= {n["NodeID"]: n for n in nodes(env) if n["Resources"].get("GPU", 0) > 0}
            time.sleep(2)
        if proc.poll() is None:
            proc.kill()
    seen |= {n["NodeID"]: n for n in nodes(env) if n["Resources"].get("GPU", 0) > 0}
    done = subprocess.CompletedProcess(argv, proc.wait(), logs[0].read_text(), logs[1].read_text())
    return done, list(seen.values())


def ray_cli(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / "ray"), *args], check=True, capture_output=True, timeout=180,
                   env=env)  # fmt: skip


def nodes(env: dict) -> list[dict]:
    """The cluster's nodes as the state API sees them, from a separate driver."""
    # The driver also prints autoscaler events ("(autoscaler +0s) Resized to 2 CPUs.") to
    # stdout, at any point: the JSON line is the one carrying the marker.
    code = "import json, ray; ray.init(); print('NODES', json.dumps(ray.nodes()), flush=True)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, check=True)  # fmt: skip
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("NODES "))
    return json.loads(line.removeprefix("NODES "))


def gpu_nodes(env: dict) -> list[dict]:
    return [n for n in nodes(env) if n["Alive"] and n["Resources"].get("GPU", 0) > 0]


@pytest.fixture(scope="module")
def single_node(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    ray_cli("start", "--head", "--num-cpus=4", "--num-gpus=1", "--disable-usage-stats", env=env)
    try:
        proc = generate_pairs(out, env)
    finally:
        ray_cli("stop", "--force", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def autoscaling(env, single_node, tmp_path_factory):
    cluster = FakeCluster()
    cluster.start(override_env={k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")})
    try:
        before = gpu_nodes(env)
        out = tmp_path_factory.mktemp("auto") / "run"
        proc, seen = generate_pairs_watching_gpu_nodes(out, env)
        deadline = time.monotonic() + 180
        while gpu_nodes(env) and time.monotonic() < deadline:
            time.sleep(5)
        after = gpu_nodes(env)
        yield {"out": out, "proc": proc, "before": before, "seen": seen, "after": after,
               "tmp": tmp_path_factory.mktemp("train")}  # fmt: skip
    finally:
        cluster.shutdown()


class FakeCluster:
    """`ray.cluster_utils.AutoscalingCluster` with tests/data/fake_cluster.yaml as its config."""

    def __new__(cls):
        from ray.cluster_utils import AutoscalingCluster

        class _Cluster(AutoscalingCluster):
            def _generate_config(self, *args, **kwargs):
                return yaml.safe_load(FAKE_CLUSTER.read_text())

        config = yaml.safe_load(FAKE_CLUSTER.read_text())
        head = dict(config["available_node_types"]["ray.head.default"]["resources"])
        return _Cluster(head_resources=head, worker_node_types={})


def candidates(out: Path) -> pd.DataFrame:
    cols = ["prompt_id", "responses", "turn", "finish_reason", "n_tokens"]
    return pd.read_parquet(out / "scored", columns=cols).set_index("prompt_id").sort_index()


def test_gpu_pool_scales_from_zero_and_matches_one_node(autoscaling, single_node):
    run = autoscaling
    assert run["proc"].returncode == 0, run["proc"].stderr[-3000:]
    assert run["before"] == []  # no GPU node until the engine pool asked for one
    assert run["seen"], "the autoscaler never added a GPU worker node"
    pd.testing.assert_frame_equal(candidates(run["out"]), candidates(single_node))
    for name in ("pairs.parquet", "pairs_random.parquet"):
        mine = pd.read_parquet(run["out"] / name).drop(columns=["config_hash"], errors="ignore")
        ref = pd.read_parquet(single_node / name).drop(columns=["config_hash"], errors="ignore")
        pd.testing.assert_frame_equal(mine, ref)


def test_idle_gpu_workers_are_released(autoscaling):
    assert autoscaling["after"] == []


def test_local_checkpoints_on_a_multi_node_cluster_fail_before_gpus(autoscaling, env):
    # Runs while the cluster is still up (module fixture): the autoscaler may add GPU nodes,
    # so a local checkpoint path is one line and exit 2, and no GPU node is started for it.
    out = autoscaling["tmp"] / "run"
    proc = subprocess.run(
        [str(BIN / "diversens"), "train", str(autoscaling["out"] / "pairs_random.parquet"),
         "--use_gpu", "true", "--lora", "true", "-o", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"option -o/--output {out}/checkpoints: a local path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "train_summary.json").exists()
    assert gpu_nodes(env) == []
