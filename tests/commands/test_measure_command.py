"""`diversens measure`: real run on the shipped sample, and one-line errors (exit 2)."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diversens import measures

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "diversens" / "data" / "sample_responses.jsonl"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diversens.cli", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help_explains_commands():
    proc = cli("--help")
    assert proc.returncode == 0 and "measure" in proc.stdout
    proc = cli("measure", "--help")
    assert "--text_field" in proc.stdout and "--help-all" in proc.stdout
    proc = cli("measure", "--help-all")  # every option, each with its help
    assert "--mattr_window" in proc.stdout and "MATTR moving-window" in proc.stdout


@pytest.mark.slow
def test_measure_sample_writes_all_columns(tmp_path):
    out = tmp_path / "sub" / "measured.parquet"
    proc = cli("measure", str(SAMPLE), "-o", str(out), "--rows_per_chunk", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("[diversens] measure: ") and "rows to do" in lines[0], lines
    assert re.fullmatch(r"\[diversens\] measure: (\d+)/\1 rows, [\d.,]+ rows/s", lines[-1]), lines
    df = pd.read_parquet(out)
    src = pd.read_json(SAMPLE, lines=True)
    assert list(df["response"]) == list(src["response"])  # order and rows kept
    assert set(measures.names(lambda m: m.default)) <= set(df.columns)
    assert "token_dsi" not in df.columns  # not a default: asked for by name
    # Across-sample measures: every row carries its prompt's value (rows grouped by prompt_id).
    for name in ("distinct_4", "vendi"):
        assert (df.groupby("prompt_id")[name].nunique(dropna=False) == 1).all()
    per_prompt = df.groupby("prompt_id").size()
    assert (df.loc[df.prompt_id.map(per_prompt) == 1, "vendi"].dropna() == 1.0).all()
    nonempty = df["response"].str.len() > 0
    assert df.loc[nonempty, ["ttr", "entropy", "div_across"]].notna().all().all()
    assert df.loc[~nonempty, "n_words"].eq(0).all() and df.loc[~nonempty, "ttr"].isna().all()
    # the repetitive story is less diverse than the varied one of the same prompt
    cwt = df[df.prompt_id == "cwt-stamp"].reset_index()
    assert cwt.loc[1, "ttr"] < cwt.loc[0, "ttr"] and cwt.loc[1, "dsi"] < cwt.loc[0, "dsi"]
    assert [p.name for p in out.parent.iterdir()] == ["measured.parquet"]


@pytest.mark.slow
def test_measure_candidate_lists_in_a_bucket(bucket, tmp_path):
    """Input and output at a URI (the default output beside the input), as on a cluster."""
    from diversens import storage

    rows = [
        {"prompt_id": "p1", "task": "cwt", "responses": ["One. Two words.", "Red fox. Blue sky."]},
        {"prompt_id": "p2", "task": "aut", "responses": ["1. Hat\n2. Cup", "", "1. Pen\n2. Ink"]},
    ]
    storage.write_text(f"{bucket}/in/cands.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    proc = cli("measure", f"{bucket}/in/cands.jsonl", "--text_field", "responses")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote 2 rows to {bucket}/in/cands.measured.parquet"
    fs, path = storage.filesystem(f"{bucket}/in/cands.measured.parquet")
    df = pd.read_parquet(path, filesystem=fs)
    assert [len(v) for v in df["ttr"]] == [2, 3]
    assert len(set(df["vendi"][1])) == 1 and 1.0 < df["vendi"][1][0] <= 2.0  # one empty of 3
    assert np.isnan(df["div_across"][1][1]) and not np.isnan(df["div_across"][1][0])


def test_missing_file(tmp_path):
    proc = cli("measure", str(tmp_path / "none.jsonl"))
    assert_one_line_error(proc, "none.jsonl", "no such file")


def test_file_without_text_field(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text('{"text": "hello"}\n')
    assert_one_line_error(cli("measure", str(src)), "x.jsonl", "'response'", "text")
    assert not list(tmp_path.glob("*.parquet"))


def test_malformed_jsonl_names_row(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"response": "ok"}\n{"response": \n')
    assert_one_line_error(cli("measure", str(src)), "bad.jsonl", "row 2", "malformed JSON")


def test_non_utf8_names_row(tmp_path):
    src = tmp_path / "bytes.jsonl"
    src.write_bytes(b'{"response": "ok"}\n{"response": "\xff\xfe"}\n')
    assert_one_line_error(cli("measure", str(src)), "row 2", "not UTF-8")


def test_non_string_text_names_row(tmp_path):
    src = tmp_path / "types.jsonl"
    src.write_text('{"response": "fine"}\n{"response": 3}\n')
    assert_one_line_error(cli("measure", str(src)), "row 2", "'response'")


def test_bad_option_type_names_option():
    assert_one_line_error(
        cli("measure", str(SAMPLE), "--mattr_window", "wide"), "mattr_window", "int"
    )


def test_invalid_option_value_names_option():
    assert_one_line_error(cli("measure", str(SAMPLE), "--mtld_threshold", "1.5"), "mtld_threshold")


def test_measure_says_its_rows_before_the_embedder_loads_and_promises_no_resume(
    tmp_path, capsys, monkeypatch
):
    """The first line comes as soon as the input is read, before the embedder loads (a minute
    on a big file); Ctrl-C then says what is true of measure: nothing written, no resume."""
    from diversens.cli import main
    from diversens.measures import semantic

    class Loading:  # the embedder's load, interrupted by Ctrl-C
        def __init__(self, *args, **kwargs):
            print("EMBEDDER LOADING", file=sys.stderr)
            raise KeyboardInterrupt

    monkeypatch.setattr(semantic, "Embedder", Loading)
    out = tmp_path / "m.parquet"
    assert main(["measure", str(SAMPLE), "-o", str(out)]) == 130
    lines = capsys.readouterr().err.splitlines()
    rows = len(SAMPLE.read_text().splitlines())
    assert lines[0].startswith(f"[diversens] measure: {rows} rows to do; loading")
    assert lines[1:] == [
        "EMBEDDER LOADING",
        "diversens measure: interrupted; nothing was written; rerunning measures every row again",
    ]
    assert not out.exists()


def test_progress_lines_say_rows_per_second(caplog):
    from diversens.console import Progress

    now = [0.0]
    progress = Progress("measure", 3000, every_s=10, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="diversens"):
        for _ in range(6):
            now[0] += 5
            progress.add(500)
    assert [r.getMessage() for r in caplog.records] == [
        "measure: 500/3,000 rows, 100 rows/s",  # the first step
        "measure: 1,500/3,000 rows, 100 rows/s",  # 10 s later
        "measure: 2,500/3,000 rows, 100 rows/s",
        "measure: 3,000/3,000 rows, 100 rows/s",  # the last
    ]


class FakeEmbedder:
    """Unit vectors from each text's hash: the across-sample measures without a model."""

    def __init__(self, *args, **kwargs):
        pass

    def encode(self, texts):
        vectors = np.array([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8)
                            for t in texts]).reshape(len(texts), 8)  # fmt: skip
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def within_diversity(self, responses, tasks=None):
        return np.full(len(responses), 0.5)


def test_chunks_hold_whole_groups_and_read_only_as_far_as_needed():
    """The reader is pulled one table at a time: when a chunk comes out, no more than the chunk
    and one table of the file have been read, and a chunk never splits a group."""
    import pyarrow as pa

    from diversens.commands.measure import chunks

    read_rows, most, total = 100, 250, 2000
    pulled = [0]

    def tables():
        for start in range(0, total, read_rows):
            pulled[0] += read_rows
            yield pa.table({"row": list(range(start, start + read_rows))})

    ends = np.arange(3, total + 1, 3)  # groups of three rows
    ends[-1] = total
    done, sizes = 0, []
    for chunk in chunks(tables(), ends, most, target_s=10, clock=lambda: 0.0):
        assert chunk["row"].to_pylist() == list(range(done, done + chunk.num_rows))
        done += chunk.num_rows
        sizes.append(chunk.num_rows)
        assert done in set(ends) and pulled[0] - done < read_rows  # nothing read ahead
    assert done == total and sizes[0] <= 18 and max(sizes) <= most + 2


def test_reading_a_file_in_tables_is_lazy(tmp_path):
    """The first table comes before the rest of the file is read: a broken last line fails only
    when the reader gets there."""
    from diversens import io
    from diversens.errors import UserError

    src = tmp_path / "big.jsonl"
    src.write_text("".join(f'{{"response": "r{i}"}}\n' for i in range(50)) + "{broken\n")
    tables = io.iter_tables(src, 20)
    assert next(tables).num_rows == 20 and next(tables).num_rows == 20
    with pytest.raises(UserError, match="row 51: malformed JSON"):
        next(tables)


def test_measure_streams_a_large_file_with_progress_after_its_first_chunk(
    tmp_path, monkeypatch, caplog
):
    """measure never reads the whole file into memory (50 MB ran at 1.3 rows/s, with no line
    for minutes): one pass finds the rows and groups, the next streams them a chunk at a time,
    and the first progress line comes after the first small chunk, before the file's second
    table is read; the output is the input's rows in order, measured."""
    from diversens import io
    from diversens.cli import main
    from diversens.commands import measure
    from diversens.measures import semantic

    rows = 3 * measure.READ_ROWS
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps({"prompt_id": f"p{i // 3}", "response": f"Row {i}. Yes."})
                           + "\n" for i in range(rows)))  # fmt: skip
    monkeypatch.setattr(semantic, "Embedder", FakeEmbedder)

    def whole(*args, **kwargs):
        raise AssertionError("the whole file was read into memory")

    monkeypatch.setattr(io, "read_table", whole)
    events, iter_tables = [], io.iter_tables

    def reading(path, size, schema=None):
        for table in iter_tables(path, size, schema):
            events.append(("read", schema is not None, table.num_rows))
            yield table

    monkeypatch.setattr(io, "iter_tables", reading)
    handler = logging.Handler()
    handler.emit = lambda record: events.append(("line", record.getMessage()))
    logging.getLogger("diversens").addHandler(handler)
    try:
        assert main(["measure", str(src), "-o", str(tmp_path / "m.parquet")]) == 0
    finally:
        logging.getLogger("diversens").removeHandler(handler)
    streamed = [e for e in events if e[0] == "line" or e[1]]  # after the first pass
    first_progress = next(i for i, e in enumerate(streamed) if e[0] == "line" and "rows/s" in e[1])
    assert sum(e[2] for e in streamed[:first_progress] if e[0] == "read") <= measure.READ_ROWS
    df = pd.read_parquet(tmp_path / "m.parquet")
    assert list(df["response"]) == [f"Row {i}. Yes." for i in range(rows)]
    assert df["n_words"].eq(3).all() and df["vendi"].notna().all()
