"""Inputs and outputs at a URI, on a real S3 API (moto's server on loopback): each part of a run
is published as soon as it is done and survives a later failure; nothing unpublished is visible;
inputs, models and single files at a URI read like local ones; a URI never becomes a local dir."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from diversens import io, storage
from diversens.errors import UserError
from diversens.storage import is_uri, output_dir


def listing(uri: str) -> set[str]:
    fs, root = storage.filesystem(uri)
    found = fs.get_file_info(storage.pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {f.path.removeprefix(root + "/") for f in found if f.is_file}


def test_local_path_is_used_in_place(tmp_path):
    with output_dir(str(tmp_path / "run")) as out:
        assert out.local == tmp_path / "run" and not out.staged
        assert out.at("eval", "x.md") == str(tmp_path / "run" / "eval" / "x.md")
        out.publish("eval")  # nothing to do locally


def test_relative_local_locations_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with output_dir("out/run") as out:
        assert out.at("train") == str(tmp_path / "out" / "run" / "train")  # for Ray workers


def test_each_part_is_published_when_done_and_survives_a_later_failure(bucket, tmp_path):
    run = f"{bucket}/run"
    with pytest.raises(RuntimeError), output_dir(run) as out:
        (out.local / "pairs").mkdir()
        (out.local / "pairs" / "pairs.parquet").write_bytes(b"p")
        assert listing(run) == set()  # nothing visible while the stage runs
        out.publish("pairs")
        assert listing(run) == {"pairs/pairs.parquet"}
        (out.local / "eval").mkdir()
        (out.local / "eval" / "half.csv").write_text("x")
        raise RuntimeError("eval failed")
    assert listing(run) == {"pairs/pairs.parquet"}  # the failed stage published nothing
    assert not out.local.exists()  # staging removed
    assert not Path("s3:").exists() and not (tmp_path / "s3:").exists()


def test_bad_uri_is_a_user_error():
    assert is_uri("s3://b/k") and is_uri("gs://b/k") and not is_uri("out/run")
    with pytest.raises(UserError, match="not a usable URI"), output_dir("file://relative/x"):
        pass


def test_write_check_of_a_new_file_uri_dir(tmp_path):
    storage.check_writable((tmp_path / "new" / "run").as_uri())
    assert list((tmp_path / "new" / "run").iterdir()) == []  # the probe is gone


def test_missing_bucket_is_refused_by_the_write_check(bucket):
    storage.check_writable(f"{bucket}/run")  # the bucket exists: fine, and no probe is left
    assert listing(f"{bucket}/run") == set()
    with pytest.raises(UserError, match="output s3://no-such-bucket-xyz/run: cannot write"):
        storage.check_writable("s3://no-such-bucket-xyz/run")


def test_inputs_at_a_uri_read_like_local_files_and_errors_name_the_uri(bucket, tmp_path):
    rows = [{"prompt": "Write a poem.", "prompt_id": "p1"}]
    io.write_parquet(pa.Table.from_pylist(rows), f"{bucket}/in/prompts.parquet")
    assert io.read_table(f"{bucket}/in/prompts.parquet").to_pylist() == rows
    storage.write_text(f"{bucket}/in/bad.jsonl", '{"prompt": "a"}\n{oops\n')
    with pytest.raises(UserError) as e:
        io.read_table(f"{bucket}/in/bad.jsonl")
    assert (
        str(e.value)
        == f"{bucket}/in/bad.jsonl: row 2: malformed JSON (Expecting property name enclosed in double quotes)"
    )
    with pytest.raises(UserError, match="no such file"):
        io.check_input_file(f"{bucket}/in/missing.jsonl")
    io.check_input_file(f"{bucket}/in/prompts.parquet")


def test_prompts_and_pairs_at_a_uri(bucket):
    from diversens.prompts.loading import load_prompts
    from diversens.training.pairs_input import read_pairs

    storage.write_text(f"{bucket}/p.jsonl", json.dumps({"prompt": "Name ten nouns."}) + "\n")
    assert load_prompts(f"{bucket}/p.jsonl").messages[0][0]["content"] == "Name ten nouns."
    pairs = [{"prompt": "q", "chosen": "a b", "rejected": "c"}]
    io.write_parquet(pa.Table.from_pylist(pairs), f"{bucket}/pairs.parquet")
    assert read_pairs(f"{bucket}/pairs.parquet").to_pylist() == pairs


def test_a_model_at_a_uri_is_fetched_once_per_version(bucket, tmp_path, monkeypatch):
    from diversens import models

    monkeypatch.setenv("DIVERSENS_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(b"w1")
    storage.upload(src, f"{bucket}/train/model")
    first = Path(models.resolve_model(f"{bucket}/train/model"))
    assert (first / "model.safetensors").read_bytes() == b"w1"
    assert Path(models.resolve_model(f"{bucket}/train/model")) == first  # cached
    (src / "model.safetensors").write_bytes(b"w2-new")
    storage.replace_dir(src, f"{bucket}/train/model")  # published again: fetched again
    second = Path(models.resolve_model(f"{bucket}/train/model"))
    assert second != first and (second / "model.safetensors").read_bytes() == b"w2-new"
    with pytest.raises(UserError, match="no config.json there"):
        models.check_model(f"{bucket}/nothing")


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
