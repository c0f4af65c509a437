"""Chunk plans and the part store, without Ray: keys, complete-chunk writes, resume bookkeeping."""

import json

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diversens.jobs.chunks import (
    CHUNK,
    PartStore,
    chunk_frames,
    passes,
    plan_chunks,
    run_chunks,
)


def prompts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "x": range(n)})


@given(n=st.integers(1, 60), size=st.integers(1, 9))
def test_plan_covers_every_prompt_once_in_consecutive_chunks(n, size):
    planned = plan_chunks(prompts(n), size, "fp")
    frames = chunk_frames(planned)
    assert pd.concat(frames)["prompt_id"].tolist() == prompts(n)["prompt_id"].tolist()
    assert [len(f) for f in frames[:-1]] == [size] * (len(frames) - 1)
    assert 1 <= len(frames[-1]) <= size
    assert len({f[CHUNK].iloc[0] for f in frames}) == len(frames)


def test_keys_depend_on_fingerprint_and_members_only():
    a = plan_chunks(prompts(5), 2, "fp")
    assert a[CHUNK].tolist() == plan_chunks(prompts(5), 2, "fp")[CHUNK].tolist()
    assert set(a[CHUNK]).isdisjoint(plan_chunks(prompts(5), 2, "other")[CHUNK])
    # The same first chunk in a longer run keeps its key: its part is reused.
    assert plan_chunks(prompts(7), 2, "fp")[CHUNK][0] == a[CHUNK][0]


def rows_of(planned: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(planned.assign(y=planned.x * 10), preserve_index=False)


def test_sink_writes_a_chunk_only_once_all_its_rows_arrived(tmp_path):
    store = PartStore(tmp_path / "parts")
    planned = plan_chunks(prompts(5), 2, "fp")
    table = rows_of(planned)
    sink = store.sink(planned)
    sink.add(table.slice(1, 1))  # half of chunk 0
    assert store.done() == set() and sink.written == 0
    sink.add(table.slice(4, 1))  # chunk 2 (a single row)
    sink.add(table.slice(0, 1))  # chunk 0 complete
    assert store.done() == {planned[CHUNK][0], planned[CHUNK][4]}
    assert store.pending(planned)["prompt_id"].tolist() == ["p2", "p3"]
    with pytest.raises(RuntimeError, match="incomplete chunks"):
        sink.consume([table.slice(2, 1)])


def test_fill_runs_only_missing_chunks_and_read_keeps_plan_order(tmp_path):
    store = PartStore(tmp_path / "parts")
    planned = plan_chunks(prompts(5), 2, "fp")
    seen = []

    class Rows:  # what `build` returns: anything with iter_batches, like a Ray Dataset
        def __init__(self, todo):
            seen.append(todo["prompt_id"].tolist())
            self.table = rows_of(todo)

        def iter_batches(self, **_):
            yield from (self.table.slice(i, 1) for i in reversed(range(self.table.num_rows)))

    store.sink(planned.iloc[:2]).consume([rows_of(planned.iloc[:2])])  # an interrupted run
    assert store.fill(planned, Rows) == {"chunks": 3, "reused": 1, "written": 2}
    assert seen == [["p2", "p3", "p4"]]
    assert store.fill(planned, Rows) == {"chunks": 3, "reused": 3, "written": 0}
    assert len(seen) == 1, "a finished run builds nothing"
    out = store.read(planned)
    assert out["prompt_id"].to_pylist() == [f"p{i}" for i in range(5)]
    assert out["y"].to_pylist() == [0, 10, 20, 30, 40]


def runs(n: int, per_run: int, size: int) -> pd.DataFrame:
    """A plan of `n` model runs, each planned in chunks of its own (as the eval plans them)."""
    return pd.concat(
        [plan_chunks(prompts(per_run).assign(run=f"r{i}"), size, f"fp{i}") for i in range(n)],
        ignore_index=True,
    )


@given(n=st.integers(1, 7), per_run=st.integers(1, 5), per_pass=st.integers(-1, 8))
def test_passes_take_every_row_once_in_plan_order_whole_runs_per_pass(n, per_run, per_pass):
    planned = runs(n, per_run, 2)
    got = list(passes(planned, "run", per_pass))
    assert pd.concat(got).index.tolist() == planned.index.tolist()
    if per_pass <= 0:
        assert len(got) == 1
    else:
        assert [g.run.nunique() for g in got[:-1]] == [per_pass] * (len(got) - 1)
        assert 1 <= got[-1].run.nunique() <= per_pass
        assert sum(g.run.nunique() for g in got) == n, "a run is never split between passes"
    assert list(passes(planned.iloc[:0], "run", per_pass)) == []


def test_fill_in_passes_writes_each_pass_before_building_the_next(tmp_path):
    """A build that yields nothing until its end (the eval materialises its samples): stopped in
    its third pass, the first two passes' parts are kept and the rerun builds only the rest."""
    store = PartStore(tmp_path / "parts")
    planned = runs(5, 3, 2)  # 5 runs x 2 chunks
    built = []

    class Rows:
        def __init__(self, todo):
            built.append(sorted(set(todo.run)))
            if len(built) == 3:
                raise KeyboardInterrupt  # stopped while the third pass samples
            self.table = rows_of(todo)

        def iter_batches(self, **_):
            yield self.table

    with pytest.raises(KeyboardInterrupt):
        store.fill(planned, Rows, by="run", per_pass=2)
    assert built == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert store.done() == set(planned[planned.run.isin(["r0", "r1", "r2", "r3"])][CHUNK])
    built.clear()
    assert store.fill(planned, Rows, by="run", per_pass=2) == {
        "chunks": 10, "reused": 8, "written": 2,
    }  # fmt: skip
    assert built == [["r4"]]
    assert store.read(planned)["y"].to_pylist() == planned.x.mul(10).tolist()


def test_run_chunks_builds_only_missing_chunks_and_sets_quarantined_prompts_aside(tmp_path):
    store, side_file = PartStore(tmp_path / "parts"), tmp_path / "quarantine.jsonl"
    built = []

    class Rows:  # what `build` returns: a row per prompt; p1 is one the engine could not take
        def __init__(self, todo):
            built.append(todo["prompt_id"].tolist())
            held = ["too_long: needs 9" if p == "p1" else None for p in todo["prompt_id"]]
            self.table = rows_of(todo.assign(task="aut", messages="m", quarantine=held))

        def iter_batches(self, **_):
            yield self.table

    rows, chunks, held = run_chunks(store, plan_chunks(prompts(4), 2, "fp"), Rows, side_file)
    assert built == [["p0", "p1", "p2", "p3"]] and chunks["written"] == 2
    assert rows["prompt_id"].to_pylist() == ["p0", "p2", "p3"] and held == {"too_long": 1}
    assert {CHUNK, "quarantine"}.isdisjoint(rows.column_names)
    # A longer plan with the same fingerprint: its first two chunks are the parts written above.
    rows, chunks, held = run_chunks(store, plan_chunks(prompts(5), 2, "fp"), Rows, side_file)
    assert built[1:] == [["p4"]] and chunks == {"chunks": 3, "reused": 2, "written": 1}
    assert rows["y"].to_pylist() == [0, 20, 30, 40] and held == {"too_long": 1}
    quarantined = [json.loads(line) for line in side_file.read_text().splitlines()]
    assert [(q["prompt_id"], q["quarantine"]) for q in quarantined] == [("p1", "too_long: needs 9")]


def test_temporary_files_are_not_parts_and_missing_parts_fail_read(tmp_path):
    store = PartStore(f"file://{tmp_path}/parts")  # the URI form goes through pyarrow too
    planned = plan_chunks(prompts(3), 2, "fp")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / f".{planned[CHUNK][0]}.parquet.x.tmp").write_text("half")
    assert store.done() == set()
    with pytest.raises(RuntimeError, match="2 chunk"):
        store.read(planned)


def test_scored_dir_keeps_plan_order_across_files(tmp_path, monkeypatch):
    from diversens.jobs import generate_pairs

    monkeypatch.setattr(generate_pairs, "SCORED_ROWS_PER_FILE", 3)
    ids = [f"p{i}" for i in range(25)]  # 9 files: part-00010 must not sort before part-00002
    generate_pairs.write_scored([pa.table({"prompt_id": ids})], tmp_path / "scored")
    assert pd.read_parquet(tmp_path / "scored")["prompt_id"].tolist() == ids
    assert [p.name for p in tmp_path.iterdir()] == ["scored"], "no temporary left behind"


def test_resume_keys_ignore_pool_size_but_not_what_decides_rows():
    from diversens.jobs.config import GeneratePairsConfig
    from diversens.jobs.generate_pairs import scored_fingerprint
    from diversens.sampling import SamplingConfig

    def key(**sampling):
        return scored_fingerprint(GeneratePairsConfig(sampling=SamplingConfig(**sampling)))

    assert key(max_actors=8, min_actors=2, max_restarts=0) == key()  # a rerun may grow the pool
    assert key(seed=1) != key() and key(temperature=0.5) != key() and key(model="other") != key()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "short"])
def test_a_damaged_part_is_set_aside_with_a_line_and_redone(tmp_path, caplog, damage):
    """A part that does not read back whole (garbage bytes, a file cut short, fewer rows than
    its chunk) is renamed to <key>.parquet.damaged on the rerun, one line says so, and only its
    chunk is built again."""
    store = PartStore(tmp_path / "parts")
    planned = plan_chunks(prompts(5), 2, "fp")
    built = []

    class Rows:
        def __init__(self, todo):
            built.append(todo["prompt_id"].tolist())
            self.table = rows_of(todo)

        def iter_batches(self, **_):
            yield self.table

    store.fill(planned, Rows)
    key = planned[CHUNK][2]  # the second chunk: p2, p3
    part = tmp_path / "parts" / f"{key}.parquet"
    if damage == "garbage":
        part.write_bytes(b"\x00\xffnot parquet at all")
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:40])
    else:
        store.write(key, rows_of(planned.iloc[2:3]))
    with caplog.at_level("WARNING", logger="diversens"):
        assert store.fill(planned, Rows) == {"chunks": 3, "reused": 2, "written": 1}
    assert built[1:] == [["p2", "p3"]]
    assert (tmp_path / "parts" / f"{key}.parquet.damaged").exists()
    lines = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("1 damaged chunk set aside and redone: "), lines
    assert f"{key}.parquet.damaged" in lines[0]
    assert store.read(planned)["y"].to_pylist() == [0, 10, 20, 30, 40]
    assert store.set_aside_damaged(planned) == [], "the redone part reads back whole"
