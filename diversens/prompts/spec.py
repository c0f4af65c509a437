"""TaskSpec: everything the pipeline knows about one task, in one value.

A task family (`diversens/prompts/tasks/<name>.py`) builds one spec and registers it
(`diversens.prompts.registry`); every table over tasks (the splits, follow-ups, sample counts,
segment splitters, format rules) is read from the registered specs. User prompts of no family
get the `custom` spec (`diversens.prompts.custom`), which has only the parts that need no
built-in prompts.

Built-in prompts record what they asked for in `meta`: `item` (the AUT object, the CWT words
"a/b/c", the PGT fields "f1,f2") and `variant` (e.g. "n10-w0": a count of 10, wording 0);
`prompt_id` hashes task + item + variant.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diversens.text import generic_segments

Items = list[tuple[str, str]]  # (item, variant) pairs
Render = Callable[[str, str], str]  # (item, variant) -> the user prompt
Splitter = Callable[[str], list[str]]  # an answer -> its segments
# (answer, the prompt's meta, config fallbacks) -> why the answer fails the format, or None. The
# fallbacks are the quality config, duck-typed: each rule reads its own attributes, so prompts
# need not import scoring.
Rule = Callable[[str, dict, Any], str | None]
Draw = Callable[[int, random.Random], Items]  # (n, rng) -> up to n training items


def any_format(text: str, meta: dict, fallbacks: Any) -> None:
    """No format rule: every non-empty answer complies."""
    return None


@dataclass(frozen=True)
class TaskSpec:
    """One task. `name` and `followup` are all a task needs; a registered family also gives
    its built-in prompts (render, eval_items, training_items, literature_samples) and a sample
    `example_answer` (`registry.register` checks they are there).

    - name: the `task` value of prompt and candidate rows.
    - followup: the default second-turn user message asking for a different answer.
    - segments: an answer's units of within-answer semantic diversity.
    - compliance: the format rule (see `Rule`); the registry answers "empty" before calling it.
    - render: the user prompt of one (item, variant).
    - eval_items: the held-out (item, variant) pairs of the eval split (docs/design.md §7).
    - training_items: draws training items; none is an eval item, in any wording.
    - literature_samples: the literature's independent samples per eval prompt.
    - held_out_words: words no family's training prompts may use (its eval items' words).
    - example_answer: an answer to the first eval item that the rule accepts.
    - order: sort key of the families in the built-in splits (the paper's DAT, PGT, AUT, CWT);
      the splits' row order decides which prompts `--prompts.limit` keeps.
    """

    name: str
    followup: str
    segments: Splitter = generic_segments
    compliance: Rule = any_format
    render: Render | None = None
    eval_items: tuple[tuple[str, str], ...] = ()
    training_items: Draw | None = None
    literature_samples: int = 0
    held_out_words: frozenset[str] = frozenset()
    example_answer: str = ""
    order: int = 0


def sample_from(space: Callable[[], Items]) -> Draw:
    """The draw of a finite family: up to n distinct items of `space()`, without replacement."""

    def draw(n: int, rng: random.Random) -> Items:
        items = space()
        return rng.sample(items, min(n, len(items)))

    return draw


def asked_item(meta: dict) -> str:
    """The item a built-in prompt asked about ("" for a user prompt)."""
    return str(meta.get("item") or "")


def asked_count(meta: dict) -> int | None:
    """The count a built-in prompt asked for (variant "n10..."), None if it names none."""
    count = re.match(r"n(\d+)", str(meta.get("variant") or ""))
    return int(count.group(1)) if count else None
