"""Shared fixtures. `ray_local` starts one small local Ray for the whole session (2 CPUs, 2
logical GPUs, no dashboard) and shuts it down at the end; tests that need Ray take it as an
argument. `s3_server` is a real S3 API on loopback (moto's), `bucket` a new bucket on it. The GPUs are Ray resources only (no CUDA needed): pools that ask for them are scheduled
as on a GPU cluster, and their models run on the CPU."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOGICAL_GPUS = 2


@pytest.fixture(scope="session")
def ray_local(s3_server):
    # The S3 server's address is in the environment first, so Ray's workers inherit it.
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=LOGICAL_GPUS, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _markers_are_true(request, monkeypatch):
    """A test not marked slow may neither start Ray nor load a model's weights: `-m "not slow"`
    is the quick suite, and stays quick only if the marker tells the truth."""
    if "slow" in request.keywords:
        return
    import ray
    import transformers

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} starts Ray or loads a model: mark it slow")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on loopback (moto's), for this test session: yields the
    environment a client needs (pyarrow reads AWS_ENDPOINT_URL); the variables are also set in
    this process, and a test makes its own bucket with `make_bucket`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "server.log"
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"S3 server did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def bucket(s3_server):
    """A new, empty bucket on the test S3 server, as an s3:// URI."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
