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


LOOKUP = """
import sys
import ray
from diversens.commands.common import connect_ray
from diversens.commands.options import RunOptions

connect_ray(RunOptions(output=None))


@ray.remote(num_cpus=0)
class Controller:  # as Ray Train's: its placement-group cleaner asks the State API if it lives
    def alive(self):
        from ray.train.v2._internal.state.util import is_actor_alive
        from ray.util.state.exception import RayStateApiException

        try:
            return str(is_actor_alive(ray.get_runtime_context().get_actor_id(), timeout=10))
        except RayStateApiException:  # no State API here: the cleaner waits
            return "unknown"


controller = Controller.remote()
print(ray.get(controller.alive.remote()), ray._private.worker._global_node.session_name, flush=True)
sys.stdin.readline()  # once another local Ray, with its dashboard, has started
print(ray.get(controller.alive.remote()), flush=True)
"""


def start(code: str, env: dict, log) -> subprocess.Popen:
    """A driver; killed after 300 s, so a Ray that never comes up fails the test."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)  # fmt: skip
    timer = threading.Timer(300, proc.kill)
    timer.daemon = True
    timer.start()
    return proc


@pytest.mark.slow
def test_a_local_rays_workers_never_ask_another_rays_state_api(tmp_path):
    """Ray Train's placement-group cleaner asks Ray's State API whether the run's controller is
    alive; the API was looked up as the Ray started last, at 127.0.0.1:8265 even without a
    dashboard: a second run's local Ray answered that no such actor existed, and the first
    run's DPO workers were removed. The answer must be "alive" or "unknown", never "gone"."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # no dashboard
    sessions = []
    with open(tmp_path / "drivers.err", "w") as err:
        first = start(LOOKUP, env, err)
        second = None
        try:
            alone, session = first.stdout.readline().split()
            sessions.append(session)
            second = start(DRIVER, {**env, "RAY_ADDRESS": "local"}, err)  # with its dashboard
            sessions.append(second.stdout.readline().strip())
            first.stdin.write("\n")
            first.stdin.flush()
            beside = first.stdout.readline().strip()
            assert (alone, beside) == ("unknown", "unknown"), (tmp_path / "drivers.err").read_text()
        finally:
            for driver in (first, second):
                if driver is not None:
                    driver.kill()
            for session in sessions:
                local_ray.end_session(session)


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


def test_daemons_start_in_process_groups_of_their_own_only_while_ray_starts():
    """What a local Ray starts with Ray's `ConsolePopen` leads a process group of its own, so a
    signal to the run's group is the run's alone (Linux, where the kernel still ends the GCS and
    raylet with the run); before and after, Ray's class is as it was."""
    from ray._private import services, utils

    if not utils.detect_fate_sharing_support():
        pytest.skip("no kernel fate-sharing: Ray's daemons stay in the run's group")
    original = services.ConsolePopen
    with local_ray.own_process_groups():
        inside = services.ConsolePopen([sys.executable, "-c", "import time; time.sleep(30)"])
    outside = services.ConsolePopen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getpgid(inside.pid) == inside.pid != os.getpgrp()
        assert os.getpgid(outside.pid) == os.getpgrp()
        assert services.ConsolePopen is original
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait()
