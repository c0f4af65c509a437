"""Shared fixtures. `ray_local` starts one small local Ray for the whole session (2 CPUs, no
dashboard) and shuts it down at the end; tests that need Ray take it as an argument."""

import pytest


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()
