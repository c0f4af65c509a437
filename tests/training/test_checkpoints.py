"""Which checkpoint a DPO run resumes from: the newest whole one, recorded by Ray Train or not;
and a store that fails under a training run is one line naming it."""

import errno
import logging
from pathlib import Path

import pytest

from diversens import storage
from diversens.storage import StorageError
from diversens.training.checkpoints import Found, latest_whole, write_inventory
from diversens.training.config import TrainConfig


def checkpoint(run_dir: Path, name: str, step: int, ranks=(0, 1), world_size: int = 2) -> Path:
    """A Ray Train checkpoint dir as the ranks upload it: each its files and its list of them."""
    for rank in ranks:
        local = run_dir.parent / f"rank{rank}-{name}"
        (local / "checkpoint" / f"global_step{step}").mkdir(parents=True)
        (local / "checkpoint" / f"global_step{step}" / f"rank{rank}_optim_states.pt").write_bytes(
            b"o" * (100 + rank)
        )
        if rank == 0:
            (local / "checkpoint" / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        write_inventory(local, rank, world_size, step)
        storage.upload(local, str(run_dir / name))  # the ranks' files merge into one dir
    return run_dir / name


def test_a_whole_checkpoint_ray_train_never_recorded_is_resumed_from(tmp_path, caplog):
    """A disk filled during training: Ray Train wrote no snapshot (no record of any
    checkpoint); the step-1 checkpoint is whole, the later ones are not."""
    run = tmp_path / "checkpoints" / "dpo"
    one = checkpoint(run, "checkpoint_2026-12-06_10-00-00.000000", 1)
    two = checkpoint(run, "checkpoint_2026-12-06_10-01-00.000000", 2)
    cut = two / "checkpoint" / "global_step2" / "rank1_optim_states.pt"
    cut.write_bytes(cut.read_bytes()[:50])  # the upload cut short by the full disk
    checkpoint(run, "checkpoint_2026-12-06_10-02-00.000000", 3, ranks=(0,))  # rank 1's never came
    (run / "diversens_run.json").write_text('{"fingerprint": "f"}')
    assert not (run / "checkpoint_manager_snapshot.json").exists()
    with caplog.at_level(logging.WARNING, logger="diversens.training.checkpoints"):
        assert latest_whole(str(run)) == Found(str(one), 1)
    assert [m.split(" is not whole")[0] for m in caplog.messages] == [
        f"checkpoint {two}",
        f"checkpoint {run}/checkpoint_2026-12-06_10-02-00.000000",
    ]
    assert latest_whole(str(tmp_path / "no-run-yet")) is None


def test_the_newest_whole_checkpoint_at_a_uri(bucket, tmp_path):
    local = tmp_path / "run"
    checkpoint(local, "checkpoint_a", 1)
    checkpoint(local, "checkpoint_b", 2)
    storage.upload(local, f"{bucket}/checkpoints/dpo")
    assert latest_whole(f"{bucket}/checkpoints/dpo") == Found(
        f"{bucket}/checkpoints/dpo/checkpoint_b", 2
    )


def test_a_store_failing_under_training_is_one_line_naming_it(tmp_path):
    """A worker's fault (raised as StorageError inside it) and Ray Train's own (its controller
    writing the run's snapshot to a full disk) are one line; any other failure is not."""
    from ray.train import ControllerError, WorkerGroupError

    from diversens.training.trainer import failure_error

    cfg, run = TrainConfig(), str(tmp_path / "checkpoints" / "dpo")
    worker = StorageError(f"{run}: cannot write output (No space left on device)")
    failed = WorkerGroupError("rank 1: ...", {0: RuntimeError("peer gone"), 1: worker})
    assert failure_error(failed, cfg, 60, run) is worker
    full = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left")
    assert str(failure_error(ControllerError(full), cfg, 60, run)) == (
        f"{run}: cannot write output (No space left on device)"
    )
    assert failure_error(ControllerError(ValueError("a bug")), cfg, 60, run) is None
    assert failure_error(WorkerGroupError("x", {0: KeyError("a bug")}), cfg, 60, run) is None


@pytest.mark.parametrize("damage", [b"", b'{"fingerprint": "f"'])
def test_a_run_claim_cut_short_is_one_line(tmp_path, damage):
    from diversens.errors import UserError
    from diversens.training.trainer import claim_run

    run = tmp_path / "dpo"
    run.mkdir()
    (run / "diversens_run.json").write_bytes(damage)
    with pytest.raises(UserError, match=r"diversens_run.json: damaged, so the checkpoints"):
        claim_run(str(run), "f", "dpo")
