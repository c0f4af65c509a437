"""The eval job on a real local Ray with the bundled model: the base against itself gives ΔDD 0,
every report file is written, and the per-output table keeps every sample."""

import json

import numpy as np
import pandas as pd
import pytest

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs.evaluate import run
from diversens.prompts import eval_prompts

pytestmark = pytest.mark.slow

SAMPLES = {"dat": 2, "pgt": 2, "aut": 1, "cwt": 1}
CONFIG = {
    "models": ["base=smollm2-135m-instruct", "again=smollm2-135m-instruct"],
    "sampling": {"max_new_tokens": 40, "prompts_per_chunk": 8},
    "num_samples": SAMPLES, "num_length_buckets": 2, "num_bootstrap": 200,
}  # fmt: skip


@pytest.fixture(scope="module")
def result(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return run(config.from_dict(EvalConfig, CONFIG), out), out


def test_same_model_has_zero_delta_dd(result):
    summary, out = result
    deltas = pd.read_csv(out / "delta_dd.csv")
    again = deltas[deltas.model == "again"]
    assert len(again) > 0 and np.allclose(again.delta_dd, 0.0)
    assert all(v[0] == 0.0 for k, v in summary["delta_dd_all"].items() if k.startswith("again/"))
    lengths = pd.read_csv(out / "length_change.csv")
    assert set(lengths.model) == {"again"} and set(lengths.task) == {
        "all",
        "dat",
        "pgt",
        "aut",
        "cwt",
    }
    # Same texts: no change; the interval (outputs redrawn per side) straddles it.
    assert np.allclose(lengths.delta_words, 0.0)
    assert (lengths.ci_low <= 0).all() and (lengths.ci_high >= 0).all()
    quality = pd.read_csv(out / "quality_change.csv")
    assert set(quality.task) == set(lengths.task) and np.allclose(quality.delta_quality, 0.0)
    assert (quality.ci_low <= 0).all() and (quality.ci_high >= 0).all()


def test_every_sample_kept_with_deciles(result):
    _, out = result
    outputs = pd.read_parquet(out / "outputs.parquet")
    prompts = eval_prompts()
    want = sum(SAMPLES[t] for t in prompts.task)
    assert (outputs.groupby("model").size() == want).all()
    per_prompt = outputs[outputs.model == "base"].groupby("source_prompt_id").size()
    tasks = prompts.set_index("prompt_id").task
    assert all(per_prompt[p] == SAMPLES[tasks[p]] for p in prompts.prompt_id)
    finite = outputs.decile_ttr.dropna()
    assert len(finite) > 0 and finite.between(1, 10).all()
    assert outputs[outputs.task != "dat"].dat_score.isna().all()


def test_across_sample_measures_per_model_and_task(result):
    """Distinct-n and Vendi: one value per sampled group (every output carries it), reported per
    model and task with the difference from the base; the same model's difference is 0."""
    _, out = result
    outputs = pd.read_parquet(out / "outputs.parquet")
    groups = outputs.groupby(["model", "prompt_id"])
    assert (groups["vendi"].nunique(dropna=False) == 1).all()
    assert (groups["distinct_4"].nunique(dropna=False) == 1).all()
    across = pd.read_csv(out / "across_samples.csv")
    assert {"distinct_1", "distinct_4", "vendi"} <= set(across.measure)
    assert set(across.task) == {"all", "dat", "pgt", "aut", "cwt"}
    again = across[across.model == "again"].dropna(subset=["delta"])
    assert len(again) > 0 and np.allclose(again.delta, 0.0)
    assert "Across-sample diversity" in (out / "eval_report.md").read_text()


def test_report_files(result):
    summary, out = result
    for name in ("eval_report.md", "eval_delta_dd.png", "eval_deciles.png", "eval_lengths.png",
                 "eval_diversity_vs_length.png", "eval_diverse_not_short.png", "decile_map.csv",
                 "eval_summary.csv", "length_change.csv", "quality_change.csv",
                 "across_samples.csv"):  # fmt: skip
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
