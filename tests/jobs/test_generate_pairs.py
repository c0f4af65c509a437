"""The generate-pairs job end to end on a real local Ray with the bundled models."""

import json

import numpy as np
import pandas as pd
import pytest

from diversens import config
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import run
from diversens.prompts.loading import load_prompts
from diversens.selection.rules import STRATEGIES

pytestmark = pytest.mark.slow

TINY = {
    "sampling": {"max_new_tokens": 96, "temperature": 0.8, "prompts_per_chunk": 2},
    "scoring": {"quality": {"strict_compliance": False}},
    "selection": {"num_pairs": 50},
}


@pytest.fixture(scope="module")
def job(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    # Short custom prompts: a 135M model answers them in a few sentences (DSI needs two).
    src = out.parent / "prompts.jsonl"
    topics = ("the sea", "a old clock", "a rainy city", "a tired dog")
    src.write_text("".join(
        json.dumps({"prompt": f"Write three short sentences about {t}."}) + "\n" for t in topics
    ))  # fmt: skip
    prompts = load_prompts(src)
    summary = run(prompts, config.from_dict(GeneratePairsConfig, TINY), out)
    return prompts, summary, out


def test_outputs_written_and_stamped(job):
    prompts, summary, out = job
    for name in ("pairs.parquet", "selection_report.md", "selection_lengths.png",
                 "selection_gain_vs_length.png", "run_summary.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert (
        json.loads((out / "run_summary.json").read_text())["config_hash"] == summary["config_hash"]
    )


def test_scored_rows_hold_all_candidates_and_measures(job):
    prompts, _, out = job
    scored = pd.read_parquet(out / "scored")
    assert sorted(scored.prompt_id) == sorted(prompts.prompt_id)
    for col in ("responses", "n_words", "entropy", "dsi", "quality", "valid", "reject_reason"):
        assert all(len(v) == 4 for v in scored[col]), col
    valid = np.concatenate(scored.valid.to_list())
    reasons = np.concatenate(scored.reject_reason.to_list())
    assert all((r is None) == v for r, v in zip(reasons, valid, strict=True))


def test_every_prompt_accounted_for_in_every_strategy(job):
    prompts, summary, _ = job
    for strategy in STRATEGIES:
        dropped = sum(summary["prompts_without_pair"][strategy].values())
        assert summary["pairs"][strategy] + dropped == len(prompts), strategy


def test_yield_counts_what_was_generated(job):
    prompts, summary, out = job
    scored = pd.read_parquet(out / "scored")
    tokens = int(np.concatenate(scored.n_tokens.to_list()).sum())  # truncated ones included
    y = json.loads((out / "run_summary.json").read_text())["yield"]
    assert (y["prompts"], y["candidates"], y["generated_tokens"]) == (len(prompts), 16, tokens)
    assert y["tokens_per_candidate"] == pytest.approx(tokens / 16)
    assert y["candidates_lost"] == summary["candidates_rejected"]
    assert y["candidates_valid"] == int(np.concatenate(scored.valid.to_list()).sum())
    for strategy, s in y["strategies"].items():
        assert s["pairs"] == summary["pairs"][strategy]
        assert s["per_100_prompts"] == pytest.approx(100 * s["pairs"] / len(prompts))
        assert s["per_100k_tokens"] == pytest.approx(1e5 * s["pairs"] / tokens)
        assert s["prompts_lost"] == {"quarantined": 0, **summary["prompts_without_pair"][strategy]}
    assert f"{tokens:,} generated tokens" in (out / "selection_report.md").read_text()


def test_pairs_load_in_trl(job, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from diversens.models import resolve_model

    _, summary, out = job
    best = max(STRATEGIES, key=lambda s: summary["pairs"][s])
    assert summary["pairs"][best] > 0, summary["prompts_without_pair"]
    name = "pairs.parquet" if best == "diverse-ns" else f"pairs_{best}.parquet"
    pairs = Dataset.from_parquet(str(out / name))
    path = resolve_model("smollm2-135m-instruct")
    args = DPOConfig(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True,
                     max_length=256)  # fmt: skip
    trainer = DPOTrainer(
        model=path,
        args=args,
        train_dataset=pairs,
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    tokenized = trainer.train_dataset
    assert len(tokenized) == len(pairs)
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(tokenized.column_names)
