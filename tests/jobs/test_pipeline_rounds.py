"""Rounds (`pipeline.rounds`): round 2 samples with round 1's tuned model and trains from it.

One two-round run of the bundled model at the smallest useful size (8 prompts × 4 candidates,
one DPO step), through the CLI as a user runs it: stopped (SIGTERM) as soon as round 2 starts
sampling, then rerun with the same command, which resumes at round 2 without redoing round 1
and completes with the eval of every round's model."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "diversens"
SMALL = [
    "--pairs.prompts.num_per_task", "2",
    "--pairs.sampling.num_samples_per_prompt", "4", "--pairs.sampling.num_first_turn", "2",
    "--pairs.sampling.max_new_tokens", "48", "--pairs.sampling.max_new_tokens_per_task", "",
    "--pairs.sampling.prompts_per_chunk", "8",
    # random selection always finds pairs among 4 candidates; a 135M model's answers to 8
    # prompts rarely give a length-matched diverse-ns pair
    "--train_strategies", "random", "--rounds", "2", "--rounds_strategy", "random",
    # one step, without warm-up (its one step would be at rate 0: the model unchanged), at a
    # rate that moves a LoRA adapter enough to change what the model samples
    "--train.max_steps", "1", "--train.warmup_ratio", "0", "--train.learning_rate", "1e-3",
    "--train.max_length", "128",
    "--train.num_workers", "1",
    "--eval.sampling.max_new_tokens", "32", "--eval.num_samples", "dat=2,pgt=2,aut=1,cwt=1",
    "--eval.num_bootstrap", "50",
]  # fmt: skip


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file of round 1 (its pairs and tuned model) and its mtime."""
    files = [p for top in ("pairs", "train") for p in sorted((root / top).rglob("*"))]
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns) for p in files if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    out = tmp_path_factory.mktemp("rounds") / "run"
    argv = [str(CLI), "pipeline", "--config", str(ROOT / "configs" / "tiny.yaml"), *SMALL,
            "-o", str(out)]  # fmt: skip
    err = out.parent / "first.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(argv, start_new_session=True, stdout=stderr, stderr=stderr)
    started = out / "round-2" / "pairs" / "run_summary.json"  # written as round 2 starts
    try:
        deadline = time.monotonic() + 1200
        while not started.exists():  # the state, not a guess of time
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "round 2 did not start: " + err.read_text()
            time.sleep(0.2)
        round_1 = digests(out)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stopped = json.loads((out / "pipeline_summary.json").read_text())
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((out / "pipeline_summary.json").read_text())
    return {"out": out, "first_rc": proc.returncode, "stopped": stopped, "round_1": round_1,
            "summary": summary, "console": rerun.stderr + rerun.stdout}  # fmt: skip


def candidates(pairs_dir: Path) -> pd.Series:
    scored = pd.read_parquet(pairs_dir / "scored", columns=["prompt_id", "responses"])
    return scored.set_index("prompt_id").responses.map(tuple).sort_index()


def test_the_stop_lands_in_round_2_and_the_rerun_does_not_redo_round_1(rounds):
    out, summary = rounds["out"], rounds["summary"]
    assert rounds["first_rc"] == 143 and rounds["stopped"]["complete"] is False
    assert "round-2" not in rounds["stopped"].get("tuned_models", {})
    # Round 1's pairs and model were neither sampled, selected nor trained again: every file
    # is the one the first run wrote, byte for byte and untouched.
    assert digests(out) == rounds["round_1"]
    assert summary["pairs"]["done_earlier"] is True
    assert summary["pairs"]["chunks"]["written"] == 0
    assert summary["complete"] is True and summary["rounds"] == 2


def test_round_2_samples_with_round_1s_weights(rounds):
    out, summary = rounds["out"], rounds["summary"]
    round_1 = str(out / "train" / "random" / "model")
    assert summary["round-2"]["sampled_with"] == round_1
    pairs = json.loads((out / "round-2" / "pairs" / "run_summary.json").read_text())
    assert pairs["complete"] and pairs["generator_model"] == round_1
    # The same prompts at the same seeds: sampling is deterministic for a given model (tests/
    # jobs/test_pools.py), so a round-1 rerun gives round 1's candidates; round 2's differ.
    first, second = candidates(out / "pairs"), candidates(out / "round-2" / "pairs")
    assert first.index.equals(second.index)
    assert (first != second).any()


def test_round_2_trains_from_round_1s_model_on_its_own_pairs(rounds):
    out, summary = rounds["out"], rounds["summary"]
    trained = json.loads((out / "round-2" / "train" / "random" / "train_summary.json").read_text())
    # With LoRA the DPO reference is the model trained from with its adapter off: round 1's.
    assert trained["config"]["model"] == str(out / "train" / "random" / "model")
    assert trained["config"]["lora"] is True and trained["config"]["name"] == "dpo-random@r2"
    assert trained["num_pairs"] == summary["round-2"]["pairs"]["pairs"]["random"] > 0
    assert (out / "round-2" / "train" / "random" / "model" / "config.json").is_file()
    models = {"random": out / "train" / "random" / "model",
              "random@r2": out / "round-2" / "train" / "random" / "model"}  # fmt: skip
    assert summary["tuned_models"] == {label: str(path) for label, path in models.items()}


def test_the_eval_compares_every_rounds_model_with_the_base(rounds):
    out = rounds["out"]
    outputs = pd.read_parquet(out / "eval" / "outputs.parquet", columns=["model", "model_path"])
    paths = dict(outputs.drop_duplicates().itertuples(index=False))
    assert paths == {"base": "smollm2-135m-instruct",
                     "random": str(out / "train" / "random" / "model"),
                     "random@r2": str(out / "round-2" / "train" / "random" / "model")}  # fmt: skip
    assert "tuned models: random, random@r2" in rounds["console"]
