"""DAT, the Divergent Association Task: nouns as different from each other as possible.

Eval: the literature's one prompt, 10 nouns (docs/design.md §7). Training: other list lengths (5-15
but never 10) in three wordings of the same instruction; the eval count is held out in every
wording, so no rewording of the eval prompt is trained on.
"""

from __future__ import annotations

from typing import Any

from diversens.prompts.registry import register
from diversens.prompts.spec import Items, TaskSpec, asked_count, sample_from
from diversens.text import list_items, list_segments, words

WORDINGS = (
    "Please write {count} nouns in English that are as different from each other as possible, "
    "in all meanings and uses of the words. Rules: only single words, only nouns (things, "
    "objects, concepts), no proper nouns and no specialised vocabulary. Write them as a numbered "
    "list, one word per line.",
    "List {count} English nouns that are as unrelated to each other as you can make them. Use "
    "single common words only: no proper nouns, no technical terms. Give a numbered list, one "
    "word per line.",
    "Think of {count} single-word English nouns that have as little in common as possible "
    "(different meanings, different uses). No names of people or places, no jargon. Answer with "
    "a numbered list, one noun per line.",
)
EVAL_COUNT = 10
COUNTS = range(5, 16)
EXAMPLE_NOUNS = (
    "volcano spoon democracy jellyfish saxophone glacier receipt moth telescope porridge".split()
)


def render(item: str, variant: str) -> str:
    count, wording = (int(p[1:]) for p in variant.split("-"))  # "n10-w0"
    return WORDINGS[wording].format(count=count)


def segments(text: str) -> list[str]:
    """List items; an unmarked one-line answer may separate its words by commas."""
    return list_segments(text, split_inline=True)


def dat_words(text: str, n: int = EVAL_COUNT) -> tuple[list[str], int]:
    """The first `n` distinct single-word items of a DAT answer, and how many items were invalid
    (multi-word, non-alphabetic or repeated)."""
    items = list_items(text) or segments(text)
    valid, invalid = [], 0
    for item in items:
        tokens = words(item)
        ok = len(tokens) == 1 and tokens[0].replace("-", "").isalpha() and tokens[0] not in valid
        if ok and len(valid) < n:
            valid.append(tokens[0])
        elif not ok:
            invalid += 1
    return valid, invalid


def compliance(text: str, meta: dict, fallbacks: Any) -> str | None:
    need = asked_count(meta)
    need = fallbacks.dat_num_words if need is None else need
    return None if len(dat_words(text, need)[0]) >= need else "dat_too_few_single_words"


def training_space() -> Items:
    return [("", f"n{count}-w{wording}") for count in COUNTS if count != EVAL_COUNT
            for wording in range(len(WORDINGS))]  # fmt: skip


register(
    TaskSpec(
        name="dat",
        followup="Now give a different answer: a new list that follows the same rules, using "
        "words you have not used in your previous answer.",
        segments=segments,
        compliance=compliance,
        render=render,
        eval_items=(("", f"n{EVAL_COUNT}-w0"),),
        training_items=sample_from(training_space),
        literature_samples=100,
        example_answer="\n".join(f"{i}. {w}" for i, w in enumerate(EXAMPLE_NOUNS, 1)),
        order=10,
    )
)
