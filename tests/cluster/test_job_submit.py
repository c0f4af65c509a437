"""`ray job submit` for real: a local Ray head on 127.0.0.1 with its job server, the pipeline
entrypoint shipped as a working_dir, SUCCEEDED with outputs; a bad config FAILS with the one-line
error in the job's logs."""

import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from diversens.selection.rules import STRATEGIES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = dict(os.environ)


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    # Ray 2.60 turns token auth on for new local clusters: the head and the `ray job` CLI run
    # with it on explicitly and share a token made for this test (never the user's own).
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    ENV.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port, dash = free_port(), free_port()
    subprocess.run(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"],
        check=True, capture_output=True, timeout=180, env=ENV,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{dash}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def submit(address: str, out: Path, *extra: str) -> tuple[str, str]:
    """`ray job submit` (waits for the end, streaming the logs); returns (status, logs)."""
    proc = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT),
         "--runtime-env", str(ROOT / "ray_jobs" / "runtime_env.yaml"), "--",
         sys.executable, "ray_jobs/pipeline.py", "tests/data/job_prompts.jsonl",
         "--config", "tests/data/job_config.yaml", "-o", out.as_uri(), *extra],
        capture_output=True, text=True, timeout=900, env=ENV,
    )  # fmt: skip
    job_id = re.search(r"raysubmit_\w+", proc.stdout + proc.stderr).group(0)
    status = subprocess.run(
        [RAY, "job", "status", "--address", address, job_id],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    logs = subprocess.run(
        [RAY, "job", "logs", "--address", address, job_id],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    found = re.search(r"Job '\w+' (succeeded|failed|was stopped)", status.stdout + status.stderr)
    return (found.group(1) if found else status.stdout + status.stderr), logs.stdout


def test_pipeline_job_succeeds_with_outputs(address, tmp_path):
    status, logs = submit(address, tmp_path / "run")
    assert status == "succeeded", logs[-3000:]
    scored = pd.read_parquet(tmp_path / "run" / "pairs" / "scored")
    assert len(scored) == 2 and all(len(r) == 4 for r in scored.responses)
    assert (tmp_path / "run" / "pairs" / "pairs.parquet").exists()
    assert (tmp_path / "run" / "pipeline_summary.json").exists()


def test_bad_config_fails_with_one_line_error(address, tmp_path):
    status, logs = submit(address, tmp_path / "bad", "--pairs.selection.strategy", "longest")
    assert status == "failed"
    errors = [line for line in logs.splitlines() if "error:" in line]
    assert errors == [
        "diversens pipeline: error: option pairs.selection.strategy: unknown strategy 'longest' "
        f"(choose from {', '.join(STRATEGIES)})"
    ]
    assert "Traceback" not in logs and not (tmp_path / "bad").exists()
