"""A pool whose nodes never come fails the run after --start_timeout_s with one line naming the
pool, what one actor asks for and the option, instead of waiting (Ray Data's no-progress guard,
which Ray 2.60 sets to 30 min by default, made the user wait that long for a Ray message)."""

import time

import pandas as pd
import pytest
import ray.data
from ray.data.exceptions import ExecutionTimeoutError

from diversens import config
from diversens.commands.options import RunOptions
from diversens.errors import UserError
from diversens.jobs import dataflow
from diversens.jobs.dataflow import bound_waits, map_pool, stall_error
from diversens.pools import (
    DEFAULT_START_TIMEOUT_S,
    TRAIN_START_TIMEOUT_ENV,
    Pool,
    describe,
    pool_start_error,
    train_start_timeout_s,
    worker_group_failure,
)


class Echo:
    def __call__(self, batch):
        return batch


@pytest.fixture
def restored(monkeypatch):
    """The globals `bound_waits` sets (the CLI edge's), put back after the test."""
    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "execution_no_progress_timeout_s", ctx.execution_no_progress_timeout_s)
    monkeypatch.delenv(TRAIN_START_TIMEOUT_ENV, raising=False)
    monkeypatch.setattr(dataflow, "_POOLS", {})


def test_the_option_defaults_to_30_minutes_and_refuses_no_wait():
    assert config.from_dict(RunOptions, {"output": "o"}).start_timeout_s == 1800
    assert (
        config.from_dict(RunOptions, {"output": "o", "start_timeout_s": "60"}).start_timeout_s == 60
    )
    for bad in ("0", "-5", "inf", "nan"):
        with pytest.raises(config.ConfigError, match="start_timeout_s"):
            config.from_dict(RunOptions, {"output": "o", "start_timeout_s": bad})


def test_bound_waits_sets_ray_data_and_ray_train(restored):
    assert train_start_timeout_s() == DEFAULT_START_TIMEOUT_S
    bound_waits(90)
    assert ray.data.DataContext.get_current().execution_no_progress_timeout_s == 90
    assert train_start_timeout_s() == 90
    ds = ray.data.DataContext.get_current().copy()  # what a dataset made now holds
    assert ds.execution_no_progress_timeout_s == 90


def test_messages_name_resources_and_option():
    assert describe({"CPU": 2, "GPU": 1, "memory": 4 * 2**30}) == "2 CPUs, 1 GPU, 4 GiB of memory"
    assert describe({"CPU": 0.5, "GPU": 0.0, "memory": 0}) == "0.5 CPUs"
    line = pool_start_error("sampling", Pool(2, 4, 8, 1, 16, 30), 1800, placeable=False)
    assert line.startswith(
        "the sampling actor pool did not start within 1800 s (--start_timeout_s)"
    )
    assert "2 actor(s) of 8 CPUs, 1 GPU, 30 GiB of memory each" in line
    assert "no node of the Ray cluster has room for one" in line and "\n" not in line

    class WorkerGroupStartupTimeoutError(Exception):
        pass

    class InsufficientClusterResourcesError(Exception):
        pass

    res = {"CPU": 4, "GPU": 1}
    line = worker_group_failure(WorkerGroupStartupTimeoutError(), 8, res, 600, "H100")
    assert "did not start within 600 s (--start_timeout_s)" in line
    assert "8 worker(s) of 4 CPUs, 1 GPU each on H100 GPUs" in line
    line = worker_group_failure(InsufficientClusterResourcesError(), 8, res, 600)
    assert "more than this Ray cluster can ever have" in line and "train.num_workers" in line
    assert worker_group_failure(RuntimeError("boom"), 8, res, 600) is None


def test_stall_error_reads_ray_datas_message(restored):
    class Lazy:  # stands for a Dataset: map_pool only calls map_batches on it
        def map_batches(self, *args, **kwargs):
            return self

    map_pool(Lazy(), Echo, {}, Pool(1, 1, 1, 1, 4), "scoring.embed_pool")
    text = (
        "Dataset execution made no progress for at least 12s of scheduling time (timeout: 12s). "
        "No output was taken and no blocks moved through any operator's queues in that window.\n"
        "Operators still running:\n"
        "  - MapBatches(Other): 1 active task(s), 3 finished, 3 outputs taken\n"
        "  - MapBatches(Echo)->MapBatches(validity_batch): 0 active task(s), 0 finished, 0 "
        "outputs taken\nIf this is expected, ..."
    )
    assert stall_error(RuntimeError("another failure")) is None
    try:
        try:
            raise ExecutionTimeoutError(text)
        except ExecutionTimeoutError as inner:
            raise RuntimeError("consumer") from inner
    except RuntimeError as e:
        error = stall_error(e)
    assert isinstance(error, UserError)
    assert str(error).startswith("the scoring.embed_pool actor pool did not start within 12 s")
    generic = stall_error(ExecutionTimeoutError(text.replace("Echo", "Unknown")))
    assert "no progress for 12 s" in str(generic) and "MapBatches(Unknown)" in str(generic)


@pytest.mark.slow
def test_a_pool_no_node_can_hold_fails_after_the_timeout_in_one_line(ray_local, restored):
    timeout_s = 6
    bound_waits(timeout_s)  # as the CLI edge does, before any dataset is made
    ds = ray.data.from_pandas(pd.DataFrame({"x": range(4)}))
    # 3 GPUs per actor: the session's Ray has 2, so the pool's actor can never be placed
    ds = map_pool(ds, Echo, {}, Pool(1, 1, 0.5, 3, 2), "test_pool")
    start = time.monotonic()
    with pytest.raises(Exception) as caught:
        for _ in ds.iter_batches(batch_format="pandas"):
            pass
    elapsed = time.monotonic() - start
    error = stall_error(caught.value)
    assert isinstance(error, UserError), caught.value
    assert str(error) == pool_start_error("test_pool", Pool(1, 1, 0.5, 3, 2), 6, placeable=False)
    assert timeout_s <= elapsed < timeout_s + 30, elapsed
