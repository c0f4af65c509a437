"""Prompt sets: the four creative task families (train/eval splits) and user prompt files."""

from diversens.prompts.config import PromptsConfig
from diversens.prompts.loading import load_prompts, read_prompts
from diversens.prompts.tasks import (
    EVAL_AUT_OBJECTS,
    EVAL_CWT_TRIPLES,
    EVAL_WORDS,
    TASKS,
    build_prompts,
    eval_prompts,
    prompt_id,
    training_prompts,
)

__all__ = [
    "EVAL_AUT_OBJECTS",
    "EVAL_CWT_TRIPLES",
    "EVAL_WORDS",
    "PromptsConfig",
    "TASKS",
    "build_prompts",
    "eval_prompts",
    "load_prompts",
    "prompt_id",
    "read_prompts",
    "training_prompts",
]
