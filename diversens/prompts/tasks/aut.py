"""AUT, the Alternate Uses Task: creative uses for an everyday object.

Eval: the literature's 15 objects, 5 uses each (docs/design.md §7). Training: other objects from
the shipped noun list, which holds no family's eval word.
"""

from __future__ import annotations

from typing import Any

from diversens.prompts.nouns import nouns
from diversens.prompts.registry import register
from diversens.prompts.spec import Items, TaskSpec, asked_count, sample_from
from diversens.text import list_items, list_segments

EVAL_OBJECTS = (
    "belt", "brick", "broom", "bucket", "candle", "clock", "comb", "knife",
    "lamp", "pencil", "pillow", "purse", "rope", "sock", "table",
)  # fmt: skip
TEMPLATE = (
    "List exactly {count} creative and unusual uses for {article} {object}. Write them as a "
    "numbered list, one use per line."
)
COUNT = 5


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" or (word[0] == "u" and not word.startswith("uni")) else "a"


def render(item: str, variant: str) -> str:
    return TEMPLATE.format(count=int(variant[1:]), article=_article(item), object=item)


def compliance(text: str, meta: dict, fallbacks: Any) -> str | None:
    need = asked_count(meta)
    need = fallbacks.aut_num_uses if need is None else need
    return None if len(list_items(text)) >= need else "aut_too_few_uses"


def training_space() -> Items:
    return [(obj, f"n{COUNT}") for obj in nouns()]  # `nouns` holds no eval object


register(
    TaskSpec(
        name="aut",
        followup="Now give a different answer: list other uses than the ones you already gave, "
        "in the same format.",
        segments=list_segments,
        compliance=compliance,
        render=render,
        eval_items=tuple((obj, f"n{COUNT}") for obj in EVAL_OBJECTS),
        training_items=sample_from(training_space),
        literature_samples=10,
        held_out_words=frozenset(EVAL_OBJECTS),
        example_answer="1. Strop a razor\n2. Leash a dog\n3. Bundle firewood\n4. Hang a "
        "lantern from a branch\n5. Strap a sleeping bag shut",
        order=30,
    )
)
