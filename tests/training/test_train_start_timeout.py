"""A training worker group that cannot be placed fails after the start timeout with one line
naming what each worker asks for and the option. Before, Ray Train V2 timed out its placement
group every 60 s and retried without end (FailureConfig.controller_failure_limit -1)."""

import time
from pathlib import Path

import pytest

from diversens.errors import UserError
from diversens.pools import TRAIN_START_TIMEOUT_ENV, worker_group_start_error
from diversens.storage import Output
from diversens.training.config import TrainConfig

pytestmark = pytest.mark.slow


def test_a_worker_group_no_node_can_hold_fails_after_the_timeout(
    ray_local, pairs_file, tmp_path, monkeypatch
):
    from diversens.training.trainer import train

    timeout_s = 5
    monkeypatch.setenv(TRAIN_START_TIMEOUT_ENV, str(timeout_s))  # as the CLI edge sets it
    # 3 CPUs per worker: the session's Ray has 2, so the placement group is never placed
    cfg = TrainConfig(num_workers=1, num_cpus_per_worker=3, deepspeed="none", name="unplaced")
    out = tmp_path / "out"
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        train(str(pairs_file), cfg, Output(str(out), Path(out)))
    elapsed = time.monotonic() - start
    assert str(caught.value) == worker_group_start_error(1, {"CPU": 3}, timeout_s)
    # the controller actor and its placement-group wait, on 2 shared cores: well under a minute
    assert timeout_s <= elapsed < timeout_s + 45, elapsed
