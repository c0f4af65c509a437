"""A local Ray that a run starts ends with the run, even when the run is killed with SIGKILL:
its GCS and raylet died with it, but its workers (and, as reported, its dashboard and runtime-env
agents) stayed up for more than 20 s (issue 37). The smallest run that starts a local Ray:
`connect_ray` in a process of its own, with an actor and a task."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diversens.jobs import local_ray

ROOT = Path(__file__).resolve().parents[2]
DRIVER = """
import time
import ray
from diversens.commands.common import connect_ray
from diversens.commands.options import RunOptions

connect_ray(RunOptions(output=None))


@ray.remote
class Engine:
    def ready(self):
        return True


engine = Engine.remote()  # an actor and a task: their workers outlived the run too
ray.get([engine.ready.remote(), ray.remote(lambda: 1).remote()])
print(ray._private.worker._global_node.session_name, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_local_ray_ends_with_the_run_that_started_it_even_after_sigkill(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "local"}
    with open(tmp_path / "driver.err", "w") as err:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE,
                                  stderr=err, text=True, env=env, cwd=ROOT)  # fmt: skip
    stuck = threading.Timer(300, driver.kill)  # a Ray that never comes up fails the test
    stuck.start()
    session = driver.stdout.readline().strip()  # once Ray is up
    stuck.cancel()
    try:
        assert session.startswith("session_"), (tmp_path / "driver.err").read_text()
        assert len(local_ray._sessions()[session]) >= 4  # GCS, raylet, workers, ...
        driver.kill()  # SIGKILL: no atexit, no ray.shutdown
        driver.wait()
        deadline = time.monotonic() + 10
        while local_ray._sessions().get(session) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [" ".join(p.info["cmdline"][:2]) for p in local_ray._sessions().get(session, [])]
        assert left == []
    finally:
        driver.kill()
        local_ray.end_session(session)
