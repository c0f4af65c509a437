"""The task registry (name → TaskSpec) and the per-task tables and dispatch read from it.

Each module of `diversens/prompts/tasks/` registers its family when imported, and importing
`diversens.prompts` imports them all, so a new task is one new module there. Every lookup
reads the registry when called, never a copy taken at import.
"""

from __future__ import annotations

from typing import Any

from diversens.prompts.custom import CUSTOM
from diversens.prompts.spec import TaskSpec

REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task family; it must bring its built-in prompts and a name of its own."""
    missing = [part for part, given in (
        ("render", spec.render is not None),
        ("eval_items", bool(spec.eval_items)),
        ("training_items", spec.training_items is not None),
        ("literature_samples", spec.literature_samples >= 1),
        ("example_answer", bool(spec.example_answer.strip())),
        ("followup", bool(spec.followup.strip())),
    ) if not given]  # fmt: skip
    if missing:
        raise ValueError(f"task {spec.name!r}: missing {', '.join(missing)}")
    if spec.name in REGISTRY or spec.name == CUSTOM.name:
        raise ValueError(f"task {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def task_names() -> tuple[str, ...]:
    """The registered families, in the order of the built-in splits."""
    return tuple(sorted(REGISTRY, key=lambda name: (REGISTRY[name].order, name)))


def known_tasks() -> tuple[str, ...]:
    """Every valid `task` value: the families and custom."""
    return (*task_names(), CUSTOM.name)


def spec(task: str | None) -> TaskSpec:
    """A task's spec; custom for user prompts and any unknown name."""
    return REGISTRY.get(task or "", CUSTOM)


def render(task: str, item: str, variant: str) -> str:
    """The user prompt text for one (task, item, variant) of a registered family."""
    if task not in REGISTRY:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(task_names())})")
    return REGISTRY[task].render(item, variant)


def segments(text: str, task: str | None = None) -> list[str]:
    """Split an answer into its task's units of within-answer semantic diversity (the generic
    rule for None, custom or unknown tasks; the name is matched case-insensitively)."""
    return spec((task or "").lower()).segments(text)


def compliance_issue(text: str, task: str, meta: dict, fallbacks: Any) -> str | None:
    """Why `text` fails its task's format ("empty" for a blank answer), or None.

    What a prompt asked for comes from its `meta`; `fallbacks` (the quality config) supplies
    the values a prompt without meta leaves open.
    """
    if not text.strip():
        return "empty"
    return spec(task).compliance(text, meta, fallbacks)


def default_followups() -> dict[str, str]:
    """The default second-turn message of every known task."""
    return {name: spec(name).followup for name in known_tasks()}


def literature_samples() -> dict[str, int]:
    """The literature's independent samples per eval prompt, per family."""
    return {name: REGISTRY[name].literature_samples for name in task_names()}


def held_out_words() -> frozenset[str]:
    """Words no training prompt may use: every family's eval words."""
    return frozenset().union(*(s.held_out_words for s in REGISTRY.values()))
