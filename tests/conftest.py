"""Shared fixtures. `ray_local` starts one small local Ray for the whole session (2 CPUs, 2
logical GPUs, no dashboard) and shuts it down at the end; tests that need Ray take it as an
argument. The GPUs are Ray resources only (no CUDA needed): pools that ask for them are scheduled
as on a GPU cluster, and their models run on the CPU."""

import pytest

LOGICAL_GPUS = 2


@pytest.fixture(scope="session")
def ray_local():
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
