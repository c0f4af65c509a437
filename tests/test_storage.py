"""Outputs to a URI: uploaded whole after success, nothing on failure."""

import pytest

from diversens.errors import UserError
from diversens.storage import is_uri, output_dir


def test_local_path_is_used_in_place(tmp_path):
    with output_dir(str(tmp_path / "run")) as out:
        assert out == tmp_path / "run"


def test_uri_output_uploaded_after_success(tmp_path):
    target = tmp_path / "bucket" / "run"
    with output_dir(target.as_uri()) as out:
        (out / "scored").mkdir(parents=True)
        (out / "scored" / "part-0.parquet").write_bytes(b"x")
        (out / "report.md").write_text("# r")
        assert not target.exists()  # nothing visible while the stage runs
    assert (target / "report.md").read_text() == "# r"
    assert (target / "scored" / "part-0.parquet").read_bytes() == b"x"
    assert not out.exists()  # staging removed


def test_uri_output_untouched_on_failure(tmp_path):
    target = tmp_path / "bucket" / "run"
    with pytest.raises(RuntimeError), output_dir(target.as_uri()) as out:
        (out / "half.parquet").write_bytes(b"x")
        raise RuntimeError("stage failed")
    assert not target.exists()


def test_bad_uri_is_a_user_error():
    assert is_uri("s3://b/k") and is_uri("gs://b/k") and not is_uri("out/run")
    with pytest.raises(UserError, match="not a usable URI"), output_dir("file://relative/x"):
        pass


def test_atomic_dir_replaces_only_on_success(tmp_path):
    from diversens.io import atomic_dir

    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("crash mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary dir left behind
    assert [p.name for p in final.iterdir()] == ["a"]
    with atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in final.iterdir()] == ["c"]
    with atomic_dir(final, replace=False) as tmp:  # a cache: the copy already there wins
        (tmp / "d").write_text("4")
    assert [p.name for p in final.iterdir()] == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
