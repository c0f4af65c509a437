"""`diversens report` on a synthetic finished run, written as the jobs write theirs (the same
report functions, fed with what a job holds or wrote): the rebuild from the files gives the same
bytes, in place, under -o and in an artifact copy; no Ray and no model code is imported; a missing
or damaged input is one line and exit code 2. tests/jobs/test_study_quick.py checks the same on a
real run."""

import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from report_files import report_hashes

from diversens.artifacts import MARKER
from diversens.cli import main
from diversens.evaluation.config import EvalConfig
from diversens.evaluation.report import write_tables
from diversens.evaluation.tables import rank
from diversens.io import write_parquet, write_summary
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import pairs_file, write_scored
from diversens.schema import PAIR_MEASURES
from diversens.selection.report import write_selection_report
from diversens.training.logs import write_logs

TASKS = ("dat", "pgt", "aut", "cwt")
WORDS = np.array("sea clock rain dog lamp river stone cloud bread violin".split())
HEAVY = ("ray", "vllm", "torch", "transformers", "sentence_transformers", "trl", "deepspeed")
SKIPPED = ("model", "checkpoints", "parts", "logs")


def write_pairs_stage(out: Path, rng: np.random.Generator) -> None:
    cfg = GeneratePairsConfig(compare_strategies=["random"])
    k, n = 4, 12

    def lists(values):
        return [list(values[i * k : (i + 1) * k]) for i in range(n)]

    valid = rng.random(n * k) > 0.2
    scored = pa.table({
        "prompt_id": [f"p{i}" for i in range(n)],
        "task": [TASKS[i % 4] for i in range(n)],
        "n_words": lists(rng.integers(5, 80, n * k).astype(float)),
        "n_tokens": lists(rng.integers(8, 120, n * k)),
        "valid": lists(valid),
        "reject_reason": lists(np.where(valid, None, "truncated")),
        "entropy": lists(rng.random(n * k) * 5),
        "ttr": lists(rng.random(n * k)),
        "quality": lists(rng.random(n * k)),
    })  # fmt: skip
    write_scored([scored], out / "scored")
    pairs = {}
    for strategy in cfg.strategies:
        m = int(rng.integers(3, 9))
        sides = {
            f"{s}_{x}": rng.random(m) * 50 for x in PAIR_MEASURES for s in ("chosen", "rejected")
        }
        pairs[strategy] = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(m)],
                                        "task": [TASKS[i % 4] for i in range(m)], **sides,
                                        "strategy": strategy, "margin": rng.random(m)})  # fmt: skip
        table = pa.Table.from_pandas(pairs[strategy], preserve_index=False)
        write_parquet(table, pairs_file(out, strategy, cfg.selection.strategy))
    drops = {s: {"no_admissible_pair": n - len(p), "not_in_top_n": 0} for s, p in pairs.items()}
    report = write_selection_report(out, out / "scored", pairs, drops, prompts=n + 1, quarantined=1)
    write_summary(out / "run_summary.json", {"prompts": n + 1, "prompts_quarantined": {"long": 1},
                                             "prompts_without_pair": drops, **report,
                                             "config": cfg})  # fmt: skip


def write_train_stage(out: Path) -> None:
    history = [{"loss": 0.69 - 0.02 * s, "rewards/margins": 0.1 * s, "rewards/chosen": 0.05 * s,
                "rewards/rejected": -0.05 * s, "rewards/accuracies": 0.5, "step": s}
               for s in (1, 2, 3)] + [{"train_runtime": 12.5, "step": 3}]  # fmt: skip
    write_logs(history, out)
    write_summary(out / "train_summary.json", {"name": "dpo-random"})


def write_eval_stage(out: Path, rng: np.random.Generator) -> None:
    cfg = EvalConfig(models=["base=base-model", "random=tuned-model"], dd_measures=["entropy", "ttr"],
                     num_length_buckets=2, min_outputs_per_bucket=3, num_bootstrap=50)  # fmt: skip
    keys = [(m, seed, t, f"{t}-{p}", s) for m, _, seed in cfg.model_runs() for t in TASKS
            for p in range(3) for s in range(4)]  # fmt: skip
    n = len(keys)
    outputs = pd.DataFrame(keys, columns=["model", "seed", "task", "source_prompt_id", "sample"])
    outputs["prompt_id"] = outputs.source_prompt_id + "#" + outputs.pop("sample").astype(str)
    outputs["subset"] = 0.0
    outputs["finish_reason"] = np.where(rng.random(n) < 0.2, "length", "stop")
    outputs["response"] = [" ".join(rng.choice(WORDS, rng.integers(3, 30))) for _ in range(n)]
    outputs["valid"] = pd.Series(rng.random(n) > 0.1, dtype=object)  # as exploded in the job
    for m in [*cfg.per_output_measures, *cfg.across_sample_measures, "quality"]:
        outputs[m] = rng.integers(3, 30, n).astype(float) if m == "n_words" else rng.random(n)
    outputs["dat_score"] = np.where(outputs.task == "dat", rng.random(n) * 100, np.nan)
    outputs, dmap = rank(outputs, cfg)
    write_parquet(pa.Table.from_pandas(outputs, preserve_index=False), out / "outputs.parquet")
    write_summary(out / "eval_summary.json", {**write_tables(out, outputs, dmap, cfg),
                                              "config": cfg})  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A pipeline's finished run: pairs, one training, eval, and what a copy leaves out."""
    run, rng = tmp_path_factory.mktemp("finished") / "run", np.random.default_rng(0)
    write_pairs_stage(run / "pairs", rng)
    write_train_stage(run / "train" / "random")
    write_eval_stage(run / "eval", rng)
    write_summary(run / "pipeline_summary.json", {"stages": ["generate-pairs", "train", "eval"]})
    for big in ("train/random/model/model.safetensors", "checkpoints/dpo-random/c.pt",
                "pairs/parts/chunk.parquet", "logs/diversens.log", "eval/.outputs.parquet.x.tmp",
                "train/random/adapter/adapter_model.safetensors"):  # fmt: skip
        (run / big).parent.mkdir(parents=True, exist_ok=True)
        (run / big).write_bytes(b"x")
    return run


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A copy of the finished run for one test to change."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def cli(*argv: str) -> subprocess.CompletedProcess:
    """`diversens ARGV` in a fresh interpreter; its last stdout line lists the heavy modules it
    imported."""
    code = ("import sys\nfrom diversens.cli import main\nrc = main(sys.argv[1:])\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY})))\n"
            "sys.exit(rc)")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_report_rebuilds_every_table_and_plot_with_no_ray_or_model_code(run_dir, tmp_path):
    other = tmp_path / "other"
    done = cli("report", str(run_dir), "-o", str(other))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"  # no Ray, vLLM, torch or trainer imported
    expected = report_hashes(run_dir)
    assert {"pairs/selection_report.md", "pairs/selection_lengths.png", "train/random/train_log.png",
            "train/random/train_log.csv", "eval/eval_report.md", "eval/delta_dd.csv",
            "eval/across_samples.csv", "eval/eval_deciles.png"} <= set(expected)  # fmt: skip
    assert report_hashes(other) == expected


def test_report_in_place_rewrites_the_same_bytes(run_dir, capsys):
    before = report_hashes(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert report_hashes(run_dir) == before
    assert "rebuilt " + str(run_dir / "eval" / "eval_report.md") in capsys.readouterr().out
    assert [p.name for p in run_dir.rglob(".*")] == [".outputs.parquet.x.tmp"]  # the planted one


def test_a_run_of_some_stages_rebuilds_what_it_has(run_dir, tmp_path):
    def stages(out: Path) -> set[str]:
        assert main(["report", str(run_dir), "-o", str(out)]) == 0
        return {p.split("/")[0] for p in report_hashes(out)}

    (run_dir / "eval").rename(tmp_path / "eval-alone")
    assert stages(tmp_path / "no-eval") == {"pairs", "train"}
    shutil.rmtree(run_dir / "train")
    assert stages(tmp_path / "pairs-only") == {"pairs"}
    # One stage's own output (`diversens eval -o OUT`) is a run too
    assert main(["report", str(tmp_path / "eval-alone"), "-o", str(tmp_path / "eval-out")]) == 0
    assert "eval_report.md" in report_hashes(tmp_path / "eval-out")


def test_later_rounds_pairs_and_training_are_rebuilt_too(run_dir, tmp_path, capsys):
    """A run of two rounds (`rounds: 2`): round 2's pairs and training, under round-2/, are
    rebuilt beside round 1's, the same bytes."""
    for stage in ("pairs", "train"):
        shutil.copytree(run_dir / stage, run_dir / "round-2" / stage)
    expected = report_hashes(run_dir)
    assert {"round-2/pairs/selection_report.md", "round-2/train/random/train_log.png"} <= set(
        expected
    )
    assert main(["report", str(run_dir), "-o", str(tmp_path / "out")]) == 0
    assert report_hashes(tmp_path / "out") == expected
    rebuilt = capsys.readouterr().out
    assert f"rebuilt {tmp_path / 'out' / 'round-2' / 'train' / 'random'}" in rebuilt


def test_artifacts_leave_out_weights_checkpoints_chunks_and_logs(run_dir, tmp_path, capsys):
    dest = tmp_path / "artifacts"
    assert main(["report", str(run_dir), "--artifacts", str(dest)]) == 0
    copied = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert not [p for p in copied if set(Path(p).parts) & set(SKIPPED) or "/." in f"/{p}"]
    assert {"train/random/adapter/adapter_model.safetensors.xz", "pairs/scored/part-00000.parquet",
            "eval/outputs.parquet", "pipeline_summary.json", MARKER} <= copied  # fmt: skip
    packed = dest / "train/random/adapter/adapter_model.safetensors.xz"
    assert lzma.decompress(packed.read_bytes()) == b"x"  # the adapter's weights, compressed
    assert capsys.readouterr().out.startswith(f"copied {len(copied) - 1} files (")
    assert report_hashes(dest) == report_hashes(run_dir)
    assert main(["report", str(dest), "-o", str(tmp_path / "again")]) == 0
    assert report_hashes(tmp_path / "again") == report_hashes(dest)


def test_artifacts_update_an_earlier_copy_of_the_same_run_only(run_dir, tmp_path, capsys):
    for stage in ("pairs", "eval"):  # the training alone is quicker to report
        shutil.rmtree(run_dir / stage)
    dest = tmp_path / "artifacts"
    (run_dir / "study.yaml").write_text("seed: 1\n")
    assert main(["report", str(run_dir), "--artifacts", str(dest)]) == 0
    (run_dir / "study.yaml").write_text("seed: 2\n")
    (run_dir / "pipeline_summary.json").unlink()  # gone from the run: gone from the copy
    assert main(["report", str(run_dir), "--artifacts", str(dest)]) == 0
    assert (dest / "study.yaml").read_text() == "seed: 2\n"
    assert not (dest / "pipeline_summary.json").exists()
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["report", str(run_dir), "--artifacts", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("exists and is not empty, nor an earlier artifact copy of "
                        f"{run_dir}; name a new directory")  # fmt: skip
    assert "\n" not in err and (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def _damage(path: Path, how: str) -> None:
    if how == "remove":
        path.unlink()
    elif how == "garble":
        path.write_bytes(b"not what it should be")
    else:  # a summary entry changed or dropped
        summary = json.loads(path.read_text())
        key, _, value = how.partition("=")
        summary.pop(key) if not value else summary.update({key: json.loads(value)})
        path.write_text(json.dumps(summary))


@pytest.mark.parametrize(("target", "how", "message"), [
    ("pairs/pairs_random.parquet", "remove", "{f}: no such file"),
    ("pairs/scored/part-00000.parquet", "garble", "{f}: not a readable Parquet file"),
    ("eval/outputs.parquet", "garble", "{f}: not a readable Parquet file"),
    ("eval/eval_summary.json", "complete=false", "{f}: the stage did not finish"),
    ("eval/eval_summary.json", "config", "{f}: no entry 'config' (written by an older"),
    ("eval/eval_summary.json", 'config={"num_bootstrap": 0}', "{f}: field config.num_bootstrap"),
    ("pairs/run_summary.json", "garble", "{f}: not readable JSON"),
    ("train/random/train_log.json", "garble", "{f}: not readable JSON"),
])  # fmt: skip
def test_a_missing_or_damaged_input_is_one_line_naming_it(run_dir, tmp_path, capsys, target,
                                                          how, message):  # fmt: skip
    _damage(run_dir / target, how)
    assert main(["report", str(run_dir), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert message.format(f=run_dir / target, run=run_dir) in err


def test_no_run_there_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("none: no such directory; give a run's output directory")
    assert f"{tmp_path}: no finished stage to report" in err[1]
