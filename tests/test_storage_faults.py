"""A store that fails under a run (a full disk, a bucket deleted, a server gone) ends it in one
line naming the store (exit 2), and the rerun resumes from the parts written whole."""

import errno
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from diversens import storage
from diversens.cli import main
from diversens.errors import UserError
from diversens.jobs.chunks import CHUNK, PartStore, plan_chunks
from diversens.storage import StorageError, fault

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
FULL = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left")


def delete_bucket(uri: str) -> None:
    import boto3

    bucket = boto3.resource("s3").Bucket(uri.removeprefix("s3://").split("/")[0])
    bucket.objects.all().delete()
    bucket.delete()


def test_a_stores_fault_is_one_line_naming_it_and_a_bug_is_not(tmp_path, monkeypatch):
    assert str(fault(FULL, tmp_path / "out")) == (
        f"{tmp_path}/out: cannot write output (No space left on device)"
    )
    gone = OSError("When uploading part for key 'run/parts/k.parquet' in bucket 'b': AWS Error "
                   "NETWORK_CONNECTION during UploadPart operation: curlCode: 7, Couldn't connect "
                   "to server (Request ID: 12)")  # fmt: skip
    assert str(fault(gone, "s3://u:pw@b/run", doing="read")) == (
        "s3://***@b/run: cannot read (NETWORK_CONNECTION during UploadPart operation: "
        "curlCode: 7, Couldn't connect to server)"
    )
    assert fault(gone, tmp_path) is None  # no errno, no store at a URI: not known to be one
    assert fault(ValueError("a bug"), tmp_path) is None
    assert fault(UserError("a mistake"), tmp_path) is None
    # torch reports a full disk as "unexpected pos 576 vs 534": the disk tells
    monkeypatch.setattr(storage, "disk_full", lambda location: Path(location) == tmp_path)
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5 vs 4")
    assert str(fault(torch_full, "s3://b/run", tmp_path)) == (
        f"{tmp_path}: cannot write output (No space left on device)"
    )


class Batches:
    """What `PartStore.fill` gets from Ray Data: the rows of each chunk, then `after(i)`."""

    def __init__(self, rows: pd.DataFrame, after=lambda i: None):
        self.rows, self.after, self.seen = rows, after, []

    def iter_batches(self, **kwargs):
        for i, (key, chunk) in enumerate(self.rows.groupby(CHUNK, sort=False)):
            self.seen.append(key)
            yield pa.Table.from_pandas(chunk, preserve_index=False)
            self.after(i)


def planned() -> pd.DataFrame:
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(4)], "prompt": list("abcd")})
    return plan_chunks(prompts, 2, "fingerprint")


def test_parts_whose_bucket_is_deleted_mid_run_are_one_line_naming_it(bucket):
    parts = f"{bucket}/run/parts"
    store = PartStore(parts)
    batches = Batches(planned(), after=lambda i: delete_bucket(bucket) if i == 0 else None)
    with pytest.raises(StorageError) as e:
        store.fill(planned(), lambda todo: batches)
    name = bucket.removeprefix("s3://")
    assert str(e.value) == f"{parts}: cannot write output (no bucket {name!r} there)"


def test_a_disk_that_fills_mid_run_keeps_the_whole_parts_and_the_rerun_resumes(
    tmp_path, monkeypatch
):
    import pyarrow.parquet as pq

    write = pq.write_table
    calls = []

    def fills_at_the_second_part(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise FULL
        return write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", fills_at_the_second_part)
    store, rows = PartStore(tmp_path / "parts"), planned()
    with pytest.raises(StorageError, match=r"\.parquet: cannot write output \(No space left"):
        store.fill(rows, lambda todo: Batches(todo))
    assert len(store.done()) == 1 and not [p for p in (tmp_path / "parts").iterdir()
                                           if p.name.startswith(".")]  # fmt: skip
    rerun = Batches(store.pending(rows))
    assert store.fill(rows, lambda todo: rerun) == {"chunks": 2, "reused": 1, "written": 1}
    assert len(rerun.seen) == 1 and store.read(rows).num_rows == 4


def test_generate_pairs_whose_bucket_goes_mid_run_is_one_line_through_the_cli(
    bucket, capsys, monkeypatch
):
    """The part writer's fault at a URI reaches the CLI as its one line, with what a rerun
    does; Ray and the engines are left out (the writer is the same)."""
    from diversens.commands import step as runner
    from diversens.jobs import generate_pairs as job

    def run(prompts, cfg, out_dir, parts):
        delete_bucket(bucket)
        PartStore(parts).write("k", pa.table({"prompt_id": ["p0"]}))

    monkeypatch.setattr(runner, "connect_ray", lambda *a, **k: None)
    monkeypatch.setattr(job, "run", run)
    assert main(["generate-pairs", "--config", TINY, "-o", f"{bucket}/run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (
        f"diversens generate-pairs: error: {bucket}/run/parts: cannot write output (no bucket "
        f"{bucket.removeprefix('s3://')!r} there); rerun the same command to resume\n"
    )


def test_a_stores_fault_that_no_writer_named_is_one_line_naming_its_file(
    bucket, capsys, monkeypatch
):
    """Any write the run makes: a fault no writer turned into its line still is one (the CLI's
    own check), naming the file the error names."""
    from diversens.commands import step as runner
    from diversens.jobs import generate_pairs as job

    def run(prompts, cfg, out_dir, parts):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", "/scratch/tmp/spill-0")

    monkeypatch.setattr(runner, "connect_ray", lambda *a, **k: None)
    monkeypatch.setattr(job, "run", run)
    assert main(["generate-pairs", "--config", TINY, "-o", f"{bucket}/run"]) == 2
    assert capsys.readouterr().err == (
        "diversens generate-pairs: error: /scratch/tmp/spill-0: cannot read or write (Disk quota "
        "exceeded); rerun the same command to resume\n"
    )
