"""Every command's options come from typed config fields, in one flag style."""

import argparse
import re

import pytest

from diversens import config
from diversens.cli import build_parser
from diversens.jobs.config import GenerateConfig, PipelineConfig

# The config file itself and the help (--help, --help-all) are the only options not from a field.
NOT_FIELDS = {"help", "help_all", "config"}


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", list(commands()))
def test_every_option_is_a_field_in_one_style(name):
    for action in commands()[name]._actions:
        if action.dest in NOT_FIELDS or not action.option_strings:
            continue
        assert action.dest.partition(":")[0] in ("cfg", "run"), (name, action.option_strings)
        long = [o for o in action.option_strings if o.startswith("--")]
        assert long == [f"--{action.dest.partition(':')[2]}"], (name, action.option_strings)
        assert re.fullmatch(r"--[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", long[0]), long[0]


def test_a_dotted_flag_and_its_yaml_key_set_the_same_field(tmp_path):
    """pipeline: --pairs.prompts.num_per_task on the command line and pairs.prompts.num_per_task
    in the file are one option; the command line wins."""
    path = tmp_path / "p.yaml"
    path.write_text("pairs:\n  prompts: {num_per_task: 7, seed: 3}\n")
    args = build_parser().parse_args(
        ["pipeline", "--config", str(path), "--pairs.prompts.num_per_task", "9", "-o", "o"]
    )
    cfg = config.load(PipelineConfig, path, config.overrides_from_args(args))
    assert (cfg.pairs.prompts.num_per_task, cfg.pairs.prompts.seed) == (9, 3)
    assert config.overrides_from_args(args, "run") == {"output": "o"}


def test_generate_reads_its_part_of_a_pipeline_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "pairs:\n  prompts: {split: eval}\n  sampling: {max_new_tokens: 5}\n"
        "  selection: {num_pairs: 3}\ntrain: {max_steps: 1}\n"
    )
    cfg = config.load(GenerateConfig, path, {}, "pairs", whole=PipelineConfig)
    assert cfg.prompts.split == "eval" and cfg.sampling.max_new_tokens == 5


def test_the_prompts_argument_is_the_file_option():
    args = build_parser().parse_args(["generate-pairs", "p.jsonl", "-o", "o"])
    assert config.overrides_from_args(args) == {"prompts": {"file": "p.jsonl"}}
    args = build_parser().parse_args(["pipeline", "p.jsonl", "-o", "o"])
    assert config.overrides_from_args(args) == {"pairs": {"prompts": {"file": "p.jsonl"}}}
