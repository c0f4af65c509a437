"""The second pass of generate-pairs over a run's parts (`select_pairs`) against the in-memory
selection it replaced: every part read into one table, the run-level statistics and every
strategy's selection computed from it. Synthetic scored parts, written as `PartSink` writes
them (from pandas, so a part with no rejection types `reject_reason` as a list of nulls)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diversens import config
from diversens.errors import UserError
from diversens.jobs import generate_pairs, quarantine
from diversens.jobs.chunks import CHUNK, PartStore, plan_chunks
from diversens.jobs.config import GeneratePairsConfig
from diversens.selection.report import length_correlations
from diversens.selection.rules import SelectionStats
from diversens.selection.stage import SelectStage
from diversens.selection.topn import BalancedTopN

TASKS = ("dat", "pgt", "aut", "cwt")
CFG = {"sampling": {"num_samples_per_prompt": 6, "prompts_per_chunk": 8},
       "selection": {"num_pairs": 15}}  # fmt: skip
TOO_LONG = "too_long: needs 9000 tokens"


def scored_part(rows: pd.DataFrame, cfg: GeneratePairsConfig, seed: int) -> pa.Table:
    """The rows of one chunk as the first pass writes them; every 13th prompt quarantined."""
    rng, k = np.random.default_rng(seed), cfg.sampling.num_samples_per_prompt
    n = len(rows)
    held = [int(i) % 13 == 5 for i in rows.prompt_id.str[1:]]

    def lists(values):
        return [[] if h else list(v) for h, v in zip(held, values, strict=True)]

    valid = rng.random((n, k)) > (0.2 if seed % 3 else 0.0)  # some parts: nothing rejected
    base = rng.integers(5, 260, (n, 1))
    df = rows[["prompt_id", "task", "messages"]].assign(
        responses=lists([[f"answer {i % 7} {j % 4}" for j in range(k)] for i in range(n)]),
        turn=lists(np.tile([1] * (k // 2) + [2] * (k - k // 2), (n, 1))),
        parent=lists(np.tile([-1] * (k // 2) + list(range(k - k // 2)), (n, 1))),
        finish_reason=lists(np.where(valid, "stop", "length")),
        n_tokens=lists(rng.integers(8, 400, (n, k))),
        truncated=lists(~valid),
        engine="vllm", model="m", sampling="{}", config_hash="h",
        quarantine=[TOO_LONG if h else None for h in held],
        **{m: lists(np.where(rng.random((n, k)) < 0.05, np.nan, rng.random((n, k))))
           for m in cfg.measures},
        quality=lists(-rng.random((n, k)) * 3),
        reject_reason=lists(np.where(valid, None, "truncated")),
        valid=lists(valid),
        chunk=rows[CHUNK],
    )  # fmt: skip
    df["n_words"] = lists((base + rng.integers(-6, 7, (n, k))).astype(float))
    return pa.Table.from_pandas(df, preserve_index=False)


def write_run(root, n: int, cfg: GeneratePairsConfig) -> tuple[PartStore, list[str]]:
    prompts = pd.DataFrame({
        "prompt_id": [f"p{i}" for i in range(n)],
        "task": [TASKS[i % 4] for i in range(n)],
        "messages": [[{"role": "user", "content": f"prompt {i}"}] for i in range(n)],
    })  # fmt: skip
    planned = plan_chunks(prompts, cfg.sampling.prompts_per_chunk, "fp")
    store = PartStore(root / "parts")
    keys = list(dict.fromkeys(planned[CHUNK]))
    for seed, key in enumerate(keys):
        store.write(key, scored_part(planned[planned[CHUNK] == key], cfg, seed))
    return store, keys


def in_memory(store: PartStore, keys: list[str], cfg: GeneratePairsConfig, side_file):
    """What the job did before: every part in one table, quarantined rows split off, stats and
    selection over the whole table."""
    planned = pd.DataFrame({CHUNK: keys})
    scored, held = quarantine.split(store.read(planned).drop_columns([CHUNK]), side_file)
    columns, tasks = generate_pairs.valid_measures(scored)
    stats = SelectionStats.from_columns(columns, tasks)
    tops = {}
    for strategy in cfg.strategies:
        tops[strategy] = BalancedTopN(cfg.selection_for(strategy))
        tops[strategy].add(SelectStage(cfg.selection_for(strategy), stats)(scored.to_pandas()))
    return scored, held, stats, columns, tops


@pytest.fixture
def run_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_pairs, "SCORED_ROWS_PER_FILE", 50)  # several scored/ files
    cfg = config.from_dict(GeneratePairsConfig, CFG)
    store, keys = write_run(tmp_path, 203, cfg)
    return cfg, store, keys, in_memory(store, keys, cfg, tmp_path / "q.jsonl")


def test_split_pass_writes_the_bytes_of_the_whole_table(run_parts, tmp_path):
    cfg, store, keys, (scored, held, *_) = run_parts
    out = tmp_path / "out"
    rows, counts, _ = generate_pairs.split_parts(store, keys, cfg, out)
    assert rows == scored.num_rows and counts == held == {"too_long": 16}
    generate_pairs.write_scored([scored], tmp_path / "whole")
    files = sorted(p.name for p in (out / "scored").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "whole").iterdir()) and len(files) == 4
    for name in files:
        assert (out / "scored" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert (out / quarantine.FILE).read_bytes() == (tmp_path / "q.jsonl").read_bytes()


def test_run_level_stats_from_parts_are_bitwise_those_of_the_whole_table(run_parts):
    cfg, store, keys, (scored, _, stats, columns, _) = run_parts
    names = store.schema(keys).names
    got, missing = generate_pairs.run_level_stats(store.location, keys, names)
    assert got.scales == stats.scales and set(stats.scales) >= {"entropy", "dsi", "quality"}
    assert got.quality_quantiles.tobytes() == stats.quality_quantiles.tobytes()
    assert got.task_quality_quantiles.keys() == stats.task_quality_quantiles.keys() == set(TASKS)
    for task, qq in stats.task_quality_quantiles.items():
        assert got.task_quality_quantiles[task].tobytes() == qq.tobytes(), task
    assert missing == {m: int((~np.isfinite(v)).sum()) for m, v in columns.items()}
    assert missing["entropy"] > 0


def test_every_prompt_quarantined_leaves_the_side_file_and_no_scored(tmp_path):
    cfg = config.from_dict(GeneratePairsConfig, CFG)
    store = PartStore(tmp_path / "parts")
    part = scored_part(pd.DataFrame({"prompt_id": ["p5"], "task": ["dat"], CHUNK: ["c"],
                                     "messages": [[{"role": "user", "content": "x"}]]}), cfg, 1)
    store.write("c", part)
    with pytest.raises(UserError, match=r"every prompt was quarantined \(too_long: 1\)"):
        generate_pairs.split_parts(store, ["c"], cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "scored").exists()
    held = [json.loads(line) for line in (tmp_path / "out" / quarantine.FILE).open()]
    assert [h["prompt_id"] for h in held] == ["p5"]


@pytest.mark.slow
@pytest.mark.parametrize("pinned", [False, True], ids=["anywhere", "on-the-driver-node"])
def test_pass_over_parts_gives_the_pairs_of_the_in_memory_selection(
    ray_local, run_parts, tmp_path, monkeypatch, pinned
):
    """`pinned`: the parts are local on a cluster that may span nodes, so the tasks that read
    them run on the driver's node, reserving no CPU."""
    from diversens.jobs import cluster

    monkeypatch.setattr(cluster, "can_span_nodes", lambda: pinned)
    cfg, store, keys, (scored, held, _, columns, tops) = run_parts
    out, stamp = tmp_path / "out", {"config_hash": "h"}
    got = generate_pairs.select_pairs(store, keys, cfg, out, stamp, prompts=203)
    for strategy, top in tops.items():
        want = pa.Table.from_pandas(top.result().assign(**stamp), preserve_index=False)
        path = generate_pairs.pairs_file(out, strategy, cfg.selection.strategy)
        assert pq.read_table(path).to_pylist() == want.to_pylist(), strategy
        assert got["prompts_without_pair"][strategy] == top.drop_counts(), strategy
        assert got["pairs"][strategy] == len(want) > 0, strategy
    assert got["prompts_quarantined"] == held and got["candidates"] == scored.num_rows * 6
    missing = {m: int((~np.isfinite(v)).sum()) for m, v in columns.items()}
    assert got["valid_candidates_without"] == {m: n for m, n in missing.items() if n}
    whole = length_correlations(scored.to_pandas())
    np.testing.assert_equal(got["length_correlation"], {
        r.measure: [r.spearman_rho, r.ci_low, r.ci_high] for r in whole.itertuples()
    })  # fmt: skip


def test_kept_pairs_do_not_hold_their_batch(run_parts):
    """Arrow → pandas makes each list value a view of one array of its whole batch: a kept pair
    holding it would keep every batch it came from, so the top-N would grow with the run."""
    cfg, *_, (scored, _, stats, _, _) = run_parts
    rows = SelectStage(cfg.selection, stats)(scored.to_pandas())
    batch = pa.Table.from_pandas(rows, preserve_index=False).to_pandas()  # as iter_batches gives
    assert isinstance(batch.chosen.dropna().iloc[0], np.ndarray)
    top = BalancedTopN(cfg.selection)
    top.add(batch)
    kept = [entry[3] for heap in top.cells.values() for entry in heap]
    assert kept and not [v for row in kept for v in row.values() if isinstance(v, np.ndarray)]
