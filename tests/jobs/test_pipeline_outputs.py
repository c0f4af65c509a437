"""What the pipeline's steps share under one output (diversens.jobs.pipeline), without Ray:
where each round's pairs and models are, the pairs a later round trains on, and a finished
pairs step found again."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diversens import config
from diversens.io import write_summary
from diversens.jobs.config import PipelineConfig
from diversens.jobs.generate_pairs import finished_run, planned_chunks
from diversens.jobs.pipeline import earlier_pairs_too, tuned_models, write_once
from diversens.storage import Output

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


def pairs(path: Path, prompts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": p, "chosen": "long answer", "rejected": "short"} for p in prompts]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_later_round_mixes_every_earlier_rounds_pairs_first(tmp_path):
    cfg = config.load(PipelineConfig, TINY, {"rounds": 3, "rounds_mix_pairs": True})
    root = Output(str(tmp_path), tmp_path)
    pairs(tmp_path / "pairs" / "pairs.parquet", ["a", "b"])
    pairs(tmp_path / "round-2" / "pairs" / "pairs.parquet", ["c"])
    own = pairs(tmp_path / "round-3" / "pairs" / "pairs.parquet", ["d", "e"])
    mixed = earlier_pairs_too(cfg, root, 3, own, tmp_path / "round-3" / "train" / "p.parquet")
    assert pq.read_table(mixed).column("prompt").to_pylist() == ["a", "b", "c", "d", "e"]


def test_a_derived_pairs_file_is_left_untouched_when_a_rerun_makes_the_same(tmp_path):
    table = pa.table({"prompt": ["a", "b"]})
    path = write_once(table, tmp_path / "p.parquet")
    before = path.stat().st_mtime_ns
    write_once(table, path)
    assert path.stat().st_mtime_ns == before
    write_once(table.slice(0, 1), path)
    assert pq.read_table(path).num_rows == 1


def test_tuned_models_of_every_round_by_label(tmp_path):
    cfg = config.load(PipelineConfig, TINY, {"rounds": 3})
    for where in ("train/diverse-ns/model", "round-2/train/diverse-ns/model"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "config.json").write_text("{}")
    found = tuned_models(cfg, Output(str(tmp_path), tmp_path))
    assert found == {"diverse-ns": str(tmp_path / "train/diverse-ns/model"),
                     "diverse-ns@r2": str(tmp_path / "round-2/train/diverse-ns/model")}  # fmt: skip


def test_a_finished_pairs_step_is_found_only_with_the_same_config_and_prompts(tmp_path):
    import pandas as pd

    cfg = config.load(PipelineConfig, TINY).pairs
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(30)]})
    keys = list(dict.fromkeys(planned_chunks(prompts, cfg).chunk))
    summary = tmp_path / "run_summary.json"
    done = {"config": cfg, "plan": config.config_hash(keys),
            "chunks": {"chunks": len(keys), "reused": 0, "written": len(keys)}}  # fmt: skip
    write_summary(summary, done, complete=False)
    assert finished_run(prompts, cfg, str(tmp_path)) is None  # not finished
    write_summary(summary, done)
    found = finished_run(prompts, cfg, str(tmp_path))
    assert found["done_earlier"] and found["chunks"] == {"chunks": 3, "reused": 3, "written": 0}
    assert finished_run(prompts.iloc[:29], cfg, str(tmp_path)) is None  # other prompts
    other = config.load(PipelineConfig, TINY, {"pairs": {"sampling": {"temperature": 0.5}}}).pairs
    assert finished_run(prompts, other, str(tmp_path)) is None  # other settings
    assert json.loads(summary.read_text())["complete"] is True


@pytest.mark.parametrize("text", ["", '{"complete": tr', "[1, 2]"])
def test_a_damaged_pairs_summary_is_set_aside_and_the_step_runs_again(tmp_path, caplog, text):
    """A pairs step's run_summary.json cut short or overwritten is no finished step: renamed to
    .damaged with one line (as a DPO run's), not a traceback."""
    from diversens.prompts.loading import read_prompts

    cfg = config.load(PipelineConfig, TINY).pairs
    (tmp_path / "run_summary.json").write_text(text)
    with caplog.at_level("WARNING", logger="diversens"):
        assert finished_run(read_prompts(cfg.prompts, "train"), cfg, str(tmp_path)) is None
    assert (tmp_path / "run_summary.json.damaged").read_text() == text
    assert not (tmp_path / "run_summary.json").exists()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "damaged summary set aside, the step runs again from its chunks"
    ]


def test_a_later_rounds_prompts_are_taken_in_turn_from_each_task():
    import pandas as pd

    from diversens.jobs.pipeline import balanced_first

    tasks = ["dat"] * 2 + ["aut"] * 5 + ["cwt"] * 5
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(12)], "task": tasks})
    first = balanced_first(prompts, 8)
    assert first.task.value_counts().to_dict() == {"dat": 2, "aut": 3, "cwt": 3}
    assert first.prompt_id.tolist() == ["p0", "p1", "p2", "p3", "p4", "p7", "p8", "p9"]
    assert balanced_first(prompts, 0) is prompts and balanced_first(prompts, 99) is prompts


def test_the_studys_committed_pairs_are_a_finished_step_of_its_config():
    """docs/results/study/run/pairs was written before rounds and before two sampling options
    (chunks_in_flight, reproducible) existed: its summary has no chunk plan and a config
    without them. Read back with their defaults, it is configs/study.yaml's round-1 step, so a
    later round of the study starts from it; checked by its prompts (scored/ and
    quarantine.jsonl), it is not a finished step for one prompt fewer."""
    from diversens.prompts.loading import read_prompts

    root = Path(__file__).resolve().parents[2]
    cfg = config.load(PipelineConfig, root / "configs" / "study.yaml").pairs
    prompts = read_prompts(cfg.prompts, "train")
    run = str(root / "docs/results/study/run/pairs")
    found = finished_run(prompts, cfg, run)
    assert found["chunks"] == {"chunks": 34, "reused": 34, "written": 0}
    assert found["pairs"]["diverse-ns"] == 221
    assert finished_run(prompts.iloc[1:], cfg, run) is None
    hotter = config.load(PipelineConfig, root / "configs" / "study.yaml",
                         {"pairs": {"sampling": {"temperature": 1.0}}}).pairs  # fmt: skip
    assert finished_run(prompts, hotter, run) is None
