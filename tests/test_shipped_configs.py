"""The shipped configs parse into the typed pipeline config, and each stage reads its section."""

from pathlib import Path

import pytest
import yaml

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs.config import GeneratePairsConfig, PipelineConfig
from diversens.models import BUILTIN_MODELS
from diversens.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
# Model families, told by name (a built-in name also by its bundled file, diversens.models).
FAMILIES = ("llama", "smollm", "qwen", "mistral", "gemma", "phi")
# (config, stage) whose quality model is knowingly of another family than its generator, with
# why; a stage listed here whose models do match fails, so no reason outlives its config.
OTHER_FAMILY_QUALITY: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("name", SHIPPED)
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


def family(model: str) -> str:
    builtin = BUILTIN_MODELS.get(model)
    text = f"{model} {builtin.relpath if builtin else ''}".lower()
    found = [f for f in FAMILIES if f in text]
    assert len(found) == 1, f"cannot tell the family of {model!r} (known: {', '.join(FAMILIES)})"
    return found[0]


def quality_stages(cfg: PipelineConfig) -> dict[str, tuple[str, str | None]]:
    """Each stage that scores quality: its generator and its quality model (None: compliance
    only). Eval samples train.model and the models tuned from it (the pipeline's eval.models)."""
    return {"pairs": (cfg.pairs.sampling.model, cfg.pairs.scoring.quality_model),
            "eval": (cfg.train.model, cfg.eval.scoring.quality_model)}  # fmt: skip


def test_family_is_told_by_name_and_by_bundled_file():
    assert family("meta-llama/Llama-3.1-8B-Instruct") == "llama"
    assert family("smollm2-135m-instruct") == "smollm"
    assert family("Qwen/Qwen2.5-7B-Instruct") == "qwen"
    with pytest.raises(AssertionError, match="cannot tell the family"):
        family("/models/my-tuned-model")


@pytest.mark.parametrize("name", SHIPPED)
def test_quality_is_scored_by_a_model_of_the_generators_family(name):
    """A fluency score is a model's log-probability of the text: scoring an 8B model's answers
    with a 135M model would measure the small model, not the answers."""
    cfg = config.load(PipelineConfig, ROOT / "configs" / name, None)
    for stage, (generator, scorer) in quality_stages(cfg).items():
        if scorer is None:
            continue
        why = OTHER_FAMILY_QUALITY.get((name, stage))
        if family(scorer) != family(generator):
            assert why, (f"{name}: {stage}.scoring.quality scores {generator}'s answers with "
                         f"{scorer}; use a {family(generator)} model, or list ({name!r}, "
                         f"{stage!r}) in OTHER_FAMILY_QUALITY with why")  # fmt: skip
        else:
            assert why is None, f"{name}: {stage} is listed in OTHER_FAMILY_QUALITY but matches"


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
