"""`diversens plan`: the figures follow from the config by the README's arithmetic, change when
the config does, and the README's planning table is the command's output."""

import dataclasses
from pathlib import Path

import pytest

from diversens import config
from diversens.cli import main
from diversens.jobs.config import PipelineConfig
from diversens.plan import PlanConfig, memory_per_gpu, render, stages, train_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return config.load(PipelineConfig, ROOT / "configs" / "paper.yaml", None)


def by_name(cfg):
    return {s.name: s for s in stages(cfg, cfg.plan)}


def test_training_arithmetic_of_the_paper_setting(paper):
    # 3,000 pairs, global batch 4 x 2 x 8 = 64 -> 47 steps/epoch, 2 epochs; ~400 tokens/sequence.
    t = train_plan(paper, paper.plan)
    assert t["steps"] == 94 and t["tokens"] == pytest.approx(4.8e6, rel=0.01)
    assert t["flops"] == pytest.approx(3.85e17, rel=0.01)  # 10 N T
    assert t["compute_s"] == pytest.approx(440, rel=0.02)  # 8 A100 at 35% MFU
    assert t["saves"] == 4 and t["save_s"] == pytest.approx(4 * 112.4 / 2, rel=0.01)
    mem = dict(memory_per_gpu(paper, paper.plan))
    assert mem["fp32 master weights + Adam m, v"] == pytest.approx(12.0, rel=0.01)
    assert sum(mem.values()) == pytest.approx(27, abs=1)


def test_stage_arithmetic_and_cost(paper):
    s = by_name(paper)
    # 6,000 x 4 x 250 tokens over 8 engine GPUs at 1,500 tok/s, plus 10 min node start-up.
    assert s["sample"].minutes == pytest.approx(6.0e6 / (8 * 1500) / 60 + 10)
    assert s["sample"].cost(paper.plan) == pytest.approx(8 * 1.21 * s["sample"].minutes / 60)
    assert s["DPO"].cost(paper.plan) == pytest.approx(32.77 * s["DPO"].minutes / 60)
    assert s["head"].minutes == pytest.approx(sum(x.minutes for n, x in s.items() if n != "head"))
    total = sum(x.cost(paper.plan) for x in s.values())
    assert 15 < total < 22  # the README's ~$18


def test_figures_follow_the_config(paper):
    more = dataclasses.replace(paper, pairs=dataclasses.replace(
        paper.pairs, sampling=dataclasses.replace(paper.pairs.sampling, max_actors=16)))  # fmt: skip
    fast = by_name(more)["sample"].minutes - 10
    assert fast == pytest.approx((by_name(paper)["sample"].minutes - 10) / 2)
    h100 = dataclasses.replace(paper, plan=dataclasses.replace(paper.plan, gpu_flops=989e12))
    assert train_plan(h100, h100.plan)["compute_s"] == pytest.approx(140, rel=0.02)


def test_readme_table_is_the_commands_output(paper, capsys):
    assert main(["plan", "--config", str(ROOT / "configs" / "paper.yaml")]) == 0
    printed = capsys.readouterr().out
    assert printed == render(paper, paper.plan)
    table = printed.split("\n\nDPO memory")[0]
    assert table in (ROOT / "README.md").read_text()
    assert "- mfu: 0.35" in printed  # assumptions are shown with the plan


def test_bad_assumption_is_refused():
    with pytest.raises(ValueError, match="mfu"):
        PlanConfig(mfu=1.5)
    with pytest.raises(ValueError, match="node type"):
        PlanConfig(train_node="p5")
