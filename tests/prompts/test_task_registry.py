"""The task registry: every registered family brings all its parts, and a new family registered
in one place reaches the splits, segments, compliance, follow-ups and sample counts."""

import json
import pkgutil
import random
from dataclasses import replace

import pytest

from diversens.evaluation.config import EvalConfig
from diversens.prompts import (
    CUSTOM,
    TaskSpec,
    compliance_issue,
    default_followups,
    eval_prompts,
    known_tasks,
    literature_samples,
    load_prompts,
    prompt_id,
    register,
    registry,
    render,
    segments,
    spec,
    task_names,
    tasks,
    training_prompts,
)
from diversens.prompts.nouns import nouns
from diversens.sampling.config import SamplingConfig
from diversens.scoring.config import QualityConfig

FALLBACKS = QualityConfig(scorer="none")


def test_every_module_of_the_tasks_package_registers_its_task():
    modules = {m.name for m in pkgutil.iter_modules(tasks.__path__)}
    assert set(task_names()) == modules == {"dat", "pgt", "aut", "cwt"}
    assert task_names() == ("dat", "pgt", "aut", "cwt")  # the splits' order, the paper's
    assert known_tasks() == (*task_names(), "custom")


@pytest.mark.parametrize("task", task_names())
def test_every_registered_task_has_all_parts(task):
    s = spec(task)
    assert s.name == task
    assert all(render(task, item, variant).strip() for item, variant in s.eval_items)
    assert s.followup.strip() and default_followups()[task] == s.followup
    assert literature_samples()[task] == s.literature_samples >= 1
    item, variant = s.eval_items[0]
    meta = {"item": item, "variant": variant}
    assert compliance_issue(s.example_answer, task, meta, FALLBACKS) is None
    assert compliance_issue("", task, meta, FALLBACKS) == "empty"
    assert len(segments(s.example_answer, task)) >= 2
    drawn = s.training_items(5, random.Random(0))
    assert 1 <= len(drawn) <= 5 and not set(drawn) & set(s.eval_items)


def test_custom_is_the_fallback_for_user_prompts_and_unknown_tasks():
    assert spec("custom") is spec("haiku") is spec(None) is CUSTOM
    assert compliance_issue("anything goes", "haiku", {}, FALLBACKS) is None
    assert default_followups()["custom"] == CUSTOM.followup
    assert segments("- one\n- two", "haiku") == ["one", "two"]


def test_register_refuses_incomplete_or_taken_names():
    with pytest.raises(ValueError, match="missing render, eval_items"):
        register(TaskSpec(name="bare", followup="Again."))
    with pytest.raises(ValueError, match="already registered"):
        register(spec("dat"))
    with pytest.raises(ValueError, match="already registered"):
        register(replace(spec("dat"), name="custom"))


def _haiku_issue(text, meta, fallbacks):
    return None if len(text.strip().splitlines()) == 3 else "haiku_not_three_lines"


HAIKU = TaskSpec(
    name="haiku",
    followup="Now write a different haiku on the same subject.",
    segments=lambda text: [line.strip() for line in text.splitlines() if line.strip()],
    compliance=_haiku_issue,
    render=lambda item, variant: f"Write a haiku about the {item}.",
    eval_items=(("moon", ""), ("heron", "")),
    training_items=lambda n, rng: [(w, "") for w in rng.sample(nouns(), n)],
    literature_samples=5,
    held_out_words=frozenset({"moon", "heron"}),  # not in the noun list: no family's draw changes
    example_answer="Pale moon on water\nthe river carries its light\nnowhere, and back home",
    order=50,
)


@pytest.fixture
def haiku(monkeypatch):
    """HAIKU registered in a copy of the registry, as a module of the tasks package would."""
    before = training_prompts(3, seed=1)
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    register(HAIKU)
    return before


def test_a_new_task_flows_through_prompts_segments_compliance_and_configs(haiku, tmp_path):
    assert task_names()[-1] == "haiku"
    assert render("haiku", "owl", "") == "Write a haiku about the owl."
    ev = eval_prompts()
    assert prompt_id("haiku", "moon", "") in set(ev[ev.task == "haiku"].prompt_id)
    train = training_prompts(3, seed=1)
    assert (train.task == "haiku").sum() == 3
    # Per-task seed streams: the other families draw what they drew before.
    assert train[train.task != "haiku"].reset_index(drop=True).equals(haiku)

    poem = HAIKU.example_answer
    assert segments(poem, "haiku") == poem.splitlines()
    assert compliance_issue(poem, "haiku", {}, FALLBACKS) is None
    assert compliance_issue("One line only.", "haiku", {}, FALLBACKS) == "haiku_not_three_lines"

    cfg = SamplingConfig(max_new_tokens_per_task={"haiku": 40})
    assert cfg.followup("haiku") == HAIKU.followup and cfg.max_tokens("haiku") == 40
    assert SamplingConfig(followups={"haiku": "Another."}).followup("haiku") == "Another."
    assert EvalConfig().num_samples["haiku"] == 5

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "A haiku on rain.", "task": "haiku"}) + "\n")
    assert load_prompts(path).task.tolist() == ["haiku"]
