"""The eval job on a real local Ray with the bundled model: the base at its map seed is the
reference, the base and a second label of the same model at the eval seed are sampled alike
(the same rows, so the same comparison), every report file is written, and the per-output table
keeps every sample. Every pool asks for the session's logical GPUs, the path a GPU cluster
takes (see tests/jobs/test_pools.py; the pipeline tests run eval on CPU pools)."""

import json

import numpy as np
import pandas as pd
import pytest
from test_pools import GPU_POOLS

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs.evaluate import run
from diversens.prompts import eval_prompts

pytestmark = pytest.mark.slow

SAMPLES = {"dat": 2, "pgt": 2, "aut": 1, "cwt": 1}
CONFIG = {
    "models": ["base=smollm2-135m-instruct", "again=smollm2-135m-instruct"],
    "sampling": {**GPU_POOLS["sampling"], "prompts_per_chunk": 8},
    "scoring": GPU_POOLS["scoring"],
    "num_samples": SAMPLES, "num_length_buckets": 2, "num_bootstrap": 200,
}  # fmt: skip


@pytest.fixture(scope="module")
def result(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return run(config.from_dict(EvalConfig, CONFIG), out), out


def test_the_same_model_at_the_same_seed_gets_the_nulls_comparison(result):
    summary, out = result
    deltas = pd.read_csv(out / "delta_dd.csv")
    base, again = (deltas[deltas.model == m].reset_index(drop=True) for m in ("base", "again"))
    assert len(again) > 0 and np.allclose(again.delta_dd, base.delta_dd)
    assert list(dict.fromkeys(deltas.model)) == ["base", "again"]  # the null first
    lengths = pd.read_csv(out / "length_change.csv")
    assert set(lengths.model) == {"base", "again"}
    assert list(lengths[lengths.model == "base"].task) == ["aut", "cwt", "dat", "pgt", "all"]
    for name, column in (("length_change", "delta_words"), ("quality_change", "delta_quality")):
        t = pd.read_csv(out / f"{name}.csv")
        assert np.allclose(t[t.model == "again"][column], t[t.model == "base"][column])
        assert (t.ci_low <= t[column]).all() and (t[column] <= t.ci_high).all()
    weights = json.loads((out / "eval_summary.json").read_text())["task_weights"]["weights"]
    assert weights == {t: 0.25 for t in ("aut", "cwt", "dat", "pgt")}


def test_eval_with_gpu_pools(result):
    summary, out = result
    outputs = pd.read_parquet(out / "outputs.parquet")
    # DAT and PGT: 1 prompt x 2 samples each; AUT 15 x 1; CWT 7 x 1; at the map seed and the
    # eval seed.
    per_seed = {"aut": 15, "cwt": 7, "dat": 2, "pgt": 2}
    base = outputs[outputs.model == "base"]
    assert base.groupby(["seed", "task"]).size().to_dict() == {
        (s, t): n for s in (0, 1) for t, n in per_seed.items()}  # fmt: skip
    assert outputs.response.str.len().gt(0).all()
    assert summary["chunks"]["written"] == summary["chunks"]["chunks"] > 0


def test_every_sample_kept_with_deciles(result):
    _, out = result
    outputs = pd.read_parquet(out / "outputs.parquet")
    prompts = eval_prompts()
    want = sum(SAMPLES[t] for t in prompts.task)
    runs = outputs.groupby(["model", "seed"]).size()
    assert runs.to_dict() == {("again", 1): want, ("base", 0): want, ("base", 1): want}
    per_prompt = outputs[(outputs.model == "base") & (outputs.seed == 0)].groupby(
        "source_prompt_id").size()  # fmt: skip
    tasks = prompts.set_index("prompt_id").task
    assert all(per_prompt[p] == SAMPLES[tasks[p]] for p in prompts.prompt_id)
    finite = outputs.decile_ttr.dropna()
    assert len(finite) > 0 and finite.between(1, 10).all()
    assert outputs[outputs.task != "dat"].dat_score.isna().all()


def test_across_sample_measures_per_subset_and_task(result):
    """Distinct-n and Vendi: one value per subset of a prompt's samples at one seed (every
    output carries it), reported per task only (no pooled row), the length change beside."""
    _, out = result
    outputs = pd.read_parquet(out / "outputs.parquet")
    groups = outputs.groupby(["model", "seed", "source_prompt_id", "subset"])
    assert (groups["vendi"].nunique(dropna=False) == 1).all()
    assert (groups["distinct_4"].nunique(dropna=False) == 1).all()
    across = pd.read_csv(out / "across_samples.csv")
    assert {"distinct_1", "distinct_4", "vendi"} <= set(across.measure)
    assert set(across.task) == {"dat", "pgt", "aut", "cwt"} and "delta_words" in across
    again, base = (across[across.model == m].reset_index(drop=True) for m in ("again", "base"))
    assert len(again) > 0 and np.allclose(again.delta, base.delta, equal_nan=True)
    assert "Not length-controlled" in (out / "eval_report.md").read_text()


def test_report_files(result):
    summary, out = result
    for name in ("eval_report.md", "eval_delta_dd.png", "eval_deciles.png", "eval_lengths.png",
                 "eval_diversity_vs_length.png", "eval_diverse_not_short.png", "decile_map.csv",
                 "eval_summary.csv", "length_change.csv", "quality_change.csv",
                 "across_samples.csv", "length_buckets.csv", "truncation.csv"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "eval_summary.json").read_text())["base"] == "base"
    assert "again" in (out / "eval_report.md").read_text()


def test_rerun_reuses_every_chunk_and_gives_the_same_outputs(result, ray_local):
    summary, out = result
    before = pd.read_parquet(out / "outputs.parquet")
    again = run(config.from_dict(EvalConfig, CONFIG), out)
    chunks = summary["chunks"]["chunks"]
    assert summary["chunks"] == {"chunks": chunks, "reused": 0, "written": chunks}
    assert again["chunks"] == {"chunks": chunks, "reused": chunks, "written": 0}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "outputs.parquet"), before)
    assert again["delta_dd_all"] == summary["delta_dd_all"]
