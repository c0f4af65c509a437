"""Output layout checked before work: a path the run creates at its output (logs/, parts/, stage
dirs, summary files) taken by something of the other kind (a file where a directory goes, a
directory where a file goes; at a URI an object where a prefix goes) is refused through the CLI
in one line naming it, exit 2, before Ray starts (`ray.init` fails these tests, conftest) and
before anything is created."""

import json
from pathlib import Path

import pytest

from diversens import storage
from diversens.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


def prompts(t: Path) -> str:
    (t / "p.jsonl").write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
    return str(t / "p.jsonl")


def objects(uri: str) -> set[str]:
    fs, root = storage.filesystem(uri)
    found = fs.get_file_info(storage.pafs.FileSelector(root, recursive=True))
    return {f.path.removeprefix(root + "/") for f in found}


def refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    "command, taken, folder",
    [
        ("generate-pairs", "logs", True),  # a FileExistsError traceback after Ray started
        ("generate-pairs", "parts", True),
        ("generate-pairs", "scored", True),
        ("generate-pairs", "run_summary.json", False),
        ("generate-pairs", "pairs_random.parquet", False),
        ("pipeline", "pairs", True),
        ("pipeline", "eval/parts", True),
        ("pipeline", "train/diverse-ns/model", True),
    ],
)
def test_a_local_path_of_the_other_kind_is_refused_before_anything_is_made(
    command, taken, folder, tmp_path, capsys
):
    out = tmp_path / "run"
    (out / taken).parent.mkdir(parents=True)
    if folder:
        (out / taken).write_text("mine")
    else:
        (out / taken).mkdir()
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    err = refused([command, prompts(tmp_path), "--config", TINY, "-o", str(out)], capsys)
    what = "is a file, where this run makes a directory" if folder else (
        "is a directory, where this run writes a file")  # fmt: skip
    assert err == (f"diversens {command}: error: output {out}: {out / taken} {what}; move it away "
                   "or name another output")  # fmt: skip
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # no lock, no logs/


def test_generate_checks_what_it_writes_beside_its_file(tmp_path, capsys):
    (tmp_path / "cands.parts").write_text("mine")
    out = tmp_path / "cands.parquet"
    err = refused(["generate", prompts(tmp_path), "-o", str(out)], capsys)
    assert f"{tmp_path / 'cands.parts'} is a file, where this run makes a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cands.parts", "p.jsonl"]


@pytest.mark.parametrize("taken", ["run", "run/parts", "run/scored"])
def test_an_object_where_a_prefix_is_needed_is_refused(taken, bucket, tmp_path, capsys):
    storage.write_text(f"{bucket}/{taken}", "mine")
    before = objects(bucket)
    out = f"{bucket}/run"
    err = refused(["generate-pairs", prompts(tmp_path), "--config", TINY, "-o", out], capsys)
    assert err == (f"diversens generate-pairs: error: output {out}: {bucket}/{taken} is an object, "
                   "where this run makes a directory; move it away or name another output")  # fmt: skip
    assert objects(bucket) == before  # no run/ marker, no lock


def test_an_object_above_the_output_is_refused(bucket, tmp_path, capsys):
    storage.write_text(f"{bucket}/study", "mine")
    err = refused(["generate-pairs", prompts(tmp_path), "--config", TINY, "-o",
                   f"{bucket}/study/run"], capsys)  # fmt: skip
    assert f"{bucket}/study is an object, where this run makes a directory" in err
    assert objects(bucket) == {"study"}
