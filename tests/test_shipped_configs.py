"""The shipped configs parse into the typed pipeline config, and each stage reads its section."""

from pathlib import Path

import pytest
import yaml

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs.config import GeneratePairsConfig, PipelineConfig
from diversens.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["tiny.yaml", "paper.yaml", "study.yaml"])
def test_config_parses_whole_and_by_section(name):
    path = ROOT / "configs" / name
    whole = config.load(PipelineConfig, path, None)
    assert config.load(GeneratePairsConfig, path, None, section="pairs") == whole.pairs
    assert config.load(TrainConfig, path, None, section="train") == whole.train
    assert config.load(EvalConfig, path, None, section="eval") == whole.eval


def test_paper_config_is_the_paper_setting():
    cfg = config.load(PipelineConfig, ROOT / "configs" / "paper.yaml", None)
    assert cfg.pairs.selection.num_pairs == 3000 and cfg.pairs.sampling.engine == "vllm"
    assert cfg.train.deepspeed == "zero3" and cfg.train.num_workers == 8 and cfg.train.use_gpu
    # ZeRO-3 stays on one node, and that node type offers the accelerator the run asks for.
    assert cfg.train.placement_strategy == "STRICT_PACK"
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    fits = [n for n in cluster.values()
            if n["resources"].get("GPU", 0) >= cfg.train.num_workers
            and f"accelerator_type:{cfg.train.accelerator_type}" in n["resources"]]  # fmt: skip
    assert fits


@pytest.mark.slow  # the output check comes after the built-in model resolves (converts once)
def test_missing_model_path_and_unwritable_output_fail_before_ray(tmp_path, capsys):
    from diversens.cli import main

    argv = [
        "generate-pairs",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--prompts.limit",
        "1",
    ]
    missing = str(tmp_path / "no-such-model")
    assert main([*argv, "--sampling.model", missing, "-o", str(tmp_path / "o")]) == 2
    assert f"model path {missing!r} does not exist" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "run"
    assert main([*argv, "-o", str(out)]) == 2
    assert f"output {out}: cannot write there" in capsys.readouterr().err
