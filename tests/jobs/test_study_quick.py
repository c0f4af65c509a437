"""The study's quick variant (docs/results.md): configs/study.yaml end to end — every strategy
selected, DPO on the same number of pairs per trained strategy, eval with length change — on
8 prompts, short answers and one small optimiser step, through the CLI as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_files import report_hashes

from diversens.selection.rules import STRATEGIES
from diversens.weights import ADAPTER_WEIGHTS, PACKED

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "diversens"
# The overrides that make the study quick; the rest is configs/study.yaml as run by hand.
QUICK = [
    "--pairs.prompts.num_per_task", "2",
    "--pairs.sampling.num_samples_per_prompt", "4", "--pairs.sampling.num_first_turn", "2",
    "--pairs.sampling.max_new_tokens", "96", "--pairs.sampling.prompts_per_chunk", "8",
    "--train_strategies", "random,quality", "--train.max_steps", "1", "--train.warmup_ratio", "0",
    "--train.per_device_train_batch_size", "2", "--train.max_length", "128",
    "--eval.sampling.max_new_tokens", "48", "--eval.sampling.max_new_tokens_per_task", "",
    "--eval.num_samples", "dat=3,pgt=3,aut=1,cwt=1", "--eval.num_bootstrap", "200",
]  # fmt: skip
CONSOLE: list[str] = []  # what the run printed


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "quick"
    # A relative output, as in the README's run (Ray Train needs its checkpoint path absolute).
    proc = subprocess.run(
        [str(CLI), "pipeline", "--config", str(ROOT / "configs" / "study.yaml"), *QUICK,
         "-o", out.name],
        capture_output=True, text=True, timeout=1500, cwd=out.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    CONSOLE[:] = proc.stderr.splitlines() + proc.stdout.splitlines()  # results come last
    return out, json.loads((out / "pipeline_summary.json").read_text())


def test_every_strategy_selected_and_reported(run):
    out, summary = run
    assert summary["complete"] and set(summary["pairs"]["pairs"]) == set(STRATEGIES)
    report = (out / "pairs" / "selection_report.md").read_text()
    assert "Spearman" in report and "diverse-ns-symmetric" in report
    one_sided = pd.read_parquet(out / "pairs" / "pairs.parquet")
    assert (one_sided.chosen_n_words >= one_sided.rejected_n_words).all()


def test_every_prompt_accounted_for_in_every_strategy(run):
    """Each scored prompt has a pair or a reason in every strategy; the rest were quarantined."""
    out, summary = run
    pairs = summary["pairs"]
    scored = len(pd.read_parquet(out / "pairs" / "scored", columns=["prompt_id"]))
    assert scored + sum(pairs["prompts_quarantined"].values()) == pairs["yield"]["prompts"] == 8
    for strategy in STRATEGIES:
        dropped = sum(pairs["prompts_without_pair"][strategy].values())
        assert pairs["pairs"][strategy] + dropped == scored, strategy


def test_trained_strategies_see_the_same_number_of_pairs(run):
    out, summary = run
    counts = summary["pairs"]["pairs"]
    n = min(counts["random"], counts["quality"])
    for strategy in ("random", "quality"):
        used = pd.read_parquet(out / "train" / strategy / "pairs.parquet")
        first = pd.read_parquet(out / "pairs" / f"pairs_{strategy}.parquet").head(n)
        assert list(used.prompt_id) == list(first.prompt_id)
        assert summary["train"][strategy]["pairs"] == n


def test_eval_reports_length_change_per_tuned_model(run):
    out, summary = run
    lengths = pd.read_csv(out / "eval" / "length_change.csv")
    assert list(dict.fromkeys(lengths.model)) == ["base", "random", "quality"]  # the null first
    all_tasks = lengths[lengths.task == "all"]
    assert (all_tasks.ci_low <= all_tasks.delta_words).all()
    assert (all_tasks.delta_words <= all_tasks.ci_high).all()
    assert "Length change per task" in (out / "eval" / "eval_report.md").read_text()


def test_console_is_short_and_worker_output_goes_to_the_logs(run):
    """Engines and trainers print inside Ray's workers: that goes to OUT/logs/workers.log, and
    the console keeps the step lines and the final summary."""
    out, _ = run
    console = CONSOLE
    assert len(console) <= 40, "\n".join(console)
    noise = ("pid=", "Traceback", "it/s]")  # worker lines, tracebacks, tqdm bars
    assert not [line for line in console if any(n in line for n in noise)]
    times, where = console[-1].split("; ")
    assert where == f"summary: {out.name}/pipeline_summary.json"
    assert times.startswith("minutes per stage: generate-pairs ") and " train " in times
    # The same figures as the summary's, every stage timed
    summary = json.loads((out / "pipeline_summary.json").read_text())
    assert list(summary["wall_s"]) == ["generate-pairs", "train", "eval"]
    assert times.endswith(f"eval {summary['wall_s']['eval'] / 60:.1f}")
    for run in summary["train"].values():  # each DPO run's phases add up to its wall time
        phases = run["phases_s"]
        parts = sum(v for k, v in phases.items() if k not in ("per_step_s", "wall_s", "fixed_s"))
        assert phases["worker_start_s"] > 0 and abs(parts - phases["wall_s"]) < 0.1, phases
    workers = (out / "logs" / "workers.log").read_text().splitlines()
    assert any("MapWorker(MapBatches(SampleStage))" in line for line in workers)
    assert any("RayTrainWorker" in line for line in workers)
    assert "Ray's own logs" in (out / "logs" / "diversens.log").read_text()


def report(*argv: str) -> None:
    proc = subprocess.run([str(CLI), "report", *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_report_rebuilds_the_runs_tables_and_plots_byte_for_byte(run, tmp_path):
    out, _ = run
    report(str(out), "-o", str(tmp_path / "rebuilt"))
    expected = report_hashes(out)
    assert {"pairs/selection_report.md", "pairs/selection_lengths.png", "eval/eval_report.md",
            "eval/delta_dd.csv", "eval/length_change.csv", "eval/quality_change.csv",
            "eval/across_samples.csv",
            "eval/decile_map.csv", "eval/eval_summary.csv", "eval/eval_diverse_not_short.png",
            "train/random/train_log.png", "train/quality/train_log.csv"} <= set(expected)  # fmt: skip
    assert report_hashes(tmp_path / "rebuilt") == expected


def packed(rel: Path) -> str:
    """Where an artifact copy keeps a run's file: adapter weights xz-compressed."""
    return f"{rel}{PACKED}" if rel.name in ADAPTER_WEIGHTS else str(rel)


def test_artifacts_leave_out_weights_checkpoints_chunks_and_logs_and_rebuild(run, tmp_path):
    out, _ = run
    dest = tmp_path / "artifacts"
    report(str(out), "--artifacts", str(dest))
    for skipped in ("train/random/model", "checkpoints", "pairs/parts", "eval/parts", "logs"):
        assert (out / skipped).is_dir() and not (dest / skipped).exists(), skipped
    for kept in ("pairs/scored", "pairs/pairs.parquet", "pairs/run_summary.json",
                 "train/random/train_summary.json", "eval/outputs.parquet",
                 "eval/eval_summary.json", "pipeline_summary.json",
                 *(packed(p.relative_to(out)) for p in out.glob("train/*/adapter/*"))):  # fmt: skip
        assert (dest / kept).exists(), kept
    assert report_hashes(dest) == report_hashes(out)
    report(str(dest), "-o", str(tmp_path / "again"))
    assert report_hashes(tmp_path / "again") == report_hashes(dest)
