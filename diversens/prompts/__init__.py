"""Prompt sets and tasks: the registered task families (train/eval splits, follow-ups, segment
splitters, format rules) and user prompt files."""

from diversens.prompts import tasks  # noqa: F401  (registers every task family)
from diversens.prompts.config import PromptsConfig
from diversens.prompts.custom import CUSTOM
from diversens.prompts.loading import load_prompts, read_prompts
from diversens.prompts.registry import (
    compliance_issue,
    default_followups,
    known_tasks,
    literature_samples,
    register,
    render,
    segments,
    spec,
    task_names,
)
from diversens.prompts.spec import TaskSpec
from diversens.prompts.splits import build_prompts, eval_prompts, prompt_id, training_prompts

__all__ = [
    "CUSTOM",
    "PromptsConfig",
    "TaskSpec",
    "build_prompts",
    "compliance_issue",
    "default_followups",
    "eval_prompts",
    "known_tasks",
    "literature_samples",
    "load_prompts",
    "prompt_id",
    "read_prompts",
    "register",
    "render",
    "segments",
    "spec",
    "task_names",
    "training_prompts",
]
