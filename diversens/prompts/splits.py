"""The built-in prompt splits: every registered family's eval items, or its training items.

The eval split is exactly the families' eval items (docs/design.md §7: one DAT prompt, one PGT
prompt, 15 AUT objects, 7 CWT triples) in their reported framing. Training prompts come from the
same families with other items, drawn reproducibly from a seed; no eval prompt, nor a rewording
of one, can appear in a training split (each family's module says how it holds them out).

`prompt_id` is a stable hash of task + item + variant: the same prompt gets the same id on every
machine and in every run, whatever the seed that drew it.
"""

from __future__ import annotations

import hashlib
import json
import random

import pandas as pd

from diversens.prompts.registry import render, spec, task_names

COLUMNS = ["prompt_id", "task", "messages", "meta"]


def prompt_id(task: str, item: str, variant: str = "") -> str:
    """Stable 16-hex id of task + item + variant (unit separator keeps the parts apart)."""
    return hashlib.sha256("\x1f".join((task, item, variant)).encode()).hexdigest()[:16]


def _row(task: str, item: str, variant: str, split: str, **meta) -> dict:
    return {
        "prompt_id": prompt_id(task, item, variant),
        "task": task,
        "messages": [{"role": "user", "content": render(task, item, variant)}],
        "meta": json.dumps({"split": split, "item": item, "variant": variant, **meta}),
    }


def eval_prompts() -> pd.DataFrame:
    """The eval split: one prompt per eval item of every family."""
    rows = [_row(t, item, variant, "eval") for t in task_names()
            for item, variant in spec(t).eval_items]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def training_prompts(num_per_task: int = 250, seed: int = 0) -> pd.DataFrame:
    """Up to `num_per_task` training prompts per family, drawn reproducibly from `seed`.

    Finite families give at most their size: 30 DAT and 70 PGT variants, ~400 AUT objects; CWT
    triples are practically unlimited.
    """
    if num_per_task < 0:
        raise ValueError(f"num_per_task must be >= 0, got {num_per_task}")
    rows = []
    for task in task_names():
        rng = random.Random(f"{seed}:{task}")  # per-task stream: adding a task changes no other
        picked = spec(task).training_items(num_per_task, rng)
        rows += [_row(task, item, variant, "train", seed=seed) for item, variant in picked]
    return pd.DataFrame(rows, columns=COLUMNS)


def build_prompts(split: str, num_per_task: int = 250, seed: int = 0) -> pd.DataFrame:
    """The `train` or `eval` prompt table (docs/design.md §6 prompts contract)."""
    if split == "eval":
        return eval_prompts()
    if split == "train":
        return training_prompts(num_per_task, seed)
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
