"""The cluster run, rehearsed on one machine as close to the real one as it allows.

- Ray's fake multi-node cluster shaped like `cluster.yaml`: its head takes no tasks (CPU 0) and
  its GPU worker types start from zero with their logical GPUs (CPUs scaled to this machine).
  Nodes get the object store's credentials from their environment, as from an instance profile.
- The job goes in through `ray job submit` with the project's runtime env
  (`ray_jobs/runtime_env.py`), which carries HF_TOKEN: it must reach every actor and worker.
- The output is an `s3://` URI on a real S3-compatible server on loopback (moto's).
- `pipeline`, two rounds: pairs → DPO (2 workers, ZeRO-3), then round 2's pairs sampled with
  round 1's tuned model and DPO from it, then eval. The first run is stopped once round 1's
  tuned model is published (a failure in round 2): round 1's pairs and model are in the bucket
  already. The rerun resumes at round 2 from the bucket without sampling or training round 1
  again and completes; round 2's candidates differ from round 1's (the same prompts and seed:
  round 1's weights sampled them); every output is in the bucket, and no worker was handed a
  path under the driver's staging dir. (This is the test of rounds end to end.)
- GPU workers arrive from zero for the job and leave once idle; a local checkpoint path on this
  multi-node cluster is refused in one line before any GPU is asked for.
"""

import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from diversens import storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAKE = ROOT / "tests" / "data" / "fake_cluster.yaml"
CONFIG = "tests/data/rehearsal_config.yaml"
PROMPTS = "tests/data/job_prompts.jsonl"
HEAD = "ray.head.default"  # the fake provider's name for the head node type
STAGING = "diversens-out-"  # the driver's staging dirs (diversens.storage.output_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_cluster(path: Path) -> Path:
    """cluster.yaml's node types on the fake provider: the head as it is (CPU 0), each worker
    type with its GPUs, custom resources and min_workers, 2 CPUs and at most 2 nodes. The idle
    timeout is the fake config's 12 s, so that the test sees idle workers leave."""
    real = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    fake = yaml.safe_load(FAKE.read_text())
    types = {}
    for name, spec in real["available_node_types"].items():
        resources = dict(spec["resources"])
        if name == real["head_node_type"]:
            types[HEAD] = {"resources": resources, "node_config": {}, "max_workers": 0}
            continue
        types[name] = {"resources": {**resources, "CPU": 2}, "node_config": {},
                       "min_workers": spec["min_workers"], "max_workers": 2}  # fmt: skip
    fake.update(available_node_types=types, head_node_type=HEAD, max_workers=3)
    path.write_text(yaml.safe_dump(fake))
    return path


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    """The fake cluster's head with its job server; yields (dashboard address, env for the
    `ray` CLI). The head's GCS is on Ray's default port: the fake provider's nodes join there."""
    tmp = tmp_path_factory.mktemp("cluster")
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "RAY_ADDRESS")}
    env.update(s3_server, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")  # fmt: skip
    config = fake_cluster(tmp / "cluster.yaml")
    head = yaml.safe_load(config.read_text())["available_node_types"][HEAD]["resources"]
    dash = free_port()
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env)
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--autoscaling-config={config}",
         f"--num-cpus={head['CPU']}", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats"],
        check=True, capture_output=True, timeout=180, env=env,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=180,
                       env=env)  # fmt: skip


def runtime_env(token: str) -> str:
    """The runtime env a user submits with: ray_jobs/runtime_env.py run with HF_TOKEN set."""
    proc = subprocess.run([sys.executable, "ray_jobs/runtime_env.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True, env={**os.environ, "HF_TOKEN": token})  # fmt: skip
    return proc.stdout


def ray_job(address: str, env: dict, command: str, *args: str, timeout: int = 1200) -> str:
    proc = subprocess.run([str(BIN / "ray"), "job", command, "--address", address, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip
    return proc.stdout + proc.stderr


def submit(address: str, env: dict, output: str, token: str, wait: bool) -> str:
    """`ray job submit` as docs/cluster.md gives it, but for the working dir; returns the job id.

    The fake nodes share this machine's disk, and with it Ray's runtime-env dirs: once a pool
    on a worker node is done, the job's unpacked working dir, the driver's cwd, is gone (a
    bare Ray Data job shows it too), which no real cluster does. So the job runs the checkout
    in place; `--working-dir .` itself is covered by tests/cluster/test_job_submit.py."""
    env_json = json.loads(runtime_env(token))
    env_json.pop("excludes", None)  # they filter the working dir only
    text = ray_job(
        address, env, "submit", *([] if wait else ["--no-wait"]),
        "--runtime-env-json", json.dumps(env_json), "--", sys.executable,
        str(ROOT / "ray_jobs" / "pipeline.py"), str(ROOT / PROMPTS), "--config", str(ROOT / CONFIG),
        "-o", output,
    )  # fmt: skip
    return re.search(r"raysubmit_\w+", text).group(0)


def status(address: str, env: dict, job: str) -> str:
    """SUCCEEDED, FAILED, STOPPED, RUNNING or PENDING, as `ray job status` says it."""
    text = ray_job(address, env, "status", job, timeout=60)
    ended = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
    found = re.search(r"Job '\w+' (succeeded|failed|was stopped)", text)
    if found:
        return ended[found.group(1)]
    found = re.search(r"Status for job '\w+': (?:JobStatus\.)?(\w+)", text)
    return found.group(1) if found else text


class Workers:
    """Watches Ray's worker processes on this machine while a job runs: each one's title and
    whether its environment holds the token."""

    def __init__(self, token: str):
        self.token, self.seen, self.stop = token, {}, threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.stop.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                title = " ".join(proc.info["cmdline"] or [])
                if not title.startswith("ray::") or title.startswith("ray::IDLE"):
                    continue
                try:
                    has = proc.environ().get("HF_TOKEN") == self.token
                except psutil.Error:
                    continue
                self.seen[title] = self.seen.get(title, True) and has
            self.stop.wait(0.5)

    def done(self) -> dict[str, bool]:
        self.stop.set()
        self.thread.join()
        return self.seen


def gpu_nodes(env: dict) -> list[dict]:
    """The cluster's live GPU nodes as the state API sees them, from a separate driver."""
    # A driver may print autoscaler events at any point: the JSON line carries a marker.
    code = "import json, ray; ray.init(); print('NODES', json.dumps(ray.nodes()), flush=True)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**env, "RAY_ADDRESS": "auto"}, check=True)  # fmt: skip
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("NODES "))
    nodes = json.loads(line.removeprefix("NODES "))
    return [n for n in nodes if n["Alive"] and n["Resources"].get("GPU", 0) > 0]


def keys(uri: str) -> set[str]:
    fs, root = storage.filesystem(uri)
    found = fs.get_file_info(storage.pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {f.path.removeprefix(root + "/") for f in found if f.is_file}


def read_json(uri: str) -> dict:
    return json.loads(storage.read_text(uri))


def candidates(pairs_dir: str) -> pd.Series:
    """The scored candidates of a pairs step in the bucket, by prompt."""
    fs, path = storage.filesystem(f"{pairs_dir}/scored")
    scored = pd.read_parquet(path, filesystem=fs, columns=["prompt_id", "responses"])
    return scored.set_index("prompt_id").responses.map(tuple).sort_index()


@pytest.fixture(scope="module")
def rehearsal(cluster, bucket_module):
    address, env = cluster
    run, token = f"{bucket_module}/run", f"hf_{secrets.token_hex(8)}"
    before = gpu_nodes(env)
    workers = Workers(token)
    start = time.monotonic()
    # First run: stopped once round 1's tuned model is published, while round 2 runs.
    job = submit(address, env, run, token, wait=False)
    # Polled cheaply: one small read a second, and the job's status (a `ray job` CLI process,
    # seconds of CPU on the job's 2 cores) every 15 s.
    deadline, summary_at = time.monotonic() + 1200, f"{run}/pipeline_summary.json"
    for poll in itertools.count():
        assert time.monotonic() < deadline, "round 1's tuned model was not published"
        summary = storage.is_file(summary_at) and read_json(summary_at)
        if summary and summary.get("tuned_models"):
            break
        if poll % 15 == 14:
            assert status(address, env, job) in ("RUNNING", "PENDING"), ray_job(
                address, env, "logs", job
            )[-4000:]
        time.sleep(1)
    ray_job(address, env, "stop", job)
    first = {"status": status(address, env, job), "keys": keys(run),
             "summary": read_json(f"{run}/pipeline_summary.json"),
             "train": storage.read_text(f"{run}/train/random/train_summary.json"),
             "pairs": storage.read_text(f"{run}/pairs/run_summary.json")}  # fmt: skip
    # The rerun: resumes from the bucket and completes.
    job = submit(address, env, run, token, wait=True)
    second = {"status": status(address, env, job), "logs": ray_job(address, env, "logs", job),
              "keys": keys(run), "summary": read_json(f"{run}/pipeline_summary.json")}  # fmt: skip
    wall_s, seen = time.monotonic() - start, workers.done()
    deadline = time.monotonic() + 180
    while gpu_nodes(env) and time.monotonic() < deadline:
        time.sleep(5)
    return {"run": run, "first": first, "second": second, "workers": seen, "wall_s": wall_s,
            "before": before, "after": gpu_nodes(env)}  # fmt: skip


@pytest.fixture(scope="module")
def bucket_module(s3_server):
    import uuid

    import boto3

    name = f"rehearsal-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


def test_a_stop_in_round_2_leaves_round_1s_pairs_and_tuned_model_in_the_bucket(rehearsal):
    first = rehearsal["first"]
    assert first["status"] == "STOPPED"
    assert {"pairs/pairs.parquet", "pairs/pairs_random.parquet", "pairs/selection_report.md",
            "train/random/model/config.json", "train/random/train_summary.json",
            "train/random/trainer_state.json"} <= first["keys"]  # fmt: skip
    assert any(k.startswith("pairs/scored/") for k in first["keys"])
    assert not any(k.startswith("train/random/model/adapter") for k in first["keys"])  # merged
    assert "eval/eval_report.md" not in first["keys"]
    assert "round-2/train/random/model/config.json" not in first["keys"]
    assert first["summary"]["complete"] is False
    assert first["summary"]["tuned_models"] == {"random": f"{rehearsal['run']}/train/random/model"}


def test_rerun_resumes_from_the_bucket_and_completes(rehearsal):
    second, run = rehearsal["second"], rehearsal["run"]
    assert second["status"] == "SUCCEEDED", second["logs"][-4000:]
    summary = second["summary"]
    assert summary["complete"] is True
    chunks = summary["pairs"]["chunks"]
    assert chunks["written"] == 0 and chunks["reused"] == chunks["chunks"] > 0  # no sampling
    # Round 1 is not run again: its summaries are the first run's, byte for byte.
    assert (
        storage.read_text(f"{run}/train/random/train_summary.json") == rehearsal["first"]["train"]
    )
    assert storage.read_text(f"{run}/pairs/run_summary.json") == rehearsal["first"]["pairs"]
    assert {"pipeline_summary.json", "eval/eval_report.md", "eval/outputs.parquet",
            "eval/delta_dd.csv", "train/random/train_log.csv", "train/random/model/config.json",
            "pairs/run_summary.json"} <= second["keys"]  # fmt: skip
    assert any(k.startswith("checkpoints/dpo-random/") for k in second["keys"])
    assert any(k.startswith("checkpoints/dpo-random@r2/") for k in second["keys"])
    assert not Path(ROOT, "s3:").exists() and not Path("s3:").exists()


def test_round_2_samples_with_round_1s_model_from_the_bucket_and_trains_from_it(rehearsal):
    run, summary = rehearsal["run"], rehearsal["second"]["summary"]
    round_1 = f"{run}/train/random/model"
    assert summary["round-2"]["sampled_with"] == round_1
    pairs = read_json(f"{run}/round-2/pairs/run_summary.json")
    assert pairs["complete"] and pairs["generator_model"] == round_1
    # The same prompts at the same seed: sampling is deterministic for a given model (tests/
    # sampling/test_sampling_ray.py), so a round-1 rerun gives round 1's candidates; round 2's
    # differ.
    first, second = candidates(f"{run}/pairs"), candidates(f"{run}/round-2/pairs")
    assert first.index.equals(second.index)
    assert (first != second).any()
    trained = read_json(f"{run}/round-2/train/random/train_summary.json")
    # With LoRA the DPO reference is the model trained from with its adapter off: round 1's.
    assert trained["config"]["model"] == round_1 and trained["config"]["lora"] is True
    assert trained["num_pairs"] == pairs["pairs"]["random"] > 0  # round 2's own pairs
    assert summary["tuned_models"] == {"random": round_1,
                                       "random@r2": f"{run}/round-2/train/random/model"}  # fmt: skip


def test_workers_load_tuned_models_from_the_bucket_never_from_the_staging_dir(rehearsal):
    run = rehearsal["run"]
    fs, path = storage.filesystem(f"{run}/eval/outputs.parquet")
    outputs = pd.read_parquet(path, filesystem=fs, columns=["model", "model_path"])
    paths = dict(outputs.drop_duplicates().itertuples(index=False))
    assert paths == {"base": "smollm2-135m-instruct", "random": f"{run}/train/random/model",
                     "random@r2": f"{run}/round-2/train/random/model"}  # fmt: skip
    logs = Path("/tmp/ray/session_latest/logs")
    leaked = [p.name for p in logs.glob("worker-*") if STAGING in p.read_text(errors="replace")]
    assert leaked == []


JOB_PROCESSES = ("MapWorker", "MapBatches", "RayTrainWorker", "TrainController", "JobSupervisor")


def test_the_token_reaches_every_actor_and_training_worker(rehearsal):
    print(f"rehearsal wall time: {rehearsal['wall_s']:.0f} s")
    # The job's processes; Ray's own daemons (dashboard, runtime-env agents) are not the job's.
    seen = {t.split()[0]: has for t, has in rehearsal["workers"].items()
            if any(name in t for name in JOB_PROCESSES)}  # fmt: skip
    for stage in ("SampleStage", "MeasureStage", "QualityStage", "RayTrainWorker"):
        assert any(stage in t for t in seen), (stage, sorted(seen))
    assert {t for t, has in seen.items() if not has} == set()


def test_gpu_workers_start_from_zero_and_leave_when_idle(rehearsal):
    # The head takes no tasks, so the jobs' success is itself the proof that GPU worker nodes
    # were added for them.
    assert rehearsal["before"] == [] and rehearsal["after"] == []


def test_local_checkpoints_on_a_multi_node_cluster_fail_before_gpus(rehearsal, cluster, tmp_path):
    """The autoscaler may add nodes, so a local checkpoint path is one line and exit 2, and no
    GPU node is started for it."""
    _, env = cluster
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(BIN / "diversens"), "train", f"{rehearsal['run']}/pairs/pairs_random.parquet",
         "--use_gpu", "true", "--lora", "true", "-o", str(out)],
        capture_output=True, text=True, timeout=300, env={**env, "RAY_ADDRESS": "auto"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"option -o/--output {out}/checkpoints: a local path" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "train_summary.json").exists()
    assert gpu_nodes(env) == []
